"""Leases for periodic tasks: with several gateway processes, only the holder of a task's lease runs it.

:class:`Lease` contract: ``acquire(name, ttl_s)`` returns a fencing token (a positive integer, larger than
any token handed out before for ``name`` when the backend can say so) if this process now holds the
lease, ``None`` if another does; ``renew(name, token, ttl_s)`` is ``True`` while the lease is still ours
(called before every run, so a holder that lost its lease stops running the task); ``release`` lets
it go; ``close`` releases everything. A holder that dies loses its leases without calling anything:

- :class:`PostgresLease`: ``pg_try_advisory_lock`` on a 64-bit hash of the name, held by one dedicated
  connection; the server drops the lock when that connection ends (process death, network loss).
- :class:`RedisLease`: ``SET key token NX PX ttl`` with a token from ``INCR`` (the fencing token);
  renewal extends the TTL only while the key still holds our token (one Lua script); a dead holder's
  key expires after ``ttl_s`` (the runner asks for a few periods).
- :class:`LocalLease`: always granted (one process, the embedded default).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import psycopg
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url

# Renew only if the key still holds our token; KEYS: lock key; ARGV: token, ttl ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    """Who may run a periodic task now (module docstring)."""

    async def acquire(self, name: str, ttl_s: float) -> int | None: ...

    async def renew(self, name: str, token: int, ttl_s: float) -> bool: ...

    async def release(self, name: str, token: int) -> None: ...

    async def close(self) -> None: ...


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` (first 8 bytes of SHA-256 of the name)."""
    return int.from_bytes(hashlib.sha256(f"modelyard.task:{name}".encode()).digest()[:8], "big", signed=True)


class LocalLease:
    """Always granted: one process runs every task."""

    def __init__(self) -> None:
        self._tokens: dict[str, int] = {}

    async def acquire(self, name: str, ttl_s: float) -> int | None:
        self._tokens[name] = self._tokens.get(name, 0) + 1
        return self._tokens[name]

    async def renew(self, name: str, token: int, ttl_s: float) -> bool:
        return self._tokens.get(name) == token

    async def release(self, name: str, token: int) -> None:
        return None

    async def close(self) -> None:
        return None


class PostgresLease:
    """Advisory locks held by one dedicated connection to ``database_url`` (SQLAlchemy URL accepted).

    Advisory locks are scoped to the database, not the schema, so two deployments that share a database
    in separate schemas (``options=-csearch_path=...``) would otherwise hold one lease between them:
    outside ``public`` the key is salted with the session's ``current_schema()``."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._held: dict[str, int] = {}
        self._counter = 0
        self._scope = ""

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._held.clear()  # a new session holds none of the old session's locks
            self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            row = await (await self._conn.execute("SELECT current_schema()")).fetchone()
            schema = row[0] if row else None
            self._scope = "" if schema in (None, "public") else str(schema)
        return self._conn

    def _key(self, name: str) -> int:
        return advisory_key(f"{self._scope}/{name}" if self._scope else name)

    async def acquire(self, name: str, ttl_s: float) -> int | None:
        if name in self._held and await self.renew(name, self._held[name], ttl_s):
            return self._held[name]
        conn = await self._connection()
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key(name),))
        row = await cur.fetchone()
        if not row or not row[0]:
            return None
        self._counter += 1
        self._held[name] = self._counter
        return self._counter

    async def renew(self, name: str, token: int, ttl_s: float) -> bool:
        if self._held.get(name) != token or self._conn is None or self._conn.closed:
            return False
        try:
            await self._conn.execute("SELECT 1")
        except psycopg.Error:
            self._held.clear()
            return False
        return True

    async def release(self, name: str, token: int) -> None:
        if self._held.pop(name, None) == token and self._conn is not None and not self._conn.closed:
            await self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key(name),))

    async def close(self) -> None:
        self._held.clear()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class RedisLease:
    """``SET NX PX`` locks with ``INCR`` fencing tokens under ``{prefix}:lease:{name}``."""

    def __init__(self, url: str, *, key_prefix: str) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self._prefix = key_prefix
        self._held: dict[str, int] = {}

    def _key(self, name: str) -> str:
        return f"{self._prefix}:lease:{name}"

    async def acquire(self, name: str, ttl_s: float) -> int | None:
        if name in self._held and await self.renew(name, self._held[name], ttl_s):
            return self._held[name]
        token = int(await self._redis.incr(f"{self._key(name)}:fence"))
        if not await self._redis.set(self._key(name), str(token), nx=True, px=int(ttl_s * 1000)):
            return None
        self._held[name] = token
        return token

    async def renew(self, name: str, token: int, ttl_s: float) -> bool:
        ttl_ms = str(int(ttl_s * 1000))
        ok = bool(await self._redis.eval(_RENEW, 1, self._key(name), str(token), ttl_ms))  # type: ignore[misc]
        if not ok:
            self._held.pop(name, None)
        return ok

    async def release(self, name: str, token: int) -> None:
        self._held.pop(name, None)
        await self._redis.eval(_RELEASE, 1, self._key(name), str(token))  # type: ignore[misc]

    async def close(self) -> None:
        for name, token in list(self._held.items()):
            await self.release(name, token)
        await self._redis.aclose()
