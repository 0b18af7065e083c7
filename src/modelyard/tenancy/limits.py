"""Counters behind rate limits, concurrency caps and budgets: one Protocol, two implementations.

Two primitives, both all-or-nothing over a list of rules in one atomic step:

- a **bucket** (token bucket, capacity = the per-minute limit, refilled at limit/60 per second) for
  requests per minute and tokens per minute. Over any window of ``T`` seconds a bucket admits at most
  ``limit * (1 + T / 60)`` units, whatever the number of gateway processes.
- a **counter** with a cap for concurrent requests and budgets: ``acquire`` adds the amount if the sum
  stays within the cap; ``adjust`` later gives back (or charges) the difference.

:class:`MemoryLimitStore` counts in this process (embedded mode). :class:`RedisLimitStore` keeps the
counters in Redis and runs each step as one Lua script, so N processes admit exactly what one would.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

log = logging.getLogger("modelyard.tenancy")

Kind = Literal["bucket", "counter"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit a request must fit: ``amount`` of ``capacity`` on counter ``key``.

    ``ttl_s`` bounds how long an untouched counter lives (a crashed process's concurrency slot, an old
    budget period); buckets expire on their own once full.
    """

    key: str
    kind: Kind
    capacity: float
    amount: float
    ttl_s: int = 600


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed``; if not, the index of the first rule that refused it and when to retry.

    ``remaining`` holds, per rule, what is left after this step (for ``x-ratelimit-remaining-*``).
    """

    allowed: bool
    refused: int = -1
    retry_after_s: float = 0.0
    remaining: tuple[float, ...] = ()


class LimitStore(Protocol):
    """Atomic multi-rule admission. Implementations must make ``acquire`` all-or-nothing and atomic
    with respect to every other ``acquire``/``adjust`` on the same keys, across processes if shared."""

    async def acquire(self, rules: Sequence[Rule]) -> Decision:
        """Take every rule's ``amount`` or nothing."""
        ...

    async def adjust(self, rules: Sequence[Rule], deltas: Sequence[float]) -> None:
        """Give back ``-delta`` (or take ``delta``) on each rule's counter; buckets stay within capacity,
        counters at or above zero."""
        ...

    async def seed(self, key: str, value: float, ttl_s: int) -> None:
        """Set counter ``key`` to ``value`` unless it already exists (budget start from the ledger)."""
        ...

    async def close(self) -> None: ...


def _retry_after(rule: Rule, level: float) -> float:
    if rule.kind == "counter":
        return 1.0  # frees when a request finishes (concurrency) or the period ends (budgets)
    if rule.amount > rule.capacity:
        return 60.0
    return (rule.amount - level) * 60.0 / rule.capacity


class MemoryLimitStore:
    """In-process counters. Every method runs without awaiting, so it is atomic on the event loop."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._counters: dict[str, float] = {}

    def _level(self, rule: Rule, now: float) -> float:
        if rule.kind == "counter":
            return self._counters.get(rule.key, 0.0)
        tokens, ts = self._buckets.get(rule.key, (rule.capacity, now))
        return min(rule.capacity, tokens + (now - ts) * rule.capacity / 60.0)

    async def acquire(self, rules: Sequence[Rule]) -> Decision:
        now = time.monotonic()
        levels = [self._level(r, now) for r in rules]
        for i, (r, lvl) in enumerate(zip(rules, levels, strict=True)):
            ok = lvl + r.amount <= r.capacity if r.kind == "counter" else lvl >= r.amount
            if not ok:
                return Decision(False, i, _retry_after(r, lvl))
        remaining = []
        for r, lvl in zip(rules, levels, strict=True):
            if r.kind == "counter":
                self._counters[r.key] = lvl + r.amount
                remaining.append(r.capacity - lvl - r.amount)
            else:
                self._buckets[r.key] = (lvl - r.amount, now)
                remaining.append(lvl - r.amount)
        return Decision(True, remaining=tuple(remaining))

    async def adjust(self, rules: Sequence[Rule], deltas: Sequence[float]) -> None:
        now = time.monotonic()
        for r, d in zip(rules, deltas, strict=True):
            lvl = self._level(r, now)
            if r.kind == "counter":
                self._counters[r.key] = max(0.0, lvl + d)
            else:
                self._buckets[r.key] = (min(r.capacity, lvl - d), now)

    async def seed(self, key: str, value: float, ttl_s: int) -> None:
        self._counters.setdefault(key, value)

    async def close(self) -> None:
        pass


# KEYS: counters; ARGV: per key (kind, capacity, amount, ttl). Time is Redis's own clock, so every
# gateway process refills buckets identically. Returns {1, remaining...} or {0, index, retry_after}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local levels = {}
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local kind, cap, amt = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local lvl
  if kind == 'bucket' then
    local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local tokens, ts = tonumber(v[1]) or cap, tonumber(v[2]) or now
    lvl = math.min(cap, tokens + math.max(0, now - ts) * cap / 60)
    if lvl < amt then return {0, i, tostring(lvl)} end
  else
    lvl = tonumber(redis.call('GET', KEYS[i]) or '0')
    if lvl + amt > cap then return {0, i, tostring(lvl)} end
  end
  levels[i] = lvl
end
local out = {1}
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local kind, cap, amt, ttl = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  if kind == 'bucket' then
    redis.call('HSET', KEYS[i], 'tokens', tostring(levels[i] - amt), 'ts', tostring(now))
    redis.call('EXPIRE', KEYS[i], 120)
    out[#out + 1] = tostring(levels[i] - amt)
  else
    redis.call('SET', KEYS[i], tostring(levels[i] + amt), 'EX', ttl)
    out[#out + 1] = tostring(cap - levels[i] - amt)
  end
end
return out
"""

