"""OpenTelemetry metrics, per tenant, with the GenAI semantic conventions where they exist.

Off unless the standard variables ask for it (:func:`choose_metrics_exporter`): ``OTEL_METRICS_EXPORTER``
(``otlp``, ``console``, ``none``), else OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set; ``OTEL_SDK_DISABLED=true`` turns it off. The OTLP/HTTP
exporter reads its endpoint, headers, timeout, compression and temporality preference from the
``OTEL_EXPORTER_OTLP_*`` variables, the periodic reader its interval from ``OTEL_METRIC_EXPORT_INTERVAL``;
export runs on the SDK's background thread, never on the request path.

Instruments (attributes: ``gen_ai.operation.name``, ``gen_ai.request.model``, ``modelyard.tenant``; all
values from :mod:`modelyard.monitoring.labels`, so cardinality is bounded):

- from each usage record (:meth:`OtelMetrics.record_usage`, called by tenancy settlement, so the
  values equal the ledger): ``gen_ai.client.token.usage`` (histogram, ``{token}``, plus
  ``gen_ai.token.type`` ``input``/``output``), ``modelyard.requests`` (counter, plus
  ``modelyard.status``: ``ok``, ``error_<http status>``, ``disconnected``) and ``modelyard.cost``
  (counter, in the unit of ``tenancy.prices``).
- from each finished request (:meth:`OtelMetrics.record_outcome`, the observer):
  ``gen_ai.server.request.duration``, ``gen_ai.server.time_to_first_token`` and
  ``gen_ai.server.time_per_output_token`` (histograms, seconds; ``error.type`` on failures).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from modelyard.monitoring.labels import operation_name, tenant_of

if TYPE_CHECKING:
    from modelyard.monitoring.metrics import Outcome
    from modelyard.tenancy.records import Usage

_OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
_KINDS = ("otlp", "console", "none")
# The bucket boundaries the GenAI semantic conventions advise.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


def choose_metrics_exporter(env: Mapping[str, str]) -> str:
    """``otlp``, ``console`` or ``none`` (the default: nothing configured, nothing exported)."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return "none"
    kind = env.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    if kind:
        return kind if kind in _KINDS else "none"
    return "otlp" if any(env.get(v) for v in _OTLP_ENDPOINT_VARS) else "none"


def build_meter_provider(
    env: Mapping[str, str] | None = None, readers: Sequence[MetricReader] = ()
) -> MeterProvider | None:
    """A provider exporting as ``env`` says, plus ``readers`` (tests: ``InMemoryMetricReader``);
    None when there is neither."""
    env = os.environ if env is None else env
    all_readers = list(readers)
    kind = choose_metrics_exporter(env)
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        all_readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    elif kind == "console":
        all_readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    if not all_readers:
        return None
    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME", "modelyard")})
    return MeterProvider(metric_readers=all_readers, resource=resource)


class OtelMetrics:
    """The instruments of one app. ``model_label`` maps a model reference to a bounded label."""

    def __init__(self, provider: MeterProvider, model_label: Callable[[str], str]) -> None:
        self.provider = provider
        self._model_label = model_label
        m = provider.get_meter("modelyard")
        self.tokens = m.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Input and output tokens per request (from the usage ledger).",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.requests = m.create_counter(
            "modelyard.requests", unit="{request}", description="Metered requests by status."
        )
        self.cost = m.create_counter("modelyard.cost", unit="1", description="Cost of metered requests.")
        self.duration = m.create_histogram(
            "gen_ai.server.request.duration",
            unit="s",
            description="Request arrival to the last byte (or the failure).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.ttft = m.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Request arrival to the first streamed chunk.",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS,
        )
        self.tpot = m.create_histogram(
            "gen_ai.server.time_per_output_token",
            unit="s",
            description="Decode time per output token after the first, per stream.",
            explicit_bucket_boundaries_advisory=TPOT_BUCKETS,
        )

    def _attrs(self, endpoint: str, model: str, tenant: str) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": operation_name(endpoint),
            "gen_ai.request.model": model,
            "modelyard.tenant": tenant,
        }

    def record_usage(self, u: Usage) -> None:
        """One usage record, exactly as the ledger stores it."""
        a = self._attrs(u.endpoint, self._model_label(u.model), tenant_of(u.tenant_id, u.key_id))
        self.tokens.record(u.prompt_tokens, {**a, "gen_ai.token.type": "input"})
        self.tokens.record(u.completion_tokens, {**a, "gen_ai.token.type": "output"})
        self.requests.add(1, {**a, "modelyard.status": u.status})
        if u.cost:
            self.cost.add(u.cost, a)

    def record_outcome(self, o: Outcome) -> None:
        """One finished request as the observer saw it (``o.model`` is already a bounded label)."""
        a = self._attrs(o.endpoint, o.model, o.tenant)
        if o.cause is not None:
            a["error.type"] = o.cause
        self.duration.record(o.e2e_s, a)
        if o.ttft_s is not None:
            self.ttft.record(o.ttft_s, a)
        if o.decode_s is not None and o.completion_tokens and o.completion_tokens > 1:
            self.tpot.record(o.decode_s / (o.completion_tokens - 1), a)

    def shutdown(self) -> None:
        self.provider.shutdown()
