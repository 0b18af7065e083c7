"""Admin REST API of private LoRA adapters (``/admin/adapters``).

``POST /admin/adapters`` registers a PEFT folder already on the server (JSON body);
``POST /admin/adapters/upload?base_model=&name=[&tenant=]`` takes a ``.tar.gz`` of the folder as the
raw request body (bounded by ``limits.max_body_bytes``) and unpacks it under
``data_dir/adapters/<tenant>/<base_model>/<name>``. An adapter is addressable as
``<base_model>:<name>`` by its tenant only (and system admins).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from modelyard.errors import InvalidRequest, NotFound
from modelyard.protocol.tenancy import CreateAdapterRequest
from modelyard.tenancy.access import managed_tenant, principal_of, readable_tenant, tenancy_of
from modelyard.tenancy.store import check_id

router = APIRouter(tags=["admin: tenancy"])


def check_adapter_dir(path: Path) -> None:
    if not (path / "adapter_config.json").is_file():
        raise InvalidRequest(f"{path} is not a PEFT adapter folder (no adapter_config.json)", param="path")
    if not any((path / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise InvalidRequest(f"{path} has no adapter_model.safetensors", param="path")


def _unpack(data: bytes, dest: Path) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            dest.mkdir(parents=True, exist_ok=False)
            tar.extractall(dest, filter="data")  # "data": no absolute paths, links or devices
    except tarfile.TarError as exc:
        raise InvalidRequest(f"the body is not a tar archive: {exc}") from None
    except FileExistsError:
        raise InvalidRequest(f"an adapter is already stored at {dest}") from None
    # An archive of the folder itself (adapter/adapter_config.json) is accepted too.
    inner = [p for p in dest.iterdir() if p.is_dir()]
    if not (dest / "adapter_config.json").exists() and len(inner) == 1:
        for p in inner[0].iterdir():
            p.rename(dest / p.name)
        inner[0].rmdir()
    check_adapter_dir(dest)


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
    tenancy = tenancy_of(request)
    dest = tenancy.settings.resolved_data_dir / "adapters" / owner / base_model.replace("/", "_") / name
    data = await request.body()
    await run_in_threadpool(_unpack, data, dest)
    info = await run_in_threadpool(
        lambda: tenancy.store.create_adapter(owner, base_model, name, str(dest), actor=p.actor)
    )
    return info.to_dict()


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
    store = tenancy_of(request).store
    info = await run_in_threadpool(lambda: store.delete_adapter(owner, base, name, actor=p.actor))
    return {**info.to_dict(), "deleted": True}
