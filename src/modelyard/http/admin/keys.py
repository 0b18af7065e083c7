"""Admin REST API of API keys (``/admin/keys``): create (the key is in the response once), list, revoke.

System admins manage every key; a tenant ``admin`` key manages its own tenant's keys. Another
tenant's key answers 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from modelyard.errors import NotFound
from modelyard.protocol.tenancy import CreateKeyRequest, dump_limits
from modelyard.tenancy.access import (
    managed_tenant,
    principal_of,
    readable_tenant,
    require_system_admin,
    tenancy_of,
)

router = APIRouter(tags=["admin: tenancy"])


@router.post("/keys", status_code=201)
async def create_key(request: Request) -> dict[str, Any]:
    p = principal_of(request)
    body = CreateKeyRequest.model_validate_json(await request.body() or b"{}")
    if body.tenant is None and p.tenant_id is None:
        require_system_admin(p)
        tenant = None
    else:
        tenant = managed_tenant(p, body.tenant)
    expires = body.expires_at
    if body.expires_in_s is not None:
        expires = datetime.now(UTC) + timedelta(seconds=body.expires_in_s)
    store = tenancy_of(request).store
    info, plaintext = await run_in_threadpool(
        lambda: store.create_key(
            tenant,
            body.scopes,
            name=body.name,
            expires_at=expires,
            limits=dump_limits(body.limits),
            actor=p.actor,
        )
    )
    return {**info.to_dict(), "key": plaintext}


@router.get("/keys")
async def list_keys(request: Request, tenant: str | None = None) -> dict[str, Any]:
    p = principal_of(request)
    scope = readable_tenant(p, tenant)
    keys = await run_in_threadpool(tenancy_of(request).store.list_keys, scope)
    return {"object": "list", "data": [k.to_dict() for k in keys]}


@router.delete("/keys/{key_id}")
async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
    p = principal_of(request)
    store = tenancy_of(request).store
    key = await run_in_threadpool(store.get_key, key_id)
    if key.tenant_id is None:
        require_system_admin(p)
    elif not p.may_manage(key.tenant_id):
        if not p.may_read(key.tenant_id):
            raise NotFound(f"key `{key_id}` does not exist")
        managed_tenant(p, key.tenant_id)
    info = await run_in_threadpool(lambda: store.revoke_key(key_id, actor=p.actor))
    return info.to_dict()
