"""ORM tables of experiments: the experiments, one exposure row per assigned request, and explicit
feedback on responses. Rows never leave :mod:`modelyard.experiments.store`; callers get records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    route: Mapped[str] = mapped_column(String(256), nullable=False)
    route_kind: Mapped[str] = mapped_column(String(16), nullable=False)  # model | prompt
    unit: Mapped[str] = mapped_column(String(160), nullable=False)
    salt: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    traffic_percent: Mapped[int] = mapped_column(Integer, nullable=False)
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    layout: Mapped[list[list[Any]]] = mapped_column(JSON, nullable=False)  # [[start, end, variant], ...]
    primary_metric: Mapped[str] = mapped_column(String(64), nullable=False)
    guardrails: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    flag: Mapped[str | None] = mapped_column(String(128), nullable=True)  # OpenFeature flag key
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # a canary's steps and state
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, onupdate=_now
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_experiments_route_status", "route", "status"),)


class ExposureRow(Base):
    __tablename__ = "experiment_exposures"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(64), nullable=False)
    variant: Mapped[str] = mapped_column(String(64), nullable=False)
    unit: Mapped[str] = mapped_column(String(256), nullable=False)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    response_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    tenant_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)

    __table_args__ = (
        Index("ix_experiment_exposures_experiment", "experiment_id", "created_at"),
        Index("ix_experiment_exposures_response", "response_id"),
    )


class FeedbackRow(Base):
    __tablename__ = "experiment_feedback"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    response_id: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # thumbs | score
    score: Mapped[float] = mapped_column(Float, nullable=False)  # normalised to [0, 1]
    raw: Mapped[str] = mapped_column(String(16), nullable=False)  # "up", "down", "1".."5"
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
