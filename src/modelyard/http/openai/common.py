"""Shared handler plumbing for the OpenAI endpoints: body parsing and the generic POST handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from modelyard.errors import InvalidRequest
from modelyard.experiments.layer import EXPERIMENT_HEADER, request_headers
from modelyard.gateway.backends.base import Endpoint
from modelyard.gateway.pipeline import Gateway
from modelyard.http.sse import EventStreamResponse
from modelyard.monitoring.monitor import observe_request
from modelyard.monitoring.observer import ObservedStream

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> tuple[dict[str, Any], M]:
    """The raw JSON object and its validated form; 400 on anything that is not a JSON object."""
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send a JSON object with "
            "content-type: application/json."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body, model.model_validate(body)


class ResponseNote:
    """The request's observer, remembering what the layers report for the response headers (also
    when monitoring is off): the prompt version the prompt layer rendered
    (``x-modelyard-prompt-version``) and the experiment variant the experiment layer assigned
    (``x-modelyard-experiment``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.prompt_version: str | None = None
        self.experiment: str | None = None

    def prompted(self, prompt_version: str, model_ref: str, body: dict[str, Any]) -> None:
        self.prompt_version = prompt_version
        self.inner.prompted(prompt_version, model_ref, body)

    def assigned(self, experiment: str, variant: str) -> None:
        self.experiment = f"{experiment}:{variant}"
        self.inner.assigned(experiment, variant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _headers(noted: ResponseNote) -> dict[str, str] | None:
    headers = {}
    if noted.prompt_version is not None:
        headers["x-modelyard-prompt-version"] = noted.prompt_version
    if noted.experiment is not None:
        headers[EXPERIMENT_HEADER] = noted.experiment
    return headers or None


def post_handler(endpoint: Endpoint, model: type[BaseModel]) -> Callable[[Request], Awaitable[ASGIApp]]:
    """A Starlette endpoint that parses ``model``, then completes or streams through the gateway."""

    async def handle(request: Request) -> ASGIApp:
        body, parsed = await parse_body(request, model)
        gateway: Gateway = request.state.gateway
        rid: str = request.state.request_id
        obs: Any = ResponseNote(observe_request(request, endpoint, parsed, body))
        noted = obs
        request_headers.set(request.headers)  # the experiment layer's `header:NAME` unit
        try:
            with obs.activate():
                if getattr(parsed, "stream", False):
                    handle = await gateway.open_stream(endpoint, parsed, body, rid, obs)  # type: ignore[arg-type]
                    return EventStreamResponse(ObservedStream(handle, obs), _headers(noted))
                out = await gateway.complete(endpoint, parsed, body, rid, obs)  # type: ignore[arg-type]
        except Exception as exc:
            obs.failed(exc)
            raise
        obs.completed(out)
        return Response(out, media_type="application/json", headers=_headers(noted))

    handle.__name__ = f"create_{endpoint.name.lower()}"
    return handle
