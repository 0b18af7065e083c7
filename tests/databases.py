"""Fresh metadata databases for tests (importable as ``databases``): a SQLite file, or a schema of our
own on the real PostgreSQL, dropped afterwards. PostgreSQL cases fail (never skip) when the server is
down; deselect them with ``-m 'not postgres'``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def fresh_database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty database of ``kind`` ("sqlite" or "postgres") and clean it up after."""
    if kind == "sqlite":
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
