"""Admin REST API of drift monitors (``/admin/drift/monitors``), mounted under ``/admin``.

``POST /admin/drift/monitors`` creates a monitor from its spec (201; see
:mod:`modelyard.monitoring.drift.monitors`; a bad field is a 400 naming it); ``GET`` lists those the
caller sees; ``GET /{id}`` shows one; ``DELETE /{id}`` removes it and its runs; ``POST /{id}/run``
runs it now and returns the run; ``GET /{id}/runs`` lists its runs, newest first; ``GET /{id}/report``
is the report (``?format=html`` for the page).

Who may do what, as for experiments: system admins own global monitors (no ``tenant``) and any
tenant's; a tenant ``admin`` key creates and runs its own tenant's, whose scope is pinned to that
tenant; ``read`` keys read. Another tenant's monitor is a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse

from modelyard.errors import InvalidRequest, NotFound, PermissionDenied
from modelyard.monitoring.drift.store import ANY_TENANT, DriftStore, Monitor
from modelyard.tenancy.access import managed_tenant
from modelyard.tenancy.records import ANONYMOUS, Principal

router = APIRouter(prefix="/drift/monitors", tags=["admin: drift"])


def _principal(request: Request) -> Principal:
    return getattr(request.state, "principal", None) or ANONYMOUS


def _store(request: Request) -> DriftStore:
    registry = getattr(request.state, "registry", None)
    if registry is None:
        raise NotFound("Drift monitoring needs the metadata store, which this server does not have.")
    return DriftStore(registry.engine)


def _visible(p: Principal, m: Monitor) -> bool:
    return p.is_system_admin if m.tenant is None else p.may_read(m.tenant)


async def _get(request: Request, monitor_id: str) -> Monitor:
    m = await run_in_threadpool(_store(request).get_monitor, monitor_id)
    if not _visible(_principal(request), m):
        raise NotFound(f"no drift monitor `{monitor_id}`", param="id")
    return m


async def _writable(request: Request, monitor_id: str) -> Monitor:
    p, m = _principal(request), await _get(request, monitor_id)
    if (m.tenant is None and not p.is_system_admin) or (m.tenant is not None and not p.may_manage(m.tenant)):
        raise PermissionDenied("This API key cannot change this monitor (it needs the `admin` scope).")
    return m


@router.post("", status_code=201)
async def create_monitor(request: Request) -> JSONResponse:
    body = await request.json()
    if not isinstance(body, dict):
        raise InvalidRequest("the body is a JSON object (a monitor spec)")
    p = _principal(request)
    tenant = body.pop("tenant", None)
    owner = None if tenant is None and p.is_system_admin else managed_tenant(p, tenant)
    if owner is not None:
        scope = body.get("scope") or {}
        if not isinstance(scope, dict):
            raise InvalidRequest("`scope` is an object with model, tenant, prompt, template", param="scope")
        if scope.get("tenant", owner) != owner:
            raise InvalidRequest(
                f"a monitor of tenant `{owner}` watches only its traffic", param="scope.tenant"
            )
        body["scope"] = {**scope, "tenant": owner}
    m = await run_in_threadpool(lambda: _store(request).create_monitor(body, tenant=owner, actor=p.actor))
    return JSONResponse(m.as_dict(), status_code=201)


@router.get("")
async def list_monitors(request: Request) -> dict[str, Any]:
    p = _principal(request)
    scope = ANY_TENANT if p.is_system_admin else p.tenant_id
    found = await run_in_threadpool(_store(request).list_monitors, scope)
    return {"object": "list", "data": [m.as_dict() for m in found if _visible(p, m)]}


@router.get("/{monitor_id}")
async def get_monitor(request: Request, monitor_id: str) -> dict[str, Any]:
    return (await _get(request, monitor_id)).as_dict()


@router.delete("/{monitor_id}")
async def delete_monitor(request: Request, monitor_id: str) -> dict[str, Any]:
    await _writable(request, monitor_id)
    await run_in_threadpool(_store(request).delete_monitor, monitor_id)
    return {"id": monitor_id, "object": "drift.monitor", "deleted": True}


@router.post("/{monitor_id}/run")
async def run_monitor(request: Request, monitor_id: str) -> dict[str, Any]:
    m = await _writable(request, monitor_id)
    from modelyard.monitoring.drift.alerts import Notifier
    from modelyard.monitoring.drift.runner import run_monitor as run

    store = _store(request)
    services = getattr(request.state, "services", None)
    drift = services.settings.monitoring.drift if services is not None else None
    notifier = Notifier(store, drift.webhooks, drift.alert_cooldown_s) if drift is not None else None
    return await run_in_threadpool(lambda: run(store, m, notifier=notifier))


@router.get("/{monitor_id}/runs")
async def list_runs(request: Request, monitor_id: str, limit: int = 50) -> dict[str, Any]:
    await _get(request, monitor_id)
    if not 1 <= limit <= 1000:
        raise InvalidRequest(f"limit={limit} must be between 1 and 1000", param="limit")
    runs = await run_in_threadpool(_store(request).runs, monitor_id, limit)
    return {"object": "list", "data": runs}


@router.get("/{monitor_id}/report", response_model=None)
async def monitor_report(request: Request, monitor_id: str, format: str = "json") -> Any:
    await _get(request, monitor_id)
    if format not in ("json", "html"):
        raise InvalidRequest("`format` is json or html", param="format")
    from modelyard.monitoring.drift.report import build_report, render_html

    doc = await run_in_threadpool(build_report, _store(request), monitor_id)
    if format == "html":
        return HTMLResponse(await run_in_threadpool(render_html, doc))
    return doc
