"""OpenTelemetry tracing: a tracer provider per app and the exporters it can use.

The exporter comes from ``monitoring.tracing.exporter``: ``otlp`` uses the OTLP/HTTP exporter, which
reads its endpoint, headers, timeout and compression from the standard ``OTEL_EXPORTER_OTLP_*``
variables; ``file`` writes one JSON span per line (tests, offline debugging); ``console`` prints;
``none`` records nothing. The resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) and the
sampler (``OTEL_TRACES_SAMPLER``) follow the SDK's own environment handling. Spans are exported
from a background batch processor, never on the request path. W3C ``traceparent`` / ``tracestate``
come in through :func:`extract` and go upstream through :func:`inject`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelyard.errors import ConfigError
from modelyard.settings import TracingSettings

_PROPAGATOR = TraceContextTextMapPropagator()
_OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class FileSpanExporter(SpanExporter):
    """Appends each span as one line of OTLP-like JSON (``ReadableSpan.to_json``) to ``path``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(s.to_json(indent=None) + "\n" for s in spans)
        with self._lock:
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def choose_exporter(settings: TracingSettings, env: Mapping[str, str]) -> str:
    """The exporter kind ``auto`` stands for under ``env``."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return "none"
    if settings.exporter != "auto":
        return settings.exporter
    return "otlp" if any(env.get(v) for v in _OTLP_ENDPOINT_VARS) else "none"


def build_tracer_provider(
    settings: TracingSettings, env: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """A provider with the configured exporter, or None when tracing is off."""
    env = os.environ if env is None else env
    kind = choose_exporter(settings, env)
    if kind == "none":
        return None
    exporter: SpanExporter
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    elif kind == "file":
        if settings.file_path is None:
            raise ConfigError("monitoring.tracing.exporter is `file` but file_path is not set; set file_path")
        exporter = FileSpanExporter(settings.file_path.expanduser())
    else:
        exporter = ConsoleSpanExporter()
    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME", "modelyard")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    return provider


def extract(headers: Mapping[str, str]) -> Context:
    """The remote parent context from W3C ``traceparent`` / ``tracestate`` headers (empty if absent)."""
    return _PROPAGATOR.extract(headers)


def inject(headers: MutableMapping[str, str], ctx: Context | None = None) -> None:
    """Add ``traceparent`` (and ``tracestate``) for ``ctx`` (default: the current context)."""
    _PROPAGATOR.inject(headers, context=ctx if ctx is not None else otel_context.get_current())


def with_trace_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus ``traceparent`` for the current span (the same dict when no span is recording)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return headers
    out = dict(headers)
    _PROPAGATOR.inject(out)
    return out
