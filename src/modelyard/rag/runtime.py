"""Building a :class:`~modelyard.rag.service.RagService` from settings, lazily.

``serve`` hands a :class:`RagRuntime` to the admin API through the lifespan state; the vector store
client (``lancedb`` or ``psycopg``/``pgvector``) and the embedders are only imported and opened on the
first RAG call, so a server that never uses RAG never loads them.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from modelyard.rag.catalog import Catalog
from modelyard.rag.embedders import EmbedderPool
from modelyard.rag.service import RagService
from modelyard.rag.vectors import VectorStore
from modelyard.settings import RagSettings, Settings


def open_store(rag: RagSettings, settings: Settings) -> VectorStore:
    if rag.store == "pgvector":
        from modelyard.rag.pg import PgVectorStore

        assert rag.pgvector_url is not None  # checked by RagSettings
        return PgVectorStore(rag.pgvector_url, schema=rag.pgvector_schema)
    from modelyard.rag.lance import LanceStore

    return LanceStore(rag.lancedb_path or settings.resolved_data_dir / "rag" / "lancedb")


class RagRuntime:
    """The server's RAG service, built on first use (thread-safe) and closed with the server."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._settings, self._engine = settings, engine
        self._service: RagService | None = None
        self._lock = threading.Lock()

    def service(self) -> RagService:
        with self._lock:
            if self._service is None:
                rag = self._settings.rag
                self._service = RagService(
                    Catalog(self._engine),
                    open_store(rag, self._settings),
                    EmbedderPool(),
                    batch=rag.embed_batch,
                )
            return self._service

    def close(self) -> None:
        with self._lock:
            if self._service is not None:
                self._service.store.close()
                self._service = None
