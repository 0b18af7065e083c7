"""``modelyard worker``: serve queued requests of local models on the built-in engine.

One process loads the configured local models (the same :class:`LocalBackend` as the embedded
server, so the bytes a client sees are the same on both paths) and runs four loops:

- **take**: while it has free slots and is not draining, take jobs of its models and serve each in
  its own task: a ``start`` event (with the queue time), the SSE payloads (or the whole body) as
  ``data`` events, then ``end`` or ``error``; then acknowledge the job.
- **heartbeat** (every ``heartbeat_s``): publish the load report (running / waiting requests, KV
  usage, adapters, recent prompt-prefix hashes, draining), keep in-flight jobs alive, unload the
  adapters a tenant deleted (see :mod:`modelyard.queue.retired`), and claim jobs that a dead
  worker left idle for ``claim_idle_s``. A claimed job whose output had already
  reached the client is not replayed: it is ended with an in-band error.
- **cancel poll** (every ``cancel_poll_s``): requests whose gateway cancelled them are stopped,
  which aborts their engine requests and frees their KV blocks.
- **drain**: on SIGTERM/SIGINT the worker stops taking jobs, finishes those in flight (up to
  ``drain_timeout_s``), unregisters and exits 0, so a scale-in never kills a request. ``run`` returns
  within ``drain_timeout_s + STOP_BOUND_S`` plus the take in progress (one queue operation, or a retry
  backoff of at most 2 s) plus the final unregister (one queue operation): jobs still running at the
  drain deadline and the loops are stopped with :func:`modelyard.aio.cancel_and_wait`, which re-sends
  a cancel that Python 3.11 can lose.

Redis errors never end the process: each loop logs and retries with backoff, so a restarted Redis
is picked up again (consumer groups are recreated on the next take).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from modelyard.aio import cancel_and_wait
from modelyard.errors import InvalidRequest, ModelyardError
from modelyard.gateway.backends.base import Backend, BackendRequest, Endpoint
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest
from modelyard.queue.base import (
    Delivery,
    QueueWaitHistogram,
    Reply,
    ReplyKind,
    WorkerLost,
    WorkerReport,
    WorkQueue,
)
from modelyard.queue.retired import RetiredAdapters
from modelyard.settings import QueueSettings

log = logging.getLogger("modelyard.worker")

_PREFIXES_KEPT = 256
JOBS_STOP_S = 3.0  # jobs still running at the drain deadline end (in-band error) within this
LOOPS_STOP_S = 2.0  # the heartbeat and cancel loops end within this
STOP_BOUND_S = JOBS_STOP_S + LOOPS_STOP_S
_QUEUE_ERRORS = (RedisError, OSError)


class Worker:
    """Serves the jobs of ``backends`` (model name -> started backend) from ``queue``."""

    def __init__(
        self,
        queue: WorkQueue,
        backends: dict[str, Backend],
        settings: QueueSettings,
        *,
        worker_id: str | None = None,
        drain_timeout_s: float = 30.0,
        retired: RetiredAdapters | None = None,
    ) -> None:
        self.queue = queue
        self.retired = retired
        self.backends = backends
        self.cfg = settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.drain_timeout_s = drain_timeout_s
        self.draining = False
        self.served = 0
        self.queue_wait = QueueWaitHistogram()
        self._tasks: dict[str, tuple[asyncio.Task[None], Delivery]] = {}
        self._prefixes: deque[str] = deque(maxlen=_PREFIXES_KEPT)
        self._closing = False  # the heartbeat and cancel loops end at their next turn

    @property
    def in_flight(self) -> int:
        """Jobs this worker is serving now."""
        return len(self._tasks)

    # ---- lifecycle ------------------------------------------------------------------------------
    def drain(self) -> None:
        """Stop taking jobs; ``run`` returns once in-flight jobs are done."""
        if not self.draining:
            log.info("worker %s draining (%d in flight)", self.worker_id, len(self._tasks))
        self.draining = True

    async def run(self) -> None:
        """Serve until :meth:`drain` is called and in-flight work has finished (or timed out)."""
        await self._retry(self._report)
        loops = [
            asyncio.create_task(self._heartbeat_loop(), name="worker-heartbeat"),
            asyncio.create_task(self._cancel_loop(), name="worker-cancel"),
        ]
        try:
            await self._take_loop()
            deadline = time.monotonic() + self.drain_timeout_s
            while self._tasks and time.monotonic() < deadline:
                await asyncio.wait([t for t, _ in self._tasks.values()], timeout=deadline - time.monotonic())
            await cancel_and_wait(
                [t for t, _ in self._tasks.values()], JOBS_STOP_S, what=f"jobs of worker {self.worker_id}"
            )
        finally:
            self._closing = True
            await cancel_and_wait(loops, LOOPS_STOP_S, what=f"loops of worker {self.worker_id}")
            with contextlib.suppress(*_QUEUE_ERRORS):
                await self.queue.unregister(self.worker_id)

    async def _retry(self, fn: Any) -> None:
        delay = 0.1
        while True:
            try:
                await fn()
                return
            except _QUEUE_ERRORS as exc:
                log.warning("queue unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # ---- loops ----------------------------------------------------------------------------------
    async def _take_loop(self) -> None:
        models = list(self.backends)
        delay = 0.1
        while not self.draining:
            free = self.cfg.worker_max_in_flight - len(self._tasks)
            if free <= 0:
                await asyncio.sleep(0.01)
                continue
            try:
                got = await self.queue.take(self.worker_id, models, free, block_s=0.5)
                delay = 0.1
            except _QUEUE_ERRORS as exc:
                log.warning("take failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            for d in got:
                self._spawn(d)

    async def _heartbeat_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.cfg.heartbeat_s)
            try:
                await self._unload_retired()
                await self._report()
                await self.queue.touch(self.worker_id, [d for _, d in self._tasks.values()])
                free = self.cfg.worker_max_in_flight - len(self._tasks)
                if not self.draining and free > 0:
                    stale = await self.queue.claim_stale(
                        self.worker_id, list(self.backends), self.cfg.claim_idle_s, free
                    )
                    for d in stale:
                        log.warning("claimed request %s from a dead worker", d.job.request_id)
                        self._spawn(d)
            except _QUEUE_ERRORS as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _cancel_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.cfg.cancel_poll_s)
            if not self._tasks:
                continue
            try:
                gone = await self.queue.cancelled(list(self._tasks))
            except _QUEUE_ERRORS:
                continue
            for rid in gone:
                entry = self._tasks.get(rid)
                if entry is not None:
                    log.info("request %s cancelled by its gateway", rid)
                    entry[0].cancel()

    async def _unload_retired(self) -> None:
        """Unload the loaded adapters that their tenant deleted (one Redis round trip)."""
        if self.retired is None:
            return
        loaded = {
            name: backend
            for backend in self.backends.values()
            if hasattr(backend, "retire_adapter")
            for name in backend.loaded_adapters()  # type: ignore[attr-defined]
        }
        for name in await self.retired.retired(list(loaded)):
            log.info("unloading deleted adapter %s", name)
            try:
                await loaded[name].retire_adapter(name)  # type: ignore[attr-defined]
            except Exception:  # an engine error must not stop the heartbeat
                log.exception("unloading deleted adapter %s failed", name)

    async def _report(self) -> None:
        running = waiting = 0
        kv = 0.0
        adapters: list[str] = []
        for backend in self.backends.values():
            s = backend.stats()
            running += int(s.get("num_running", 0))
            waiting += int(s.get("num_waiting", 0))
            kv = max(kv, float(s.get("kv_cache_usage", 0.0)))
            engine = getattr(backend, "_engine", None)
            if engine is not None:
                adapters.extend(engine.lora_names())
        await self.queue.report(
            WorkerReport(
                worker_id=self.worker_id,
                models=list(self.backends),
                running=running,
                waiting=waiting,
                in_flight=len(self._tasks),
                capacity=self.cfg.worker_max_in_flight,
                served=self.served,
                kv_cache_usage=kv,
                adapters=adapters,
                prefix_hashes=list(self._prefixes),
                draining=self.draining,
            )
        )

    # ---- one job --------------------------------------------------------------------------------
    def _spawn(self, d: Delivery) -> None:
        rid = d.job.request_id
        if rid in self._tasks:  # already serving it (a duplicate delivery to the same worker)
            asyncio.create_task(self.queue.ack(d))
            return
        task = asyncio.create_task(self._serve(d), name=f"job-{rid}")
        self._tasks[rid] = (task, d)
        task.add_done_callback(lambda _t: self._tasks.pop(rid, None))

    async def _serve(self, d: Delivery) -> None:
        job, rid, me = d.job, d.job.request_id, self.worker_id
        send = _Sender(self.queue, rid, me)
        ack = True
        try:
            if await self.queue.cancelled([rid]):
                return
            if d.claimed:
                owner = await self.queue.started_by(rid)
                if owner is not None and owner != me and owner in await self._live_workers():
                    ack = False  # the owner was only slow to heartbeat and is still streaming: leave it
                    return
                if owner is not None:  # its output reached the client: end it, never replay it
                    await send.error(
                        WorkerLost(f"worker {owner} stopped while streaming {rid}; {_NO_REPLAY}")
                    )
                    return
            waited = max(0.0, time.time() - job.enqueued_at)
            self.queue_wait.observe(waited)
            await send(ReplyKind.START, queue_time_s=waited)
            if job.prefix_hash:
                self._prefixes.append(job.prefix_hash)
            if await self._generate(d, send):
                self.served += 1
        except asyncio.CancelledError:
            # Cancelled by its gateway (nobody listens), or the drain timed out: say so in-band.
            if self.draining:
                await send.error(WorkerLost(f"worker {me} shut down while serving {rid}; {_NO_REPLAY}"))
        except ModelyardError as exc:
            await send.error(exc)
        except _QUEUE_ERRORS:
            # Not acknowledged: the job stays pending and is claimed again after claim_idle_s (by any
            # worker, this one included), then re-run if nothing was sent or ended in-band if it was.
            log.exception("request %s lost its queue connection; left for a later claim", rid)
            ack = False
        except Exception as exc:
            log.exception("request %s failed", rid)
            await send.error(exc)
        finally:
            if ack:
                with contextlib.suppress(*_QUEUE_ERRORS):
                    await self.queue.ack(d)

    async def _live_workers(self) -> set[str]:
        return {r.worker_id for r in await self.queue.workers()}

    async def _generate(self, d: Delivery, send: _Sender) -> bool:
        """Serve the job; False when another worker's copy of it is the one the client sees."""
        job, me = d.job, self.worker_id
        backend = self.backends.get(job.model)
        if backend is None:
            raise InvalidRequest(f"worker {me} does not serve model `{job.model}`", param="model")
        endpoint = Endpoint(job.endpoint)
        parsed = (ChatCompletionRequest if endpoint is Endpoint.CHAT else CompletionRequest).model_validate(
            job.body
        )
        req = BackendRequest(endpoint, job.body, parsed, job.request_id, job.model)
        req.cache_salt = job.cache_salt
        if job.lora is not None:
            from modelyard.tenancy.records import AdapterInfo

            fields = dict(job.lora)
            created = datetime.fromisoformat(fields.pop("created_at")) if job.lora.get("created_at") else None
            req.lora = AdapterInfo(**fields, created_at=created)  # type: ignore[arg-type]
        if not job.stream:
            body = await backend.complete(req)
            if await self.queue.mark_started(job.request_id, me) is not None:
                return False  # another worker answered this request already
            await send(ReplyKind.DATA, data=body)
        else:
            first = True
            async with contextlib.aclosing(backend.stream(req)) as payloads:  # type: ignore[type-var]
                async for payload in payloads:
                    if first:
                        if await self.queue.mark_started(job.request_id, me) is not None:
                            return False  # a live duplicate delivery is already streaming it
                        first = False
                    await send(ReplyKind.DATA, data=payload)
        await send(ReplyKind.END)
        return True


