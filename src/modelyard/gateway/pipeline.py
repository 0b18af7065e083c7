"""The request pipeline between the HTTP edge and the backends.

``Gateway.complete`` / ``Gateway.open_stream``: resolve the model reference, enforce request
limits, ask the router for candidates and try them in order (fallbacks) until one answers.
A stream is handed back only once its first payload exists, so every failure before the first
byte is an ordinary HTTP error and later failures become an in-band SSE error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from modelyard.errors import (
    EngineError,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    OverCapacity,
    RateLimited,
    UpstreamError,
)
from modelyard.gateway.backends.base import NO_HINT, BackendRequest, Endpoint, ParsedRequest, RouteHint
from modelyard.gateway.defaults import DefaultsSource, apply_defaults
from modelyard.gateway.loading import not_ready_error
from modelyard.gateway.router import Attempt, Router
from modelyard.monitoring.observer import NULL_OBSERVER, RequestObserver
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.queue.base import QueueFull, prefix_hash
from modelyard.settings import LimitSettings, RouterPolicy

# Failures of one deployment that another deployment may not share.
RETRY_ELSEWHERE = (UpstreamError, OverCapacity, RateLimited, EngineError)


def counts_as_failure(exc: BaseException) -> bool:
    """Whether a retry-elsewhere error counts against the deployment's circuit breaker.

    A full work queue does not: the workers are healthy, just busy; the request tries the next
    deployment, and with none left the client gets the queue's 503 with ``Retry-After`` rather than
    a breaker that keeps the pool out of rotation after the queue has drained.
    """
    return not isinstance(exc, QueueFull)


class ModelResolver(Protocol):
    """Maps a request's ``model`` (``name``, ``name@alias`` or ``name:version``) to a served name."""

    async def resolve(self, ref: str) -> str:
        """Return the served model name; raise ``ModelNotFound`` if nothing serves ``ref``."""
        ...


