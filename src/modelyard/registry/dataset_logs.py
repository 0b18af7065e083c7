"""Dataset items from the request log: filter, then a seeded sample.

Each matching logged request becomes an item: ``id`` = the request id, ``input`` = the logged
messages (chat) or ``[{"role": "user", "content": prompt}]`` (completions), ``expected`` = the logged
response (a reference answer to regress against), ``metadata`` = model, endpoint, tenant and time.
Only successful requests (status 200) are taken unless ``status`` says otherwise. At most
:data:`MAX_SCAN` rows are read (newest first); ``sample`` then draws without replacement with
``random.Random(seed)`` over the rows ordered by id, so the same log, filters and seed give the same
items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from modelyard.evals.types import EvalItem
from modelyard.monitoring.requestlog.records import RequestLogRow
from modelyard.registry.datasets import DatasetError, sample

MAX_SCAN = 100_000


@dataclass(slots=True)
class LogFilter:
    tenant: str | None = None
    model: str | None = None
    endpoint: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: int | None = 200
    prompt_contains: str | None = None


def _input_of(prompt: Any) -> list[dict[str, Any]] | None:
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m for m in prompt):
        return [{"role": m["role"], "content": m.get("content") or ""} for m in prompt]
    if isinstance(prompt, str) and prompt:
        return [{"role": "user", "content": prompt}]
    return None


def items_from_logs(engine: Engine, f: LogFilter, *, n: int | None, seed: int) -> list[EvalItem]:
    t = RequestLogRow.__table__.c
    conds: list[Any] = []
    if f.tenant:
        conds.append(t.tenant == f.tenant)
    if f.model:
        conds.append(sa.or_(t.model == f.model, t.model_requested == f.model))
    if f.endpoint:
        conds.append(t.endpoint == f.endpoint)
    if f.since:
        conds.append(t.created_at >= f.since)
    if f.until:
        conds.append(t.created_at < f.until)
    if f.status is not None:
        conds.append(t.status == f.status)
    if f.prompt_contains:
        conds.append(sa.cast(t.prompt, sa.Text).contains(f.prompt_contains, autoescape=True))
    stmt = (
        sa.select(t.id, t.request_id, t.created_at, t.tenant, t.model, t.endpoint, t.prompt, t.response)
        .where(*conds)
        .order_by(t.created_at.desc(), t.id.desc())
        .limit(MAX_SCAN)
    )
    with engine.connect() as conn:
        rows = sorted(conn.execute(stmt).all(), key=lambda r: r.id)
    items: list[EvalItem] = []
    seen: set[str] = set()
    for r in rows:
        messages = _input_of(r.prompt)
        if messages is None or r.request_id in seen:
            continue
        seen.add(r.request_id)
        created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
        meta = {
            "model": r.model,
            "endpoint": r.endpoint,
            "tenant": r.tenant,
            "created_at": created.isoformat(),
        }
        items.append(EvalItem(r.request_id, messages, r.response, None, meta))
    if not items:
        raise DatasetError("no logged request matches the filters", param="filters")
    return sample(items, n, seed)
