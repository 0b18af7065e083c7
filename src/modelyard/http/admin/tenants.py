"""Admin REST API of tenants (``/admin/tenants``) and the audit log (``/admin/audit``).

Creating, changing and deleting tenants needs a system admin key; a tenant's own ``admin``/``read``
key sees only its tenant. Every change is audited with the calling key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from modelyard.protocol.tenancy import CreateTenantRequest, UpdateTenantRequest, dump_limits
from modelyard.tenancy.access import principal_of, readable_tenant, require_system_admin, tenancy_of

router = APIRouter(tags=["admin: tenancy"])


@router.post("/tenants", status_code=201)
async def create_tenant(request: Request) -> dict[str, Any]:
    p = principal_of(request)
    require_system_admin(p)
    body = CreateTenantRequest.model_validate_json(await request.body() or b"{}")
    info = await run_in_threadpool(
        tenancy_of(request).store.create_tenant,
        body.id,
        models=body.models,
        limits=dump_limits(body.limits),
        budget=body.budget.model_dump(exclude_none=True),
        actor=p.actor,
    )
    return info.to_dict()


@router.get("/tenants")
async def list_tenants(request: Request) -> dict[str, Any]:
    p = principal_of(request)
    store = tenancy_of(request).store
    if p.is_system_admin:
        tenants = await run_in_threadpool(store.list_tenants)
    else:
        own = readable_tenant(p, None)
        tenants = [await run_in_threadpool(store.get_tenant, own)] if own else []
    return {"object": "list", "data": [t.to_dict() for t in tenants]}


@router.get("/tenants/{tenant_id}")
async def get_tenant(request: Request, tenant_id: str) -> dict[str, Any]:
    p = principal_of(request)
    tenant = readable_tenant(p, tenant_id)
    assert tenant is not None
    return (await run_in_threadpool(tenancy_of(request).store.get_tenant, tenant)).to_dict()


@router.patch("/tenants/{tenant_id}")
async def update_tenant(request: Request, tenant_id: str) -> dict[str, Any]:
    p = principal_of(request)
    require_system_admin(p)
    body = UpdateTenantRequest.model_validate_json(await request.body() or b"{}")
    changes: dict[str, Any] = {
        "models": body.models,
        "limits": dump_limits(body.limits) if body.limits is not None else None,
        "budget": body.budget.model_dump(exclude_none=True) if body.budget is not None else None,
        "disabled": body.disabled,
    }
    store = tenancy_of(request).store
    info = await run_in_threadpool(lambda: store.update_tenant(tenant_id, actor=p.actor, **changes))
    return info.to_dict()


@router.delete("/tenants/{tenant_id}")
async def delete_tenant(request: Request, tenant_id: str) -> dict[str, Any]:
    p = principal_of(request)
    require_system_admin(p)
    store = tenancy_of(request).store
    await run_in_threadpool(lambda: store.delete_tenant(tenant_id, actor=p.actor))
    return {"id": tenant_id, "deleted": True}


@router.get("/audit")
async def audit_log(request: Request, limit: int = 100) -> dict[str, Any]:
    require_system_admin(principal_of(request))
    rows = await run_in_threadpool(tenancy_of(request).store.audit_log, max(1, min(limit, 1000)))
    return {"object": "list", "data": rows}


@router.get("/tenancy/stats")
async def tenancy_stats(request: Request) -> dict[str, Any]:
    """Meter counters and limit-store failures of this process (system admins)."""
    require_system_admin(principal_of(request))
    tenancy = tenancy_of(request)
    m = tenancy.meter.stats
    return {
        "redis_errors": tenancy.redis_errors,
        "meter": {
            "recorded": m.recorded,
            "written": m.written,
            "batches": m.batches,
            "failed_inserts": m.failed_inserts,
            "buffer_full_waits": m.buffer_full_waits,
        },
    }
