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
