"""ORM tables of versioned datasets and stored eval runs (migration ``0007_datasets_evals``).

A dataset version row never changes: it names a content-addressed artifact file
(``<data_dir>/artifacts/datasets/<digest>.jsonl``) by its digest. An eval run row holds the whole run
document (``modelyard.evals.types``) as JSON, with the few columns that lists filter on.
Rows never leave :mod:`modelyard.registry.datasets` and :mod:`modelyard.evals.store`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class DatasetVersionRow(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(71), nullable=False)
    item_count: Mapped[int] = mapped_column(Integer, nullable=False)
    tenant: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    source: Mapped[str] = mapped_column(Text, nullable=False)


class EvalRunRow(Base):
    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    suite: Mapped[str] = mapped_column(String(128), nullable=False)
    tenant: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
