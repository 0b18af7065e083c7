"""RAG fixtures: the pgserver-bundled PostgreSQL 16 + pgvector on a spare port (one per session), a
vector store of each kind, and the packaged MiniLM loaded once per session (slow tests only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import free_port


@pytest.fixture(scope="session")
def pgvector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from modelyard.rag.pg import LocalPostgres

    server = LocalPostgres(tmp_path_factory.mktemp("pgvector") / "data", free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture(params=["lancedb", "pgvector"])
def vector_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An empty store of each kind: a LanceDB folder, or a fresh schema on the pgvector server."""
    if request.param == "lancedb":
        from modelyard.rag.lance import LanceStore

        store: Any = LanceStore(tmp_path / "lance")
    else:
        from modelyard.rag.pg import PgVectorStore

        store = PgVectorStore(request.getfixturevalue("pgvector_url"), schema=f"t_{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def minilm() -> Any:
    from modelyard.embeddings import load_embedder

    return load_embedder("packaged:all-minilm-l6-v2")
