"""Admin REST API of usage (``/admin/usage``): totals grouped by tenant/model/day/key/adapter/status,
and raw records exported as CSV or Parquet for billing.

A tenant key (``admin`` or ``read``) sees only its own tenant; another tenant answers 404.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.errors import InvalidRequest
from modelyard.tenancy.access import principal_of, readable_tenant, tenancy_of

router = APIRouter(tags=["admin: tenancy"])

EXPORT_COLUMNS = (
    "id",
    "request_id",
    "created_at",
    "tenant_id",
    "key_id",
    "model",
    "version",
    "adapter",
    "endpoint",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "queue_ms",
    "engine_ms",
    "cost",
)


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "created_at": r["created_at"].isoformat()})
    return buf.getvalue().encode()


def to_parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{c: r.get(c) for c in EXPORT_COLUMNS} for r in rows])
    if not rows:
        table = pa.table({c: pa.array([], pa.string()) for c in EXPORT_COLUMNS})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name}={value!r} is not an ISO 8601 date or time", param=name) from None


@router.get("/usage")
async def usage(
    request: Request,
    tenant: str | None = None,
    group_by: str = "tenant,model",
    since: str | None = None,
    until: str | None = None,
    format: str = "json",
) -> Any:
    p = principal_of(request)
    scope = readable_tenant(p, tenant)
    store = tenancy_of(request).store
    t0, t1 = _time(since, "since"), _time(until, "until")
    if format == "json":
        groups = [g for g in group_by.split(",") if g]
        data = await run_in_threadpool(lambda: store.usage_summary(scope, groups, since=t0, until=t1))
        return {"object": "list", "group_by": groups, "data": data}
    if format not in ("csv", "parquet"):
        raise InvalidRequest("format must be json, csv or parquet", param="format")
    rows = await run_in_threadpool(lambda: store.usage_rows(scope, since=t0, until=t1))
    if format == "csv":
        return Response(to_csv(rows), media_type="text/csv")
    return Response(await run_in_threadpool(to_parquet, rows), media_type="application/vnd.apache.parquet")
