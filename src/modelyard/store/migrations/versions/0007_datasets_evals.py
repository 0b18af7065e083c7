"""Versioned datasets and stored eval runs.

``datasets`` holds one immutable row per dataset version (the items live in a content-addressed file
named by ``digest``); ``eval_runs`` holds each run's document (``status`` ``running`` until it ends).

Revision ID: 0007_datasets_evals
Revises: 0006_prompts
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_datasets_evals"
down_revision: str | None = "0006_prompts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_datasets_name_version"),
    )
    op.create_index("ix_datasets_name", "datasets", ["name"])
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("suite", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.JSON(), nullable=True),
    )
    op.create_index("ix_eval_runs_tenant", "eval_runs", ["tenant"])


def downgrade() -> None:
    op.drop_table("eval_runs")
    op.drop_table("datasets")
