"""Shutdown of the Redis-queue paths finishes within its stated bound, even when a cancel is lost.

The gateway's teardown hang (``test_mixed_pool``): on Python 3.11, redis-py's write path wraps the
socket write in ``asyncio.wait_for``, which drops a ``cancel()`` landing just after the write
finished; the queued backend's poller then kept polling with its cancel swallowed and
``QueuedBackend.close()`` awaited it forever. These tests stop loops at random moments, many
times, against the real Redis; each stop must end within its bound (a hang fails, never stalls).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import pytest
from queue_helpers import REDIS_URL, tiny_settings, unique_prefix

from modelyard.aio import RECANCEL_S, cancel_and_wait
from modelyard.app import CLOSE_BOUND_S as CLOSE_BOUND_APP_S
from modelyard.app import start_services, stop_services
from modelyard.gateway.backends.base import Endpoint
from modelyard.gateway.backends.local import LocalBackend
from modelyard.gateway.backends.queued import CLOSE_BOUND_S, QueuedBackend
from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.queue.base import WorkerLost
from modelyard.queue.factory import redis_queue
from modelyard.queue.worker import STOP_BOUND_S, Worker
from modelyard.settings import QueueSettings
from servers import finish_tasks


async def test_cancel_and_wait_resends_a_lost_cancel_and_gives_up_at_its_bound() -> None:
    swallowed = asyncio.Event()

    async def swallows_one_cancel() -> None:  # what a lost cancel looks like from outside
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.set()
        while True:
            await asyncio.sleep(0.01)

    async def ignores_every_cancel() -> None:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass

    lossy = asyncio.create_task(swallows_one_cancel())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    assert await cancel_and_wait([lossy], 5) == set()
    assert swallowed.is_set() and lossy.cancelled()
    assert time.monotonic() - t0 < RECANCEL_S + 0.5

    stubborn = asyncio.create_task(ignores_every_cancel(), name="stubborn")
    await asyncio.sleep(0)  # started: a task cancelled before its first step never runs
    t0 = time.monotonic()
    assert await cancel_and_wait([stubborn], 0.5) == {stubborn}
    assert 0.4 < time.monotonic() - t0 < 1.5
    await stubborn  # ends by itself after 3 s


@pytest.mark.redis
async def test_queued_backend_close_is_bounded_at_any_moment_of_its_poll() -> None:
    """The poller polls Redis back to back (heartbeat 1 ms), so a close lands in a Redis command
    most of the time; with one plain cancel about every other close here hung for ever."""
    cfg = QueueSettings(backend="redis", redis_url=REDIS_URL, key_prefix=unique_prefix(), heartbeat_s=0.001)
    worst = 0.0
    for _ in range(40):
        backend = QueuedBackend("tiny", redis_queue(cfg), cfg)
        await backend.start()
        await asyncio.sleep(random.random() * 0.02)
        t0 = time.monotonic()
        async with asyncio.timeout(CLOSE_BOUND_S + 5):  # fail, not stall, if it hangs
            await backend.close()
        worst = max(worst, time.monotonic() - t0)
        assert backend._poller is not None and backend._poller.done()
    assert worst < CLOSE_BOUND_S, worst


@pytest.mark.redis
async def test_stop_services_with_streams_in_flight_on_live_workers_is_bounded(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """The gateway stops while streams are open on in-process workers: ``stop_services`` returns within
    ``drain_timeout_s + CLOSE_BOUND_S``, every open stream ends (an in-band ``WorkerLost``), the
    workers free their slots, and they drain within their own bound."""
    drain_s = 0.1
    settings = tiny_settings(
        tiny_dir, tmp_path, backend="redis", key_prefix=unique_prefix(), heartbeat_s=0.1, claim_idle_s=1.0
    ).model_copy(update={"drain_timeout_s": drain_s})
    services = await start_services(settings)
    local = LocalBackend(settings.local_models[0], settings)
    await local.start()
    workers = [
        Worker(
            redis_queue(settings.queue), {"tiny": local}, settings.queue, worker_id=f"w{i}", drain_timeout_s=2
        )
        for i in range(2)
    ]
    runs = [asyncio.create_task(w.run()) for w in workers]
    outcomes: list[str] = []
    # Each client reads its first chunk, then waits: its stream stays open however fast the tiny model
    # generates (on an idle machine it finishes 200 tokens before a 20 ms poll sees four streams).
    resume = asyncio.Event()

    async def one_stream(i: int) -> None:
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": f"count {i}"}],
            "max_tokens": 200,
            "ignore_eos": True,
            "stream": True,
        }
        parsed = ChatCompletionRequest.model_validate(body)
        handle = await services.gateway.open_stream(Endpoint.CHAT, parsed, body, uuid.uuid4().hex)
        try:
            async for _ in handle:
                await resume.wait()
            outcomes.append("done")
        except WorkerLost:
            outcomes.append("lost")
        finally:
            await handle.aclose()

    streams = [asyncio.create_task(one_stream(i)) for i in range(4)]
    try:
        for _ in range(200):  # every stream is open: its first payload came through a worker
            if services.gateway.active_streams == 4:
                break
            await asyncio.sleep(0.02)
        assert services.gateway.active_streams == 4, outcomes
        t0 = time.monotonic()
        async with asyncio.timeout(drain_s + CLOSE_BOUND_APP_S + 10):  # fail, never stall
            await stop_services(services)  # the drain waits drain_s for the paused streams, then closes
        took = time.monotonic() - t0
        resume.set()
        assert drain_s <= took < drain_s + CLOSE_BOUND_APP_S, took
        # the streams end within one reply read of the close; none was left hanging
        done, pending = await asyncio.wait(streams, timeout=5)
        assert not pending and all(t.exception() is None for t in done)
        assert outcomes.count("lost") >= 1 and len(outcomes) == 4, outcomes
        for _ in range(100):  # the gateway cancelled the jobs: the workers free their slots
            if sum(w.in_flight for w in workers) == 0:
                break
            await asyncio.sleep(0.05)
        assert sum(w.in_flight for w in workers) == 0
    finally:
        for w in workers:
            w.drain()
        await finish_tasks(runs, 2 + STOP_BOUND_S + 10, "draining workers")
        await cancel_and_wait(streams, 2)
        await local.close()
        cleanup = redis_queue(settings.queue)
        await cleanup.purge()
        await cleanup.close()
