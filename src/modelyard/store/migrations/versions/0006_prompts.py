"""The prompt registry, and the prompt version of each logged request.

``registry_prompts`` (global when ``tenant_id`` is NULL, else owned by that tenant),
``registry_prompt_versions`` (immutable: content JSON, digest, commit message, author) and
``registry_prompt_labels`` (movable, optionally protected pointers). ``request_log.prompt_version``
(nullable, ``name:version``) records which prompt version a request used.

Revision ID: 0006_prompts
Revises: 0005_model_defaults
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_prompts"
down_revision: str | None = "0005_model_defaults"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_prompts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_index("ix_registry_prompts_name", "registry_prompts", ["name"])
    op.create_table(
        "registry_prompt_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("registry_prompts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("commit_message", sa.Text(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("prompt_id", "version"),
    )
    op.create_table(
        "registry_prompt_labels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("registry_prompts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column(
            "version_id",
            sa.Integer(),
            sa.ForeignKey("registry_prompt_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("prompt_id", "label"),
    )
    # Plain ALTER TABLE (no SQLite batch copy of the request log, which can be large).
    op.add_column("request_log", sa.Column("prompt_version", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("request_log", "prompt_version")
    op.drop_table("registry_prompt_labels")
    op.drop_table("registry_prompt_versions")
    op.drop_index("ix_registry_prompts_name", "registry_prompts")
    op.drop_table("registry_prompts")
