"""One model served by engine workers on the real Redis queue and by a remote upstream, routed as one pool.

The gateway's services run in-process (``start_services``) with ``queue.backend: redis``; the
workers are in-process :class:`Worker` objects on the tiny model; the remote is the mock upstream
subprocess. Which deployment served each request is read from the router's counters and checked
against the workers' and the upstream's own counts.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from queue_helpers import tiny_settings, unique_prefix

from modelyard.app import Services, start_services, stop_services
from modelyard.gateway.backends.base import Endpoint
from modelyard.gateway.backends.local import LocalBackend
from modelyard.gateway.router import BreakerState, Deployment
from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.queue.factory import redis_queue
from modelyard.queue.worker import Worker
from modelyard.settings import (
    CircuitBreakerSettings,
    RemoteDeploymentSettings,
    RouterPolicy,
    RouterSettings,
    Settings,
)
from servers import MockUpstream, finish_tasks, free_port, stop_process

pytestmark = pytest.mark.redis


@dataclass
class Pool:
    settings: Settings
    services: Services
    upstream: MockUpstream
    queued: Deployment
    remote: Deployment

    async def ask(self, n: int) -> list[dict[str, object]]:
        async def one(i: int) -> dict[str, object]:
            body = {"model": "tiny", "messages": [{"role": "user", "content": f"hi {i}"}], "max_tokens": 3}
            parsed = ChatCompletionRequest.model_validate(body)
            out = await self.services.gateway.complete(Endpoint.CHAT, parsed, body, uuid.uuid4().hex)
            return orjson.loads(out)  # type: ignore[no-any-return]

        return await asyncio.gather(*(one(i) for i in range(n)))

    def served(self) -> tuple[int, int]:
        return self.queued.served, self.remote.served


@pytest.fixture
async def pool(tiny_dir: Path, tmp_path: Path) -> AsyncIterator[Pool]:
    upstream = MockUpstream(free_port())
    settings = tiny_settings(
        tiny_dir,
        tmp_path,
        backend="redis",
        key_prefix=unique_prefix(),
        heartbeat_s=0.1,
        claim_idle_s=1.0,
        worker_ttl_s=1.0,
        worker_max_in_flight=4,
    ).model_copy(
        update={
            "deployments": [
                RemoteDeploymentSettings(
                    model="tiny",
                    name="tiny-remote",
                    base_url=f"{upstream.url}/v1",
                    upstream_model="mock",
                    max_concurrency=4,
                    max_retries=0,
                    timeout_s=5,
                )
            ],
            "router": RouterSettings(policy=RouterPolicy.LEAST_LOADED),
            "circuit_breaker": CircuitBreakerSettings(failure_threshold=2, reset_after_s=600),
        }
    )
    services = await start_services(settings)
    deps = {d.name: d for d in services.gateway.router.deployments("tiny")}
    try:
        yield Pool(settings, services, upstream, deps["tiny#queue"], deps["tiny-remote"])
    finally:
        await stop_services(services)
        stop_process(upstream.proc)
        cleanup = redis_queue(settings.queue)
        await cleanup.purge()
        await cleanup.close()


@pytest.fixture
async def start_worker(pool: Pool) -> AsyncIterator[object]:
    """Starts an in-process worker on the pool's Redis queue; all of them drain at the end."""
    local = LocalBackend(pool.settings.local_models[0], pool.settings)
    await local.start()
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(wid: str) -> Worker:
        w = Worker(
            redis_queue(pool.settings.queue),
            {"tiny": local},
            pool.settings.queue,
            worker_id=wid,
            drain_timeout_s=5,
        )
        running.append((w, asyncio.create_task(w.run())))
        for _ in range(100):  # until the gateway's poll sees its report
            if not math.isinf(pool.services.gateway.router.view(pool.queued).load):
                return w
            await asyncio.sleep(0.05)
        raise AssertionError("the gateway never saw the worker's report")

    yield start
    for w, _ in running:
        w.drain()
    # drain is 5 s at most; the rest is slack for a loaded CI machine
    await finish_tasks([t for _, t in running], 30, "draining workers")
    await local.close()


async def test_one_pool_over_workers_and_a_remote(pool: Pool, start_worker) -> None:  # type: ignore[no-untyped-def]
    # 1. No worker yet (scale from zero): the remote takes everything; nothing is queued.
    answers = await pool.ask(6)
    assert pool.served() == (0, 6) and pool.upstream.stats()["requests"]["mock"] == 6
    assert pool.queued.backend.submitted == 0  # type: ignore[attr-defined]
    assert all(a["choices"][0]["message"]["content"].startswith("echo:") for a in answers)  # type: ignore[index]

    # 2. One worker (4 slots) and the remote (max_concurrency 4): least-loaded splits a burst of 16.
    worker = await start_worker("w1")
    answers = await pool.ask(16)
    queued, remote = pool.served()[0], pool.served()[1] - 6
    assert queued + remote == 16 and 6 <= queued <= 10, (queued, remote)
    assert pool.upstream.stats()["requests"]["mock"] == 6 + remote
    for _ in range(100):  # the worker counts a job after its end reply
        if worker.served == queued:
            break
        await asyncio.sleep(0.02)
    assert worker.served == queued
    # the gateway's own /metrics: one queue-wait sample per request the workers served
    text = pool.services.monitor.metrics.exposition().decode()
    assert f'modelyard_queue_wait_seconds_count{{model="tiny"}} {float(queued)}' in text

    # 3. The remote goes down: its failures fall back to the workers, then its circuit opens and
    #    the workers take every request.
    stop_process(pool.upstream.proc)
    for _ in range(20):
        await pool.ask(1)  # always answered: a failed remote attempt falls back to the queue
        if pool.remote.state is BreakerState.OPEN:
            break
    assert pool.remote.state is BreakerState.OPEN and pool.remote.errors == 2
    before = pool.queued.served
    await pool.ask(8)
    assert pool.queued.served == before + 8
