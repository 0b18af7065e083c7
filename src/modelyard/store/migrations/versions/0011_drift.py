"""Drift monitoring: sampled prompt embeddings, the consumer's state, monitors and their runs.

Revision ID: 0011_drift
Revises: 0010_rag
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_drift"
down_revision: str | None = "0010_rag"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "drift_samples",
        sa.Column("id", big, primary_key=True),
        sa.Column("request_log_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("prompt_version", sa.String(200), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("template_id", sa.String(220), nullable=False),
        sa.Column("n_tokens", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("odd_chars", sa.Boolean(), nullable=False),
        sa.Column("outlier", sa.Boolean(), nullable=False),
        sa.Column("response_tokens", sa.Integer(), nullable=True),
        sa.Column("refusal", sa.Boolean(), nullable=True),
        sa.Column("embedder", sa.String(256), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_drift_samples_model_created_at", "drift_samples", ["model", "created_at"])
    op.create_index("ix_drift_samples_tenant_created_at", "drift_samples", ["tenant", "created_at"])
    op.create_index("ix_drift_samples_created_at", "drift_samples", ["created_at"])
    op.create_index("ix_drift_samples_request_log_id", "drift_samples", ["request_log_id"])
    op.create_table(
        "drift_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", tz, nullable=False),
    )
    op.create_table(
        "drift_monitors",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("last_run_at", tz, nullable=True),
    )
    op.create_table(
        "drift_runs",
        sa.Column("id", big, primary_key=True),
        sa.Column("monitor_id", sa.String(64), nullable=False),
        sa.Column("started_at", tz, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
    )
    op.create_index("ix_drift_runs_monitor_started_at", "drift_runs", ["monitor_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_runs_monitor_started_at", table_name="drift_runs")
    op.drop_table("drift_runs")
    op.drop_table("drift_monitors")
    op.drop_table("drift_state")
    op.drop_index("ix_drift_samples_request_log_id", table_name="drift_samples")
    op.drop_index("ix_drift_samples_created_at", table_name="drift_samples")
    op.drop_index("ix_drift_samples_tenant_created_at", table_name="drift_samples")
    op.drop_index("ix_drift_samples_model_created_at", table_name="drift_samples")
    op.drop_table("drift_samples")
