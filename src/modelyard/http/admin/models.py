"""Admin REST API of the model registry: ``router`` (prefix ``/models``), mounted under ``/admin``.

The :class:`~modelyard.registry.Registry` comes from ``request.app.state.registry`` (or, in an app
that hands services over through lifespan state, ``request.state.registry``). Handlers only raise:
registry errors are :mod:`modelyard.errors` types and malformed bodies raise pydantic's
``ValidationError`` (bodies are parsed here rather than by FastAPI so that the app's single error
mapper turns them into OpenAI-shaped 400s). Registry calls run in the thread pool: they do
database I/O and may hash a large artifact.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from modelyard.errors import ModelyardError
from modelyard.protocol.admin import (
    CreateVersionRequest,
    DeletedModelAlias,
    ModelAlias,
    ModelPrices,
    ModelVersion,
    RegisteredModel,
    RegisteredModelList,
    RegisterModelRequest,
    SetAliasRequest,
    SetDefaultsRequest,
    SetPricesRequest,
)
from modelyard.registry import ModelInfo, Registry, VersionInfo

router = APIRouter(prefix="/models", tags=["admin: models"])

_Body = TypeVar("_Body", bound=BaseModel)


def _registry(request: Request) -> Registry:
    registry = getattr(request.app.state, "registry", None) or getattr(request.state, "registry", None)
    if registry is None:
        raise ModelyardError("the model registry is not configured on this server")
    return registry  # type: ignore[no-any-return]


async def _body(request: Request, model: type[_Body]) -> _Body:
    return model.model_validate_json(await request.body() or b"{}")


def _version(info: VersionInfo) -> ModelVersion:
    return ModelVersion(
        model=info.model,
        version=info.version,
        artifact_uri=info.artifact_uri,
        digest=info.digest,
        architecture=info.architecture,
        tokenizer=info.tokenizer,
        context_length=info.context_length,
        quantization=info.quantization,
        serving_params=info.serving_params,
        aliases=list(info.aliases),
        created_at=info.created_at,
        defaults=info.defaults.to_dict(),
        artifact_defaults=info.artifact_defaults.to_dict(),
        default_overrides=info.default_overrides.to_dict(),
    )


def _model(info: ModelInfo) -> RegisteredModel:
    return RegisteredModel(
        name=info.name,
        description=info.description,
        is_base_model=info.is_base_model,
        owner=info.owner,
        created_at=info.created_at,
        aliases=info.aliases,
        versions=[_version(v) for v in info.versions],
        prices=ModelPrices(
            prompt_per_1k=info.prices.prompt_per_1k, completion_per_1k=info.prices.completion_per_1k
        )
        if info.prices is not None
        else None,
    )


def _documents(body: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI text for a body that the handler parses itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": body.model_json_schema(ref_template="#/components/schemas/{model}")
                }
            },
        }
    }


@router.get("", response_model=RegisteredModelList)
async def list_models(request: Request) -> RegisteredModelList:
    """Every registered model with its versions and aliases."""
    models = await run_in_threadpool(_registry(request).list_models)
    return RegisteredModelList(data=[_model(m) for m in models])


@router.post(
    "", status_code=201, response_model=RegisteredModel, openapi_extra=_documents(RegisterModelRequest)
)
async def register_model(request: Request) -> RegisteredModel:
    """Register a model (409 if the name is taken)."""
    body = await _body(request, RegisterModelRequest)
    info = await run_in_threadpool(
        _registry(request).register_model,
        body.name,
        description=body.description,
        is_base_model=body.is_base_model,
        owner=body.owner,
        actor=_actor(request),
    )
    return _model(info)


@router.get("/{name}", response_model=RegisteredModel)
async def get_model(name: str, request: Request) -> RegisteredModel:
    """One model with its versions and aliases (404 if not registered)."""
    return _model(await run_in_threadpool(_registry(request).get_model, name))


@router.post(
    "/{name}/versions",
    status_code=201,
    response_model=ModelVersion,
    openapi_extra=_documents(CreateVersionRequest),
)
async def create_version(name: str, request: Request) -> ModelVersion:
    """Add the next immutable version of a registered model."""
    body = await _body(request, CreateVersionRequest)
    info = await run_in_threadpool(
        _registry(request).create_version,
        name,
        artifact_uri=body.artifact_uri,
        digest=body.digest,
        architecture=body.architecture,
        tokenizer=body.tokenizer,
        context_length=body.context_length,
        quantization=body.quantization,
        serving_params=body.serving_params,
        actor=_actor(request),
    )
    return _version(info)


@router.put("/{name}/aliases/{alias}", response_model=ModelAlias, openapi_extra=_documents(SetAliasRequest))
async def set_alias(name: str, alias: str, request: Request) -> ModelAlias:
    """Create or move an alias (``{"version": n}``)."""
    body = await _body(request, SetAliasRequest)
    registry, actor = _registry(request), _actor(request)
    await run_in_threadpool(lambda: registry.set_alias(name, alias, body.version, actor=actor))
    return ModelAlias(model=name, alias=alias, version=body.version)


@router.delete("/{name}/aliases/{alias}", response_model=DeletedModelAlias)
async def delete_alias(name: str, alias: str, request: Request) -> DeletedModelAlias:
    """Remove an alias (404 if it is not set)."""
    await run_in_threadpool(lambda: _registry(request).delete_alias(name, alias, actor=_actor(request)))
    return DeletedModelAlias(model=name, alias=alias)


@router.put("/{name}/prices", response_model=RegisteredModel, openapi_extra=_documents(SetPricesRequest))
async def set_prices(name: str, request: Request) -> RegisteredModel:
    """Set the model's prices per 1000 prompt / completion tokens (cost and money budgets).

    Every gateway picks the change up within ``registry_poll_s``; this one at once."""
    body = await _body(request, SetPricesRequest)
    info = await run_in_threadpool(
        _registry(request).set_prices,
        name,
        prompt_per_1k=body.prompt_per_1k,
        completion_per_1k=body.completion_per_1k,
        actor=_actor(request),
    )
    await _prices_changed(request)
    return _model(info)


@router.delete("/{name}/prices", response_model=RegisteredModel)
async def clear_prices(name: str, request: Request) -> RegisteredModel:
    """Remove the model's prices (the ``tenancy.prices`` setting applies again)."""
    info = await run_in_threadpool(lambda: _registry(request).clear_prices(name, actor=_actor(request)))
    await _prices_changed(request)
    return _model(info)


