"""The WorkQueue seam and the plain data that crosses it between gateway and worker processes.

A gateway ``submit``s a :class:`Job` to the queue of its model and reads the request's
:class:`Reply` events back with ``read`` (a cursor over one per-request reply log). A worker
``take``s :class:`Delivery` items, answers with ``reply`` and ``ack``s each one when it is done.
Delivery is at least once: an entry a worker took but never acknowledged (the worker died) is
handed to a live worker by ``claim_stale`` once it has been idle for ``claim_idle_s``; a worker
keeps its own in-flight entries fresh with ``touch``.

Exactly-once *output* rests on ``mark_started``: the first worker that is about to send output
for a request id records itself; any other worker that later holds the same job either stays
silent (the first one is alive and streaming) or, when the first one died after output reached
the client, ends the response with an in-band error instead of replaying it (a client must never
see the same text twice in one response).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from modelyard.errors import ModelyardError, OverCapacity


class QueueFull(OverCapacity):
    """A model's queue holds its configured maximum; answered 503 with ``Retry-After``."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class WorkerLost(ModelyardError):
    """The worker serving a request died or went silent after part of the response was sent.

    Sent in-band (the response is never replayed). Not a failure of the queued deployment itself,
    so it does not count against its circuit breaker.
    """

    code = "worker_lost"


class Job(msgspec.Struct, frozen=True):
    """One OpenAI request for one model, as the gateway enqueues it.

    ``body`` is the client's JSON object (the worker parses it again with the same wire models);
    ``prefix_hash`` is the gateway's hash of the prompt's start (prefix-affinity routing);
    ``target`` names the worker the router chose, or is ``None`` for any worker of the model.
    ``cache_salt`` (the tenant id) and ``lora`` (a tenant adapter's fields: ``id``, ``tenant_id``,
    ``base_model``, ``name``, ``path``, ``created_at``) travel to the worker's backend request.
    """

    request_id: str
    model: str
    endpoint: str
    body: dict[str, Any]
    stream: bool
    enqueued_at: float = msgspec.field(default_factory=time.time)
    prefix_hash: str | None = None
    target: str | None = None
    cache_salt: str | None = None
    lora: dict[str, str] | None = None


class ReplyKind(enum.StrEnum):
    START = "start"  # a worker picked the job up (carries queue_time_s)
    DATA = "data"  # one SSE payload, or the whole JSON body of a non-stream request
    ERROR = "error"  # the request failed; ``error`` holds the modelyard error class and message
    END = "end"  # the last event of a successful request


class Reply(msgspec.Struct, frozen=True):
    """One event of a request's reply log, written by the worker named in ``worker``.

    ``seq`` numbers the events of one serving attempt from 1; a reader drops an event whose
    ``seq`` it already saw from that worker (a write retried after a lost connection).
    """

    kind: ReplyKind
    worker: str
    seq: int = 0
    data: bytes = b""
    error: dict[str, Any] | None = None
    queue_time_s: float | None = None


class Delivery(msgspec.Struct):
    """A job handed to a worker. ``entry`` is the queue's handle for ``ack``/``touch``;
    ``claimed`` is true when it was taken over from another (dead or stalled) worker."""

    job: Job
    entry: str
    claimed: bool = False


class WorkerReport(msgspec.Struct):
    """What a worker publishes with each heartbeat (the router reads these)."""

    worker_id: str
    models: list[str]
    running: int = 0
    waiting: int = 0
    in_flight: int = 0
    capacity: int = 1
    served: int = 0
    kv_cache_usage: float = 0.0
    adapters: list[str] = msgspec.field(default_factory=list)
    prefix_hashes: list[str] = msgspec.field(default_factory=list)
    draining: bool = False
    updated_at: float = msgspec.field(default_factory=time.time)


