"""Prometheus metrics: the gateway's own (``modelyard_*``) and the engine's under vLLM's names.

Each app owns one :class:`Metrics` with its own ``CollectorRegistry`` (no process-global state).
Gateway metrics are recorded when a request finishes (:meth:`Metrics.record`); engine metrics
(``vllm:*``, labelled ``model_name``) are read from each local backend's ``stats()`` at scrape time
by :class:`EngineCollector`, so the engine loop does no metric work. Labels come only from
:mod:`modelyard.monitoring.labels` (bounded sets). :data:`EXPORTED` lists every family name, so
dashboards and alert rules can be checked against it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from modelyard.engine.request import QUEUE_TIME_BUCKETS
from modelyard.monitoring.labels import BoundedValues
from modelyard.queue.base import QueueWaitHistogram

# vLLM's buckets, with finer low ends so a fast gateway still lands in distinct buckets.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0)  # fmt: skip
ITL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
E2E_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
)
QUEUE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)  # fmt: skip
TPS_BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 50000.0)

ML = ("model", "tenant")


@dataclass(slots=True)
class Outcome:
    """What one finished request contributes to the metrics (times in seconds, None = not measured)."""

    model: str
    tenant: str
    endpoint: str
    status: int
    engine: bool = False
    cause: str | None = None
    rejection: str | None = None
    disconnected: bool = False
    finish_reasons: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    queue_s: float | None = None
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    e2e_s: float = 0.0
    decode_s: float | None = None
    prompt_version: str | None = None  # ``name:version`` when the prompt layer rendered one


class Metrics:
    """The gateway's metric families in one registry; :meth:`record` is the only writer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}  # as bounded as the labels
        r = self.registry
        self.requests = Counter(
            "modelyard_requests",
            "Finished requests by model, tenant, endpoint and HTTP status "
            "(499: client disconnected; a mid-stream failure counts under the error's status).",
            (*ML, "endpoint", "status"),
            registry=r,
        )
        self.ttft = Histogram(
            "modelyard_time_to_first_token_seconds",
            "Request arrival to the first streamed chunk handed to the client.",
            ML,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "modelyard_inter_token_latency_seconds",
            "Time between consecutive content chunks of a stream.",
            ML,
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "modelyard_e2e_request_latency_seconds",
            "Request arrival to the last byte (or the failure).",
            (*ML, "endpoint"),
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "modelyard_request_queue_time_seconds",
            "Request arrival to dispatch to a deployment (limits, resolution, routing).",
            ML,
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.tps = Histogram(
            "modelyard_request_generation_tokens_per_second",
            "Output tokens per second of decode (first to last chunk) per stream.",
            ML,
            buckets=TPS_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "modelyard_prompt_tokens",
            "Prompt tokens of finished requests (when the backend reported usage).",
            ML,
            registry=r,
        )
        self.generation_tokens = Counter(
            "modelyard_generation_tokens",
            "Generated tokens of finished requests (usage, else one per content chunk).",
            ML,
            registry=r,
        )
        self.finish = Counter(
            "modelyard_request_finish_reason",
            "Finished choices by finish_reason (`length` = truncated).",
            (*ML, "finish_reason"),
            registry=r,
        )
        self.failures = Counter(
            "modelyard_request_failures", "Failed requests by cause.", (*ML, "cause"), registry=r
        )
        self.disconnects = Counter(
            "modelyard_client_disconnects",
            "Streams the client left before the end.",
            (*ML, "endpoint"),
            registry=r,
        )
        self.rejections = Counter(
            "modelyard_request_rejections", "Requests refused by policy.", (*ML, "reason"), registry=r
        )
        self.prompt_requests = Counter(
            "modelyard_prompt_requests",
            "Finished requests that used a registry prompt, by prompt version (`name:version`; past "
            "200 distinct versions, `other`), model and HTTP status.",
            ("prompt_version", "model", "status"),
            registry=r,
        )
        self._prompt_label = BoundedValues()
        self.log_dropped = Counter(
            "modelyard_request_log_dropped",
            "Request-log records dropped (buffer full or write failed).",
            registry=r,
        )
        self.log_written = Counter("modelyard_request_log_written", "Request-log records stored.", registry=r)
        self.active_streams = Gauge("modelyard_active_streams", "Streams in flight.", registry=r)
        self.vllm_ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token (local engine).",
            ("model_name",),
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.vllm_itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Inter-token latency (local engine).",
            ("model_name",),
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.vllm_e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end latency (local engine).",
            ("model_name",),
            buckets=E2E_BUCKETS,
            registry=r,
        )

    def _c(self, metric: Any, *labels: str) -> Any:
        """The labelled child, cached (``labels()`` takes a lock and builds a key on every call)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def record(self, o: Outcome) -> None:
        """Account one finished request."""
        lab = (o.model, o.tenant)
        self._c(self.requests, *lab, o.endpoint, str(o.status)).inc()
        self._c(self.e2e, *lab, o.endpoint).observe(o.e2e_s)
        if o.queue_s is not None:
            self._c(self.queue, *lab).observe(o.queue_s)
        if o.ttft_s is not None:
            self._c(self.ttft, *lab).observe(o.ttft_s)
        if o.itl_s:
            itl = self._c(self.itl, *lab)
            for dt in o.itl_s:
                itl.observe(dt)
        if o.prompt_tokens:
            self._c(self.prompt_tokens, *lab).inc(o.prompt_tokens)
        if o.completion_tokens:
            self._c(self.generation_tokens, *lab).inc(o.completion_tokens)
            if o.decode_s:
                self._c(self.tps, *lab).observe(o.completion_tokens / o.decode_s)
        for reason in o.finish_reasons:
            self._c(self.finish, *lab, reason).inc()
        if o.disconnected:
            self._c(self.disconnects, *lab, o.endpoint).inc()
        elif o.cause is not None:
            self._c(self.failures, *lab, o.cause).inc()
            if o.rejection is not None:
                self._c(self.rejections, *lab, o.rejection).inc()
        if o.prompt_version is not None:
            self._c(self.prompt_requests, self._prompt_label(o.prompt_version), o.model, str(o.status)).inc()
        if o.engine:
            if o.ttft_s is not None:
                self._c(self.vllm_ttft, o.model).observe(o.ttft_s)
            if o.itl_s:
                vitl = self._c(self.vllm_itl, o.model)
                for dt in o.itl_s:
                    vitl.observe(dt)
            self._c(self.vllm_e2e, o.model).observe(o.e2e_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# Engine metrics under vLLM's names (https://docs.vllm.ai/en/latest/design/metrics.html).
ENGINE_GAUGES = {
    "vllm:num_requests_running": ("num_running", "Requests in the running batch."),
    "vllm:num_requests_waiting": ("num_waiting", "Requests waiting to be scheduled."),
    "vllm:kv_cache_usage_perc": ("kv_cache_usage", "Fraction of KV-cache blocks in use (0-1)."),
}
ENGINE_COUNTERS = {
    "vllm:prefix_cache_queries": ("prefix_cache_queries", "Prompt tokens looked up in the prefix cache."),
    "vllm:prefix_cache_hits": ("prefix_cache_hits", "Prompt tokens found in the prefix cache."),
    "vllm:prompt_tokens": ("prompt_tokens_total", "Prefilled prompt tokens."),
    "vllm:generation_tokens": ("generation_tokens_total", "Generated tokens."),
    "vllm:num_preemptions": ("num_preemptions", "Preemptions (recompute)."),
}


class EngineCollector(Collector):
    """Reads ``(model_name, stats dict)`` pairs at scrape time and emits the ``vllm:*`` families.

    ``source`` yields each local engine's model name and its ``EngineStats`` as a dict (the local
    backend's ``stats()``); entries without ``num_running`` (still loading, remote) are skipped.
    """

    def __init__(self, source: Callable[[], Iterable[tuple[str, dict[str, Any]]]]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        gauges = {n: GaugeMetricFamily(n, h, labels=["model_name"]) for n, (_, h) in ENGINE_GAUGES.items()}
        counters = {
            n: CounterMetricFamily(n, h, labels=["model_name"]) for n, (_, h) in ENGINE_COUNTERS.items()
        }
        for model, stats in self._source():
            if "num_running" not in stats:
                continue
            for name, (key, _) in ENGINE_GAUGES.items():
                gauges[name].add_metric([model], float(stats[key]))
            for name, (key, _) in ENGINE_COUNTERS.items():
                counters[name].add_metric([model], float(stats[key]))
        yield from gauges.values()
        yield from counters.values()
        yield self._queue_time(self._source())
        yield from self._work_queue(self._source())

    @staticmethod
    def _queue_time(engines: Iterable[tuple[str, dict[str, Any]]]) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(
            "vllm:request_queue_time_seconds",
            "Time requests waited in the engine before first being scheduled.",
            labels=["model_name"],
        )
        for model, stats in engines:
            counts = stats.get("queue_time_counts")
            if not counts:
                continue
            edges = [*map(str, QUEUE_TIME_BUCKETS), "+Inf"]
            fam.add_metric(
                [model], list(zip(edges, itertools.accumulate(counts), strict=True)), stats["queue_time_sum"]
            )
        return fam

    @staticmethod
    def _work_queue(deployments: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[Metric]:
        """Queued deployments (``queue.backend: redis``): wait from enqueue to a worker's pick-up, as
        reported back to this gateway, and the model's queue depth (queued + in flight, all gateways)."""
        wait = HistogramMetricFamily(
            "modelyard_queue_wait_seconds",
            "Work-queue wait, enqueue to a worker picking the request up (queued deployments).",
            labels=["model"],
        )
        depth = GaugeMetricFamily(
            "modelyard_queue_depth",
            "Requests of the model in the work queue, waiting or running (all gateways).",
            labels=["model"],
        )
        for model, stats in deployments:
            if "queue_wait_counts" not in stats:
                continue
            edges = [*map(str, QueueWaitHistogram.BUCKETS), "+Inf"]
            counts = [*stats["queue_wait_counts"], stats["queue_wait_count"]]
            wait.add_metric([model], list(zip(edges, counts, strict=True)), stats["queue_wait_sum"])
            if stats.get("queue_depth") is not None:
                depth.add_metric([model], float(stats["queue_depth"]))
        yield wait
        yield depth


def exported_names(metrics: Metrics) -> set[str]:
    """Every sample name ``/metrics`` can carry (``_total``/``_bucket``/... included), for checks."""
    names: set[str] = set()
    for fam in metrics.registry.collect():
        names.add(fam.name)
        if fam.type == "counter":
            names |= {fam.name + "_total", fam.name + "_created"}
        elif fam.type == "histogram":
            names |= {fam.name + s for s in ("_bucket", "_sum", "_count", "_created")}
    return names
