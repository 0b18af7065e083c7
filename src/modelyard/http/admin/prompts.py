"""Admin REST API of the prompt registry (``/admin/prompts``), mounted under ``/admin``.

``POST /admin/prompts`` pushes a version (201; 200 with ``created: false`` when the content equals
the latest version's); ``GET /admin/prompts`` lists the prompts the caller sees; ``GET
/admin/prompts/{name}`` shows one with its versions and labels; ``GET
/admin/prompts/{name}/versions/{version}`` one version (a number or a label); ``PUT`` / ``DELETE
/admin/prompts/{name}/labels/{label}`` move or remove a label.

Who may do what: system admins write global prompts (no ``tenant``) and any tenant's; a tenant
``admin`` key writes its own tenant's; ``read`` keys read. A tenant sees global prompts and its own
(``?tenant=`` picks a tenant for system admins); another tenant's prompt is a 404. A protected label
is moved or removed by system admins only (403). After a write this process's prompt book reloads at
once; other processes see it within ``registry_poll_s``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from modelyard.errors import InvalidRequest, NotFound, PermissionDenied
from modelyard.protocol.prompts import SetPromptLabelRequest
from modelyard.registry.prompt_records import PromptInfo, PromptNotFound, check_prompt_name
from modelyard.registry.prompt_spec import spec_from_dict
from modelyard.registry.prompts import ANY_TENANT, PromptRegistry
from modelyard.tenancy.access import managed_tenant, readable_tenant
from modelyard.tenancy.records import ANONYMOUS, Principal

router = APIRouter(prefix="/prompts", tags=["admin: prompts"])


def _principal(request: Request) -> Principal:
    # Without tenancy every caller is the anonymous admin (as for /admin/models).
    return getattr(request.state, "principal", None) or ANONYMOUS


def _book(request: Request) -> Any:
    book = getattr(request.state, "prompt_book", None)
    if book is None:
        raise NotFound("The prompt registry is not configured on this server.")
    return book


def _store(request: Request) -> PromptRegistry:
    return _book(request).prompts  # type: ignore[no-any-return]


async def _changed(request: Request) -> None:
    await run_in_threadpool(_book(request).refresh)


def _owner(p: Principal, tenant: str | None) -> str | None:
    """The owner a write applies to: ``tenant``, the caller's own tenant, or None (global, system)."""
    if tenant is None and p.is_system_admin:
        return None
    return managed_tenant(p, tenant)


def _visible(p: Principal, info: PromptInfo) -> bool:
    return p.is_system_admin or info.tenant is None or info.tenant == p.tenant_id


async def _read(request: Request, name: str, tenant: str | None) -> PromptInfo:
    p, store = _principal(request), _store(request)
    if p.is_system_admin:
        return await run_in_threadpool(store.get, name, tenant)
    readable_tenant(p, tenant)  # another tenant: 404
    return await run_in_threadpool(store.find, name, p.tenant_id)


async def _writable(request: Request, name: str, tenant: str | None) -> str | None:
    """The owner of the prompt ``name`` the caller may change; 403 for a tenant on a global prompt."""
    p, store = _principal(request), _store(request)
    owner = _owner(p, tenant)
    if owner is not None and not p.is_system_admin:
        try:
            await run_in_threadpool(store.get, name, owner)
        except PromptNotFound:
            await run_in_threadpool(store.get, name, None)  # 404 if there is no global one either
            raise PermissionDenied(f"`{name}` is a global prompt: only a system admin changes it") from None
    return owner


@router.post("", status_code=201)
async def push_prompt(request: Request) -> Any:
    """Push a prompt version (the prompt file's fields, plus commit_message, labels, tenant)."""
    p = _principal(request)
    try:
        raw = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("the body is a JSON object: a prompt, commit_message, labels, tenant")
    tenant = raw.pop("tenant", None)
    if tenant is not None and not isinstance(tenant, str):
        raise InvalidRequest("`tenant` is a tenant id", param="tenant")
    labels = raw.get("labels") or []
    if not isinstance(labels, list):
        raise InvalidRequest("`labels` is a list of label names", param="labels")
    message = raw.get("commit_message") or ""
    if not isinstance(message, str):
        raise InvalidRequest("`commit_message` is a string", param="commit_message")
    spec = spec_from_dict(raw)
    check_prompt_name(spec.name)
    owner = _owner(p, tenant)
    store = _store(request)
    version, created = await run_in_threadpool(
        lambda: store.push(
            spec,
            commit_message=message,
            labels=labels,
            tenant=owner,
            system=p.is_system_admin,
            actor=p.actor,
        )
    )
    await _changed(request)
    return JSONResponse({**version.to_dict(), "created": created}, status_code=201 if created else 200)


@router.get("")
async def list_prompts(request: Request, tenant: str | None = None) -> dict[str, Any]:
    """The prompts the caller sees (latest version and labels of each)."""
    p = _principal(request)
    scope = readable_tenant(p, tenant)
    owner = ANY_TENANT if p.is_system_admin and tenant is None else scope
    rows = await run_in_threadpool(_store(request).list_prompts, owner)
    data = []
    for info in rows:
        if not _visible(p, info):
            continue
        summary = info.to_dict()
        summary.pop("versions")
        data.append(summary)
    return {"object": "list", "data": data}


@router.get("/{name}")
async def get_prompt(request: Request, name: str, tenant: str | None = None) -> dict[str, Any]:
    """One prompt with every version and label."""
    return (await _read(request, name, tenant)).to_dict()


@router.get("/{name}/versions/{version}")
async def get_prompt_version(
    request: Request, name: str, version: str, tenant: str | None = None
) -> dict[str, Any]:
    """One version, by number or label."""
    info = await _read(request, name, tenant)
    return info.select(version, param="version").to_dict()


@router.put("/{name}/labels/{label}")
async def set_label(request: Request, name: str, label: str, tenant: str | None = None) -> dict[str, Any]:
    """Point ``label`` at a version: ``{"version": N, "protected"?: bool}``."""
    p = _principal(request)
    body = SetPromptLabelRequest.model_validate_json(await request.body() or b"{}")
    owner = await _writable(request, name, tenant)
    store = _store(request)
    info = await run_in_threadpool(
        lambda: store.set_label(
            name,
            label,
            body.version,
            tenant=owner,
            protected=body.protected,
            system=p.is_system_admin,
            actor=p.actor,
        )
    )
    await _changed(request)
    return info.to_dict()


@router.delete("/{name}/labels/{label}")
async def delete_label(request: Request, name: str, label: str, tenant: str | None = None) -> dict[str, Any]:
    """Remove ``label`` (``latest`` cannot be removed)."""
    p = _principal(request)
    owner = await _writable(request, name, tenant)
    store = _store(request)
    info = await run_in_threadpool(
        lambda: store.delete_label(name, label, tenant=owner, system=p.is_system_admin, actor=p.actor)
    )
    await _changed(request)
    return info.to_dict()
