"""Gateway-side QueuedBackend + Worker over both WorkQueue implementations, against the direct local backend.

The same test body runs on the in-process queue and on Redis Streams: the queued path must give
the very bytes (minus ``created``) and usage that the in-process engine path gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from queue_helpers import redis_test_queue

from modelyard.errors import ContextLengthExceeded, UpstreamTimeout
from modelyard.gateway.backends.base import BackendRequest, Endpoint
from modelyard.gateway.backends.local import LocalBackend
from modelyard.gateway.backends.queued import QueuedBackend
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest
from modelyard.queue.base import Job, QueueFull
from modelyard.queue.memory import InProcessQueue
from modelyard.queue.worker import Worker
from modelyard.settings import Settings


def chat(rid: str, content: str, **kw: object) -> BackendRequest:
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "temperature": 0, **kw}
    return BackendRequest(Endpoint.CHAT, body, ChatCompletionRequest.model_validate(body), rid, "tiny")


def completion(rid: str, prompt: str, **kw: object) -> BackendRequest:
    body = {"model": "tiny", "prompt": prompt, "temperature": 0, **kw}
    return BackendRequest(Endpoint.COMPLETIONS, body, CompletionRequest.model_validate(body), rid, "tiny")


def strip(payload: bytes) -> dict[str, object]:
    d = orjson.loads(payload)
    d.pop("created", None)
    return d


@pytest.fixture
async def local(settings: Settings) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(settings.local_models[0], settings)
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    if request.param == "memory":
        yield InProcessQueue(worker_ttl_s=1.0)
        return
    async with redis_test_queue() as q:
        yield q


@pytest.fixture
async def worker(queue: object, local: LocalBackend, settings: Settings) -> AsyncIterator[Worker]:
    w = Worker(queue, {"tiny": local}, settings.queue, worker_id="w1", drain_timeout_s=5)  # type: ignore[arg-type]
    task = asyncio.create_task(w.run())
    yield w
    w.drain()
    await asyncio.wait_for(task, 10)


async def collect(agen: AsyncIterator[bytes]) -> list[bytes]:
    return [p async for p in agen]


async def test_queued_equals_local(
    queue: object, worker: Worker, local: LocalBackend, settings: Settings
) -> None:
    queued = QueuedBackend("tiny", queue, settings.queue)  # type: ignore[arg-type]
    for make in (chat, completion):
        kw = {"max_tokens": 12, "stream_options": {"include_usage": True}}
        # distinct cache salts (``user``) so both runs start with a cold prefix cache
        direct = await collect(local.stream(make("a", "Hello world", user="d", **kw)))
        via = await collect(queued.stream(make("a", "Hello world", user="v", **kw)))
        assert [strip(p) for p in via] == [strip(p) for p in direct]
        assert strip(via[-1])["usage"] == strip(direct[-1])["usage"]
        full_direct = strip(await local.complete(make("b", "The capital", max_tokens=9, user="d")))
        full_via = strip(await queued.complete(make("b", "The capital", max_tokens=9, user="v")))
        assert full_via == full_direct
    assert queued.stats()["submitted"] == 4 and queued.stats()["queue_time_p50_s"] is not None


async def test_errors_before_output_keep_their_class(
    queue: object, worker: Worker, settings: Settings
) -> None:
    queued = QueuedBackend("tiny", queue, settings.queue)  # type: ignore[arg-type]
    with pytest.raises(ContextLengthExceeded):
        await collect(queued.stream(chat("long", "Hello " * 10, max_tokens=250)))
    with pytest.raises(ContextLengthExceeded):
        await queued.complete(chat("long2", "Hello " * 10, max_tokens=250))


async def test_cancel_frees_the_engine_request(
    queue: object, local: LocalBackend, settings: Settings
) -> None:
    req = completion("c", "A quick", max_tokens=240, user="full")
    full = orjson.loads(await local.complete(req))
    assert full["usage"]["completion_tokens"] == 240  # precondition: this request runs to its limit
    before = local.stats()["generation_tokens_total"]
    cfg = settings.queue.model_copy(update={"cancel_poll_s": 0.01})  # the tiny model is fast
    worker = Worker(queue, {"tiny": local}, cfg, worker_id="wc")  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        queued = QueuedBackend("tiny", queue, cfg)  # type: ignore[arg-type]
        agen = queued.stream(completion("c2", "A quick", max_tokens=240, user="cancelled"))
        await agen.__anext__()
        await agen.aclose()
        for _ in range(100):
            if local.stats()["num_running"] == 0 and worker.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        stats = local.stats()
        assert stats["num_running"] == 0 and worker.in_flight == 0 and stats["kv_cache_usage"] == 0.0
        assert stats["generation_tokens_total"] - before < 240  # aborted, not run to the end
    finally:
        worker.drain()
        await asyncio.wait_for(task, 10)


async def test_queue_full_is_503_with_retry_after(settings: Settings) -> None:
    q = InProcessQueue(max_queued=2, retry_after_s=3)
    for i in range(2):
        await q.submit(Job(f"r{i}", "tiny", "completions", {"prompt": "x"}, stream=False))
    with pytest.raises(QueueFull) as info:
        await q.submit(Job("r3", "tiny", "completions", {"prompt": "x"}, stream=False))
    assert info.value.status_code == 503 and info.value.retry_after_s == 3


async def test_no_worker_means_timeout_not_hang(queue: object, settings: Settings) -> None:
    cfg = settings.queue.model_copy(update={"queue_timeout_s": 0.5})
    queued = QueuedBackend("nobody-serves-this", queue, cfg)  # type: ignore[arg-type]
    with pytest.raises(UpstreamTimeout):
        await collect(queued.stream(chat("t", "Hello", max_tokens=4)))


async def test_prefix_affinity_and_orphaned_targets(
    queue: object, local: LocalBackend, settings: Settings
) -> None:
    """Affinity keeps a shared prefix on one worker; a job routed to a dead worker is adopted."""
    workers = [
        Worker(queue, {"tiny": local}, settings.queue, worker_id=w, drain_timeout_s=5)  # type: ignore[arg-type]
        for w in ("wa", "wb")
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        cfg = settings.queue.model_copy(update={"routing": "affinity"})
        queued = QueuedBackend("tiny", queue, cfg)  # type: ignore[arg-type]
        while len(await queue.workers()) < 2:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
        await queued.complete(chat("p0", "A long shared system prefix", max_tokens=2))
        await asyncio.sleep(2 * settings.queue.heartbeat_s)  # the prefix hash reaches the reports
        for i in range(5):
            await queued.complete(chat(f"p{i + 1}", "A long shared system prefix", max_tokens=2))
        # A worker counts a job after its end reply, which the client may see first: let it settle.
        for _ in range(100):
            if sum(w.served for w in workers) == 6:
                break
            await asyncio.sleep(0.02)
        assert sorted(w.served for w in workers) == [0, 6]

        body = {"model": "tiny", "prompt": "x", "max_tokens": 2}
        await queue.submit(Job("orphan", "tiny", "completions", body, False, target="ghost"))  # type: ignore[attr-defined]
        cursor, kinds = "0", []
        while "end" not in kinds:
            replies, cursor = await queue.read("orphan", cursor, 1.0)  # type: ignore[attr-defined]
            kinds += [r.kind.value for r in replies]
        assert kinds == ["start", "data", "end"]
    finally:
        for w in workers:
            w.drain()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


class EchoBackend:
    """A real Backend implementation that answers with what its request carried (tenant fields)."""

    name, model = "echo#local", "tiny"
    endpoints = frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS})

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def ready(self) -> bool:
        return True

    def stats(self) -> dict[str, object]:
        return {}

    async def complete(self, request: BackendRequest) -> bytes:
        lora = request.lora
        return orjson.dumps(
            {
                "salt": request.cache_salt,
                "adapter": lora.engine_name if lora else None,
                "path": lora.path if lora else None,
            }
        )

    async def stream(self, request: BackendRequest) -> AsyncIterator[bytes]:
        yield await self.complete(request)


async def test_tenant_salt_and_adapter_reach_the_worker(queue: object, settings: Settings) -> None:
    from datetime import UTC, datetime

    from modelyard.tenancy.records import AdapterInfo

    w = Worker(queue, {"tiny": EchoBackend()}, settings.queue, worker_id="we")  # type: ignore[arg-type, dict-item]
    task = asyncio.create_task(w.run())
    try:
        queued = QueuedBackend("tiny", queue, settings.queue)  # type: ignore[arg-type]
        req = chat("t1", "Hello")
        req.cache_salt = "tenant-a"
        req.lora = AdapterInfo("a1", "tenant-a", "tiny", "support", "/adapters/a1", datetime.now(UTC))
        assert orjson.loads(await queued.complete(req)) == {
            "salt": "tenant-a",
            "adapter": "tenant-a/support/a1",  # AdapterInfo.engine_name: tenant/name/registration
            "path": "/adapters/a1",
        }
        plain = await collect(queued.stream(chat("t2", "Hello")))
        assert orjson.loads(plain[0]) == {"salt": None, "adapter": None, "path": None}
    finally:
        w.drain()
        await asyncio.wait_for(task, 10)


async def test_claimed_job_of_a_live_owner_is_left_alone_then_ended_when_it_dies(
    queue: object, settings: Settings
) -> None:
    from modelyard.queue.base import WorkerReport

    q: Any = queue
    await q.submit(Job("slow", "tiny", "completions", {"model": "tiny", "prompt": "x"}, True))
    (taken,) = await q.take("owner", ["tiny"], 1, 1.0)
    assert await q.mark_started("slow", "owner") is None  # "owner" streamed output, then stalled

    async def owner_heartbeat() -> None:  # alive, but its job's entry is not kept fresh
        while True:
            await q.report(WorkerReport("owner", ["tiny"]))
            await asyncio.sleep(0.1)

    beat = asyncio.create_task(owner_heartbeat())
    w = Worker(q, {"tiny": EchoBackend()}, settings.queue, worker_id="claimer")  # type: ignore[dict-item]
    task = asyncio.create_task(w.run())
    try:
        await asyncio.sleep(settings.queue.claim_idle_s + 4 * settings.queue.heartbeat_s)
        replies, _ = await q.read("slow", "0", 0.1)
        assert replies == []  # the owner is alive: no error, no replay
        beat.cancel()
        await q.unregister("owner")  # now it is gone
        replies = []
        for _ in range(50):
            replies, _ = await q.read("slow", "0", 0.2)
            if replies:
                break
        (reply,) = replies
        assert reply.kind.value == "error" and reply.error["class"] == "WorkerLost"
        assert "not replayed" in reply.error["message"]
        assert await q.depth("tiny") == 0  # acknowledged: nothing left to claim
    finally:
        beat.cancel()
        w.drain()
        await asyncio.wait_for(task, 10)
