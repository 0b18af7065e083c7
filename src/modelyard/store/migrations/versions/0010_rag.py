"""RAG: corpora, index versions, aliases, documents and each version's chunk ids.

Revision ID: 0010_rag
Revises: 0009_experiments
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_rag"
down_revision: str | None = "0009_experiments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "rag_corpora",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("embedder_source", sa.String(512), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=True),
        sa.Column("chunking", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_table(
        "rag_versions",
        sa.Column("id", big, primary_key=True),
        sa.Column("corpus", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("store", sa.String(16), nullable=False),
        sa.Column("embedder", sa.JSON(), nullable=False),
        sa.Column("chunking", sa.JSON(), nullable=False),
        sa.Column("key", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("evaluation", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
    )
    op.create_index("ix_rag_versions_corpus_number", "rag_versions", ["corpus", "number"], unique=True)
    op.create_index("ix_rag_versions_namespace", "rag_versions", ["namespace"], unique=True)
    op.create_table(
        "rag_aliases",
        sa.Column("corpus", sa.String(64), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version_id", big, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", tz, nullable=False),
    )
    op.create_table(
        "rag_documents",
        sa.Column("corpus", sa.String(64), primary_key=True),
        sa.Column("doc_id", sa.String(256), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("updated_at", tz, nullable=False),
    )
    op.create_table(
        "rag_chunks",
        sa.Column("version_id", big, primary_key=True),
        sa.Column("chunk_id", sa.String(300), primary_key=True),
        sa.Column("doc_id", sa.String(256), nullable=False),
    )
    op.create_index("ix_rag_chunks_version_doc", "rag_chunks", ["version_id", "doc_id"])


def downgrade() -> None:
    op.drop_index("ix_rag_chunks_version_doc", table_name="rag_chunks")
    op.drop_table("rag_chunks")
    op.drop_table("rag_documents")
    op.drop_table("rag_aliases")
    op.drop_index("ix_rag_versions_namespace", table_name="rag_versions")
    op.drop_index("ix_rag_versions_corpus_number", table_name="rag_versions")
    op.drop_table("rag_versions")
    op.drop_table("rag_corpora")
