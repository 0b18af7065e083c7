"""Admin REST API of private LoRA adapters (``/admin/adapters``).

``POST /admin/adapters`` registers a PEFT folder already on the server (JSON body);
``POST /admin/adapters/upload?base_model=&name=[&tenant=]`` takes a ``.tar.gz`` of the folder as the
raw request body (bounded by ``limits.max_body_bytes``); ``POST /admin/adapters/from-registry``
takes a registry version (``NAME:VERSION``) holding a PEFT LoRA folder, verified against the
registry's digest. Uploaded and registry adapters are stored under
``data_dir/adapters/<tenant>/<base_model>/<name>/<random>`` (a fresh folder per registration). An
adapter is addressable as ``<base_model>:<name>`` by its tenant only (and system admins).

``DELETE`` removes the adapter at once for new requests, unloads it from this server's engine once
the requests using it have finished, tells the Redis-queue workers to unload it too, and deletes its
stored copy.
"""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from modelyard.errors import InvalidRequest, NotFound
from modelyard.protocol.admin import AdapterFromRegistryRequest
from modelyard.protocol.tenancy import CreateAdapterRequest
from modelyard.registry.adapters import check_peft_folder, copy_registry_adapter
from modelyard.registry.records import ModelInfo
from modelyard.settings import Settings
from modelyard.tenancy.access import managed_tenant, principal_of, readable_tenant, tenancy_of
from modelyard.tenancy.records import AdapterInfo
from modelyard.tenancy.store import check_id

router = APIRouter(tags=["admin: tenancy"])
log = logging.getLogger("modelyard.tenancy")


def check_adapter_dir(path: Path) -> None:
    check_peft_folder(path, "path", weights=("adapter_model.safetensors", "adapter_model.bin"))


def stored_adapter_dir(settings: Settings, tenant: str, base_model: str, name: str) -> Path:
    """A fresh folder for one registration (a re-created name never reuses the old files)."""
    if base_model.strip(".") == "":
        raise InvalidRequest(f"invalid base_model {base_model!r}", param="base_model")
    root = settings.resolved_data_dir / "adapters" / tenant / base_model.replace("/", "_") / name
    return root / uuid.uuid4().hex[:12]


def _unpack(data: bytes, dest: Path) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            dest.mkdir(parents=True, exist_ok=False)
            tar.extractall(dest, filter="data")  # "data": no absolute paths, links or devices
    except tarfile.TarError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise InvalidRequest(f"the body is not a tar archive: {exc}") from None
    except FileExistsError:
        raise InvalidRequest(f"an adapter is already stored at {dest}") from None
    # An archive of the folder itself (adapter/adapter_config.json) is accepted too.
    inner = [p for p in dest.iterdir() if p.is_dir()]
    if not (dest / "adapter_config.json").exists() and len(inner) == 1:
        for p in inner[0].iterdir():
            p.rename(dest / p.name)
        inner[0].rmdir()
    try:
        check_adapter_dir(dest)
    except InvalidRequest:
        shutil.rmtree(dest, ignore_errors=True)
        raise


async def _register_stored(
    request: Request, owner: str, base_model: str, name: str, dest: Path
) -> dict[str, Any]:
    """Record the adapter stored at ``dest``; the folder is removed if the registration fails."""
    p, store = principal_of(request), tenancy_of(request).store
    try:
        info = await run_in_threadpool(
            lambda: store.create_adapter(owner, base_model, name, str(dest), actor=p.actor)
        )
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return info.to_dict()


@router.post("/adapters", status_code=201)
async def create_adapter(request: Request) -> dict[str, Any]:
    p = principal_of(request)
    body = CreateAdapterRequest.model_validate_json(await request.body() or b"{}")
    tenant = managed_tenant(p, body.tenant)
    path = Path(body.path).expanduser()
    check_adapter_dir(path)
    store = tenancy_of(request).store
    info = await run_in_threadpool(
        lambda: store.create_adapter(tenant, body.base_model, body.name, str(path.resolve()), actor=p.actor)
    )
    return info.to_dict()


