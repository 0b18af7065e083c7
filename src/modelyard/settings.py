"""The one typed settings tree of modelyard, and the loader that layers its sources.

Precedence, lowest first: field defaults < ``modelyard.yaml`` (path from ``--config`` or
``MODELYARD_CONFIG``) < ``MODELYARD_*`` environment variables (nested with ``__``, e.g.
``MODELYARD_LIMITS__MAX_N=4``; list/dict values as JSON) < CLI flags. :func:`load_settings` reads the
environment only when called, never at import. Every bad value raises :class:`ConfigError` naming the
setting, the value and the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelyard.errors import ConfigError

ENV_PREFIX = "MODELYARD_"
CONFIG_ENV = "MODELYARD_CONFIG"
# Client-side variables of the CLI that share the prefix but are not settings.
API_KEY_ENV = "MODELYARD_API_KEY"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LocalModelSettings(_Section):
    """A generative model served by the built-in engine."""

    name: str = Field(description="Model name clients send in `model` (also its registry name).")
    source: str = Field(
        description="Where the weights come from: `packaged:<name>` for a model shipped as a Python package "
        "(`smollm2-135m-instruct`, `gemma-3-270m`), or a path to a GGUF file / Hugging Face folder."
    )
    is_base_model: bool = Field(
        default=False,
        description="A base (not instruction-tuned) model; recorded in the registry. Chat still works "
        "through the tokenizer's template or, for Gemma, the standard Gemma turn template.",
    )
    chat_template: str | None = Field(
        default=None, description="Jinja chat template that replaces the tokenizer's own (default: keep it)."
    )
    defaults: dict[str, Any] | None = Field(
        default=None,
        description="Sampling defaults for requests that leave a field unset: `temperature`, `top_p`, "
        "`top_k`, `min_p`, `max_tokens`, `presence_penalty`, `frequency_penalty`, `repetition_penalty`, "
        "`stop`. The artifact's own (`generation_config.json`, GGUF `general.sampling.*`) and the "
        "registry's (`modelyard models defaults set`) win over these. Unset on a packaged model: the "
        "defaults shipped for it (smollm2-135m-instruct: temperature 0 (greedy), top_p 0.9; gemma-3-270m: "
        "temperature 1.0, top_k 64, top_p 0.95).",
    )

    @field_validator("defaults")
    @classmethod
    def _defaults_are_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from modelyard.errors import InvalidRequest
        from modelyard.registry.sampling import SamplingDefaults

        try:
            return None if value is None else SamplingDefaults.from_mapping(value).to_dict()
        except InvalidRequest as exc:
            raise ValueError(exc.message) from None

    def sampling_defaults(self) -> dict[str, Any]:
        """``defaults``, or the shipped ones of a packaged model when unset."""
        from modelyard.registry.sampling import PACKAGED_DEFAULTS

        if self.defaults is not None:
            return dict(self.defaults)
        return dict(PACKAGED_DEFAULTS.get(self.source.removeprefix("packaged:"), {}))


class EmbedderSettings(_Section):
    """A sentence-embedding model served on `/v1/embeddings`."""

    name: str = Field(description="Model name clients send in `model`.")
    source: str = Field(
        default="packaged:all-minilm-l6-v2",
        description="`packaged:all-minilm-l6-v2` or a sentence-transformers model folder.",
    )
    max_batch: int = Field(default=64, ge=1, description="Most inputs encoded in one forward pass.")


class BackendKind(StrEnum):
    OPENAI_COMPAT = "openai_compat"


class RemoteDeploymentSettings(_Section):
    """One remote OpenAI-compatible server that answers for a model name."""

    model: str = Field(description="Model name clients send in `model`.")
    backend: BackendKind = Field(default=BackendKind.OPENAI_COMPAT, description="Only `openai_compat`.")
    base_url: str = Field(description="Upstream base URL including `/v1`, e.g. `http://10.0.0.5:8000/v1`.")
    api_key: str | None = Field(default=None, description="Bearer token sent upstream (never logged).")
    upstream_model: str | None = Field(default=None, description="Model id upstream (default: `model`).")
    weight: float = Field(default=1.0, gt=0, description="Share of traffic under the `weighted` policy.")
    timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Timeout for the whole non-stream request, "
        "and for the first byte / between chunks of a stream.",
    )
    max_retries: int = Field(
        default=2,
        ge=0,
        description="Retries on connect errors, 429 and 5xx before the first byte reached the client.",
    )
    retry_backoff_s: float = Field(
        default=0.1,
        ge=0,
        description="First retry delay; doubles each retry (an upstream `retry-after` wins, capped at 5 s).",
    )
    name: str | None = Field(
        default=None, description="Deployment name for logs and stats (default: `<model>#<index>`)."
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Requests this deployment serves at once; the router's load is in-flight / this "
        "(unset: in-flight / `weight`). The router does not queue above it; it prefers other deployments.",
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="Tenant adapters this upstream serves: adapter model name (`<base>:<name>`, as "
        "clients send it) -> upstream model id (e.g. a vLLM `--lora-modules` name). Adapter requests "
        "are routed only to deployments that can serve them.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url {v!r} must start with http:// or https://")
        return v.rstrip("/")


class RouterPolicy(StrEnum):
    WEIGHTED = "weighted"
    LEAST_LOADED = "least_loaded"
    LATENCY = "latency"
    AFFINITY = "affinity"


class RouterSettings(_Section):
    policy: RouterPolicy = Field(
        default=RouterPolicy.WEIGHTED,
        description="`weighted` (random by weight), `least_loaded` (lowest load: in-flight / capacity, where "
        "a queued model's capacity is its live workers' slots and a remote's is `max_concurrency`, else "
        "`weight`), `latency` (lowest EWMA of time to first token), `affinity` (among deployments under "
        "`load_cap`: one holding the request's adapter, then one that recently served its prompt prefix, "
        "else least-loaded).",
    )
    load_cap: float = Field(
        default=0.8, gt=0, le=1, description="`affinity` never prefers a deployment whose load is above this."
    )
    ewma_alpha: float = Field(default=0.2, gt=0, le=1, description="Weight of the newest TTFT sample.")


class CircuitBreakerSettings(_Section):
    failure_threshold: int = Field(default=5, ge=1, description="Consecutive failures that open the circuit.")
    reset_after_s: float = Field(default=30.0, gt=0, description="Seconds open before one trial request.")


class AuthMode(StrEnum):
    REQUIRED = "required"
    ANONYMOUS = "anonymous"
    AUTO = "auto"


class TenancySettings(_Section):
    """Multi-tenancy: API keys, model access, rate limits, budgets and metering (``modelyard.tenancy``)."""

    enabled: bool = Field(
        default=True,
        description="Tenancy on the request path (auth, model access, limits, budgets, metering). `false` "
        "serves every caller anonymously with nothing counted (benchmarks, trusted single-user setups).",
    )
    auth: AuthMode = Field(
        default=AuthMode.AUTO,
        description="`required`: every /v1 and /admin call needs a key. `anonymous`: calls without a key act "
        "as a local admin (keys that are sent are still checked). `auto` (default): `anonymous` only while the "
        "server listens on a loopback address and no system admin key exists yet (a fresh local install), "
        "else `required`. Run `modelyard keys create --admin` to turn auth on.",
    )
    metrics_require_key: bool = Field(
        default=False,
        description="`/metrics` needs a system admin key like `/stats`: its series "
        "carry tenant and model labels. Off by default, as in vLLM, so Prometheus scrapes without a key; turn "
        "it on where the port is reachable by tenants (`modelyard top --api-key` then sends one).",
    )
    secret: str | None = Field(
        default=None,
        description="Server secret for the HMAC-SHA-256 of stored keys (>= 32 bytes; default: generated once "
        "into data_dir/tenancy.secret). Every gateway process sharing a database needs the same one.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for rate-limit and budget counters shared by every gateway process "
        "(default: counted in process).",
    )
    redis_prefix: str = Field(default="modelyard:", description="Prefix of every Redis key written.")
    redis_failure: Literal["open", "closed"] = Field(
        default="closed",
        description="When Redis is unreachable: `closed` answers 503 (over capacity), `open` admits the "
        "request unlimited. Either way it is logged at ERROR and counted (`redis_errors` in `GET /admin/tenancy/stats`).",
    )
    budget_period: Literal["day", "month"] = Field(default="month", description="Budget period (UTC).")
    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Model name -> {`prompt_per_1k`, `completion_per_1k`} prices used for cost and money "
        "budgets when the registry has no price for the model (`modelyard models price set`); models "
        "priced in neither cost 0.",
    )
    metering_buffer: int = Field(
        default=10_000, ge=1, description="Usage records held in memory before requests wait for the writer."
    )
    metering_batch: int = Field(default=500, ge=1, description="Most usage records in one insert.")
    metering_flush_s: float = Field(
        default=0.5, gt=0, description="Longest a usage record waits to be written."
    )
    auth_cache_size: int = Field(
        default=10_000,
        ge=0,
        description="Verified API keys each gateway process caches (LRU, by key digest; 0: no cache). An "
        "entry is used only while the auth epoch it was cached under is current, so every audited tenancy "
        "change is seen by the next request. Cached with `redis_url`, or on SQLite; not on PostgreSQL "
        "without Redis.",
    )
    auth_cache_ttl_s: float = Field(
        default=60.0,
        ge=0,
        description="Longest a cached key is used (0: no cache); bounds staleness only if an epoch bump "
        "could not reach Redis (that change then fails loudly).",
    )


class QueueBackendKind(StrEnum):
    LOCAL = "local"
    REDIS = "redis"


class QueueSettings(_Section):
    """The work queue between gateways and engine workers (`modelyard worker`); see `queue/`."""

    backend: QueueBackendKind = Field(
        default=QueueBackendKind.LOCAL,
        description="`local`: local models run on the engine inside this process (no Redis needed); "
        "`redis`: the gateway enqueues local-model requests on Redis Streams and `modelyard worker` "
        "processes serve them.",
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL of the work queue.")
    key_prefix: str = Field(default="modelyard", description="Prefix of every Redis key the queue uses.")
    max_queued: int = Field(
        default=256,
        ge=1,
        description="Most requests of one model queued or in flight; beyond it 503 + Retry-After.",
    )
    retry_after_s: float = Field(default=1.0, gt=0, description="`Retry-After` sent when a queue is full.")
    queue_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest wait for a worker to pick a request up before it fails."
    )
    reply_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest silence from the serving worker once it picked a request up."
    )
    claim_idle_s: float = Field(
        default=15.0,
        gt=0,
        description="A request taken by a worker that has not been kept alive for this long (the worker "
        "died) is claimed by a live worker.",
    )
    heartbeat_s: float = Field(default=1.0, gt=0, description="Worker heartbeat / load report period.")
    worker_ttl_s: float = Field(
        default=5.0, gt=0, description="A worker without a heartbeat this long is gone."
    )
    reply_ttl_s: float = Field(
        default=300.0, gt=0, description="Reply logs and request markers expire after this."
    )
    cancel_poll_s: float = Field(
        default=0.2, gt=0, description="How often workers check for cancelled requests."
    )
    worker_max_in_flight: int = Field(
        default=64, ge=1, description="Most requests one worker serves at once."
    )
    routing: Literal["pull", "least_loaded", "affinity"] = Field(
        default="pull",
        description="`pull`: any free worker takes the next request; `least_loaded`: the gateway sends it to "
        "the worker with the lowest load; `affinity`: prefer a worker holding the adapter or the prompt's "
        "prefix, unless its load is above `load_cap`.",
    )
    load_cap: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Affinity never picks a worker whose in-flight/capacity is above this.",
    )
    redis_socket_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait for one Redis read or write, so a half-open connection (a Redis that "
        "stopped answering) fails instead of blocking until TCP gives up. Blocking reads (`BLOCK`) are "
        "clamped to half of it.",
    )
    redis_connect_timeout_s: float = Field(
        default=2.0, gt=0, description="Longest wait to open a connection to Redis (and to close one)."
    )
    redis_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a Redis command on a fresh connection after a connection error or "
        "timeout (backoff up to 0.5 s). One queue operation fails after at most "
        "`redis_socket_timeout_s * (redis_retries + 1)` seconds (plus its `BLOCK`), health checks and "
        "backoff included: a request then gets 503 `over_capacity`.",
    )

    @model_validator(mode="after")
    def _check_times(self) -> QueueSettings:
        if self.claim_idle_s <= 2 * self.heartbeat_s:
            raise ValueError(
                f"queue.claim_idle_s={self.claim_idle_s} must be more than twice queue.heartbeat_s="
                f"{self.heartbeat_s}, or live workers lose their requests to others"
            )
        return self


class JobsSettings(_Section):
    """Background jobs and periodic tasks (see `jobs/` and docs/jobs.md)."""

    concurrency: int = Field(
        default=2, ge=1, description="Jobs run at once by `serve` (queue.backend local) or by one worker."
    )
    heartbeat_s: float = Field(default=2.0, gt=0, description="How often a running job saves progress.")
    visibility_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job without a heartbeat for this long (its worker died) is run again.",
    )
    max_attempts: int = Field(default=3, ge=1, description="Runs of one job before a lost job is failed.")
    retention_days: float = Field(
        default=30.0, gt=0, description="Finished jobs older than this are deleted."
    )
    kinds: list[str] = Field(
        default_factory=list,
        description="Extra job kinds as `module:attribute` paths to a JobKind (or a list of them).",
    )
    periodic: bool = Field(default=True, description="Run the periodic tasks inside `serve`.")
    lease: Literal["auto", "postgres", "redis", "local"] = Field(
        default="auto",
        description="Periodic-task lease: `auto` uses PostgreSQL advisory locks with a PostgreSQL "
        "database, else Redis when configured, else in process.",
    )

    @model_validator(mode="after")
    def _check_times(self) -> JobsSettings:
        if self.visibility_timeout_s <= 2 * self.heartbeat_s:
            raise ValueError(
                f"jobs.visibility_timeout_s={self.visibility_timeout_s} must be more than twice "
                f"jobs.heartbeat_s={self.heartbeat_s}, or live jobs are run twice"
            )
        return self


class TrackingSettings(_Section):
    """Experiment tracking of eval and fine-tuning runs (see `tracking/`)."""

    backend: Literal["auto", "mlflow", "none"] = Field(
        default="auto", description="`auto`: MLflow when the `mlflow` extra is installed, else none."
    )
    uri: str | None = Field(
        default=None,
        description="MLflow tracking URI (default: `sqlite:///<data_dir>/mlflow.db`, artifacts in the data dir).",
    )


class ShadowSettings(_Section):
    """One mirrored route: a share of its requests replayed to shadow targets (docs/experiments.md)."""

    route: str = Field(description="The `model` name whose requests are mirrored.")
    targets: list[str] = Field(min_length=1, description="Model references the requests are replayed to.")
    percent: int = Field(default=100, ge=1, le=100, description="The share of the route's requests mirrored.")


class ExperimentSettings(_Section):
    """A/B experiments (see `experiments/` and docs/experiments.md)."""

    shadows: list[ShadowSettings] = Field(
        default_factory=list,
        description="Shadow traffic: routes mirrored to shadow targets (not metered to tenants).",
    )
    max_shadow_queue: int = Field(
        default=100,
        ge=1,
        description="Mirrors waiting to be replayed; beyond this they are dropped and counted.",
    )

    max_exposure_queue: int = Field(
        default=10_000,
        ge=1,
        description="Exposures held in memory before the writer flushes them; beyond this they are dropped and counted.",
    )
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="The reports' significance level (two-sided) and 1 - confidence.",
    )
    min_units: int = Field(
        default=100,
        ge=2,
        description="Fewest exposed units per variant before a report decides anything (below: `keep_running`).",
    )
    canary_every_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the canary controller (periodic task `experiments.canary`) checks each rollout.",
    )


class RagBundleSettings(_Section):
    """A RAG bundle served as a model: retrieve from a corpus alias, then ask a generator model."""

    name: str = Field(description="The `model` name clients send (shares the models' namespace).")
    corpus: str = Field(description="The corpus to retrieve from.")
    alias: str = Field(default="production", description="The corpus alias (or version number) to read.")
    top_k: int = Field(default=4, ge=1, le=50, description="Chunks retrieved per question.")
    filter: dict[str, str] = Field(default_factory=dict, description="Metadata filter on the chunks.")
    min_score: float = Field(default=0.0, ge=-1, le=1, description="Chunks scoring below this are dropped.")
    model: str = Field(description="The generator: a model name, `name@alias` or `name:version`.")
    template: str = Field(
        default="Answer the question from the context. Cite sources as [n].\n\nContext:\n{{context}}"
        "\n\nQuestion: {{question}}",
        description="The user message sent to the generator; must contain `{{context}}` and `{{question}}`.",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Generator parameters the request leaves unset (e.g. temperature)."
    )

    @model_validator(mode="after")
    def _check_template(self) -> RagBundleSettings:
        for var in ("{{context}}", "{{question}}"):
            if var not in self.template:
                raise ValueError(f"rag bundle `{self.name}`: the template lacks {var}")
        return self


class RagSettings(_Section):
    """Retrieval over versioned vector stores (see `rag/` and docs/rag.md); needs the `rag` extra."""

    store: Literal["lancedb", "pgvector"] = Field(
        default="lancedb",
        description="Vector store: `lancedb` (embedded, a folder) or `pgvector` (PostgreSQL with pgvector).",
    )
    lancedb_path: Path | None = Field(
        default=None, description="LanceDB folder for `store: lancedb` (default: data_dir/rag/lancedb)."
    )
    pgvector_url: str | None = Field(
        default=None,
        description="PostgreSQL URL with the pgvector extension for `store: pgvector` "
        "(e.g. `postgresql://user@host:5432/db`).",
    )
    pgvector_schema: str = Field(
        default="modelyard_vectors", description="Schema holding one table per index version."
    )
    embed_batch: int = Field(default=64, ge=1, description="Chunks embedded per batch while ingesting.")
    bundles: list[RagBundleSettings] = Field(
        default_factory=list, description="RAG bundles served as models on `/v1/chat/completions`."
    )
    gate_tolerance: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="Default re-embed gate: the new version's nDCG@10 and recall@5 may be at most this "
        "much (absolute) below the current version's.",
    )

    @model_validator(mode="after")
    def _check_store(self) -> RagSettings:
        if self.store == "pgvector" and not self.pgvector_url:
            raise ValueError("rag.store=pgvector needs rag.pgvector_url (a PostgreSQL with pgvector)")
        return self


class LimitSettings(_Section):
    max_tokens: int = Field(default=4096, ge=1, description="Largest `max_tokens` accepted.")
    default_max_tokens: int = Field(
        default=256,
        ge=1,
        description="`max_tokens` of a completions request that sets none and whose model has no "
        "`max_tokens` default (local models; capped by the context window).",
    )
    default_chat_max_tokens: int = Field(
        default=512,
        ge=1,
        description="`max_tokens` of a chat request that sets neither `max_tokens` nor "
        "`max_completion_tokens` and whose model has no `max_tokens` default (local models; capped by "
        "the context window, never the whole window as vLLM does).",
    )
    max_n: int = Field(default=8, ge=1, description="Largest `n` accepted.")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="Largest request body.")
    max_messages: int = Field(default=256, ge=1, description="Most chat messages in one request.")
    max_embedding_inputs: int = Field(default=2048, ge=1, description="Most inputs in one embeddings call.")


class TracingSettings(_Section):
    """OpenTelemetry traces: one span per request with GenAI attributes (see monitoring/tracing.py)."""

    exporter: Literal["auto", "otlp", "file", "console", "none"] = Field(
        default="auto",
        description="`otlp` (endpoint, headers, protocol from the standard `OTEL_*` variables), `file` "
        "(JSON lines at `file_path`), `console`, `none`; `auto` = `otlp` when `OTEL_EXPORTER_OTLP_ENDPOINT` "
        "or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, else `none`.",
    )
    file_path: Path | None = Field(default=None, description="Span file for `exporter: file`.")
    token_events_every: int = Field(
        default=16,
        ge=0,
        description="Record every N-th streamed chunk as a span event (0: none; 1: token by token, "
        "which costs ~25 us of CPU per chunk).",
    )
    max_token_events: int = Field(default=64, ge=0, description="Most token events on one span.")
    phase_spans: bool = Field(
        default=True, description="Add `queue`, `prefill` and `decode` child spans to each request span."
    )
    capture_content: bool = Field(
        default=False, description="Put the chunk text on token events (prompts/outputs may be sensitive)."
    )


Redaction = Literal["secrets", "email", "phone", "card"]


class RequestLogSettings(_Section):
    """The request log: prompts and responses stored off the hot path (see monitoring/requestlog)."""

    enabled: bool = Field(default=True, description="Log requests at all.")
    sample_rate: float = Field(default=1.0, ge=0, le=1, description="Share of requests logged.")
    buffer_size: int = Field(
        default=10_000,
        ge=1,
        description="Records held in memory; beyond it new records are dropped (counted).",
    )
    batch_size: int = Field(default=256, ge=1, description="Most records written in one transaction.")
    flush_interval_s: float = Field(default=1.0, gt=0, description="Longest wait before a partial batch.")
    max_text_chars: int = Field(
        default=32_768, ge=0, description="Prompt and response text are cut to this many characters."
    )
    redact: list[Redaction] = Field(
        default_factory=lambda: list(get_args(Redaction)),
        description="Built-in redaction patterns applied before anything is stored.",
    )
    redact_patterns: list[str] = Field(
        default_factory=list,
        description="Extra regular expressions whose matches are replaced by [REDACTED].",
    )
    retention_days: float = Field(default=30.0, gt=0, description="Records older than this are deleted.")


class DriftWebhookSettings(_Section):
    """A receiver of drift alerts (see docs/drift.md)."""

    url: str = Field(description="Where alerts are POSTed (an Alertmanager's `/api/v2/alerts`, or any URL).")
    format: Literal["alertmanager", "json"] = Field(
        default="json", description="`alertmanager` (its v2 alert list) or `json` (one generic object)."
    )
    timeout_s: float = Field(default=5.0, gt=0, description="How long one POST may take.")


class DriftSettings(_Section):
    """Prompt drift monitoring: the request-log consumer and the monitor runs (docs/drift.md)."""

    enabled: bool = Field(
        default=False, description="Run the drift consumer and monitors inside `serve` (periodic tasks)."
    )
    embedder: str = Field(
        default="packaged:all-minilm-l6-v2",
        description="The embedder of sampled prompts: `packaged:all-minilm-l6-v2` or a model folder.",
    )
    sample_rate: float = Field(
        default=0.1, ge=0, le=1, description="Share of logged requests embedded (by request id hash)."
    )
    batch_size: int = Field(default=32, ge=1, description="Prompts embedded in one forward pass.")
    max_rows_per_run: int = Field(
        default=2048, ge=1, description="Most request-log rows the consumer reads in one run."
    )
    cpu_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of one core the consumer may use: after each batch it sleeps so that its busy "
        "time stays under this share (serving keeps priority).",
    )
    interval_s: float = Field(
        default=30.0, gt=0, description="How often the consumer (periodic task `drift.consume`) runs."
    )
    monitor_every_s: float = Field(
        default=60.0,
        gt=0,
        description="How often `drift.monitors` looks for monitors due (each has its own `interval_s`).",
    )
    retention_days: float = Field(default=30.0, gt=0, description="Samples older than this are deleted.")
    languages: list[str] = Field(
        default_factory=lambda: ["en", "fr", "de", "es", "it", "pt", "nl"],
        min_length=2,
        description="Candidate languages (ISO 639-1) of the language detector.",
    )
    webhooks: list[DriftWebhookSettings] = Field(
        default_factory=list,
        description="Receivers of firing and resolved drift alerts (set here, not per monitor, so that "
        "tenant keys cannot make the server call arbitrary URLs).",
    )
    alert_cooldown_s: float = Field(
        default=3600.0,
        ge=0,
        description="A monitor that keeps alerting is re-sent at most this often (de-duplication).",
    )


class MonitoringSettings(_Section):
    """Metrics, tracing and the request log; `enabled: false` turns all three off."""

    enabled: bool = Field(default=True, description="Observe requests at all.")
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    request_log: RequestLogSettings = Field(default_factory=RequestLogSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)


class Settings(_Section):
    """Everything `modelyard serve` needs; see each field's description."""

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    data_dir: Path = Field(default=Path("~/.local/share/modelyard"), description="Where state lives.")
    model_cache_dir: Path | None = Field(
        default=None, description="Where converted model weights are cached (default: data_dir/models)."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the metadata store (default: SQLite in data_dir)."
    )
    local_models: list[LocalModelSettings] = Field(
        default_factory=lambda: [
            LocalModelSettings(name="smollm2-135m-instruct", source="packaged:smollm2-135m-instruct"),
            LocalModelSettings(name="gemma-3-270m", source="packaged:gemma-3-270m", is_base_model=True),
        ],
        description="Generative models served by the built-in engine.",
    )
    embedders: list[EmbedderSettings] = Field(
        default_factory=lambda: [EmbedderSettings(name="all-minilm-l6-v2")],
        description="Embedding models served on /v1/embeddings.",
    )
    load_concurrency: int = Field(
        default=3,
        ge=1,
        description="Local models and embedders loaded at the same time at start-up (each in its own "
        "thread; a model takes requests as soon as its own load finishes). 1 loads them one by one.",
    )
    engine: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the engine's `EngineConfig` (see the `engine` section below).",
    )

    @field_validator("engine")
    @classmethod
    def _engine_config_is_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return value
        # imported here: the engine pulls in torch, which plain settings users should not pay for
        from dataclasses import fields

        from modelyard.engine.config import EngineConfig

        known = {f.name for f in fields(EngineConfig)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown engine setting(s) {unknown}: use only {sorted(known)}")
        try:
            EngineConfig(**value)
        except ConfigError as exc:
            raise ValueError(exc.message) from exc
        return value

    deployments: list[RemoteDeploymentSettings] = Field(
        default_factory=list, description="Remote OpenAI-compatible deployments."
    )
    router: RouterSettings = Field(default_factory=RouterSettings)
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="Model name -> model names tried when all its deployments fail."
    )
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    tenancy: TenancySettings = Field(default_factory=TenancySettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    registry_poll_s: float = Field(
        default=2.0, gt=0, description="How often the registry revision is polled."
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="Grace period for in-flight streams on shutdown."
    )
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    experiments: ExperimentSettings = Field(default_factory=ExperimentSettings)
    rag: RagSettings = Field(default_factory=RagSettings)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = [m.name for m in self.local_models] + [e.name for e in self.embedders]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(
                f"model names {sorted(dupes)} are defined twice in local_models/embedders; "
                "give each a distinct name"
            )
        known = set(names) | {d.model for d in self.deployments}
        for model, chain in self.fallbacks.items():
            for target in chain:
                if target not in known:
                    raise ValueError(
                        f"fallbacks[{model!r}] names unknown model {target!r}; use one of {sorted(known)}"
                    )
        for bundle in self.rag.bundles:  # a name is a model or a bundle, never both
            if bundle.name in known or [b.name for b in self.rag.bundles].count(bundle.name) > 1:
                raise ValueError(f"rag bundle name {bundle.name!r} is already a model or another bundle")
        return self

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser()

    @property
    def resolved_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").expanduser()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_data_dir / 'modelyard.db'}"


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in (CONFIG_ENV, API_KEY_ENV):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{key}={raw!r} is not valid JSON ({exc}); quote lists and objects as JSON"
                ) from None
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return layer


def _yaml_layer(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(
            f"config file {str(path)!r} cannot be read ({exc}); fix --config / {CONFIG_ENV}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def load_settings(
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from defaults, the YAML file, the environment and ``overrides`` (CLI flags).

    ``config`` defaults to ``$MODELYARD_CONFIG``, then to ``./modelyard.yaml`` if it exists.
    ``overrides`` uses the same nested shape as the YAML file; ``None`` values are ignored.
    """
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    path = Path(config) if config else (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    if path is None and Path("modelyard.yaml").is_file():
        path = Path("modelyard.yaml")
    if path is not None:
        merged = _deep_merge(merged, _yaml_layer(path))
    merged = _deep_merge(merged, _env_layer(env))
    merged = _deep_merge(merged, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        env_name = ENV_PREFIX + "__".join(str(p) for p in err["loc"] if isinstance(p, str)).upper()
        lines.append(
            f"setting {where} = {err.get('input')!r}: {err['msg']} "
            f"(fix it in the config file, {env_name} or the CLI flag)"
        )
    return "invalid settings:\n  " + "\n  ".join(lines)
