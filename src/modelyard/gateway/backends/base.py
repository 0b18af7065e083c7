"""The Backend seam: one deployment that answers OpenAI-shaped requests for one model name.

Backends speak the OpenAI wire format on both sides so the gateway can pass remote responses
through untouched (no re-serialisation) and the local engine produces the same bytes.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest


class Endpoint(enum.StrEnum):
    """An OpenAI endpoint, spelled as its path under ``/v1/``."""

    CHAT = "chat/completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"


ParsedRequest = ChatCompletionRequest | CompletionRequest | EmbeddingRequest


@dataclass(slots=True)
class BackendRequest:
    """What the gateway hands a backend.

    ``body`` is the client's JSON object (unknown fields included, so remote backends forward what
    they do not understand); ``parsed`` is its validated form. ``model`` is the name the client
    asked for (after alias resolution), used in local responses.
    """

    endpoint: Endpoint
    body: dict[str, Any]
    parsed: ParsedRequest
    request_id: str
    model: str
    lora: Any = None  # a tenant's private adapter (tenancy AdapterInfo) for the local backend
    cache_salt: str | None = None  # prefix-cache salt (the tenant id); None shares the cache


@dataclass(slots=True, frozen=True)
class RouteHint:
    """What the router knows of a request when it orders deployments.

    ``lora`` is the tenant adapter the request needs (tenancy ``AdapterInfo``: ``engine_name`` names it
    in the engine, ``model_name`` as clients send it) or ``None``; ``prefix`` is the hash of the
    prompt's start (:func:`modelyard.queue.base.prefix_hash`), set under the ``affinity`` policy.
    """

    lora: Any = None
    prefix: str | None = None


NO_HINT = RouteHint()


@dataclass(slots=True, frozen=True)
class RouteView:
    """One deployment's answer to the router for one request.

    ``load`` is the share of its request slots in use (0 idle, 1 full, ``inf`` no capacity at all,
    e.g. a queued model with no live worker); ``serves`` is False when it cannot serve the request
    (an adapter it does not have); ``adapter_hit`` / ``prefix_hit`` say it likely holds the adapter
    loaded / the prompt's prefix in its KV cache.
    """

    load: float
    serves: bool = True
    adapter_hit: bool = False
    prefix_hit: bool = False


@runtime_checkable
class Routable(Protocol):
    """Optional for a :class:`Backend`: its own view of load and affinity (queued and remote backends).

    Backends without it count as ``load = in_flight / weight``, serving no adapter unless they are
    the built-in engine (``local = True``), and with no affinity.
    """

    def route_view(self, hint: RouteHint, in_flight: int) -> RouteView:
        """Load and affinity for a request with ``hint``; ``in_flight`` is this gateway's own count of
        requests on the deployment (fresher than any load report). Must not block or do I/O."""
        ...


@runtime_checkable
class Backend(Protocol):
    """One deployment of one model.

    Contract:
    - ``complete`` returns the full JSON response body as bytes.
    - ``stream`` is an async generator of SSE ``data`` payloads (JSON bytes, without ``data: `` and
      without the final ``[DONE]``). Errors that happen before its first item (bad request, upstream
      429/5xx after retries, context too long) are raised from the first ``__anext__`` so the gateway
      can answer with a plain HTTP error or fall back to another deployment. Closing the generator
      (``aclose``) cancels the work at once (engine request aborted, upstream connection closed).
    - Errors are :mod:`modelyard.errors` exceptions; ``UpstreamError`` / ``OverCapacity`` /
      ``RateLimited`` are the ones worth retrying elsewhere.
    """

    name: str
    model: str
    endpoints: frozenset[Endpoint]

    async def start(self) -> None:
        """Acquire resources (connection pools, loaded weights). Called once, in the app lifespan."""

    async def close(self) -> None:
        """Release resources; in-flight work has drained or been cancelled."""

    def ready(self) -> bool:
        """True when the deployment can take requests."""

    async def complete(self, request: BackendRequest) -> bytes: ...

    def stream(self, request: BackendRequest) -> AsyncIterator[bytes]: ...

    def stats(self) -> dict[str, Any]:
        """A JSON-able snapshot for ``/stats`` (e.g. the engine's running request count)."""
