"""The queued backend: a local model's requests go through the work queue to ``modelyard worker``.

``stream`` submits a :class:`~modelyard.queue.base.Job` and reads the request's reply log.
Errors a worker reports before the first payload are raised as the same :mod:`modelyard.errors`
class (so a context-length error is still a 400); after output reached the client, a failure
(worker died, worker silent for ``reply_timeout_s``) ends the stream with
:class:`~modelyard.queue.base.WorkerLost`, which the gateway sends as an in-band SSE error: a partly streamed response is never replayed.
Only the first worker that sent output for a request is listened to, so a job delivered twice
never shows twice. Closing the stream early cancels the job on its worker (its engine request is
aborted and its KV blocks freed).

:meth:`QueuedBackend.close` is bounded (``CLOSE_BOUND_S`` plus the queue's own close, see
``RedisStreamsQueue.close``): the poller is cancelled with re-cancels (:func:`modelyard.aio.cancel_and_wait`),
reply readers still open end within one read (``_READ_BLOCK_S``) with an error (``WorkerLost`` after
output, else 503 ``over_capacity``) and cancel their jobs, then the queue closes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from modelyard import errors
from modelyard.aio import cancel_and_wait
from modelyard.errors import EngineError, ModelyardError, UpstreamTimeout
from modelyard.gateway.backends.base import BackendRequest, Endpoint, RouteHint, RouteView
from modelyard.gateway.worker_router import pick_worker
from modelyard.queue.base import (
    Job,
    QueueWaitHistogram,
    Reply,
    ReplyKind,
    WorkerLost,
    WorkerReport,
    WorkQueue,
    prefix_hash,
)
from modelyard.settings import QueueSettings

log = logging.getLogger("modelyard.queue")

_READ_BLOCK_S = 1.0
POLLER_STOP_S = 1.0  # the poller is gone within this after close() (re-cancelled meanwhile)
READERS_STOP_S = 2.0  # open reply readers notice the close within one read (_READ_BLOCK_S)
CLOSE_BOUND_S = POLLER_STOP_S + READERS_STOP_S
_QUEUE_TIMES_KEPT = 2048


def error_from_reply(reply: Reply) -> ModelyardError:
    """The modelyard error a worker reported, rebuilt as the same class (``EngineError`` if unknown)."""
    info = reply.error or {}
    name = str(info.get("class", ""))
    cls = WorkerLost if name == "WorkerLost" else getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, ModelyardError)) or cls is errors.ConfigError:
        cls = EngineError
    try:
        exc = cls(str(info.get("message", "the worker failed")), param=info.get("param"))
    except TypeError:
        exc = EngineError(str(info.get("message", "the worker failed")))
    return exc


class QueuedBackend:
    """One model served by engine workers behind a :class:`WorkQueue` (see the module docstring)."""

    endpoints = frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS})
    local = True  # the built-in engine serves it (tenant adapters, `owned_by` in /v1/models)

    def __init__(self, model: str, queue: WorkQueue, settings: QueueSettings) -> None:
        self.name = f"{model}#queue"
        self.model = model
        self._queue = queue
        self._cfg = settings
        self._reports: list[WorkerReport] = []
        self._reports_at = 0.0
        self.queue_times: list[float] = []
        self.queue_wait = QueueWaitHistogram()  # for the gateway's /metrics
        self.submitted = 0
        self.rejected = 0
        self.depth: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closing = False
        self._readers = 0  # requests submitted or reading replies now (close waits for them)

    async def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name=f"queue-poll-{self.model}")

    async def close(self) -> None:
        """Stop polling, end open reply readers, close the queue; see the module docstring for the bound."""
        self._closing = True
        if self._poller is not None:
            await cancel_and_wait([self._poller], POLLER_STOP_S, what=f"queue poller of {self.model}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READERS_STOP_S
        while self._readers and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._readers:
            log.warning("%d reply readers of %s still open at close", self._readers, self.model)
        await self._queue.close()

    async def _poll(self) -> None:
        """Keep worker reports and the queue depth fresh for routing and ``/stats``."""
        while not self._closing:  # the flag, not only cancel(): a cancel can be lost (modelyard.aio)
            try:
                self._reports, self._reports_at = await self._queue.workers(), time.monotonic()
                self.depth = await self._queue.depth(self.model)
            except (RedisError, OSError) as exc:
                log.warning("polling the queue of %s failed: %s", self.model, exc)
            await asyncio.sleep(self._cfg.heartbeat_s)

    def ready(self) -> bool:
        # Requests may wait in the queue for a worker (scale from zero), so the gateway is ready.
        return True

    def stats(self) -> dict[str, Any]:
        qt = sorted(self.queue_times)
        mine = [r for r in self._reports if self.model in r.models]
        return {
            "queue": type(self._queue).__name__,
            "routing": self._cfg.routing,
            "queue_depth": self.depth,
            "workers_running": sum(r.running for r in mine),
            "workers_waiting": sum(r.waiting for r in mine),
            "submitted": self.submitted,
            "rejected_queue_full": self.rejected,
            "queue_time_p50_s": qt[len(qt) // 2] if qt else None,
            "queue_time_p99_s": qt[min(len(qt) - 1, int(len(qt) * 0.99))] if qt else None,
            "queue_wait_counts": list(self.queue_wait.counts),
            "queue_wait_count": self.queue_wait.count,
            "queue_wait_sum": self.queue_wait.sum,
            "workers": [r.worker_id for r in mine],
        }

    def route_view(self, hint: RouteHint, in_flight: int) -> RouteView:
        """The pool of live workers as one deployment: load = requests of the model queued or running
        (the polled depth, the workers' reports or this gateway's own count, whichever is highest)
        over the workers' slots; ``inf`` with no live worker (the queue still takes the request)."""
        live = [r for r in self._reports if self.model in r.models and not r.draining]
        capacity = sum(r.capacity for r in live)
        busy = max(self.depth or 0, sum(r.in_flight for r in live), in_flight)
        adapter = hint.lora.engine_name if hint.lora is not None else None
        return RouteView(
            load=busy / capacity if capacity else math.inf,
            adapter_hit=adapter is not None and any(adapter in r.adapters for r in live),
            prefix_hit=hint.prefix is not None and any(hint.prefix in r.prefix_hashes for r in live),
        )

    async def _target(self, adapter: str | None, prefix: str) -> str | None:
        if self._cfg.routing == "pull":
            return None
        now = time.monotonic()
        if now - self._reports_at > self._cfg.heartbeat_s / 2:
            self._reports, self._reports_at = await self._queue.workers(), now
        target = pick_worker(
            self._reports,
            self.model,
            policy=self._cfg.routing,
            adapter=adapter,
            prefix=prefix,
            load_cap=self._cfg.load_cap,
        )
        for r in self._reports:  # count it now so that requests before the next report spread out
            if r.worker_id == target:
                r.in_flight += 1
        return target

    async def _submit(self, request: BackendRequest, stream: bool) -> None:
        if self._closing:
            raise errors.OverCapacity("the gateway is shutting down; retry shortly")
        prefix = prefix_hash(request.body)
        lora = _lora_fields(getattr(request, "lora", None))
        adapter = f"{lora['tenant_id']}/{lora['name']}/{lora['id']}" if lora else None  # engine_name
        job = Job(
            request_id=request.request_id,
            model=self.model,
            endpoint=request.endpoint.value,
            body=request.body,
            stream=stream,
            prefix_hash=prefix,
            target=await self._target(adapter, prefix),
            cache_salt=getattr(request, "cache_salt", None),
            lora=lora,
        )
        try:
            await self._queue.submit(job)
        except errors.OverCapacity:
            self.rejected += 1
            raise
        self.submitted += 1

    async def _events(self, request_id: str) -> AsyncIterator[bytes]:
        """Payloads of the request from its serving worker; raises on errors, timeouts and close."""
        cursor, owner, sent = "0", None, False
        started = False
        last_seq: dict[str, int] = {}
        deadline = time.monotonic() + self._cfg.queue_timeout_s
        while True:
            if self._closing:
                msg = f"the gateway shut down while request {request_id} was "
                if sent:
                    raise WorkerLost(msg + "streaming; the partial response is not replayed")
                raise errors.OverCapacity(msg + "waiting for a worker; retry shortly")
            try:
                replies, cursor = await self._queue.read(request_id, cursor, _READ_BLOCK_S)
            except (RedisError, OSError) as read_error:
                log.warning("reading replies of %s failed (%s); retrying", request_id, read_error)
                replies = []
                await asyncio.sleep(0.2)
            if not replies and time.monotonic() > deadline:
                what = "its worker went silent" if started else "no worker picked it up"
                msg = f"request {request_id} timed out: {what}"
                raise (
                    WorkerLost(msg + "; the partial response is not replayed")
                    if sent
                    else UpstreamTimeout(msg)
                )
            for r in replies:
                if r.seq and r.seq <= last_seq.get(r.worker, 0):
                    continue  # resent after a lost connection
                last_seq[r.worker] = r.seq
                deadline = time.monotonic() + self._cfg.reply_timeout_s
                if r.kind is ReplyKind.START:
                    started = True
                    if r.queue_time_s is not None and owner is None:
                        self.queue_times.append(r.queue_time_s)
                        self.queue_wait.observe(r.queue_time_s)
                        del self.queue_times[:-_QUEUE_TIMES_KEPT]
                elif r.kind is ReplyKind.ERROR and (
                    owner in (None, r.worker) or (r.error or {}).get("class") == "WorkerLost"
                ):
                    failure = error_from_reply(r)
                    if sent and not isinstance(failure, WorkerLost):
                        failure = WorkerLost(failure.message)
                    raise failure
                elif owner is not None and r.worker != owner:
                    continue  # a duplicate delivery on another worker: never shown
                elif r.kind is ReplyKind.DATA:
                    owner, sent = r.worker, True
                    yield r.data
                elif r.kind is ReplyKind.END:
                    return

    async def complete(self, request: BackendRequest) -> bytes:
        self._readers += 1
        try:
            return await self._complete(request)
        finally:
            self._readers -= 1

    async def _complete(self, request: BackendRequest) -> bytes:
        await self._submit(request, stream=False)
        done = False
        try:
            body = b""
            async for data in self._events(request.request_id):
                body = data
            done = True
            if not body:
                raise EngineError(f"request {request.request_id} ended without a response")
            return body
        finally:
            await self._end(request.request_id, done)

    async def stream(self, request: BackendRequest) -> AsyncIterator[bytes]:
        self._readers += 1
        done = False
        try:
            await self._submit(request, stream=True)
            try:
                async for data in self._events(request.request_id):
                    yield data
                done = True
            finally:
                await self._end(request.request_id, done)
        finally:
            self._readers -= 1

    async def _end(self, request_id: str, done: bool) -> None:
        try:
            if not done:
                await self._queue.cancel(request_id)
            await self._queue.finish(request_id)
        except (RedisError, OSError) as exc:
            log.warning("cleaning up %s failed: %s", request_id, exc)


def _lora_fields(lora: Any) -> dict[str, str] | None:
    """A tenant adapter (tenancy ``AdapterInfo``) as plain strings for the job."""
    if lora is None:
        return None
    fields = {k: getattr(lora, k) for k in ("id", "tenant_id", "base_model", "name", "path")}
    created = getattr(lora, "created_at", None)
    fields["created_at"] = created.isoformat() if created is not None else ""
    return {k: str(v) for k, v in fields.items()}
