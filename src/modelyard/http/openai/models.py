"""``GET /v1/models`` and ``GET /v1/models/{id}``: the model names this server routes.

Each model carries one extension field beside OpenAI's: ``sampling_defaults``, the model version's
defaults for the sampling fields a request leaves unset (``{}`` when there are none; the engine's own
then apply)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.gateway.pipeline import Gateway
from modelyard.protocol.openai import ListModelsResponse, Model


def _model(gateway: Gateway, name: str, created: int, ref: str | None = None) -> Model:
    deps = gateway.router.deployments(name)
    owner = "modelyard" if any(getattr(d.backend, "local", False) for d in deps) else "remote"
    book = gateway.defaults
    defaults = book.for_model(ref or name, name).to_dict() if book is not None else {}
    return Model(id=ref or name, created=created, owned_by=owner, sampling_defaults=defaults)


async def list_models(request: Request) -> Response:
    gateway: Gateway = request.state.gateway
    created: int = request.state.started_at
    body = ListModelsResponse(data=[_model(gateway, m, created) for m in await gateway.visible_models()])
    return Response(body.model_dump_json(), media_type="application/json")


async def retrieve_model(request: Request) -> Response:
    gateway: Gateway = request.state.gateway
    name = await gateway.resolve_visible(request.path_params["model_id"])
    model = _model(gateway, name, request.state.started_at, request.path_params["model_id"])
    return Response(model.model_dump_json(), media_type="application/json")


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
]
