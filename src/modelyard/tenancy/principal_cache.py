"""A per-process cache of verified principals, invalidated by an **auth epoch**.

Correctness rule: once a revoke, expiry, key create/delete, tenant change (disable, model access,
limits, budget) or any other audited tenancy change has *returned* (admin REST or CLI), the next
request on every gateway process sees it. The cache keeps that rule with an epoch, a value that
changes on every audited change and is read once per request before the cache is consulted:

- with ``tenancy.redis_url``: a Redis key (``<prefix>tenancy:auth-epoch``). Every audited store
  transaction bumps it *after* its commit (``TenancyStore`` calls :class:`RedisEpochBump` from its
  ``after_commit`` hook), so the bump is done before the admin call or CLI returns. Reading it is one
  ``EVALSHA`` round trip, far cheaper than a thread hop plus a database query.
- on SQLite without Redis: the newest audit-log id (every audited change writes one row in the same
  transaction; SQLite commits one writer at a time, so ids grow in commit order).
- PostgreSQL without Redis: no cache (audit ids may commit out of order there, so the newest id is not
  a safe epoch); every request queries the store as before.

The epoch is read *before* the store query on a miss, and the entry is filed under that epoch, so a
change that commits in between always leaves the entry under an older epoch than the next reader
sees. A hit also checks ``expires_at`` against the clock and a time-to-live
(``tenancy.auth_cache_ttl_s``, the bound if a bump could not reach Redis). Only successes are cached
(an unknown key always reaches the store), keyed by the HMAC digest, never the raw key. When the
epoch cannot be read the cache is bypassed, never trusted.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from modelyard.errors import OverCapacity
from modelyard.tenancy.records import Principal

log = logging.getLogger("modelyard.tenancy")

EPOCH_KEY = "tenancy:auth-epoch"
BUMP_ATTEMPTS = 3

# Read the epoch; a missing key (fresh or restarted Redis) is set to Redis's clock in microseconds, a
# value no earlier epoch can have held, so a restart never brings an old epoch back (no ABA).
_READ = """
local v = redis.call('GET', KEYS[1])
if v then return v end
local t = redis.call('TIME')
v = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('SET', KEYS[1], v, 'NX')
return redis.call('GET', KEYS[1])
"""
_BUMP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
return redis.call('INCR', KEYS[1])
"""


class EpochSource(Protocol):
    async def read(self) -> str | None:
        """The current epoch, or None when it cannot be known (the cache is then bypassed)."""
        ...

    async def close(self) -> None: ...


class RedisEpoch:
    """The epoch in Redis (async client of the gateway)."""

    def __init__(self, url: str, prefix: str, *, timeout_s: float = 0.5) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._read = self._redis.register_script(_READ)
        self._key = prefix + EPOCH_KEY
        self.errors = 0

    async def read(self) -> str | None:
        try:
            value = await self._read(keys=[self._key])
        except Exception as exc:  # unreachable, timeout: bypass the cache, never trust it
            self.errors += 1
            log.warning("auth epoch unreadable (%s); authenticating against the store", exc)
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def close(self) -> None:
        await self._redis.aclose()


class RedisEpochBump:
    """Bumps the Redis epoch (sync client: the store calls it from its worker thread or the CLI)."""

    def __init__(self, url: str, prefix: str, *, timeout_s: float = 2.0) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._bump = self._redis.register_script(_BUMP)
        self._key = prefix + EPOCH_KEY

    def __call__(self) -> None:
        for attempt in range(1, BUMP_ATTEMPTS + 1):
            try:
                self._bump(keys=[self._key])
                return
            except Exception as exc:
                if attempt == BUMP_ATTEMPTS:
                    msg = (
                        f"The change was saved, but the auth epoch could not be bumped in Redis ({exc}): "
                        "gateways may use cached keys and tenants for up to tenancy.auth_cache_ttl_s "
                        "seconds. Check Redis, then repeat the change to bump it."
                    )
                    log.error("%s", msg)
                    raise OverCapacity(msg, code="auth_epoch_unavailable") from exc
                time.sleep(0.05 * attempt)

    def close(self) -> None:
        self._redis.close()


class StoreEpoch:
    """The newest audit-log id, read inline (SQLite only: ids grow in commit order there).

    ``make_reader`` (``TenancyStore.epoch_reader``) is called on the first read, so the reader's
    connection belongs to the event loop's thread."""

    def __init__(self, make_reader: Callable[[], Callable[[], int]]) -> None:
        self._make_reader = make_reader
        self._read_fn: Callable[[], int] | None = None

    async def read(self) -> str | None:
        if self._read_fn is None:
            self._read_fn = self._make_reader()
        return str(self._read_fn())

    async def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    expires_at: datetime | None
    epoch: str
    stored: float


class PrincipalCache:
    """Bounded LRU of principals by key digest; an entry is valid only under the epoch it was filed in."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, digest: str, epoch: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is not None:
            fresh = entry.epoch == epoch and time.monotonic() - entry.stored < self.ttl_s
            alive = entry.expires_at is None or entry.expires_at > datetime.now(UTC)
            if fresh and alive:
                self._entries.move_to_end(digest)
                self.hits += 1
                return entry.principal
            del self._entries[digest]
        self.misses += 1
        return None

    def put(self, digest: str, epoch: str, principal: Principal, expires_at: datetime | None) -> None:
        self._entries[digest] = _Entry(principal, expires_at, epoch, time.monotonic())
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}
