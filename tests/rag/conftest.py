"""RAG fixtures: the pgserver-bundled PostgreSQL 16 + pgvector on a spare port (one per session), a
vector store of each kind, and the packaged MiniLM loaded once per session (slow tests only)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rag_stores import STORES, make_store

from servers import free_port


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """The server runs as the user ``pgserver`` when tests run as root; its folder is kept outside
    pytest's temp root, whose permissions a concurrent pytest run narrows to the owner."""
    from modelyard.rag.pg import LocalPostgres

    folder = Path(tempfile.mkdtemp(prefix="modelyard-pgvector-"))
    server = LocalPostgres(folder / "data", free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.remove()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=STORES)
def vector_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store = make_store(request.param, request, tmp_path)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def pool() -> Any:
    """One embedder pool for the session: the packaged MiniLM is loaded once, on first use."""
    from modelyard.rag.embedders import EmbedderPool

    return EmbedderPool()
