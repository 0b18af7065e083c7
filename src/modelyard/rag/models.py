"""ORM tables of RAG (migration ``0010_rag``): corpora, their index versions, aliases, the corpus's
documents (text and content hash) and each version's chunk ids. Rows never leave
:mod:`modelyard.rag.catalog`; callers get records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class RagCorpusRow(Base):
    __tablename__ = "rag_corpora"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    embedder_source: Mapped[str] = mapped_column(String(512), nullable=False)
    dimensions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    chunking: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)


class RagVersionRow(Base):
    __tablename__ = "rag_versions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    corpus: Mapped[str] = mapped_column(String(64), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    namespace: Mapped[str] = mapped_column(String(64), nullable=False)
    store: Mapped[str] = mapped_column(String(16), nullable=False)
    embedder: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    chunking: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    key: Mapped[str] = mapped_column(String(16), nullable=False)  # hash of embedder identity + chunking
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # building | ready | failed
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, onupdate=_now
    )

    __table_args__ = (
        Index("ix_rag_versions_corpus_number", "corpus", "number", unique=True),
        Index("ix_rag_versions_namespace", "namespace", unique=True),
    )


class RagAliasRow(Base):
    __tablename__ = "rag_aliases"

    corpus: Mapped[str] = mapped_column(String(64), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), nullable=False)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)


class RagDocumentRow(Base):
    __tablename__ = "rag_documents"

    corpus: Mapped[str] = mapped_column(String(64), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    doc_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)


class RagChunkRow(Base):
    __tablename__ = "rag_chunks"

    version_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    chunk_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(256), nullable=False)

    __table_args__ = (Index("ix_rag_chunks_version_doc", "version_id", "doc_id"),)