class QueueWaitHistogram:
    """Cumulative histogram of enqueue-to-pickup time: workers export it as ``vllm:request_queue_time_seconds``,
    gateways (per model, from the ``start`` replies) as ``modelyard_queue_wait_seconds``."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

    def __init__(self) -> None:
        self.counts = [0] * len(self.BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1


@runtime_checkable
class WorkQueue(Protocol):
    """A bounded queue of :class:`Job` per model with per-request reply logs.

    Errors: ``submit`` raises :class:`QueueFull` when the model's queue holds ``max_queued``
    jobs (queued or in flight) and :class:`~modelyard.errors.OverCapacity` when the queue
    service is unreachable. Other methods raise the implementation's connection errors; callers
    retry them (a restarted queue service must not need a process restart).
    """

    # ---- gateway side ---------------------------------------------------------------------------
    async def submit(self, job: Job) -> None:
        """Enqueue ``job`` (to ``job.target``'s own queue when set) unless the model's queue is full."""

    async def read(self, request_id: str, cursor: str, block_s: float) -> tuple[list[Reply], str]:
        """Reply events after ``cursor`` (``"0"`` for the start), waiting up to ``block_s`` for one;
        returns them and the cursor to pass next time."""
        ...

    async def cancel(self, request_id: str) -> None:
        """Ask whichever worker holds ``request_id`` to stop it (and any worker not to start it)."""

    async def finish(self, request_id: str) -> None:
        """Drop the request's reply log (the gateway has read what it needs)."""

    async def depth(self, model: str) -> int:
        """Jobs of ``model`` queued or in flight (what the bound and the autoscaler look at)."""
        ...

    async def workers(self) -> list[WorkerReport]:
        """Reports of live workers (heartbeat younger than the worker TTL)."""
        ...

    # ---- worker side ----------------------------------------------------------------------------
    async def take(self, worker_id: str, models: Sequence[str], count: int, block_s: float) -> list[Delivery]:
        """Up to ``count`` new jobs of ``models`` (shared queues and this worker's own)."""
        ...

    async def claim_stale(
        self, worker_id: str, models: Sequence[str], min_idle_s: float, count: int
    ) -> list[Delivery]:
        """Up to ``count`` jobs that other workers took but left unacknowledged for ``min_idle_s``."""
        ...

    async def touch(self, worker_id: str, deliveries: Sequence[Delivery]) -> None:
        """Mark in-flight deliveries as alive so ``claim_stale`` leaves them alone."""

    async def ack(self, delivery: Delivery) -> None:
        """The job is done (answered, failed or cancelled); remove it for good."""

    async def reply(self, request_id: str, reply: Reply) -> None:
        """Append one event to the request's reply log."""

    async def mark_started(self, request_id: str, worker_id: str) -> str | None:
        """Record ``worker_id`` as the one whose output the client sees; return the worker that
        already holds that role (``None`` when it is now ``worker_id``)."""
        ...

    async def started_by(self, request_id: str) -> str | None:
        """The worker whose output already reached the reply log, if any."""
        ...

    async def cancelled(self, request_ids: Sequence[str]) -> set[str]:
        """The subset of ``request_ids`` that gateways cancelled."""
        ...

    async def report(self, report: WorkerReport) -> None:
        """Publish a worker's heartbeat and load report (expires after the worker TTL)."""

    async def unregister(self, worker_id: str) -> None:
        """Remove a stopping worker's report at once."""

    async def close(self) -> None:
        """Release connections."""


def prefix_hash(body: dict[str, Any], chars: int = 256) -> str:
    """A stable hash of the start of a request's prompt (messages or prompt), for prefix affinity.

    Two requests that share their first ``chars`` characters of rendered prompt text hash the same,
    so a worker that served one likely holds the other's prefix blocks in its KV cache.
    """
    import hashlib

    if "messages" in body:
        parts = []
        for m in body.get("messages") or []:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(f"{m.get('role') if isinstance(m, dict) else ''}:{content or ''}\n")
        text = "".join(parts)
    else:
        text = str(body.get("prompt", ""))
    return hashlib.blake2b(text[:chars].encode(), digest_size=8).hexdigest()


_ENC = msgspec.msgpack.Encoder()
_JOB = msgspec.msgpack.Decoder(Job)
_REPLY = msgspec.msgpack.Decoder(Reply)
_REPORT = msgspec.json.Decoder(WorkerReport)


def encode(obj: msgspec.Struct) -> bytes:
    return _ENC.encode(obj)


def decode_job(raw: bytes) -> Job:
    return _JOB.decode(raw)


def decode_reply(raw: bytes) -> Reply:
    return _REPLY.decode(raw)


def encode_report(report: WorkerReport) -> bytes:
    return msgspec.json.encode(report)


def decode_report(raw: bytes) -> WorkerReport:
    return _REPORT.decode(raw)