@router.put(
    "/{name}/versions/{version}/defaults",
    response_model=ModelVersion,
    openapi_extra=_documents(SetDefaultsRequest),
)
async def set_defaults(name: str, version: int, request: Request) -> ModelVersion:
    """Set the version's sampling defaults (replacing earlier ones; ``{}`` clears them).

    They apply to request fields a request leaves unset; every gateway picks the change up within
    ``registry_poll_s``, this one at once."""
    body = await _body(request, SetDefaultsRequest)
    registry, actor = _registry(request), _actor(request)
    params = body.model_dump(exclude_none=True)
    info = await run_in_threadpool(lambda: registry.set_defaults(name, version, params, actor=actor))
    await _defaults_changed(request)
    return _version(info)


@router.delete("/{name}/versions/{version}/defaults", response_model=ModelVersion)
async def clear_defaults(name: str, version: int, request: Request) -> ModelVersion:
    """Remove the operator's defaults of the version (the artifact's and the settings' apply)."""
    registry, actor = _registry(request), _actor(request)
    info = await run_in_threadpool(lambda: registry.clear_defaults(name, version, actor=actor))
    await _defaults_changed(request)
    return _version(info)


def _actor(request: Request) -> str:
    """Who makes the change, for the audit log (the registry writes it with the change)."""
    principal = getattr(request.state, "principal", None)
    return principal.actor if principal is not None else "anonymous"


async def _prices_changed(request: Request) -> None:
    """Refresh this process's price book now (others pick the change up within ``registry_poll_s``)."""
    tenancy = getattr(request.state, "tenancy", None)
    if tenancy is not None:
        await run_in_threadpool(tenancy.prices.refresh)


async def _defaults_changed(request: Request) -> None:
    """Refresh this process's defaults book now (others pick the change up within ``registry_poll_s``)."""
    gateway = getattr(request.state, "gateway", None)
    book = getattr(gateway, "defaults", None)
    refresh = getattr(book, "refresh", None)
    if refresh is not None:
        await run_in_threadpool(refresh)
