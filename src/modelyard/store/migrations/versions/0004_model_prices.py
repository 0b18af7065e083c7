"""Per-model prices in the registry: two nullable columns on ``registry_models``.

A model without prices (both NULL) falls back to the ``tenancy.prices`` setting. Adding nullable
columns keeps every existing row as it was.

Revision ID: 0004_model_prices
Revises: 0003_request_log
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_model_prices"
down_revision: str | None = "0003_request_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on both databases: no table copy (a SQLite batch copy of this table would
    # cascade-delete the versions that reference it while foreign keys are on).
    op.add_column("registry_models", sa.Column("prompt_per_1k", sa.Float(), nullable=True))
    op.add_column("registry_models", sa.Column("completion_per_1k", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("registry_models", "completion_per_1k")  # SQLite >= 3.35 drops columns in place
    op.drop_column("registry_models", "prompt_per_1k")
