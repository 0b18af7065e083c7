"""The request span's closing attributes and its queue / prefill / decode children.

Children are built after the fact from the times the observation recorded, so nothing but the root
span exists while the request runs. Attribute names follow the OpenTelemetry GenAI conventions
(``gen_ai.*``) plus what Langfuse reads (``langfuse.observation.*``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from modelyard.monitoring.metrics import Outcome

if TYPE_CHECKING:
    from modelyard.monitoring.observer import Observation


def request_attributes(
    op: str, model: str, tenant: str, rid: str, stream: bool, body: dict[str, Any]
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": op,
        "gen_ai.provider.name": "modelyard",
        "gen_ai.request.model": model,
        "modelyard.tenant": tenant,
        "modelyard.request_id": rid,
        "modelyard.stream": stream,
        "langfuse.observation.type": "generation",
    }
    for key, attr in (
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("seed", "gen_ai.request.seed"),
        ("n", "gen_ai.request.choice.count"),
    ):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[attr] = value
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(max_tokens, int):
        attrs["gen_ai.request.max_tokens"] = max_tokens
    return attrs


def iso_utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def end_request_span(
    obs: Observation, t_end: float, o: Outcome, exc: BaseException | None, message: str | None
) -> str | None:
    span = obs.span
    if span is None:
        return None
    tracer = obs.m.tracer
    assert tracer is not None
    attrs: dict[str, Any] = {"http.response.status_code": o.status, "gen_ai.response.model": obs.model}
    if obs.deployment:
        attrs["modelyard.deployment"] = obs.deployment
    if obs.response_id:
        attrs["gen_ai.response.id"] = obs.response_id
    if o.prompt_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = o.prompt_tokens
    if o.completion_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = o.completion_tokens
    if obs.finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = obs.finish_reasons
    if o.ttft_s is not None and obs.t_first is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = o.ttft_s
        attrs["gen_ai.server.time_to_first_token"] = o.ttft_s
        first_ns = obs._wall(obs.t_first)
        attrs["langfuse.observation.completion_start_time"] = iso_utc(first_ns)
    span.set_attributes(attrs)
    if obs.m.tracing.phase_spans:
        _phase_spans(obs, span, t_end)
    if o.disconnected:
        span.set_attribute("modelyard.client_disconnected", True)
    elif o.cause is not None:
        span.set_attribute("error.type", o.cause)
        span.set_status(Status(StatusCode.ERROR, message))
        if exc is not None:
            span.record_exception(exc)
    span.end(end_time=obs._wall(t_end))
    return format(span.get_span_context().trace_id, "032x")


def _phase_spans(obs: Observation, span: Any, t_end: float) -> None:
    """``queue`` (arrival to dispatch), then ``prefill`` (to the first chunk) and ``decode`` (to the
    end) for streams, or one ``generate`` span for a non-streamed answer."""
    tracer = obs.m.tracer
    assert tracer is not None
    ctx = trace.set_span_in_context(span)
    t_dispatch = obs.t_dispatch if obs.t_dispatch is not None else t_end
    tracer.start_span("queue", context=ctx, start_time=obs.wall0_ns).end(end_time=obs._wall(t_dispatch))
    if obs.t_dispatch is None:
        return
    if obs.t_first is not None:
        tracer.start_span("prefill", context=ctx, start_time=obs._wall(t_dispatch)).end(
            end_time=obs._wall(obs.t_first)
        )
        tracer.start_span("decode", context=ctx, start_time=obs._wall(obs.t_first)).end(
            end_time=obs._wall(t_end)
        )
    else:
        tracer.start_span("generate", context=ctx, start_time=obs._wall(t_dispatch)).end(
            end_time=obs._wall(t_end)
        )
