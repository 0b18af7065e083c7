"""Registries on a fresh SQLite file and on a fresh schema of the real PostgreSQL (``postgres`` mark).

The PostgreSQL case fails (never skips) when the server is down; deselect it with ``-m 'not postgres'``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from modelyard.registry import Registry

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database, removed after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'modelyard.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


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
