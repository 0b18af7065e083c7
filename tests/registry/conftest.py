"""Registries on every metadata database of the root ``database_url`` fixture (SQLite, PostgreSQL).

The PostgreSQL case fails (never skips) when the server is down; deselect it with ``-m 'not postgres'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.registry import Registry


@pytest.fixture
def registry(database_url: str) -> Iterator[Registry]:
    """A migrated registry on ``database_url``."""
    reg = Registry(database_url)
    reg.migrate()
    yield reg
    reg.close()


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A small file standing in for model weights."""
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    return path
