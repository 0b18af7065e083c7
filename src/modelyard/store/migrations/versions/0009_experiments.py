"""Experiments: experiments, their exposures and explicit feedback on responses.

Revision ID: 0009_experiments
Revises: 0008_jobs
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_experiments"
down_revision: str | None = "0008_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=True),
        sa.Column("route", sa.String(256), nullable=False),
        sa.Column("route_kind", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(160), nullable=False),
        sa.Column("salt", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("traffic_percent", sa.Integer(), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("layout", sa.JSON(), nullable=False),
        sa.Column("primary_metric", sa.String(64), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("flag", sa.String(128), nullable=True),
        sa.Column("rollout", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
        sa.Column("started_at", tz, nullable=True),
        sa.Column("ended_at", tz, nullable=True),
    )
    op.create_index("ix_experiments_route_status", "experiments", ["route", "status"])
    op.create_table(
        "experiment_exposures",
        sa.Column("id", big, primary_key=True),
        sa.Column("experiment_id", sa.String(64), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("response_id", sa.String(256), nullable=True),
        sa.Column("tenant_id", sa.String(128), nullable=True),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_index(
        "ix_experiment_exposures_experiment", "experiment_exposures", ["experiment_id", "created_at"]
    )
    op.create_index("ix_experiment_exposures_response", "experiment_exposures", ["response_id"])
    op.create_table(
        "experiment_feedback",
        sa.Column("id", big, primary_key=True),
        sa.Column("response_id", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("raw", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_index("ix_experiment_feedback_response_id", "experiment_feedback", ["response_id"])


def downgrade() -> None:
    op.drop_index("ix_experiment_feedback_response_id", table_name="experiment_feedback")
    op.drop_table("experiment_feedback")
    op.drop_index("ix_experiment_exposures_response", table_name="experiment_exposures")
    op.drop_index("ix_experiment_exposures_experiment", table_name="experiment_exposures")
    op.drop_table("experiment_exposures")
    op.drop_index("ix_experiments_route_status", table_name="experiments")
    op.drop_table("experiments")
