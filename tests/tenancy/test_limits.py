"""Limit stores: the in-process one and the Redis one (real server) obey the same contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from modelyard.tenancy.limits import (
    LimitBackendDown,
    LimitStore,
    MemoryLimitStore,
    RedisLimitStore,
    Rule,
)
from tenancy_support import REDIS_URL


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limits(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[LimitStore]:
    store: LimitStore = (
        MemoryLimitStore() if request.param == "memory" else RedisLimitStore(REDIS_URL, redis_prefix)
    )
    yield store
    await store.close()


async def test_bucket_admits_its_capacity_then_refuses_with_retry_after(limits: LimitStore) -> None:
    rule = Rule("rl:t:rpm", "bucket", 5, 1)
    results = [await limits.acquire([rule]) for _ in range(7)]
    assert [r.allowed for r in results] == [True] * 5 + [False] * 2
    assert [round(r.remaining[0]) for r in results[:5]] == [4, 3, 2, 1, 0]
    refused = results[5]
    assert refused.refused == 0 and 0 < refused.retry_after_s <= 12.0  # one request refills in 60/5 s


async def test_acquire_is_all_or_nothing(limits: LimitStore) -> None:
    a = Rule("rl:a:rpm", "bucket", 10, 1)
    conc = Rule("rl:a:conc", "counter", 1, 1)
    assert (await limits.acquire([a, conc])).allowed
    d = await limits.acquire([a, conc])
    assert not d.allowed and d.refused == 1
    # the refused step took nothing from the bucket: 9 requests are left, not 8
    took = [await limits.acquire([a]) for _ in range(10)]
    assert sum(t.allowed for t in took) == 9


async def test_counter_release_and_settle(limits: LimitStore) -> None:
    budget = Rule("budget:t:tokens", "counter", 100, 60)
    assert (await limits.acquire([budget])).allowed
    assert not (await limits.acquire([budget])).allowed
    await limits.adjust([budget], [-50.0])  # used 10 of the 60 reserved
    assert (await limits.acquire([budget])).allowed  # 10 + 60 <= 100
    assert not (await limits.acquire([Rule("budget:t:tokens", "counter", 100, 31)])).allowed


async def test_tokens_bucket_gets_unused_tokens_back(limits: LimitStore) -> None:
    tpm = Rule("rl:t:tpm", "bucket", 1000, 800)
    assert (await limits.acquire([tpm])).allowed
    assert not (await limits.acquire([tpm])).allowed
    await limits.adjust([tpm], [-700.0])  # used 100 of 800
    assert (await limits.acquire([tpm])).allowed


async def test_concurrent_acquires_never_overshoot(limits: LimitStore) -> None:
    rule = Rule("budget:race:tokens", "counter", 1000, 100)
    results = await asyncio.gather(*(limits.acquire([rule]) for _ in range(50)))
    assert sum(r.allowed for r in results) == 10


async def test_seed_sets_a_missing_counter_only(limits: LimitStore) -> None:
    await limits.seed("budget:s:tokens", 950, 60)
    await limits.seed("budget:s:tokens", 0, 60)
    assert not (await limits.acquire([Rule("budget:s:tokens", "counter", 1000, 51)])).allowed
    assert (await limits.acquire([Rule("budget:s:tokens", "counter", 1000, 50)])).allowed


async def test_unreachable_redis_raises_backend_down() -> None:
    store = RedisLimitStore("redis://127.0.0.1:1/0", "x:", timeout_s=0.2)
    with pytest.raises(LimitBackendDown):
        await store.acquire([Rule("k", "bucket", 1, 1)])
    await store.close()
