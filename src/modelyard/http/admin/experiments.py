"""Admin REST API of experiments (``/admin/experiments``), mounted under ``/admin``.

``POST /admin/experiments`` creates a draft (201); ``GET /admin/experiments`` lists those the caller
sees; ``GET /admin/experiments/{id}`` shows one; ``POST /admin/experiments/{id}/start|pause|stop|conclude``
moves its status (409 on a move the status does not allow, or a second running experiment on the
same route and unit); ``PUT /admin/experiments/{id}/weights`` changes the weights (the fewest units
move); ``GET /admin/experiments/{id}/report`` is the report (``?format=html`` for the page).
``GET /admin/shadows`` is this process's shadow-traffic ledger (system admins: it spans tenants).

Who may do what: system admins own global experiments (no ``tenant``) and any tenant's; a tenant
``admin`` key creates and changes its own tenant's; ``read`` keys read. Another tenant's experiment,
or a global one seen by a tenant key, is a 404. After a write this process's experiment book reloads
at once; other processes follow within ``registry_poll_s``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse

from modelyard.errors import InvalidRequest, NotFound, PermissionDenied
from modelyard.experiments.records import Experiment, ExperimentNotFound, Status
from modelyard.experiments.store import ANY_TENANT, ExperimentStore
from modelyard.experiments.targets import target_check
from modelyard.tenancy.access import managed_tenant
from modelyard.tenancy.records import ANONYMOUS, Principal

router = APIRouter(prefix="/experiments", tags=["admin: experiments"])
shadows_router = APIRouter(tags=["admin: experiments"])
ACTIONS = {
    "start": Status.RUNNING,
    "pause": Status.PAUSED,
    "stop": Status.STOPPED,
    "conclude": Status.CONCLUDED,
}


def _principal(request: Request) -> Principal:
    return getattr(request.state, "principal", None) or ANONYMOUS


def _book(request: Request) -> Any:
    book = getattr(request.state, "experiment_book", None)
    if book is None:
        raise NotFound("Experiments are not configured on this server.")
    return book


def _store(request: Request) -> ExperimentStore:
    return _book(request).store  # type: ignore[no-any-return]


def _visible(p: Principal, exp: Experiment) -> bool:
    return p.is_system_admin if exp.tenant is None else p.may_read(exp.tenant)


async def _get(request: Request, eid: str) -> Experiment:
    p = _principal(request)
    exp = await run_in_threadpool(_store(request).get, eid, ANY_TENANT)
    if not _visible(p, exp):
        raise ExperimentNotFound(f"no experiment `{eid}`", param="id")
    return exp


async def _writable(request: Request, eid: str) -> Experiment:
    p, exp = _principal(request), await _get(request, eid)
    if (
        exp.tenant is None
        and not p.is_system_admin
        or exp.tenant is not None
        and not p.may_manage(exp.tenant)
    ):
        raise PermissionDenied("This API key cannot change this experiment (it needs the `admin` scope).")
    return exp


async def _changed(request: Request) -> None:
    await run_in_threadpool(_book(request).refresh)


@router.post("", status_code=201)
async def create_experiment(request: Request) -> JSONResponse:
    body = await request.json()
    if not isinstance(body, dict):
        raise InvalidRequest("the body is a JSON object")
    p = _principal(request)
    tenant = body.pop("tenant", None)
    owner = None if tenant is None and p.is_system_admin else managed_tenant(p, tenant)
    state = request.state
    gateway = getattr(state, "gateway", None)
    check = target_check(
        getattr(state, "registry", None),
        getattr(gateway, "router", None),
        getattr(state, "tenancy", None),
        getattr(state, "prompt_book", None),
    )
    exp = await run_in_threadpool(
        lambda: _store(request).create(body, tenant=owner, actor=p.actor, check_target=check)
    )
    await _changed(request)
    return JSONResponse(exp.as_dict(), status_code=201)


@router.get("")
async def list_experiments(request: Request, tenant: str | None = None) -> dict[str, Any]:
    p = _principal(request)
    if p.is_system_admin:
        scope: str | None = ANY_TENANT if tenant is None else tenant
    else:
        if tenant is not None and tenant != p.tenant_id:
            raise NotFound(f"tenant `{tenant}` does not exist")
        scope = p.tenant_id
    found = await run_in_threadpool(_store(request).list_experiments, scope)
    return {"object": "list", "data": [e.as_dict() for e in found if _visible(p, e)]}


@router.get("/{experiment_id}")
async def get_experiment(request: Request, experiment_id: str) -> dict[str, Any]:
    return (await _get(request, experiment_id)).as_dict()


async def _move(request: Request, experiment_id: str, action: str) -> dict[str, Any]:
    await _writable(request, experiment_id)
    exp = await run_in_threadpool(
        lambda: _store(request).transition(experiment_id, ACTIONS[action], actor=_principal(request).actor)
    )
    await _changed(request)
    return exp.as_dict()


@router.post("/{experiment_id}/start")
async def start_experiment(request: Request, experiment_id: str) -> dict[str, Any]:
    return await _move(request, experiment_id, "start")


@router.post("/{experiment_id}/pause")
async def pause_experiment(request: Request, experiment_id: str) -> dict[str, Any]:
    return await _move(request, experiment_id, "pause")


@router.post("/{experiment_id}/stop")
async def stop_experiment(request: Request, experiment_id: str) -> dict[str, Any]:
    return await _move(request, experiment_id, "stop")


@router.post("/{experiment_id}/conclude")
async def conclude_experiment(request: Request, experiment_id: str) -> dict[str, Any]:
    return await _move(request, experiment_id, "conclude")


@router.put("/{experiment_id}/weights")
async def set_weights(request: Request, experiment_id: str) -> dict[str, Any]:
    await _writable(request, experiment_id)
    body = await request.json()
    weights = body.get("weights") if isinstance(body, dict) else None
    if not isinstance(weights, dict):
        raise InvalidRequest('send {"weights": {variant: weight, ...}}', param="weights")
    exp = await run_in_threadpool(
        lambda: _store(request).set_weights(experiment_id, weights, actor=_principal(request).actor)
    )
    await _changed(request)
    return exp.as_dict()


@router.get("/{experiment_id}/report", response_model=None)
async def experiment_report(request: Request, experiment_id: str, format: str = "json") -> Any:
    await _get(request, experiment_id)
    if format not in ("json", "html"):
        raise InvalidRequest("`format` is json or html", param="format")
    from datetime import UTC, datetime

    from modelyard.experiments.report import experiment_report as build

    registry = request.state.registry
    settings = request.state.services.settings.experiments
    doc = await run_in_threadpool(
        lambda: build(
            registry.engine, _store(request), experiment_id, prices=registry.prices(),
            alpha=settings.alpha, min_units=settings.min_units, now=datetime.now(UTC),
        )
    )  # fmt: skip
    if format == "html":
        from modelyard.experiments.report_html import render_html

        return HTMLResponse(await run_in_threadpool(render_html, doc))
    return doc


@shadows_router.get("/shadows")
async def shadow_report(request: Request) -> dict[str, Any]:
    from modelyard.experiments.shadow import ShadowLayer
    from modelyard.tenancy.access import require_system_admin

    require_system_admin(_principal(request))
    layer = getattr(request.state, "gateway", None)
    if not isinstance(layer, ShadowLayer):
        raise NotFound("No shadow traffic is configured on this server (experiments.shadows).")
    return layer.report()
