"""Periodic tasks with a lease: with several gateway processes, exactly one runs each task per period.

:class:`PeriodicRunner` keeps one loop per task. Each period it asks the lease (see
:mod:`modelyard.jobs.leases`) for the task's name: the holder runs the task and keeps the lease for
the next period, everyone else sleeps and asks again, so when the holder dies another process takes
over within one period (PostgreSQL: as soon as the dead connection is gone; Redis: once the lease's
TTL of :data:`LEASE_PERIODS` periods ran out). A task runs at most once per period per holder, and the
lease is renewed while a long run is in progress. A run that raises is logged; the next period runs
again.

``modelyard tasks run NAME`` runs one task once under the same lease (for a Kubernetes CronJob);
when another process holds the lease it runs nothing and says so.

:func:`lease_for` picks the lease: PostgreSQL advisory locks when the metadata store is PostgreSQL,
else a Redis lock when Redis is configured (``queue.backend: redis`` or ``tenancy.redis_url``), else
in process (``jobs.lease`` forces one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from modelyard.aio import STOP_BOUND_S, cancel_and_wait
from modelyard.errors import ConfigError
from modelyard.jobs.leases import Lease, LocalLease, PostgresLease, RedisLease
from modelyard.settings import Settings

log = logging.getLogger("modelyard.jobs")

# The Redis lease lives this many periods, so a holder keeps it between runs and a dead one loses it.
LEASE_PERIODS = 3.0
MIN_LEASE_TTL_S = 2.0


@dataclass(slots=True, frozen=True)
class PeriodicTask:
    """``fn(token)`` every ``every_s`` seconds on the lease holder; ``token`` is the lease's fencing token
    (pass it to whatever the task writes if that store can refuse stale writers)."""

    name: str
    every_s: float
    fn: Callable[[int], Awaitable[None]]
    description: str = ""


@dataclass(slots=True)
class TaskStats:
    runs: int = 0
    failures: int = 0
    tokens: list[int] = field(default_factory=list)


class PeriodicRunner:
    """Runs ``tasks`` under ``lease`` until :meth:`stop` (module docstring)."""

    def __init__(self, tasks: list[PeriodicTask], lease: Lease) -> None:
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"periodic task names must be unique, got {names}")
        self.tasks, self._lease = tasks, lease
        self.stats = {t.name: TaskStats() for t in tasks}
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for task in self.tasks:
            self._loops.append(asyncio.create_task(self._loop(task), name=f"periodic-{task.name}"))

    async def stop(self) -> None:
        await cancel_and_wait(self._loops, STOP_BOUND_S, what="periodic task loops")
        self._loops.clear()
        await self._lease.close()

    async def run_once(self, name: str) -> bool:
        """Run task ``name`` once if its lease is free (then released); ``False`` if another holds it."""
        task = next((t for t in self.tasks if t.name == name), None)
        if task is None:
            raise ConfigError(f"no periodic task `{name}`; known: {sorted(t.name for t in self.tasks)}")
        token = await self._lease.acquire(name, _ttl(task))
        if token is None:
            return False
        try:
            await self._run(task, token)
        finally:
            await self._lease.release(name, token)
        return True

    async def _loop(self, task: PeriodicTask) -> None:
        while True:
            try:
                token = await self._lease.acquire(task.name, _ttl(task))
            except Exception as exc:  # the lease store is down: nobody runs until it is back
                log.warning("lease for %s unavailable: %s", task.name, exc)
                token = None
            if token is not None:
                await self._run(task, token)
            await asyncio.sleep(task.every_s)

    async def _run(self, task: PeriodicTask, token: int) -> None:
        stats = self.stats[task.name]
        renewer = asyncio.create_task(self._renew(task, token))
        try:
            await task.fn(token)
            stats.runs += 1
            stats.tokens.append(token)
            del stats.tokens[:-16]
        except Exception:
            stats.failures += 1
            log.exception("periodic task %s failed", task.name)
        finally:
            await cancel_and_wait([renewer], STOP_BOUND_S, what=f"lease renewer of {task.name}")

    async def _renew(self, task: PeriodicTask, token: int) -> None:
        ttl = _ttl(task)
        while True:
            await asyncio.sleep(ttl / 3)
            if not await self._lease.renew(task.name, token, ttl):
                log.warning("lease of %s lost during a run", task.name)
                return


def _ttl(task: PeriodicTask) -> float:
    return max(task.every_s * LEASE_PERIODS, MIN_LEASE_TTL_S)


def lease_for(settings: Settings) -> Lease:
    """The lease of ``settings`` (module docstring)."""
    choice = settings.jobs.lease
    is_pg = make_url(settings.resolved_database_url).get_backend_name() == "postgresql"
    redis_url = settings.queue.redis_url if settings.queue.backend == "redis" else settings.tenancy.redis_url
    if choice == "auto":
        choice = "postgres" if is_pg else ("redis" if redis_url else "local")
    if choice == "postgres":
        if not is_pg:
            raise ConfigError("jobs.lease=postgres needs a PostgreSQL database_url")
        return PostgresLease(settings.resolved_database_url)
    if choice == "redis":
        if not redis_url:
            raise ConfigError("jobs.lease=redis needs queue.backend=redis or tenancy.redis_url")
        return RedisLease(redis_url, key_prefix=settings.queue.key_prefix)
    return LocalLease()
