"""The in-process :class:`~modelyard.queue.base.WorkQueue`: the same contract as Redis Streams, in memory.

Gateway and workers share one event loop; it exists so that one set of tests (and the queue
benchmark's baseline) drives the worker and the queued backend without a Redis server.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from modelyard.queue.base import Delivery, Job, QueueFull, Reply, WorkerReport


@dataclass(slots=True)
class _Entry:
    job: Job
    key: str
    owner: str | None = None
    touched: float = 0.0


class InProcessQueue:
    """See :class:`~modelyard.queue.base.WorkQueue`; limits as in the Redis implementation."""

    def __init__(
        self, *, max_queued: int = 256, retry_after_s: float = 1.0, worker_ttl_s: float = 10.0
    ) -> None:
        self.max_queued = max_queued
        self.retry_after_s = retry_after_s
        self.worker_ttl_s = worker_ttl_s
        self._ids = itertools.count(1)
        self._entries: dict[str, _Entry] = {}
        self._new = asyncio.Condition()
        self._replies: dict[str, list[Reply]] = {}
        self._reply_cond = asyncio.Condition()
        self._started: dict[str, str] = {}
        self._cancelled: set[str] = set()
        self._reports: dict[str, WorkerReport] = {}

    @staticmethod
    def _key(model: str, worker: str | None = None) -> str:
        return model + (f"@{worker}" if worker else "")

    async def submit(self, job: Job) -> None:
        depth = await self.depth(job.model)
        if depth >= self.max_queued:
            raise QueueFull(
                f"the queue of model `{job.model}` is full ({depth} requests waiting or running); "
                f"retry after {self.retry_after_s:g}s",
                retry_after_s=self.retry_after_s,
            )
        self._entries[str(next(self._ids))] = _Entry(job, self._key(job.model, job.target))
        async with self._new:
            self._new.notify_all()

    async def read(self, request_id: str, cursor: str, block_s: float) -> tuple[list[Reply], str]:
        start = int(cursor)

        def ready() -> bool:
            return len(self._replies.get(request_id, ())) > start

        async with self._reply_cond:
            try:
                await asyncio.wait_for(self._reply_cond.wait_for(ready), block_s)
            except TimeoutError:
                return [], cursor
        log = self._replies[request_id]
        return log[start:], str(len(log))

    async def cancel(self, request_id: str) -> None:
        self._cancelled.add(request_id)

    async def finish(self, request_id: str) -> None:
        self._replies.pop(request_id, None)

    async def depth(self, model: str) -> int:
        return sum(1 for e in self._entries.values() if e.job.model == model)

    async def workers(self) -> list[WorkerReport]:
        now = time.time()
        return [r for r in self._reports.values() if now - r.updated_at < self.worker_ttl_s]

    async def take(self, worker_id: str, models: Sequence[str], count: int, block_s: float) -> list[Delivery]:
        keys = {self._key(m) for m in models} | {self._key(m, worker_id) for m in models}

        def free() -> list[str]:
            return [i for i, e in self._entries.items() if e.owner is None and e.key in keys][:count]

        async with self._new:
            try:
                await asyncio.wait_for(self._new.wait_for(lambda: bool(free())), block_s)
            except TimeoutError:
                return []
            ids = free()
        now = time.monotonic()
        for i in ids:
            self._entries[i].owner, self._entries[i].touched = worker_id, now
        return [Delivery(self._entries[i].job, i) for i in ids]

    async def claim_stale(
        self, worker_id: str, models: Sequence[str], min_idle_s: float, count: int
    ) -> list[Delivery]:
        now = time.monotonic()
        alive = {r.worker_id for r in await self.workers()}
        out: list[Delivery] = []
        for i, e in self._entries.items():
            if len(out) >= count or e.job.model not in models:
                continue
            stale = (
                e.owner is not None and now - e.touched >= min_idle_s
            )  # own idle entries too, as XAUTOCLAIM
            orphan = e.owner is None and e.job.target not in (None, worker_id) and e.job.target not in alive
            if stale or orphan:
                e.owner, e.touched = worker_id, now
                out.append(Delivery(e.job, i, claimed=True))
        return out

    async def touch(self, worker_id: str, deliveries: Sequence[Delivery]) -> None:
        now = time.monotonic()
        for d in deliveries:
            e = self._entries.get(d.entry)
            if e is not None and e.owner == worker_id:
                e.touched = now

    async def ack(self, delivery: Delivery) -> None:
        # Markers live until the job is done (Redis lets them expire after reply_ttl_s instead).
        self._entries.pop(delivery.entry, None)
        self._started.pop(delivery.job.request_id, None)
        self._cancelled.discard(delivery.job.request_id)

    async def reply(self, request_id: str, reply: Reply) -> None:
        self._replies.setdefault(request_id, []).append(reply)
        async with self._reply_cond:
            self._reply_cond.notify_all()

    async def mark_started(self, request_id: str, worker_id: str) -> str | None:
        prev = self._started.setdefault(request_id, worker_id)
        return None if prev == worker_id else prev

    async def started_by(self, request_id: str) -> str | None:
        return self._started.get(request_id)

    async def cancelled(self, request_ids: Sequence[str]) -> set[str]:
        return {r for r in request_ids if r in self._cancelled}

    async def report(self, report: WorkerReport) -> None:
        report.updated_at = time.time()
        self._reports[report.worker_id] = report

    async def unregister(self, worker_id: str) -> None:
        self._reports.pop(worker_id, None)

    async def close(self) -> None:
        return None
