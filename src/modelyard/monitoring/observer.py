"""The per-request observer the gateway notifies, and the stream wrapper that feeds it.

Life of one request (:class:`Observation`): created at the HTTP edge when the body is parsed →
``dispatched`` by the pipeline when a deployment takes it → ``chunk`` for each streamed payload
as it is handed to the client → exactly one of ``completed`` (non-stream body / clean stream end),
``failed`` (any error, before or after the first byte) or ``disconnected`` (the client left).
The first terminal call wins; later ones are ignored. Finishing records the metrics, ends the
span (with queue / prefill / decode children built from the recorded times) and hands the record
to the request log — all in memory, nothing blocks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from modelyard.monitoring.labels import DISCONNECT_STATUS, failure_cause, operation_name, rejection_reason
from modelyard.monitoring.metrics import Outcome
from modelyard.monitoring.spans import end_request_span, request_attributes

if TYPE_CHECKING:
    from modelyard.gateway.backends.base import Backend
    from modelyard.monitoring.monitor import Monitor
    from modelyard.monitoring.requestlog.records import RequestRecord


class RequestObserver(Protocol):
    """What the pipeline tells observability about one request (all calls cheap, none raise)."""

    def dispatched(self, backend: Backend) -> None:
        """A deployment of ``backend.model`` took the request (called per attempt; the last wins)."""

    def completed(self, body: bytes) -> None:
        """A non-streamed request answered ``body`` (the JSON response)."""

    def prompted(self, prompt_version: str, model_ref: str, body: dict[str, Any]) -> None:
        """The prompt layer rendered ``prompt_version`` (``name:version``): the request now asks for
        ``model_ref`` with ``body`` (rendered messages, filled defaults)."""

    def assigned(self, experiment: str, variant: str) -> None:
        """The experiment layer put the request in ``variant`` of ``experiment``."""

    def failed(self, exc: BaseException) -> None:
        """The request failed with ``exc``."""


class NullObserver:
    """Observes nothing (monitoring disabled, or internal callers)."""

    def dispatched(self, backend: Backend) -> None:
        pass

    def chunk(self, payload: bytes) -> None:
        pass

    def completed(self, body: bytes) -> None:
        pass

    def prompted(self, prompt_version: str, model_ref: str, body: dict[str, Any]) -> None:
        pass

    def assigned(self, experiment: str, variant: str) -> None:
        pass

    def failed(self, exc: BaseException) -> None:
        pass

    def disconnected(self) -> None:
        pass

    def finish_stream(self) -> None:
        pass

    @contextmanager
    def activate(self) -> Iterator[None]:
        yield


NULL_OBSERVER = NullObserver()


class Observation:
    """One request seen end to end; built by :meth:`Monitor.observe`."""

    def __init__(
        self,
        monitor: Monitor,
        *,
        endpoint: str,
        model_ref: str,
        tenant: str,
        request_id: str,
        stream: bool,
        body: dict[str, Any],
        parent: otel_context.Context | None,
        log_it: bool,
    ) -> None:
        self.m = monitor
        self.endpoint = endpoint
        self.model_ref = model_ref
        self.model = monitor.model_label(model_ref)
        self.tenant = tenant
        self.request_id = request_id
        self.stream = stream
        self.body = body
        self.log_it = log_it
        self.t0 = time.perf_counter()
        self.wall0_ns = time.time_ns()
        self.t_dispatch: float | None = None
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.engine = False
        self.deployment: str | None = None
        self.content_chunks = 0
        self.itl: list[float] = []
        self.finish_reasons: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.response_id: str | None = None
        self.text: list[str] = []
        self.text_len = 0
        self.done = False
        self.events = 0
        self.prompt_version: str | None = None
        self.span: Span | None = None
        tracer = monitor.tracer
        if tracer is not None:
            op = operation_name(endpoint)
            self.span = tracer.start_span(
                f"{op} {model_ref}",
                context=parent,
                kind=SpanKind.SERVER,
                start_time=self.wall0_ns,
                attributes=request_attributes(op, model_ref, tenant, request_id, stream, body),
            )

    # ---- notifications --------------------------------------------------------------------------
    def dispatched(self, backend: Backend) -> None:
        self.t_dispatch = time.perf_counter()
        self.model = backend.model
        self.deployment = backend.name
        self.engine = self.m.is_engine(backend)

    def prompted(self, prompt_version: str, model_ref: str, body: dict[str, Any]) -> None:
        self.prompt_version = prompt_version
        self.model_ref, self.body = model_ref, body
        self.model = self.m.model_label(model_ref)
        if self.span is not None:
            self.span.update_name(f"{operation_name(self.endpoint)} {model_ref}")
            self.span.set_attributes(
                {"gen_ai.request.model": model_ref, "modelyard.prompt.version": prompt_version}
            )

    def assigned(self, experiment: str, variant: str) -> None:
        if self.span is not None:
            self.span.set_attributes(
                {"modelyard.experiment.id": experiment, "modelyard.experiment.variant": variant}
            )

    def chunk(self, payload: bytes) -> None:
        now = time.perf_counter()
        if self.t_first is None:
            self.t_first = now
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        self.response_id = self.response_id or data.get("id")
        if data.get("usage"):
            self.usage = data["usage"]
        pieces = 0
        for choice in data.get("choices") or ():
            delta = choice.get("delta")
            piece = (delta.get("content") if isinstance(delta, dict) else None) or choice.get("text")
            if piece:
                pieces += 1
                if choice.get("index", 0) == 0:
                    self._keep_text(piece)
            if choice.get("finish_reason"):
                self.finish_reasons.append(str(choice["finish_reason"]))
        if pieces:
            if self.t_last is not None:
                self.itl.append(now - self.t_last)
            self.t_last = now
            self.content_chunks += pieces
            self._token_event(now, data)

    def completed(self, body: bytes) -> None:
        if self.done:
            return
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = {}
        if isinstance(data, dict):
            self.response_id = data.get("id")
            self.usage = data.get("usage") or None
            for choice in data.get("choices") or ():
                if choice.get("finish_reason"):
                    self.finish_reasons.append(str(choice["finish_reason"]))
                if choice.get("index", 0) == 0:
                    msg = choice.get("message")
                    text = (msg.get("content") if isinstance(msg, dict) else None) or choice.get("text")
                    if text:
                        self._keep_text(text)
        self._finish(200)

    def finish_stream(self) -> None:
        """The stream ended cleanly (``[DONE]`` goes out next)."""
        self._finish(200)

    def failed(self, exc: BaseException) -> None:
        from modelyard.http.errors import as_modelyard_error

        err = as_modelyard_error(exc)
        self._finish(err.status_code, exc=exc, cause=failure_cause(err), message=err.message)

    def disconnected(self) -> None:
        self._finish(DISCONNECT_STATUS, cause="disconnect")

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Make this request's span current (so backends can ``inject`` it upstream)."""
        if self.span is None:
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            otel_context.detach(token)

    # ---- internals ------------------------------------------------------------------------------
    def _rejection(self, cause: str | None) -> str | None:
        """A policy refusal; an upstream's own 429 (after dispatch) is a failure, not our rejection."""
        reason = rejection_reason(cause) if cause else None
        if reason == "rate_limit" and self.t_dispatch is not None:
            return None
        return reason

    def _keep_text(self, piece: str) -> None:
        if not self.log_it:
            return
        room = self.m.max_text_chars - self.text_len
        if room > 0:
            self.text.append(piece[:room])
            self.text_len += min(len(piece), room)

    def _token_event(self, now: float, data: dict[str, Any]) -> None:
        span, cfg = self.span, self.m.tracing
        if span is None or cfg.token_events_every == 0 or self.events >= cfg.max_token_events:
            return
        if (self.content_chunks - 1) % cfg.token_events_every:
            return
        self.events += 1
        attrs: dict[str, Any] = {"gen_ai.token.index": self.content_chunks - 1}
        if cfg.capture_content:
            attrs["gen_ai.token.text"] = "".join(
                (c.get("delta") or {}).get("content") or c.get("text") or ""
                for c in data.get("choices") or ()
            )
        span.add_event("gen_ai.token", attrs, timestamp=self._wall(now))

    def _wall(self, t: float) -> int:
        return self.wall0_ns + int((t - self.t0) * 1e9)

    def _finish(
        self,
        status: int,
        *,
        exc: BaseException | None = None,
        cause: str | None = None,
        message: str | None = None,
    ) -> None:
        if self.done:
            return
        self.done = True
        t_end = time.perf_counter()
        usage = self.usage or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if completion_tokens is None and self.content_chunks:
            completion_tokens = self.content_chunks
        ttft = None if self.t_first is None else self.t_first - self.t0
        queue = None if self.t_dispatch is None else self.t_dispatch - self.t0
        decode = None
        if self.t_first is not None and self.t_last is not None and self.t_last > self.t_first:
            decode = self.t_last - self.t_first
        disconnected = cause == "disconnect"
        outcome = Outcome(
            model=self.model,
            tenant=self.tenant,
            endpoint=self.endpoint,
            status=status,
            engine=self.engine,
            cause=None if disconnected else cause,
            rejection=self._rejection(cause),
            disconnected=disconnected,
            finish_reasons=self.finish_reasons,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            queue_s=queue,
            ttft_s=ttft,
            itl_s=self.itl,
            e2e_s=t_end - self.t0,
            decode_s=decode,
            prompt_version=self.prompt_version,
        )
        self.m.metrics.record(outcome)
        if self.m.otel is not None:
            self.m.otel.record_outcome(outcome)
        trace_id = end_request_span(self, t_end, outcome, exc, message)
        if self.log_it:
            self.m.log(self._record(outcome, trace_id, message))

    def _record(self, o: Outcome, trace_id: str | None, message: str | None) -> RequestRecord:
        from modelyard.monitoring.requestlog.records import RequestRecord

        prompt: Any = self.body.get("messages", self.body.get("prompt", self.body.get("input")))
        return RequestRecord(
            request_id=self.request_id,
            created_at=datetime.fromtimestamp(self.wall0_ns / 1e9, UTC),
            tenant=self.tenant,
            model=self.model,
            model_requested=self.model_ref[:256],
            endpoint=self.endpoint,
            stream=self.stream,
            status=o.status,
            finish_reason=self.finish_reasons[0] if self.finish_reasons else None,
            error=o.cause if not o.disconnected else "disconnect",
            error_message=message,
            prompt=prompt,
            response="".join(self.text) if self.text else None,
            prompt_tokens=o.prompt_tokens,
            completion_tokens=o.completion_tokens,
            ttft_ms=None if o.ttft_s is None else o.ttft_s * 1000,
            latency_ms=o.e2e_s * 1000,
            trace_id=trace_id,
            params={k: self.body[k] for k in _LOGGED_PARAMS if k in self.body},
            prompt_version=self.prompt_version,
        )


_LOGGED_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "seed", "stop", "user")


class ObservedStream:
    """Wraps a gateway stream handle: every payload goes to ``chunk`` on its way to the client; the
    end, an error, or an ``aclose`` before the end (client disconnect) finishes the observation."""

    def __init__(self, inner: Any, observer: Observation | NullObserver) -> None:
        self._inner = inner
        self._obs = observer

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            payload: bytes = await self._inner.__anext__()
        except StopAsyncIteration:
            self._obs.finish_stream()
            raise
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit | KeyboardInterrupt | SystemExit) and not _cancelled(exc):
                self._obs.failed(exc)
            raise
        self._obs.chunk(payload)
        return payload

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._obs.disconnected()  # no-op when the stream already finished or failed


def _cancelled(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError)
