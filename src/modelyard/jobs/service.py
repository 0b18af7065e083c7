"""The job service of one process: submit, cancel, read jobs; it owns the queue and the periodic runner.

Lives in the lifespan state as ``jobs`` (``request.state.jobs``): features submit work with
``await request.state.jobs.submit(kind, payload, tenant=..., created_by=...)``. Submit records the
row (``queued``) and then enqueues it; cancel sets the row's flag (a queued job is ``cancelled`` at
once, a running one sees ``ctx.cancelled`` within a heartbeat). The row is the source of truth: if
the enqueue is lost, the periodic ``jobs.requeue`` task enqueues the job again.

Built-in periodic tasks: ``jobs.requeue`` (enqueue jobs that nobody is working on: queued for longer
than the visibility timeout, or running with a stale heartbeat) and ``jobs.prune`` (delete finished
jobs older than ``jobs.retention_days``).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from modelyard.errors import ConfigError, InvalidRequest
from modelyard.jobs.periodic import PeriodicRunner, PeriodicTask, lease_for
from modelyard.jobs.queue import InProcessJobQueue, JobQueue
from modelyard.jobs.records import JobInfo, JobKind, JobState
from modelyard.jobs.runner import RunnerConfig
from modelyard.jobs.store import JobStore
from modelyard.settings import Settings

log = logging.getLogger("modelyard.jobs")

REQUEUE_EVERY_S = 10.0
PRUNE_EVERY_S = 3600.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def load_kinds(settings: Settings, kinds: list[JobKind]) -> dict[str, JobKind]:
    """``kinds`` plus the ``jobs.kinds`` entries (``module:attribute`` → a JobKind or a list of them)."""
    out: dict[str, JobKind] = {}
    extra: list[JobKind] = []
    for path in settings.jobs.kinds:
        module, _, attr = path.partition(":")
        try:
            value = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"jobs.kinds entry {path!r} cannot be loaded ({exc}); use module:attribute"
            ) from None
        extra.extend(value if isinstance(value, list | tuple) else [value])
    for kind in [*kinds, *extra]:
        if not isinstance(kind, JobKind):
            raise ConfigError(f"job kind {kind!r} is not a JobKind")
        if kind.name in out:
            raise ConfigError(f"job kind `{kind.name}` is defined twice")
        out[kind.name] = kind
    return out


def runner_config(settings: Settings) -> RunnerConfig:
    j = settings.jobs
    return RunnerConfig(j.heartbeat_s, j.visibility_timeout_s, j.max_attempts)


def build_queue(settings: Settings, store: JobStore, kinds: dict[str, JobKind], worker_id: str) -> JobQueue:
    """The queue of ``queue.backend``: in process (jobs run here) or Redis Streams (workers run them)."""
    if settings.queue.backend == "redis":
        from modelyard.jobs.redis_queue import RedisJobQueue

        return RedisJobQueue(settings.queue.redis_url, key_prefix=settings.queue.key_prefix)
    return InProcessJobQueue(
        store, kinds, runner_config(settings), concurrency=settings.jobs.concurrency, worker_id=worker_id
    )


@dataclass(slots=True)
class JobService:
    """Submit, cancel and read jobs (module docstring); ``kinds`` are the kinds that may be submitted."""

    settings: Settings
    store: JobStore
    queue: JobQueue
    kinds: dict[str, JobKind]
    periodic: PeriodicRunner | None = None
    extra_closers: list[Any] = field(default_factory=list)

    async def submit(
        self, kind: str, payload: dict[str, Any], *, tenant: str | None, created_by: str
    ) -> JobInfo:
        if kind not in self.kinds:
            raise InvalidRequest(f"unknown job kind `{kind}`; known: {sorted(self.kinds)}", param="kind")
        job = await anyio.to_thread.run_sync(
            lambda: self.store.create(kind, payload, tenant=tenant, created_by=created_by)
        )
        try:
            await self.queue.enqueue(job)
        except Exception as exc:  # the row is recorded: jobs.requeue delivers it later
            log.warning("enqueueing job %s failed (%s); it is requeued later", job.id, exc)
        return job

    async def get(self, job_id: str) -> JobInfo:
        return await anyio.to_thread.run_sync(self.store.get, job_id)

    async def list_jobs(
        self,
        tenant: str | None,
        *,
        every_tenant: bool = False,
        state: JobState | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[JobInfo]:
        return await anyio.to_thread.run_sync(
            lambda: self.store.list_jobs(
                tenant, every_tenant=every_tenant, state=state, kind=kind, limit=limit
            )
        )

    async def cancel(self, job_id: str) -> JobInfo:
        return await anyio.to_thread.run_sync(self.store.request_cancel, job_id)

    async def requeue(self, _token: int = 0, *, every_queued: bool = False) -> int:
        """Enqueue again every job nobody works on (the ``jobs.requeue`` task); returns how many.

        ``every_queued`` also takes jobs queued just now (at start-up, when this process's queue is empty).
        """
        cfg = runner_config(self.settings)
        queued_before = datetime.now(UTC) - timedelta(seconds=0 if every_queued else cfg.visibility_timeout_s)
        jobs = await anyio.to_thread.run_sync(
            lambda: self.store.pending(
                list(self.kinds), queued_before=queued_before, stale_before=cfg.stale_before()
            )
        )
        for job in jobs:
            await self.queue.enqueue(job)
        return len(jobs)

    async def prune(self, _token: int = 0) -> None:
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.jobs.retention_days)
        n = await anyio.to_thread.run_sync(self.store.prune, cutoff)
        if n:
            log.info("deleted %d finished jobs older than %s", n, cutoff.isoformat())

    def tasks(self) -> list[PeriodicTask]:
        async def requeue(token: int) -> None:
            await self.requeue(token)

        return [
            PeriodicTask("jobs.requeue", REQUEUE_EVERY_S, requeue, "enqueue jobs that nobody works on"),
            PeriodicTask("jobs.prune", PRUNE_EVERY_S, self.prune, "delete old finished jobs"),
        ]

    async def stop(self) -> None:
        if self.periodic is not None:
            await self.periodic.stop()
        await self.queue.close()
        self.store.close()


def build_jobs(settings: Settings, kinds: list[JobKind]) -> JobService:
    """The job service of ``settings`` with nothing started (what ``modelyard tasks`` uses)."""
    store = JobStore(settings.resolved_database_url)
    known = load_kinds(settings, kinds)
    return JobService(settings, store, build_queue(settings, store, known, default_worker_id()), known)


async def start_jobs(
    settings: Settings,
    kinds: list[JobKind],
    tasks: list[PeriodicTask] | None = None,
    *,
    run_periodic: bool | None = None,
) -> JobService:
    """Build and start the job service of ``serve``: migrate, start the queue, adopt jobs left over from
    an earlier run (in process), start the periodic runner with the built-in tasks plus ``tasks``."""
    service = build_jobs(settings, kinds)
    await anyio.to_thread.run_sync(service.store.migrate)
    await service.queue.start()
    if settings.queue.backend != "redis":
        await service.requeue(every_queued=True)  # ours from a previous life; claims keep others' safe
    if settings.jobs.periodic if run_periodic is None else run_periodic:
        service.periodic = PeriodicRunner([*service.tasks(), *(tasks or [])], lease_for(settings))
        service.periodic.start()
    return service
