"""The Redis Streams :class:`~modelyard.queue.base.WorkQueue`.

Keys (all under ``key_prefix``):

- ``work:{model}``: the shared stream of a model, consumer group ``workers``; every worker of the
  model reads it, so "least loaded" emerges by pull. ``work:{model}@{worker}``: a worker's own
  stream for jobs the router sent to it (adapter / prefix affinity); live workers adopt the own
  stream of a worker whose heartbeat expired. Entries are ``XACK``\\ ed *and* ``XDEL``\\ ed when
  done, so ``XLEN`` is exactly "queued + in flight" (the bound) and the group's ``lag`` is what the
  KEDA ``redis-streams`` trigger scales on.
- ``reply:{request_id}``: a per-request stream of :class:`Reply` events with a TTL. A stream rather
  than pub/sub because the gateway reads it with a cursor: nothing is lost while the gateway is
  between two reads or while Redis restarts under a connected reader, and events written before
  the gateway starts reading are still there.
- ``started:{request_id}`` (``SET NX GET``): the worker whose output the client sees;
  ``cancel:{request_id}``: set by a gateway whose client went away (workers poll it for their
  in-flight ids every ``cancel_poll_s``; polling keys survives a Redis restart, a pub/sub
  subscription does not); ``worker:{id}``: a worker's JSON load report with the worker TTL,
  listed in the set ``workers``.

Time bounds (a Redis that stops answering, e.g. a half-open connection or a paused server, must not
block anyone): every socket read and write times out after ``socket_timeout_s`` and every connect
after ``connect_timeout_s``; a command is retried ``retries`` times on a fresh connection (backoff up
to 0.5 s); pooled connections idle for ``HEALTH_CHECK_S`` are pinged first. Whatever redis-py nests
(its connect and health-check retries multiply), each queue operation below runs under one deadline
of ``op_timeout_s = socket_timeout_s * (retries + 1)`` (plus the ``BLOCK`` of a blocking read) and
fails with a ``redis.exceptions.TimeoutError`` past it (``submit``: ``OverCapacity``, a 503).
``BLOCK`` is clamped to ``socket_timeout_s / 2`` so a blocking read never looks like a dead socket.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from modelyard.errors import OverCapacity
from modelyard.queue.base import (
    Delivery,
    Job,
    QueueFull,
    Reply,
    WorkerReport,
    decode_job,
    decode_reply,
    decode_report,
    encode,
    encode_report,
)

GROUP = "workers"
HEALTH_CHECK_S = 5.0  # a pooled connection idle this long is pinged before its next command
_P = ParamSpec("_P")
_R = TypeVar("_R")

# Admission in one step, so concurrent gateways cannot overshoot ``max_queued``: the depth (XLEN of
# the shared stream plus every worker stream listed in the targets set) and the XADD run inside one
# script, which Redis executes without interleaving other commands. The worker streams' names are
# built in the script, so this assumes one Redis (not Redis Cluster, where keys must be declared).
# KEYS: shared stream, targets set, destination stream; ARGV: max_queued, target ('' = shared), job.
_ADMIT = """
local depth = redis.call('XLEN', KEYS[1])
for _, t in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  depth = depth + redis.call('XLEN', KEYS[1] .. '@' .. t)
end
if depth >= tonumber(ARGV[1]) then
  return {0, depth}
