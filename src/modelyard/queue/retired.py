"""Deleted tenant adapters, told to every ``modelyard worker`` through Redis.

A worker keeps the adapters it loaded. When a tenant deletes one, the gateway that served the
delete adds the adapter's engine id (``<tenant>/<name>/<registration id>``) to the sorted set
``{key_prefix}:adapters:retired`` (score: the deletion time); every worker asks, on each heartbeat,
which of its loaded adapters are in that set (one ``ZMSCORE``) and unloads them. A set rather than
pub/sub because a worker that is restarting or between two reads still finds the entry later. Entries
older than ``keep_s`` are trimmed on each write: by then every live worker has seen them.

Correctness does not depend on this message: the engine id changes with every registration, so a
deleted-then-recreated adapter of the same name is a different id and never served from a stale load,
and a deleted adapter is refused (404) before a job is ever queued. The set frees the worker's slot
and memory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

KEEP_S = 7 * 24 * 3600.0


class RetiredAdapters:
    def __init__(
        self, client: Any, key_prefix: str, *, keep_s: float = KEEP_S, owns_client: bool = False
    ) -> None:
        self._redis = client
        self.key = f"{key_prefix}:adapters:retired"
        self.keep_s = keep_s
        self._owns = owns_client

    @classmethod
    def from_url(cls, url: str, key_prefix: str, *, keep_s: float = KEEP_S, **client: Any) -> RetiredAdapters:
        """``client``: redis-py client options (the worker passes the queue's socket timeouts)."""
        return cls(aioredis.Redis.from_url(url, **client), key_prefix, keep_s=keep_s, owns_client=True)

    async def retire(self, engine_name: str) -> None:
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {engine_name: now})
            pipe.zremrangebyscore(self.key, "-inf", now - self.keep_s)
            await pipe.execute()

    async def retired(self, engine_names: Sequence[str]) -> set[str]:
        """Which of ``engine_names`` were deleted."""
        if not engine_names:
            return set()
        scores = await self._redis.zmscore(self.key, list(engine_names))
        return {n for n, s in zip(engine_names, scores, strict=True) if s is not None}

    async def close(self) -> None:
        if self._owns:
            await self._redis.aclose()
