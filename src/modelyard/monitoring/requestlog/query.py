"""Searching the request log (the query API and ``modelyard logs search`` share this)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from modelyard.errors import InvalidRequest
from modelyard.monitoring.requestlog.records import RequestLogRow

MAX_LIMIT = 1000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``15m`` / ``2h`` / ``7d`` ago, or an ISO 8601 time (naive means UTC); 400 otherwise."""
    m = _DURATION.match(value.strip())
    now = now or datetime.now(UTC)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"since={value!r} is neither a duration like 15m/2h/7d nor an ISO 8601 time", param="since"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(slots=True)
class LogQuery:
    model: str | None = None
    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    status: int | None = None
    contains: str | None = None
    limit: int = 50


def search(engine: Engine, q: LogQuery) -> list[dict[str, Any]]:
    """Matching records, newest first, as JSON-able dicts (schema of ``request_log``)."""
    if not 1 <= q.limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit={q.limit} must be between 1 and {MAX_LIMIT}", param="limit")
    t = RequestLogRow.__table__.c
    conds: list[Any] = []
    if q.model:
        conds.append(t.model == q.model)
    if q.tenant:
        conds.append(t.tenant == q.tenant)
    if q.since:
        conds.append(t.created_at >= q.since)
    if q.until:
        conds.append(t.created_at < q.until)
    if q.request_id:
        conds.append(t.request_id == q.request_id)
    if q.status is not None:
        conds.append(t.status == q.status)
    if q.contains:
        conds.append(t.response.contains(q.contains, autoescape=True))
    cols = [c for c in RequestLogRow.__table__.columns if c.name != "id"]
    stmt = sa.select(*cols).where(*conds).order_by(t.created_at.desc(), t.id.desc()).limit(q.limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        created = d["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        d["created_at"] = created.isoformat()
        out.append(d)
    return out
