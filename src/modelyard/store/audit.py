"""The audit log: one row per admin change (who, what, on which object, when).

Tenancy changes (tenants, keys, adapters) and registry changes (models, versions, aliases, prices)
write their row in the same transaction as the change, so a change is never stored without its entry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from modelyard.store.db import Base

SYSTEM_ACTOR = "system"  # changes the server makes itself (bootstrapping packaged models)
CLI_ACTOR = "cli"


class AuditEntry(Base):
    """One admin change: who (key id or ``anonymous``/``cli``/``system``), what, on which object, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(UTC))


def audit(session: Session, actor: str, action: str, target: str, **detail: Any) -> None:
    """Add the audit row of a change to the session that makes the change."""
    session.add(AuditEntry(actor=actor, action=action, target=target, detail=detail))
