"""Default sampling parameters per model version.

``registry_model_versions.artifact_defaults`` (nullable JSON) holds what the artifact carries
(``generation_config.json`` or GGUF ``general.sampling.*``), written with the version; existing
versions get NULL (none). ``registry_version_defaults`` holds an operator's overrides, one mutable row
per version (versions themselves stay immutable).

Revision ID: 0005_model_defaults
Revises: 0004_model_prices
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_model_defaults"
down_revision: str | None = "0004_model_prices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE (no SQLite batch copy, which would cascade-delete the aliases of the versions).
    op.add_column("registry_model_versions", sa.Column("artifact_defaults", sa.JSON(), nullable=True))
    op.create_table(
        "registry_version_defaults",
        sa.Column(
            "version_id",
            sa.Integer(),
            sa.ForeignKey("registry_model_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_version_defaults")
    op.drop_column("registry_model_versions", "artifact_defaults")
