"""The request-log schema: the ``request_log`` table and the plain record that fills it.

Schema version 1; drift monitoring and evals read this table, so columns are only ever added.
``prompt`` is the request's ``messages`` / ``prompt`` / ``input`` as JSON, ``response`` the first
choice's text, both redacted and cut to ``max_text_chars``. Times are UTC; latencies in ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.db import Base

SCHEMA_VERSION = 1


class RequestLogRow(Base):
    __tablename__ = "request_log"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), index=True)
    tenant: Mapped[str] = mapped_column(sa.String(128))
    model: Mapped[str] = mapped_column(sa.String(256))
    model_requested: Mapped[str] = mapped_column(sa.String(256))
    endpoint: Mapped[str] = mapped_column(sa.String(32))
    stream: Mapped[bool] = mapped_column(sa.Boolean())
    status: Mapped[int] = mapped_column(sa.Integer())
    finish_reason: Mapped[str | None] = mapped_column(sa.String(32))
    error: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text())
    prompt: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    response: Mapped[str | None] = mapped_column(sa.Text())
    prompt_tokens: Mapped[int | None] = mapped_column(sa.Integer())
    completion_tokens: Mapped[int | None] = mapped_column(sa.Integer())
    ttft_ms: Mapped[float | None] = mapped_column(sa.Float())
    latency_ms: Mapped[float] = mapped_column(sa.Float())
    trace_id: Mapped[str | None] = mapped_column(sa.String(32))
    params: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    schema_version: Mapped[int] = mapped_column(sa.Integer())
    prompt_version: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)  # name:version

    __table_args__ = (
        sa.Index("ix_request_log_model_created_at", "model", "created_at"),
        sa.Index("ix_request_log_tenant_created_at", "tenant", "created_at"),
        sa.Index("ix_request_log_request_id", "request_id"),
    )


@dataclass(slots=True)
class RequestRecord:
    """One logged request, as the observer hands it over (before redaction)."""

    request_id: str
    created_at: datetime
    tenant: str
    model: str
    model_requested: str
    endpoint: str
    stream: bool
    status: int
    latency_ms: float
    prompt: Any = None
    response: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    error_message: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    trace_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    prompt_version: str | None = None

    def row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