class StaticResolver:
    """Resolves only the names the router serves (used when no registry is configured)."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def resolve(self, ref: str) -> str:
        if self._router.has_model(ref):
            return ref
        raise ModelNotFound(f"The model `{ref}` does not exist", param="model")


class Gateway:
    """Owns routing for every endpoint; one instance per app, built in the lifespan."""

    def __init__(
        self,
        router: Router,
        resolver: ModelResolver,
        limits: LimitSettings,
        defaults: DefaultsSource | None = None,
    ) -> None:
        self.router = router
        self.resolver = resolver
        self.limits = limits
        self.defaults = defaults  # model-version sampling defaults; None: the engines' only
        self.active_streams = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def check_limits(self, endpoint: Endpoint, req: ParsedRequest) -> None:
        """Reject requests beyond the configured caps with a 400 naming the field."""
        lim = self.limits
        if isinstance(req, EmbeddingRequest):
            if isinstance(req.input, list) and len(req.input) > lim.max_embedding_inputs:
                raise InvalidRequest(f"at most {lim.max_embedding_inputs} inputs per request", param="input")
            return
        if req.n is not None and req.n > lim.max_n:
            raise InvalidRequest(f"n={req.n} is above the limit of {lim.max_n}", param="n")
        if isinstance(req, ChatCompletionRequest):
            field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
            max_tokens = req.effective_max_tokens()
            if len(req.messages) > lim.max_messages:
                raise InvalidRequest(f"at most {lim.max_messages} messages per request", param="messages")
            if req.top_logprobs and not req.logprobs:
                raise InvalidRequest("top_logprobs requires logprobs=true", param="top_logprobs")
            for i, msg in enumerate(req.messages):
                if isinstance(msg.content, list) and any(p.type != "text" for p in msg.content):
                    raise InvalidRequest(
                        "only text content parts are supported", param=f"messages[{i}].content"
                    )
        else:
            assert isinstance(req, CompletionRequest)
            field, max_tokens = "max_tokens", req.max_tokens
        if max_tokens is not None and max_tokens > lim.max_tokens:
            raise InvalidRequest(f"{field}={max_tokens} is above the limit of {lim.max_tokens}", param=field)

    async def _prepare(
        self, endpoint: Endpoint, parsed: ParsedRequest, body: dict[str, Any], request_id: str
    ) -> BackendRequest:
        self.check_limits(endpoint, parsed)
        model = await self.resolver.resolve(parsed.model)
        if self.defaults is not None:
            parsed, body = apply_defaults(
                parsed, body, self.defaults.for_model(parsed.model, model), self.limits
            )
        return BackendRequest(endpoint, body, parsed, request_id, model)

    def _hint(self, req: BackendRequest) -> RouteHint:
        lora = req.lora
        if lora is None and self.router.policy is not RouterPolicy.AFFINITY:
            return NO_HINT
        prefix = prefix_hash(req.body) if self.router.policy is RouterPolicy.AFFINITY else None
        return RouteHint(lora, prefix)

    def _candidates(self, req: BackendRequest, hint: RouteHint) -> list[Any]:
        deps = [d for d in self.router.candidates(req.model, hint) if req.endpoint in d.backend.endpoints]
        if not deps:
            raise InvalidRequest(
                f"model `{req.model}` does not serve /v1/{req.endpoint.value}", param="model"
            )
        ready = [d for d in deps if d.backend.ready()]
        if not ready:
            raise not_ready_error(req.model, [d.backend for d in deps])
        return ready

    async def complete(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> bytes:
        """The full JSON response body from the first deployment that answers."""
        req = await self._prepare(endpoint, parsed, body, request_id)
        hint = self._hint(req)
        last: ModelyardError | None = None
        for dep in self._candidates(req, hint):
            with self.router.track(dep, hint) as attempt:
                observer.dispatched(dep.backend)
                try:
                    out = await dep.backend.complete(req)
                except RETRY_ELSEWHERE as exc:
                    attempt.failed = counts_as_failure(exc)
                    last = exc
                    continue
                except ModelyardError:
                    raise
                except Exception:
                    attempt.failed = True
                    raise
                self.router.first_byte(attempt)
                return out
        assert last is not None
        raise last

    async def open_stream(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> StreamHandle:
        """A stream whose first payload is already in hand; the caller must ``aclose`` it."""
        req = await self._prepare(endpoint, parsed, body, request_id)
        hint = self._hint(req)
        last: ModelyardError | None = None
        for dep in self._candidates(req, hint):
            tracker = self.router.track(dep, hint)
            attempt = tracker.__enter__()
            observer.dispatched(dep.backend)
            agen = dep.backend.stream(req)
            try:
                first = await agen.__anext__()
            except BaseException as exc:
                failed = (isinstance(exc, RETRY_ELSEWHERE) and counts_as_failure(exc)) or not isinstance(
                    exc, ModelyardError | StopAsyncIteration | asyncio.CancelledError
                )
                attempt.failed = failed
                try:
                    await agen.aclose()
                finally:
                    tracker.__exit__(None, None, None)
                if isinstance(exc, RETRY_ELSEWHERE):
                    last = exc
                    continue
                if isinstance(exc, StopAsyncIteration):
                    raise EngineError(f"deployment {dep.name} produced an empty stream") from None
                raise
            self.router.first_byte(attempt)
            return StreamHandle(self, first, agen, tracker, attempt)
        assert last is not None
        raise last

    async def visible_models(self) -> list[str]:
        """The model names the current caller may see in ``/v1/models`` (here: every routed model)."""
        return self.router.models()

    async def resolve_visible(self, ref: str) -> str:
        """Like ``resolver.resolve``, but a model the caller may not use is ``ModelNotFound`` too."""
        return await self.resolver.resolve(ref)

    def _stream_opened(self) -> None:
        self.active_streams += 1
        self._idle.clear()

    def _stream_closed(self) -> None:
        self.active_streams -= 1
        if self.active_streams == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no stream is in flight (graceful shutdown); False if the timeout passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False


class StreamHandle:
    """An open backend stream: iterate for SSE payloads, then ``aclose`` (always, even unstarted)."""

    def __init__(
        self,
        gateway: Gateway,
        first: bytes,
        agen: AsyncIterator[bytes],
        tracker: AbstractContextManager[Attempt],
        attempt: Attempt,
    ) -> None:
        self._gateway = gateway
        self._first: bytes | None = first
        self._agen = agen
        self._tracker = tracker
        self._attempt = attempt
        self._closed = False
        gateway._stream_opened()

    def __aiter__(self) -> StreamHandle:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return await self._agen.__anext__()
        except StopAsyncIteration:
            raise
        except ModelyardError as exc:
            if isinstance(exc, RETRY_ELSEWHERE):
                self._attempt.failed = True
            raise
        except Exception:
            self._attempt.failed = True
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._agen.aclose()  # type: ignore[attr-defined]
        finally:
            self._tracker.__exit__(None, None, None)
            self._gateway._stream_closed()