_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local kind, cap, delta, ttl = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  if kind == 'bucket' then
    local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local tokens, ts = tonumber(v[1]) or cap, tonumber(v[2]) or now
    local lvl = math.min(cap, tokens + math.max(0, now - ts) * cap / 60)
    redis.call('HSET', KEYS[i], 'tokens', tostring(math.min(cap, lvl - delta)), 'ts', tostring(now))
    redis.call('EXPIRE', KEYS[i], 120)
  else
    local lvl = tonumber(redis.call('GET', KEYS[i]) or '0')
    redis.call('SET', KEYS[i], tostring(math.max(0, lvl + delta)), 'EX', ttl)
  end
end
return 1
"""


class LimitBackendDown(Exception):
    """The shared counter store could not be reached (the caller applies ``redis_failure``)."""


class RedisLimitStore:
    """Counters in Redis under ``prefix``; every step is one Lua script (atomic across processes)."""

    def __init__(self, url: str, prefix: str, *, timeout_s: float = 0.5) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._adjust = self._redis.register_script(_ADJUST)

    def _args(self, rules: Sequence[Rule], amounts: Sequence[float]) -> tuple[list[str], list[str]]:
        keys = [self._prefix + r.key for r in rules]
        argv: list[str] = []
        for r, a in zip(rules, amounts, strict=True):
            argv += [r.kind, repr(float(r.capacity)), repr(float(a)), str(int(r.ttl_s))]
        return keys, argv

    async def acquire(self, rules: Sequence[Rule]) -> Decision:
        if not rules:
            return Decision(True)
        keys, argv = self._args(rules, [r.amount for r in rules])
        try:
            out = await self._acquire(keys=keys, args=argv)
        except Exception as exc:  # connection refused, timeout, script error: all mean "no answer"
            raise LimitBackendDown(str(exc)) from exc
        if int(out[0]) == 1:
            return Decision(True, remaining=tuple(float(x) for x in out[1:]))
        i = int(out[1]) - 1
        return Decision(False, i, _retry_after(rules[i], float(out[2])))

    async def adjust(self, rules: Sequence[Rule], deltas: Sequence[float]) -> None:
        if not rules:
            return
        keys, argv = self._args(rules, deltas)
        try:
            await self._adjust(keys=keys, args=argv)
        except Exception as exc:
            raise LimitBackendDown(str(exc)) from exc

    async def seed(self, key: str, value: float, ttl_s: int) -> None:
        try:
            await self._redis.set(self._prefix + key, repr(float(value)), nx=True, ex=ttl_s)
        except Exception as exc:
            raise LimitBackendDown(str(exc)) from exc

    async def close(self) -> None:
        await self._redis.aclose()


def ceil_s(seconds: float) -> int:
    """Whole seconds for ``Retry-After`` (never 0, so a client never retries in a tight loop)."""
    return max(1, math.ceil(seconds))
