"""``Monitor``: one app's metrics, tracer and request log, and the factory of per-request observers.

Built in the app lifespan (``start`` / ``stop``) and handed to handlers as ``request.state.monitor``.
With ``monitoring.enabled: false`` :meth:`observe` returns the shared :data:`NULL_OBSERVER` and
nothing is measured (the "off" side of the overhead benchmark).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from modelyard.monitoring.labels import UNKNOWN_MODEL, tenant_label
from modelyard.monitoring.metrics import EngineCollector, Metrics
from modelyard.monitoring.observer import NULL_OBSERVER, NullObserver, Observation
from modelyard.monitoring.otel_metrics import OtelMetrics, build_meter_provider
from modelyard.monitoring.tracing import build_tracer_provider, extract
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.gateway.backends.base import Backend
    from modelyard.gateway.pipeline import Gateway
    from modelyard.monitoring.requestlog.records import RequestRecord
    from modelyard.monitoring.requestlog.writer import RequestLogWriter

log = logging.getLogger("modelyard.monitoring")


class Monitor:
    def __init__(self, settings: Settings, gateway: Gateway) -> None:
        self.settings = settings
        self.enabled = settings.monitoring.enabled
        self.tracing = settings.monitoring.tracing
        self.max_text_chars = settings.monitoring.request_log.max_text_chars
        self.gateway = gateway
        self.metrics = Metrics()
        self.metrics.registry.register(EngineCollector(self._engine_stats))
        self.metrics.active_streams.set_function(lambda: gateway.active_streams)
        self.provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        self.writer: RequestLogWriter | None = None
        self.otel: OtelMetrics | None = None
        self._engine_backed: dict[str, bool] = {}
        self._db: Any = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Build the tracer and start the request-log writer (the database is already migrated)."""
        if not self.enabled:
            return
        self.provider = build_tracer_provider(self.tracing)
        if self.provider is not None:
            self.tracer = self.provider.get_tracer("modelyard")
        meter_provider = build_meter_provider()
        if meter_provider is not None:
            self.use_otel_metrics(OtelMetrics(meter_provider, self.usage_model_label))
        rl = self.settings.monitoring.request_log
        if rl.enabled:
            from modelyard.monitoring.requestlog.writer import RequestLogWriter
            from modelyard.store.db import create_db_engine

            self._db = create_db_engine(self.settings.resolved_database_url)
            self.writer = RequestLogWriter(
                self._db,
                rl,
                on_dropped=self.metrics.log_dropped.inc,
                on_written=self.metrics.log_written.inc,
            )
            self.writer.start()

    def use_otel_metrics(self, otel: OtelMetrics) -> None:
        """Record OpenTelemetry metrics into ``otel``: finished requests from the observer, usage
        records from tenancy settlement (when the gateway meters)."""
        self.otel = otel
        tenancy = getattr(self.gateway, "tenancy", None)
        if tenancy is not None:
            tenancy.usage_listeners.append(otel.record_usage)

    async def stop(self) -> None:
        if self.writer is not None:
            await self.writer.stop()
        if self.otel is not None:
            self.otel.shutdown()
        if self.provider is not None:
            self.provider.shutdown()
        if self._db is not None:
            self._db.dispose()

    @property
    def db(self) -> Any:
        """The SQLAlchemy engine of the metadata store (None when the request log is off)."""
        return self._db

    # ---- per request ----------------------------------------------------------------------------
    def observe(
        self,
        *,
        endpoint: str,
        model_ref: str,
        request_id: str,
        stream: bool,
        body: dict[str, Any],
        state: Mapping[str, Any] | Any,
        headers: Mapping[str, str],
    ) -> Observation | NullObserver:
        """A fresh observer for one parsed request (``state``: the ASGI scope state, for the tenant)."""
        if not self.enabled:
            return NULL_OBSERVER
        rate = self.settings.monitoring.request_log.sample_rate
        log_it = self.writer is not None and (rate >= 1.0 or random.random() < rate)
        parent = extract(headers) if self.tracer is not None else None
        return Observation(
            self,
            endpoint=endpoint,
            model_ref=model_ref,
            tenant=tenant_label(state),
            request_id=request_id,
            stream=stream,
            body=body,
            parent=parent,
            log_it=log_it,
        )

    def model_label(self, ref: str) -> str:
        """``ref`` if it is a served model name, else ``unknown`` (no raw user strings as labels)."""
        return ref if self.gateway.router.has_model(ref) else UNKNOWN_MODEL

    def usage_model_label(self, ref: str) -> str:
        """:meth:`model_label` of a metered model reference (``name:3`` counts under ``name``)."""
        label = self.model_label(ref)
        return label if label != UNKNOWN_MODEL or ":" not in ref else self.model_label(ref.split(":", 1)[0])

    def is_engine(self, backend: Backend) -> bool:
        """True for a deployment on the built-in engine (its stats carry the engine counters)."""
        known = self._engine_backed.get(backend.name)
        if known is None:
            try:
                known = "num_running" in backend.stats()
            except Exception:
                known = False
            if backend.ready():
                self._engine_backed[backend.name] = known
        return known

    def log(self, record: RequestRecord) -> None:
        if self.writer is not None:
            self.writer.enqueue(record)

    def _engine_stats(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for dep in self.gateway.router.deployments():
            try:
                stats = dep.backend.stats()
            except Exception:
                log.exception("stats of %s failed", dep.name)
                continue
            yield dep.backend.model, stats


def observe_request(
    request: Any, endpoint: str, parsed: Any, body: dict[str, Any]
) -> Observation | NullObserver:
    """The observer for a parsed OpenAI request at the HTTP edge (null when no monitor runs)."""
    monitor: Monitor | None = getattr(request.state, "monitor", None)
    if monitor is None:
        return NULL_OBSERVER
    return monitor.observe(
        endpoint=endpoint,
        model_ref=str(parsed.model),
        request_id=request.state.request_id,
        stream=bool(getattr(parsed, "stream", False)),
        body=body,
        state=request.scope.get("state", {}),
        headers=request.headers,
    )
