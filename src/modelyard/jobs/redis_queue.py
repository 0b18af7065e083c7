"""The Redis Streams :class:`~modelyard.jobs.queue.JobQueue`: gateways enqueue, ``modelyard worker
--jobs KIND`` consumes.

Keys (under ``queue.key_prefix``): ``{prefix}:jobs:{kind}``, one stream per job kind with the consumer
group ``jobs``; an entry is ``{"job": id}``. ``{prefix}:jobs:{kind}:ids``, the set of job ids with an
entry in the stream (added with the entry, removed with it), so a requeue only re-adds a job whose
entry is gone (Redis lost it, or the ``XADD`` failed) and the stream's lag stays the true backlog. A consumer reads new entries with ``XREADGROUP`` while it
has a free slot, and every ``heartbeat_s`` re-``XCLAIM``\\ s the entries it is running, which resets
their idle time. An entry idle longer than ``visibility_timeout_s`` belongs to a dead worker: live
workers take it with ``XAUTOCLAIM`` and the job row's stale heartbeat lets them claim the job (the row,
not the stream, is the source of truth). An entry is ``XACK``\\ ed and ``XDEL``\\ ed once its job is
finished or is not to be run; an entry whose job is still running under another live worker is left
pending (that worker acknowledges it when done).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from modelyard.aio import STOP_BOUND_S, cancel_and_wait
from modelyard.jobs.records import JobInfo, JobKind, JobState
from modelyard.jobs.runner import RunnerConfig, run_job
from modelyard.jobs.store import JobStore

log = logging.getLogger("modelyard.jobs")

GROUP = "jobs"
_READ_BLOCK_MS = 1000


def stream_key(prefix: str, kind: str) -> str:
    return f"{prefix}:jobs:{kind}"


def ids_key(stream: str) -> str:
    return f"{stream}:ids"


# XADD only if the job has no entry yet; KEYS: stream, ids set; ARGV: job id. Returns 1 if added.
_ENQUEUE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[1], '*', 'job', ARGV[1])
  return 1
end
return 0
"""


class RedisJobQueue:
    """The producer side, used by gateways: ``enqueue`` is one ``XADD``; nothing runs here."""

    def __init__(self, url: str, *, key_prefix: str) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self._prefix = key_prefix

    async def start(self) -> None:
        return None

    async def enqueue(self, job: JobInfo) -> None:
        stream = stream_key(self._prefix, job.kind)
        await self._redis.eval(_ENQUEUE, 2, stream, ids_key(stream), job.id)  # type: ignore[misc]

    async def close(self) -> None:
        await self._redis.aclose()


class RedisJobConsumer:
    """Runs jobs of ``kinds`` from their streams, ``concurrency`` at a time (module docstring).

    Redis errors never end it: it logs, waits a heartbeat and retries, recreating the consumer groups
    when Redis lost them (a restart without persistence); ``jobs.requeue`` re-adds the lost entries.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        store: JobStore,
        kinds: Mapping[str, JobKind],
        cfg: RunnerConfig,
        concurrency: int,
        worker_id: str,
    ) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self._store, self._kinds, self._cfg = store, kinds, cfg
        self._streams = {stream_key(key_prefix, k): k for k in kinds}
        self._slots = asyncio.Semaphore(concurrency)
        self.worker_id = worker_id
        self._running: dict[tuple[str, bytes], asyncio.Task[None]] = {}
        self.ready = False  # consumer groups exist and the loop is reading
        self.finished: dict[tuple[str, str], int] = {}  # (kind, final state) -> jobs run here

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        """Consume until cancelled; running handlers are cancelled with it (their entries stay pending)."""
        keepalive = asyncio.create_task(self._keepalive(), name="jobs-keepalive")
        groups_ready = False
        try:
            while True:
                await self._slots.acquire()
                try:
                    if not groups_ready:
                        await self._create_groups()
                        groups_ready = self.ready = True
                    entry = await self._next()
                except (RedisError, OSError) as exc:  # Redis down or restarted: retry, never exit
                    self._slots.release()
                    groups_ready = groups_ready and "NOGROUP" not in str(exc)
                    log.warning("reading job streams failed (%s); retrying", exc)
                    await asyncio.sleep(self._cfg.heartbeat_s)
                    continue
                if entry is None:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._run_entry(*entry), name=f"job-entry-{entry[2]}")
                self._running[(entry[0], entry[1])] = task
        finally:
            self.ready = False
            await cancel_and_wait([keepalive, *self._running.values()], STOP_BOUND_S, what="job worker tasks")
            await self._redis.aclose()

    async def _create_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _next(self) -> tuple[str, bytes, str] | None:
        """(stream, entry id, job id): a dead worker's entry first, else a new one (blocking a while)."""
        idle_ms = int(self._cfg.visibility_timeout_s * 1000)
        for stream in self._streams:
            answer: Any = await self._redis.xautoclaim(
                stream, GROUP, self.worker_id, min_idle_time=idle_ms, start_id="0-0", count=1
            )
            for entry_id, fields in answer[1]:
                if fields:  # an entry deleted while pending comes back without fields
                    log.info("reclaimed job entry %s of %s", entry_id, stream)
                    return stream, entry_id, fields[b"job"].decode()
                await self._done(stream, entry_id, None)
        reply: Any = await self._redis.xreadgroup(
            GROUP, self.worker_id, {s: ">" for s in self._streams}, count=1, block=_READ_BLOCK_MS
        )
        for stream_name, entries in reply or []:
            for entry_id, fields in entries:
                stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
                return stream, entry_id, fields[b"job"].decode()
        return None

    async def _run_entry(self, stream: str, entry_id: bytes, job_id: str) -> None:
        try:
            final = await run_job(self._store, self._kinds, job_id, self.worker_id, self._cfg)
            if final is not None:
                key = (final.kind, final.state.value)
                self.finished[key] = self.finished.get(key, 0) + 1
            job = await anyio.to_thread.run_sync(self._store.get, job_id)
            if job.state is not JobState.RUNNING or job.worker_id == self.worker_id:
                await self._done(stream, entry_id, job_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: runner failed; its entry stays pending for a reclaim", job_id)
        finally:
            self._running.pop((stream, entry_id), None)
            self._slots.release()

    async def _done(self, stream: str, entry_id: bytes, job_id: str | None) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            if job_id is not None:
                pipe.srem(ids_key(stream), job_id)
            await pipe.execute()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.heartbeat_s)
            by_stream: dict[str, list[Any]] = {}
            for stream, entry_id in list(self._running):
                by_stream.setdefault(stream, []).append(entry_id)
            for stream, ids in by_stream.items():
                try:
                    await self._redis.xclaim(stream, GROUP, self.worker_id, 0, ids, justid=True)
                except RedisError as exc:
                    log.warning("keeping job entries alive failed: %s", exc)
