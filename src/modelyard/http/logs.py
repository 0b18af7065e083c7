"""``GET /monitoring/logs``: search the request log.

Query parameters: ``model``, ``tenant``, ``since`` (``15m`` / ``2h`` / ``7d`` or ISO 8601), ``until``,
``request_id``, ``status``, ``contains`` (substring of the response), ``limit`` (1-1000, default 50).
Answers ``{"object": "list", "data": [record, ...]}`` newest first; 400 on a bad parameter, 503
when the request log is off.

Needs a key with ``admin`` or ``read`` (the auth middleware). A tenant's key reads only its own
tenant's rows whatever the query asks (``tenant`` naming another tenant answers 404, as the other
admin routes do); a system key reads every tenant.
"""

from __future__ import annotations

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import InvalidRequest, OverCapacity
from modelyard.monitoring.monitor import Monitor
from modelyard.monitoring.requestlog.query import LogQuery, parse_since, search
from modelyard.tenancy.access import principal_of, readable_tenant


def _int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{name}={raw!r} is not an integer", param=name) from None


def _tenant(request: Request) -> str | None:
    """The tenant filter the caller may apply (``None``: every tenant)."""
    asked = request.query_params.get("tenant") or None
    if getattr(request.state, "tenancy", None) is None:  # tenancy off: one trusted user
        return asked
    return readable_tenant(principal_of(request), asked)


async def logs(request: Request) -> Response:
    monitor: Monitor = request.state.monitor
    tenant = _tenant(request)
    if monitor.db is None:
        raise OverCapacity(
            "the request log is disabled (monitoring.request_log.enabled)", code="request_log_disabled"
        )
    p = request.query_params
    q = LogQuery(
        model=p.get("model"),
        tenant=tenant,
        since=parse_since(p["since"]) if "since" in p else None,
        until=parse_since(p["until"]) if "until" in p else None,
        request_id=p.get("request_id"),
        status=_int(request, "status", None),
        contains=p.get("contains"),
        limit=_int(request, "limit", 50) or 50,
    )
    rows = await anyio.to_thread.run_sync(search, monitor.db, q)
    return Response(orjson.dumps({"object": "list", "data": rows}), media_type="application/json")


routes = [Route("/monitoring/logs", logs, methods=["GET"])]
