"""One router over a queued worker pool and remote deployments of the same model (real backends).

The queued backend reads real worker reports from the in-process queue; the remote backends are
real ``OpenAICompatBackend`` objects (routing needs no connection). The router's view of each is
load = in-flight / capacity plus adapter and prefix affinity.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import orjson
import pytest

from modelyard.errors import InvalidRequest
from modelyard.gateway.backends.base import BackendRequest, Endpoint, RouteHint
from modelyard.gateway.backends.openai_compat import OpenAICompatBackend
from modelyard.gateway.backends.queued import QueuedBackend
from modelyard.gateway.pipeline import Gateway, StaticResolver
from modelyard.gateway.router import BreakerState, Deployment, Router
from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.queue.base import Job, QueueFull, WorkerReport
from modelyard.queue.memory import InProcessQueue
from modelyard.settings import (
    CircuitBreakerSettings,
    LimitSettings,
    QueueSettings,
    RemoteDeploymentSettings,
    RouterPolicy,
)
from modelyard.tenancy.records import AdapterInfo
from servers import MockUpstream

ADAPTER = AdapterInfo("a1", "t1", "m", "sql", "/adapters/sql", datetime(2026, 1, 1, tzinfo=UTC))


class Pool:
    def __init__(self, policy: RouterPolicy) -> None:
        self.queue = InProcessQueue(worker_ttl_s=30)
        self.router = Router(
            policy, CircuitBreakerSettings(failure_threshold=1, reset_after_s=60), rng=random.Random(0)
        )
        self.queued_backend = QueuedBackend("m", self.queue, QueueSettings(heartbeat_s=0.01))
        self.queued = self.router.add(self.queued_backend)
        self.remote = self.remote_deployment("r", max_concurrency=4)

    def remote_deployment(self, name: str, **kw: object) -> Deployment:
        s = RemoteDeploymentSettings(model="m", base_url="http://127.0.0.1:9/v1", name=name, **kw)  # type: ignore[arg-type]
        return self.router.add(OpenAICompatBackend(s, name), s.weight)

    async def workers(self, *reports: WorkerReport) -> None:
        for r in reports:
            await self.queue.report(r)
        await asyncio.sleep(0.05)  # the queued backend's poller picks them up

    def first(self, hint: RouteHint = RouteHint()) -> str:
        return self.router.candidates("m", hint)[0].name


MakePool = Callable[[RouterPolicy], Awaitable[Pool]]


def worker(wid: str, in_flight: int, **kw: object) -> WorkerReport:
    return WorkerReport(worker_id=wid, models=["m"], in_flight=in_flight, capacity=4, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def make_pool() -> AsyncIterator[Callable[[RouterPolicy], Awaitable[Pool]]]:
    """Builds started pools under a policy; closes them at the end."""
    pools: list[Pool] = []

    async def make(policy: RouterPolicy) -> Pool:
        pools.append(Pool(policy))
        await pools[-1].queued_backend.start()
        return pools[-1]

    yield make
    for p in pools:
        await p.queued_backend.close()


async def test_no_live_worker_sends_requests_to_the_remote(make_pool: MakePool) -> None:
    p = await make_pool(RouterPolicy.LEAST_LOADED)
    p.remote.in_flight = 3  # 0.75 loaded, still better than a pool with no capacity
    assert math.isinf(p.router.view(p.queued).load)
    assert [d.name for d in p.router.candidates("m")] == ["r", "m#queue"]  # the queue stays a fallback


async def test_least_loaded_compares_worker_slots_with_remote_concurrency(make_pool: MakePool) -> None:
    p = await make_pool(RouterPolicy.LEAST_LOADED)
    await p.workers(worker("w1", 2), worker("w2", 2))  # 4 of 8 slots: 0.5
    assert p.router.view(p.queued).load == 0.5
    p.remote.in_flight = 1  # 1 of 4: 0.25
    assert p.first() == "r"
    p.remote.in_flight = 3  # 0.75
    assert p.first() == "m#queue"
    await p.workers(worker("w1", 4), worker("w2", 4))  # saturated workers: the remote takes it
    assert p.first() == "r"
    await p.workers(worker("w1", 0, draining=True), worker("w2", 0, draining=True))
    assert p.first() == "r"  # draining workers have no capacity


async def test_queue_depth_and_own_in_flight_count_as_load(make_pool: MakePool) -> None:
    p = await make_pool(RouterPolicy.LEAST_LOADED)
    await p.workers(worker("w1", 0))
    p.queued.in_flight = 3  # this gateway's own requests, before any report shows them
    assert p.router.view(p.queued).load == 0.75
    p.queued_backend.depth = 8  # waiting in the queue, from all gateways
    assert p.router.view(p.queued).load == 2.0


async def test_open_breaker_leaves_the_workers(make_pool: MakePool) -> None:
    p = await make_pool(RouterPolicy.LEAST_LOADED)
    await p.workers(worker("w1", 3))
    assert p.first() == "r"
    with p.router.track(p.remote) as attempt:
        attempt.failed = True  # threshold 1: the circuit opens
    assert [d.name for d in p.router.candidates("m")] == ["m#queue"]


async def test_affinity_prefix_then_load_cap(make_pool: MakePool) -> None:
    p = await make_pool(RouterPolicy.AFFINITY)
    await p.workers(worker("w1", 2, prefix_hashes=["p1"]), worker("w2", 0))  # 2 of 8
    p.remote.in_flight = 0
    assert p.first(RouteHint(prefix="p1")) == "m#queue"  # prefix hit beats the idler remote
    assert p.first(RouteHint(prefix="other")) == "r"  # no hit: least loaded
    await p.workers(worker("w1", 4, prefix_hashes=["p1"]), worker("w2", 3))  # 7 of 8 > cap 0.8
    assert p.first(RouteHint(prefix="p1")) == "r"


async def test_affinity_remembers_prefixes_sent_to_a_remote(make_pool: MakePool) -> None:
    p = await make_pool(RouterPolicy.AFFINITY)
    await p.workers(worker("w1", 0), worker("w2", 0))
    p.remote.in_flight = 2  # 0.5 vs idle workers
    assert p.first(RouteHint(prefix="p2")) == "m#queue"
    with p.router.track(p.remote, RouteHint(prefix="p2")) as attempt:
        p.router.first_byte(attempt)
    assert p.first(RouteHint(prefix="p2")) == "r"


async def test_adapter_requests_go_only_where_the_adapter_is_served(make_pool: MakePool) -> None:
    p = await make_pool(RouterPolicy.AFFINITY)
    served = p.remote_deployment("r-lora", adapters={"m:sql": "sql-lora"}, max_concurrency=4)
    await p.workers(worker("w1", 0), worker("w2", 0))
    hint = RouteHint(lora=ADAPTER)
    names = [d.name for d in p.router.candidates("m", hint)]
    assert names == ["r-lora", "m#queue"]  # `r` does not have it; the remote that serves it is a hit
    served.in_flight = 4  # above the cap: the workers load it on demand
    assert p.first(hint) == "m#queue"
    served.in_flight = 0
    await p.workers(worker("w1", 1, adapters=["t1/sql/a1"]), worker("w2", 0))  # engine_name loaded
    assert p.router.view(p.queued, hint).adapter_hit
    remote = OpenAICompatBackend(
        RemoteDeploymentSettings(model="m", base_url="http://x/v1", adapters={"m:sql": "sql-lora"}), "x"
    )
    msg = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    req = BackendRequest(
        Endpoint.CHAT, msg, ChatCompletionRequest.model_validate(msg), "r1", "m", lora=ADAPTER
    )
    assert b'"model":"sql-lora"' in remote._payload(req)  # the upstream's name for the adapter


async def test_adapter_nobody_serves_is_a_400() -> None:
    router = Router(RouterPolicy.WEIGHTED, CircuitBreakerSettings())
    s = RemoteDeploymentSettings(model="m", base_url="http://127.0.0.1:9/v1")
    router.add(OpenAICompatBackend(s, "r"))
    with pytest.raises(InvalidRequest, match="serves the adapter `m:sql`"):
        router.candidates("m", RouteHint(lora=ADAPTER))


async def test_full_queue_falls_back_without_opening_the_pools_circuit(mock_upstream: MockUpstream) -> None:
    """QueueFull tries the next deployment but is not a failure of the (healthy, busy) worker pool."""
    queue = InProcessQueue(max_queued=1, retry_after_s=4)
    await queue.submit(Job("waiting", "m", "chat/completions", {}, stream=False))  # the queue is full
    router = Router(RouterPolicy.WEIGHTED, CircuitBreakerSettings(failure_threshold=2, reset_after_s=60))
    pool = router.add(QueuedBackend("m", queue, QueueSettings()))
    gateway = Gateway(router, StaticResolver(router), LimitSettings())
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    parsed = ChatCompletionRequest.model_validate(body)
    for i in range(4):  # the pool alone: the client gets the queue's own 503 + Retry-After every time
        with pytest.raises(QueueFull) as info:
            await gateway.complete(Endpoint.CHAT, parsed, body, f"q{i}")
        assert info.value.retry_after_s == 4
    assert pool.state is BreakerState.CLOSED and pool.failures == 0

    s = RemoteDeploymentSettings(model="m", base_url=f"{mock_upstream.url}/v1", upstream_model="mock")
    remote_backend = OpenAICompatBackend(s, "r")
    await remote_backend.start()
    try:
        remote = router.add(remote_backend)
        for i in range(6):  # whichever is tried first, the remote answers
            out = orjson.loads(await gateway.complete(Endpoint.CHAT, parsed, body, f"f{i}"))
            assert out["choices"][0]["message"]["content"].startswith("echo:")
        assert remote.served == 6 and pool.state is BreakerState.CLOSED and pool.failures == 0
    finally:
        await remote_backend.close()
