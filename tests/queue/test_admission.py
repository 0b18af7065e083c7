"""Admission is atomic across gateways: two Redis queues (two gateways) never overshoot ``max_queued``."""

from __future__ import annotations

import asyncio

import pytest
from queue_helpers import REDIS_URL, redis_test_queue

from modelyard.queue.base import Job, QueueFull
from modelyard.queue.redis_streams import RedisStreamsQueue

pytestmark = pytest.mark.redis

K = 7
PER_GATEWAY = 40


def job(i: int, target: str | None = None) -> Job:
    return Job(f"r{i}", "m", "chat/completions", {"messages": []}, stream=True, target=target)


async def test_concurrent_gateways_accept_exactly_max_queued() -> None:
    async with redis_test_queue(max_queued=K, retry_after_s=2.5) as a:
        b = RedisStreamsQueue(REDIS_URL, key_prefix=a.key_prefix, max_queued=K, retry_after_s=2.5)
        try:
            # half the jobs name a worker's own stream: those count against the same bound
            submits = [
                (a if i % 2 else b).submit(job(i, target="w1" if i % 3 == 0 else None))
                for i in range(2 * PER_GATEWAY)
            ]
            results = await asyncio.gather(*submits, return_exceptions=True)
        finally:
            await b.close()
        accepted = [r for r in results if r is None]
        refused = [r for r in results if isinstance(r, QueueFull)]
        assert len(accepted) == K and len(refused) == 2 * PER_GATEWAY - K, results
        assert all(r.status_code == 503 and r.retry_after_s == 2.5 for r in refused)
        assert "is full (7 requests waiting or running)" in refused[0].message
        assert await a.depth("m") == K
