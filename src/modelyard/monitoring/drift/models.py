"""ORM tables of drift monitoring. Rows never leave :mod:`.store`; callers get plain records.

- ``drift_samples``: one sampled prompt of the request log: its embedding (float16 bytes), model,
  tenant, prompt ``name:version``, fingerprint, template id, length in tokens, language, whether it
  holds odd characters, whether a monitor run flagged it as an outlier, and of its response the
  length in tokens and whether it refused. No prompt text: that
  stays in ``request_log`` (``request_log_id``) under its own redaction and retention.
- ``drift_state``: small named JSON values (the consumer's cursor, the template miner).
- ``drift_monitors`` and ``drift_runs``: monitor definitions and one row per run with its result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.db import Base

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TZ = sa.DateTime(timezone=True)


def _now() -> datetime:
    return datetime.now(UTC)


class DriftSampleRow(Base):
    __tablename__ = "drift_samples"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    request_log_id: Mapped[int] = mapped_column(sa.BigInteger(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(_TZ, nullable=False)
    model: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    tenant: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    prompt_version: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    template_id: Mapped[str] = mapped_column(sa.String(220), nullable=False)
    n_tokens: Mapped[int] = mapped_column(sa.Integer(), nullable=False)
    language: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)
    odd_chars: Mapped[bool] = mapped_column(sa.Boolean(), nullable=False)
    outlier: Mapped[bool] = mapped_column(sa.Boolean(), nullable=False, default=False)
    response_tokens: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    refusal: Mapped[bool | None] = mapped_column(sa.Boolean(), nullable=True)
    embedder: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    dims: Mapped[int] = mapped_column(sa.Integer(), nullable=False)
    embedding: Mapped[bytes] = mapped_column(sa.LargeBinary(), nullable=False)

    __table_args__ = (
        sa.Index("ix_drift_samples_model_created_at", "model", "created_at"),
        sa.Index("ix_drift_samples_tenant_created_at", "tenant", "created_at"),
        sa.Index("ix_drift_samples_created_at", "created_at"),
        sa.Index("ix_drift_samples_request_log_id", "request_log_id"),
    )


class DriftStateRow(Base):
    __tablename__ = "drift_state"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(sa.JSON(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(_TZ, nullable=False, default=_now, onupdate=_now)


class DriftMonitorRow(Base):
    __tablename__ = "drift_monitors"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON(), nullable=False)
    created_by: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(_TZ, nullable=False, default=_now)
    last_run_at: Mapped[datetime | None] = mapped_column(_TZ, nullable=True)


class DriftRunRow(Base):
    __tablename__ = "drift_runs"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    monitor_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    started_at: Mapped[datetime] = mapped_column(_TZ, nullable=False)
    status: Mapped[str] = mapped_column(sa.String(24), nullable=False)
    alert: Mapped[bool] = mapped_column(sa.Boolean(), nullable=False)
    result: Mapped[dict[str, Any]] = mapped_column(sa.JSON(), nullable=False)

    __table_args__ = (sa.Index("ix_drift_runs_monitor_started_at", "monitor_id", "started_at"),)