end
if ARGV[2] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[2])
end
redis.call('XADD', KEYS[3], '*', 'job', ARGV[3])
return {1, depth + 1}
"""


def _bounded(
    fn: Callable[Concatenate[RedisStreamsQueue, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[RedisStreamsQueue, _P], Coroutine[Any, Any, _R]]:
    """Run a queue operation under :meth:`RedisStreamsQueue._deadline`."""

    @functools.wraps(fn)
    async def bounded(self: RedisStreamsQueue, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with self._deadline():
            return await fn(self, *args, **kwargs)

    return bounded


class RedisStreamsQueue:
    """See the module docstring. All limits are explicit constructor arguments."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "modelyard",
        max_queued: int = 256,
        retry_after_s: float = 1.0,
        reply_ttl_s: float = 300.0,
        worker_ttl_s: float = 10.0,
        max_connections: int = 512,
        socket_timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        retries: int = 2,
    ) -> None:
        # redis-py's command return types are unions over decode_responses; the replies are bytes here.
        # A restarted Redis leaves dead pooled connections: commands are retried on a fresh one.
        self._redis: Any = aioredis.Redis.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            health_check_interval=HEALTH_CHECK_S,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries),
            retry_on_error=[ConnectionError, RedisTimeoutError],
        )
        self.op_timeout_s = socket_timeout_s * (retries + 1)
        self.max_block_s = socket_timeout_s / 2
        self.connect_timeout_s = connect_timeout_s
        self._p = key_prefix
        self.max_queued = max_queued
        self.retry_after_s = retry_after_s
        self.reply_ttl_s = reply_ttl_s
        self.worker_ttl_s = worker_ttl_s
        self._grouped: set[str] = set()
        self._admit = self._redis.register_script(_ADMIT)

    @property
    def key_prefix(self) -> str:
        return self._p

    @asynccontextmanager
    async def _deadline(self, block_s: float = 0.0) -> AsyncIterator[None]:
        """One queue operation's deadline: ``op_timeout_s`` (+ ``block_s``), then a Redis ``TimeoutError``."""
        try:
            async with asyncio.timeout(self.op_timeout_s + block_s):
                yield
        except TimeoutError:  # the builtin one: the deadline passed
            raise RedisTimeoutError(f"Redis did not answer within {self.op_timeout_s + block_s:g}s") from None

    # ---- keys -----------------------------------------------------------------------------------
    def work_key(self, model: str, worker: str | None = None) -> str:
        return f"{self._p}:work:{model}" + (f"@{worker}" if worker else "")

    def _reply_key(self, rid: str) -> str:
        return f"{self._p}:reply:{rid}"

    def _targets_key(self, model: str) -> str:
        return f"{self._p}:targets:{model}"

    async def _ensure_group(self, key: str) -> None:
        try:
            await self._redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped.add(key)

    # ---- gateway side ---------------------------------------------------------------------------
    async def submit(self, job: Job) -> None:
        key = self.work_key(job.model, job.target)
        try:
            async with self._deadline():
                if key not in self._grouped:
                    await self._ensure_group(key)
                accepted, depth = await self._admit(
                    keys=[self.work_key(job.model), self._targets_key(job.model), key],
                    args=[self.max_queued, job.target or "", encode(job)],
                )
        except RedisError as exc:
            self._grouped.discard(key)
            raise OverCapacity(
                f"the work queue is unavailable ({type(exc).__name__}); retry shortly"
            ) from None
        if not accepted:
            raise QueueFull(
                f"the queue of model `{job.model}` is full ({depth} requests waiting or running); "
                f"retry after {self.retry_after_s:g}s",
                retry_after_s=self.retry_after_s,
            )

    async def read(self, request_id: str, cursor: str, block_s: float) -> tuple[list[Reply], str]:
        block_s = min(block_s, self.max_block_s)
        async with self._deadline(block_s):
            res = await self._redis.xread(
                {self._reply_key(request_id): cursor}, block=max(1, int(block_s * 1000))
            )
        out: list[Reply] = []
        for _key, entries in res or []:
            for entry_id, fields in entries:
                cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                out.append(decode_reply(fields[b"r"]))
        return out, cursor

    @_bounded
    async def cancel(self, request_id: str) -> None:
        await self._redis.set(f"{self._p}:cancel:{request_id}", b"1", ex=int(self.reply_ttl_s))

    @_bounded
    async def finish(self, request_id: str) -> None:
        await self._redis.delete(self._reply_key(request_id))

    @_bounded
    async def depth(self, model: str) -> int:
        targets = await self._redis.smembers(self._targets_key(model))
        keys = [self.work_key(model)] + [self.work_key(model, t.decode()) for t in targets]
        async with self._redis.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.xlen(k)
            return int(sum(await pipe.execute()))

    @_bounded
    async def workers(self) -> list[WorkerReport]:
        ids = [i.decode() for i in await self._redis.smembers(f"{self._p}:workers")]
        if not ids:
            return []
        raws = await self._redis.mget([f"{self._p}:worker:{i}" for i in ids])
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:
            await self._redis.srem(f"{self._p}:workers", *gone)
        return [decode_report(raw) for raw in raws if raw is not None]

    # ---- worker side ----------------------------------------------------------------------------
    async def take(self, worker_id: str, models: Sequence[str], count: int, block_s: float) -> list[Delivery]:
        keys = [self.work_key(m) for m in models] + [self.work_key(m, worker_id) for m in models]
        block_s = min(block_s, self.max_block_s)
        try:
            async with self._deadline(block_s):
                if any(k not in self._grouped for k in keys):
                    for k in keys:
                        await self._ensure_group(k)
                    for m in models:
                        await self._redis.sadd(self._targets_key(m), worker_id)
                res = await self._redis.xreadgroup(
                    GROUP, worker_id, {k: ">" for k in keys}, count=count, block=max(1, int(block_s * 1000))
                )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis restarted empty: groups are recreated on the next call
                self._grouped.clear()
                return []
            raise
        return [
            Delivery(decode_job(fields[b"job"]), f"{_s(key)} {_s(eid)}")
            for key, entries in res or []
            for eid, fields in entries
            if fields
        ]

    @_bounded
    async def claim_stale(
        self, worker_id: str, models: Sequence[str], min_idle_s: float, count: int
    ) -> list[Delivery]:
        out: list[Delivery] = []
        alive = {r.worker_id for r in await self.workers()}
        for model in models:
            targets = [t.decode() for t in await self._redis.smembers(self._targets_key(model))]
            orphans = [t for t in targets if t not in alive and t != worker_id]
            keys = [self.work_key(model)] + [self.work_key(model, t) for t in targets]
            for key in keys:
                if len(out) >= count:
                    return out
                try:
                    _next, entries, *_ = await self._redis.xautoclaim(
                        key, GROUP, worker_id, int(min_idle_s * 1000), "0-0", count=count - len(out)
                    )
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        continue
                    raise
                out.extend(
                    Delivery(decode_job(f[b"job"]), f"{key} {_s(eid)}", claimed=True)
                    for eid, f in entries
                    if f
                )
            for orphan in orphans:  # undelivered jobs routed to a worker that is gone
                key = self.work_key(model, orphan)
                if len(out) >= count:
                    break
                try:
                    res = await self._redis.xreadgroup(GROUP, worker_id, {key: ">"}, count=count - len(out))
                except ResponseError:
                    continue
                out.extend(
                    Delivery(decode_job(f[b"job"]), f"{_s(k)} {_s(eid)}", claimed=True)
                    for k, entries in res or []
                    for eid, f in entries
                    if f
                )
                if not res and not await self._redis.xlen(key):
                    await self._redis.srem(self._targets_key(model), orphan)
        return out

    @_bounded
    async def touch(self, worker_id: str, deliveries: Sequence[Delivery]) -> None:
        by_key: dict[str, list[str]] = {}
        for d in deliveries:
            key, eid = d.entry.rsplit(" ", 1)
            by_key.setdefault(key, []).append(eid)
        for key, ids in by_key.items():
            try:
                await self._redis.xclaim(key, GROUP, worker_id, 0, ids, justid=True)
            except ResponseError:
                pass  # the stream or group is gone (Redis restarted); nothing left to keep alive

    @_bounded
    async def ack(self, delivery: Delivery) -> None:
        key, eid = delivery.entry.rsplit(" ", 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(key, GROUP, eid)
            pipe.xdel(key, eid)
            await pipe.execute(raise_on_error=False)

    @_bounded
    async def reply(self, request_id: str, reply: Reply) -> None:
        key = self._reply_key(request_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"r": encode(reply)})
            pipe.expire(key, int(self.reply_ttl_s))
            await pipe.execute()

    @_bounded
    async def mark_started(self, request_id: str, worker_id: str) -> str | None:
        prev = await self._redis.set(
            f"{self._p}:started:{request_id}", worker_id, nx=True, get=True, ex=int(self.reply_ttl_s)
        )
        if prev is None or _s(prev) == worker_id:
            return None
        return _s(prev)

    @_bounded
    async def started_by(self, request_id: str) -> str | None:
        raw = await self._redis.get(f"{self._p}:started:{request_id}")
        return None if raw is None else _s(raw)

    @_bounded
    async def cancelled(self, request_ids: Sequence[str]) -> set[str]:
        if not request_ids:
            return set()
        flags = await self._redis.mget([f"{self._p}:cancel:{r}" for r in request_ids])
        return {r for r, f in zip(request_ids, flags, strict=True) if f is not None}

    @_bounded
    async def report(self, report: WorkerReport) -> None:
        report.updated_at = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(
                f"{self._p}:worker:{report.worker_id}",
                encode_report(report),
                px=int(self.worker_ttl_s * 1000),
            )
            pipe.sadd(f"{self._p}:workers", report.worker_id)
            await pipe.execute()

    @_bounded
    async def unregister(self, worker_id: str) -> None:
        await self._redis.delete(f"{self._p}:worker:{worker_id}")
        await self._redis.srem(f"{self._p}:workers", worker_id)

    async def close(self) -> None:
        """Close the pool; within ``connect_timeout_s`` (+1 s) even if Redis stopped answering."""
        try:
            async with asyncio.timeout(self.connect_timeout_s + 1.0):
                await self._redis.aclose()
        except (TimeoutError, RedisError, OSError):
            pass  # the sockets are closed on our side; nothing else to wait for

    @_bounded
    async def purge(self) -> None:
        """Delete every key under this queue's prefix (tests and ``bench/queue.py`` clean up with it)."""
        keys: list[Any] = [k async for k in self._redis.scan_iter(match=f"{self._p}:*", count=1000)]
        if keys:
            await self._redis.delete(*keys)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
