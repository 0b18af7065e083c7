"""The vector stores the RAG tests run on (importable as ``rag_stores``; ``conftest`` is not a unique
module name across the test tree)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest


def make_store(kind: str, request: pytest.FixtureRequest, folder: Path) -> Any:
    """An empty store of ``kind``: a LanceDB folder, or a fresh schema on the pgvector server."""
    if kind == "lancedb":
        from modelyard.rag.lance import LanceStore

        return LanceStore(folder / "lance")
    from modelyard.rag.pg import PgVectorStore

    return PgVectorStore(request.getfixturevalue("pgvector_url"), schema=f"t_{uuid.uuid4().hex[:12]}")


STORES = ["lancedb", "pgvector"]