_NO_REPLAY = "the partial response is not replayed"


class _Sender:
    """Numbers one serving attempt's reply events (``seq``) so the gateway drops resent duplicates."""

    def __init__(self, queue: WorkQueue, request_id: str, worker_id: str) -> None:
        self.queue, self.rid, self.worker = queue, request_id, worker_id
        self.seq = 0

    async def __call__(self, kind: ReplyKind, **fields: Any) -> None:
        self.seq += 1
        await self.queue.reply(self.rid, Reply(kind, self.worker, seq=self.seq, **fields))

    async def error(self, exc: BaseException) -> None:
        if isinstance(exc, ModelyardError):
            info = {"class": type(exc).__name__, "message": exc.message, "param": exc.param, "code": exc.code}
        else:
            info = {"class": "EngineError", "message": f"the worker failed: {type(exc).__name__}"}
        with contextlib.suppress(*_QUEUE_ERRORS):
            await self(ReplyKind.ERROR, error=info)


async def serve_worker(
    settings: Any,
    worker_id: str | None,
    models: list[str] | None,
    ready_file: Path | None,
    http_port: int | None = None,
) -> None:
    """Load the local models (all, or those in ``models``), then serve until SIGTERM/SIGINT.

    ``http_port`` starts ``/health``, ``/ready`` and ``/metrics`` (see ``worker_http``) on all interfaces.
    """
    from modelyard.gateway.backends.local import LocalBackend
    from modelyard.queue.factory import redis_queue

    q = settings.queue
    chosen = [m for m in settings.local_models if not models or m.name in models]
    if models and len(chosen) != len(models):
        known = [m.name for m in settings.local_models]
        raise InvalidRequest(f"--model {models} names models that are not in local_models {known}")
    queue = redis_queue(q)
    backends: dict[str, Backend] = {}
    holder: dict[str, Worker] = {}
    server = None
    if http_port is not None:
        from modelyard.queue.worker_http import render_metrics, serve_http

        def ready() -> bool:
            w = holder.get("worker")
            return w is not None and not w.draining

        def metrics() -> bytes:
            w = holder.get("worker")
            stats = {name: b.stats() for name, b in backends.items()}
            wid = w.worker_id if w else (worker_id or "")
            return render_metrics(
                wid, stats, w.in_flight if w else 0, w.served if w else 0, w.queue_wait if w else None
            )

        server = await serve_http("0.0.0.0", http_port, ready=ready, metrics=metrics)
    for m in chosen:
        backend: Backend = LocalBackend(m, settings)
        await backend.start()
        backends[m.name] = backend
        log.info("worker loaded %s", m.name)
    retired = RetiredAdapters.from_url(
        q.redis_url,
        q.key_prefix,
        socket_timeout=q.redis_socket_timeout_s,
        socket_connect_timeout=q.redis_connect_timeout_s,
    )
    worker = Worker(
        queue, backends, q, worker_id=worker_id, drain_timeout_s=settings.drain_timeout_s, retired=retired
    )
    holder["worker"] = worker
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.drain)
    if ready_file is not None:
        ready_file.write_text(worker.worker_id)
    log.info("worker %s serving %s", worker.worker_id, list(backends))
    try:
        await worker.run()
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
        if server is not None:
            server.close()
        for backend in backends.values():
            await backend.close()
        await retired.close()
        await queue.close()
        log.info("worker %s stopped after %d requests", worker.worker_id, worker.served)
