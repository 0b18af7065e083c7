"""Admin API of eval runs: ``POST /admin/evals`` submits a suite, ``GET /admin/evals[/{run_id}]`` reads.

``POST`` body: ``{"suite": <the suite as JSON>, "tenant": optional}``. The suite is validated first
(dataset, scorers, gate: a 400 naming ``suite.<field>``; nothing stored), then a ``running`` run row
is written and the run is submitted as a job of kind ``eval`` (``request.state.jobs``; the caller's
key is handed to the job in memory, never stored with it: :mod:`modelyard.evals.job`); the answer is
202 ``{"id", "status": "running", "job": <job id>}`` (``GET /admin/jobs/{job}`` shows its progress). Over HTTP a suite may name only registry datasets (no file paths)
and no ``prompt_file``; a target ``base_url`` and ``custom`` scorers need a system admin key (they
reach other hosts and import code). Runs are tenant-scoped: a tenant key sees its tenant's runs,
another tenant's run answers 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from modelyard.errors import InvalidRequest, NotFound, PermissionDenied
from modelyard.evals.suite import Suite, suite_from_dict
from modelyard.evals.types import new_run_id
from modelyard.jobs.catalog import EVAL
from modelyard.tenancy.access import managed_tenant, principal_of

router = APIRouter(tags=["admin: evals"])


def _settings(request: Request) -> Any:
    services = getattr(request.state, "services", None)
    if services is None:
        raise NotFound("Eval runs are not configured on this server.")
    return services.settings


def _run_store(request: Request) -> Any:
    store = getattr(request.app.state, "eval_runs", None)
    if store is None:
        from modelyard.evals.store import RunStore
        from modelyard.store.db import create_db_engine

        store = RunStore(create_db_engine(_settings(request).resolved_database_url))
        request.app.state.eval_runs = store
    return store


def _check_http_suite(suite: Suite, system_admin: bool) -> None:
    if suite.dataset.endswith(".jsonl") or "/" in suite.dataset:
        raise InvalidRequest(
            "over HTTP a suite names a registry dataset (NAME@VERSION)", param="suite.dataset"
        )
    for i, t in enumerate(suite.targets):
        if t.prompt_file is not None:
            raise InvalidRequest(
                "prompt_file is for the CLI; use a registry prompt", param=f"suite.targets[{i}].prompt_file"
            )
        if t.base_url is not None and not system_admin:
            raise PermissionDenied("a target base_url needs a system admin key")
    for i, s in enumerate(suite.scorers):
        if s.get("type") == "custom" and not system_admin:
            raise PermissionDenied(f"scorers[{i}]: custom scorers need a system admin key")


@router.post("/evals", status_code=202)
async def submit_eval(request: Request) -> JSONResponse:
    p = principal_of(request)
    body = await request.json() if await request.body() else {}
    if not isinstance(body, dict) or not isinstance(body.get("suite"), dict):
        raise InvalidRequest("the body is {suite: <suite object>, tenant?: string}", param="suite")
    tenant_arg = body.get("tenant")
    if tenant_arg is not None and not isinstance(tenant_arg, str):
        raise InvalidRequest("tenant is a string", param="tenant")
    tenant = managed_tenant(p, tenant_arg) if tenant_arg is not None or p.tenant_id is not None else None
    try:
        suite = suite_from_dict(body["suite"])
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, param=f"suite.{exc.param}") from None
    _check_http_suite(suite, p.is_system_admin)
    settings = _settings(request)

    def validate() -> None:
        from pathlib import Path

        from modelyard.evals.execute import open_stores, prepare_suite

        with open_stores(settings) as stores:
            prepare_suite(suite, stores, base_dir=Path.cwd(), tenant=tenant)

    try:
        await run_in_threadpool(validate)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, param=f"suite.{exc.param}") from None
    run_id = new_run_id()
    await run_in_threadpool(lambda: _run_store(request).start(run_id, suite.name, tenant=tenant))
    auth = request.headers.get("authorization", "")
    host, port = request.scope.get("server") or ("127.0.0.1", 8000)
    payload = {
        "run_id": run_id,
        "suite": body["suite"],
        "tenant": tenant,
        "url": f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}",
    }
    key = auth.removeprefix("Bearer ").strip()
    if key:
        request.state.services.credentials.put(run_id, key)
    job = await request.state.jobs.submit(EVAL, payload, tenant=tenant, created_by=p.actor)
    return JSONResponse({"id": run_id, "status": "running", "job": job.id}, status_code=202)


def _reader_tenant(request: Request) -> str | None:
    p = principal_of(request)
    return None if p.is_system_admin else p.tenant_id


@router.get("/evals")
async def list_evals(request: Request) -> dict[str, Any]:
    tenant = _reader_tenant(request)
    if tenant is None and not principal_of(request).is_system_admin:
        raise PermissionDenied("This route needs a tenant or system admin key.")
    rows = await run_in_threadpool(lambda: _run_store(request).list(tenant=tenant))
    return {"object": "list", "data": rows}


@router.get("/evals/{run_id}")
async def get_eval(request: Request, run_id: str) -> dict[str, Any]:
    tenant = _reader_tenant(request)
    if tenant is None and not principal_of(request).is_system_admin:
        raise NotFound(f"eval run `{run_id}` does not exist")
    doc = await run_in_threadpool(lambda: _run_store(request).get(run_id, tenant=tenant))
    if doc is None:
        raise NotFound(f"eval run `{run_id}` does not exist", param="run_id")
    return doc  # type: ignore[no-any-return]
