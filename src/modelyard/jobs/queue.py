"""The job-queue seam, and its in-process implementation.

:class:`JobQueue` contract:

- ``enqueue(job)`` hands a job that is already recorded (state ``queued``) to whoever runs jobs of its
  kind; enqueueing a job the queue still holds (waiting or running) is a no-op, so a periodic requeue
  does not pile up copies. A job may still be delivered more than once (a reclaim, a lost
  acknowledgement); the job row decides whether a delivery is run
  (:meth:`~modelyard.jobs.store.JobStore.claim`), so duplicates are harmless. It never runs the job
  inline and returns quickly.
- ``start()`` begins consuming where this process runs jobs (in process); ``close()`` stops consumers
  (running handlers are cancelled and their rows go stale, to be reclaimed) and releases connections.
- Nothing about state lives only in the queue: if the queue loses a delivery, the periodic
  ``jobs.requeue`` task finds the job still ``queued`` in the store and enqueues it again.

Two implementations, chosen by ``queue.backend``: :class:`InProcessJobQueue` (``local``, an asyncio
runner inside ``serve`` with ``jobs.concurrency`` slots) and
:class:`~modelyard.jobs.redis_queue.RedisJobQueue` (``redis``: Redis Streams consumed by
``modelyard worker --jobs KIND``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from modelyard.aio import STOP_BOUND_S, cancel_and_wait
from modelyard.jobs.records import JobInfo, JobKind
from modelyard.jobs.runner import RunnerConfig, run_job
from modelyard.jobs.store import JobStore

log = logging.getLogger("modelyard.jobs")


class JobQueue(Protocol):
    """Delivers recorded jobs to their runners (module docstring)."""

    async def start(self) -> None: ...

    async def enqueue(self, job: JobInfo) -> None: ...

    async def close(self) -> None: ...


class InProcessJobQueue:
    """``concurrency`` asyncio runners in this process, fed by an in-memory queue of job ids."""

    def __init__(
        self,
        store: JobStore,
        kinds: Mapping[str, JobKind],
        cfg: RunnerConfig,
        *,
        concurrency: int,
        worker_id: str,
    ) -> None:
        self._store, self._kinds, self._cfg = store, kinds, cfg
        self._concurrency, self.worker_id = concurrency, worker_id
        self._ids: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()  # queued or running here: a requeue of one of them is dropped
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for i in range(self._concurrency):
            self._tasks.append(asyncio.create_task(self._consume(), name=f"jobs-runner-{i}"))

    async def enqueue(self, job: JobInfo) -> None:
        if job.id not in self._pending:
            self._pending.add(job.id)
            self._ids.put_nowait(job.id)

    async def _consume(self) -> None:
        while True:
            job_id = await self._ids.get()
            try:
                await run_job(self._store, self._kinds, job_id, self.worker_id, self._cfg)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("running job %s failed", job_id)
            finally:
                self._pending.discard(job_id)

    async def close(self) -> None:
        await cancel_and_wait(self._tasks, STOP_BOUND_S, what="job runners")
        self._tasks.clear()
