"""Model registry: models, immutable versions, movable aliases and the revision counter.

Revision ID: 0001_registry
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_registry"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    state = op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_state")),
    )
    op.bulk_insert(state, [{"id": 1, "revision": 0}])
    op.create_table(
        "registry_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_base_model", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_models")),
        sa.UniqueConstraint("name", name=op.f("uq_registry_models_name")),
    )
    op.create_table(
        "registry_model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=True),
        sa.Column("architecture", sa.String(length=64), nullable=False),
        sa.Column("tokenizer", sa.Text(), nullable=True),
        sa.Column("context_length", sa.Integer(), nullable=False),
        sa.Column("quantization", sa.String(length=32), nullable=True),
        sa.Column("serving_params", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registry_models.id"],
            name=op.f("fk_registry_model_versions_model_id_registry_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_model_versions")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_registry_model_versions_model_id_version")),
    )
    op.create_table(
        "registry_model_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registry_models.id"],
            name=op.f("fk_registry_model_aliases_model_id_registry_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["registry_model_versions.id"],
            name=op.f("fk_registry_model_aliases_version_id_registry_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_model_aliases")),
        sa.UniqueConstraint("model_id", "alias", name=op.f("uq_registry_model_aliases_model_id_alias")),
    )


def downgrade() -> None:
    op.drop_table("registry_model_aliases")
    op.drop_table("registry_model_versions")
    op.drop_table("registry_models")
    op.drop_table("registry_state")