@router.post("/adapters/upload", status_code=201)
async def upload_adapter(
    request: Request, base_model: str, name: str, tenant: str | None = None
) -> dict[str, Any]:
    p = principal_of(request)
    owner = managed_tenant(p, tenant)
    check_id("name", name)
    dest = stored_adapter_dir(tenancy_of(request).settings, owner, base_model, name)
    data = await request.body()
    await run_in_threadpool(_unpack, data, dest)
    return await _register_stored(request, owner, base_model, name, dest)


@router.post("/adapters/from-registry", status_code=201)
async def adapter_from_registry(request: Request) -> dict[str, Any]:
    """Register a registry version holding a PEFT LoRA folder as a tenant adapter (404: no such
    version, or one the tenant may not see; 400: not a LoRA adapter, another base, digest mismatch)."""
    p = principal_of(request)
    body = AdapterFromRegistryRequest.model_validate_json(await request.body() or b"{}")
    owner = managed_tenant(p, body.tenant)
    check_id("name", body.name)
    registry = getattr(request.state, "registry", None)
    if registry is None:
        raise NotFound("The model registry is not configured on this server.")

    def visible(model: ModelInfo) -> bool:
        # A tenant sees the registry models it may use and those registered with it as owner.
        return p.is_system_admin or model.owner == owner or p.may_use(model.name)

    dest = stored_adapter_dir(tenancy_of(request).settings, owner, body.base_model, body.name)
    await run_in_threadpool(copy_registry_adapter, registry, body.artifact, body.base_model, dest, visible)
    return await _register_stored(request, owner, body.base_model, body.name, dest)


@router.get("/adapters")
async def list_adapters(request: Request, tenant: str | None = None) -> dict[str, Any]:
    p = principal_of(request)
    scope = readable_tenant(p, tenant)
    rows = await run_in_threadpool(tenancy_of(request).store.list_adapters, scope)
    return {"object": "list", "data": [a.to_dict() for a in rows]}


@router.delete("/adapters/{model_name:path}")
async def delete_adapter(request: Request, model_name: str, tenant: str | None = None) -> dict[str, Any]:
    p = principal_of(request)
    if ":" not in model_name:
        raise NotFound(f"adapter `{model_name}` does not exist")
    owner = managed_tenant(p, tenant)
    base, name = model_name.rsplit(":", 1)
    tenancy = tenancy_of(request)
    store = tenancy.store
    info = await run_in_threadpool(lambda: store.delete_adapter(owner, base, name, actor=p.actor))
    unloaded = await _retire(request, tenancy.settings, info)
    return {**info.to_dict(), "deleted": True, "unloaded": unloaded}


async def _retire(request: Request, settings: Settings, info: AdapterInfo) -> bool:
    """Unload a deleted adapter from this server's engines, then :func:`forget_adapter`.

    The row is already gone, so no new request can reach the adapter; failures here only delay
    freeing memory. True when no engine of this server holds it any more (False: requests that
    were using it are still running; it is unloaded when they finish)."""
    unloaded = True
    router_ = getattr(getattr(request.state, "gateway", None), "router", None)
    for dep in router_.deployments(info.base_model) if router_ is not None else []:
        retire = getattr(dep.backend, "retire_adapter", None)
        if retire is None:
            continue
        try:
            await retire(info.engine_name)
        except Exception:  # the adapter is deleted either way; only its memory is not freed yet
            log.exception("unloading deleted adapter %s failed", info.engine_name)
        unloaded = unloaded and info.engine_name not in dep.backend.loaded_adapters()
    await forget_adapter(settings, info)
    return unloaded


async def forget_adapter(settings: Settings, info: AdapterInfo) -> None:
    """Tell the Redis-queue workers (if any) to unload a deleted adapter and delete its stored copy
    (only a copy this server made under ``data_dir/adapters``, never a folder it was pointed at).
    Errors are logged, never raised: the deletion itself has happened."""
    if settings.queue.backend == "redis":
        from modelyard.queue.retired import RetiredAdapters

        retired = RetiredAdapters.from_url(settings.queue.redis_url, settings.queue.key_prefix)
        try:
            await retired.retire(info.engine_name)
        except Exception:
            log.exception("could not tell the workers that adapter %s was deleted", info.engine_name)
        finally:
            await retired.close()
    stored = settings.resolved_data_dir / "adapters"
    path = Path(info.path)
    if path.is_relative_to(stored) and path != stored:
        await run_in_threadpool(lambda: shutil.rmtree(path, ignore_errors=True))
