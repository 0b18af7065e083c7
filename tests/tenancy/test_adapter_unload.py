"""Deleting a tenant adapter unloads it: the local backend refuses new requests for it at once, lets
the requests already using it finish with its weights, then frees its engine slot; a worker on the real
Redis queue unloads it on its next heartbeat; and a deleted-then-recreated adapter of the same name
never serves the old weights (nor their prefix-cache blocks)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from engine.helpers import write_tiny_llama
from modelyard.errors import ModelNotFound
from modelyard.gateway.backends.base import BackendRequest, Endpoint
from modelyard.gateway.backends.local import LocalBackend
from modelyard.gateway.backends.queued import QueuedBackend
from modelyard.protocol.openai import CompletionRequest
from modelyard.queue.redis_streams import RedisStreamsQueue
from modelyard.queue.retired import RetiredAdapters
from modelyard.queue.worker import Worker
from modelyard.settings import LocalModelSettings, QueueSettings, Settings
from modelyard.tenancy.records import AdapterInfo
from servers import finish_tasks
from tenancy.test_adapters import write_adapter

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # peft on recent transformers
REDIS_URL = "redis://127.0.0.1:6379/0"


class Files:
    def __init__(self, base: Path, loras: dict[str, Path]) -> None:
        self.base, self.loras = base, loras


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    tmp = tmp_path_factory.mktemp("unload")
    base = write_tiny_llama(tmp / "tiny")
    return Files(base, {k: write_adapter(base, tmp / k, seed=s) for k, s in (("old", 1), ("new", 2))})


def make_settings(files: Files, tmp: Path, **queue: object) -> Settings:
    return Settings(
        data_dir=tmp,
        model_cache_dir=tmp / "models",
        local_models=[LocalModelSettings(name="tiny", source=str(files.base))],
        embedders=[],
        engine={
            "max_model_len": 128,
            "num_threads": 1,
            "dtype": "float32",
            "max_loras": 2,
            "max_lora_rank": 8,
        },
        queue=QueueSettings(**queue),  # type: ignore[arg-type]
    )


@pytest.fixture
async def local(files: Files, tmp_path: Path) -> AsyncIterator[LocalBackend]:
    settings = make_settings(files, tmp_path)
    backend = LocalBackend(settings.local_models[0], settings)
    await backend.start()
    yield backend
    await backend.close()


def adapter(path: Path, name: str = "support") -> AdapterInfo:
    return AdapterInfo(f"ad_{uuid.uuid4().hex[:16]}", "acme", "tiny", name, str(path), datetime.now(UTC))


def request(lora: AdapterInfo | None, max_tokens: int = 8, stream: bool = False) -> BackendRequest:
    body = {
        "model": "tiny",
        "prompt": [5, 6, 7, 8, 9, 10, 11, 12],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
    req = BackendRequest(
        Endpoint.COMPLETIONS, body, CompletionRequest.model_validate(body), uuid.uuid4().hex, "tiny"
    )
    req.lora, req.cache_salt = lora, "acme"
    return req


async def text(backend: LocalBackend | QueuedBackend, lora: AdapterInfo | None) -> str:
    return str(orjson.loads(await backend.complete(request(lora)))["choices"][0]["text"])


async def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_delete_refuses_new_requests_and_lets_running_ones_finish(
    local: LocalBackend, files: Files
) -> None:
    old = adapter(files.loras["old"])
    base_text, old_text = await text(local, None), await text(local, old)
    assert old_text != base_text
    long_full = "".join(
        [
            orjson.loads(p)["choices"][0]["text"]
            async for p in local.stream(request(old, 48, True))
            if b"choices" in p
        ]
    )
    stream = local.stream(request(old, 48, True))
    first = await stream.__anext__()
    await local.retire_adapter(old.engine_name)
    assert old.engine_name in local.loaded_adapters()  # still used by the running stream
    with pytest.raises(ModelNotFound):
        await text(local, old)  # new requests: 404, as if it never existed
    rest = [first] + [p async for p in stream]
    got = "".join(orjson.loads(p)["choices"][0]["text"] for p in rest if orjson.loads(p)["choices"])
    assert got == long_full  # finished with the adapter's weights, to the end
    await wait_until(lambda: old.engine_name not in local.loaded_adapters())


async def test_idle_adapter_is_unloaded_at_once(local: LocalBackend, files: Files) -> None:
    old = adapter(files.loras["old"])
    await text(local, old)
    assert local.loaded_adapters() == [old.engine_name]
    await local.retire_adapter(old.engine_name)
    assert local.loaded_adapters() == []


async def test_a_recreated_name_never_serves_the_old_weights(local: LocalBackend, files: Files) -> None:
    probe = adapter(files.loras["new"], name="probe")
    new_text = await text(local, probe)  # what the new weights answer on a cold cache
    await local.retire_adapter(probe.engine_name)
    old = adapter(files.loras["old"])
    old_text = await text(local, old)  # fills the prefix cache for this prompt under the old adapter
    assert old_text != new_text
    await local.retire_adapter(old.engine_name)
    again = adapter(files.loras["new"])  # same tenant and name, new registration, new weights
    assert again.engine_name != old.engine_name
    assert await text(local, again) == new_text


@pytest.fixture
def redis_queue_settings(files: Files, tmp_path: Path) -> Settings:
    prefix = f"mytest-{uuid.uuid4().hex[:8]}"
    return make_settings(
        files, tmp_path, key_prefix=prefix, heartbeat_s=0.1, claim_idle_s=1.0, worker_ttl_s=1.0
    )


@pytest.mark.redis
async def test_a_worker_on_the_redis_queue_unloads_a_deleted_adapter(
    local: LocalBackend, files: Files, redis_queue_settings: Settings
) -> None:
    q = redis_queue_settings.queue
    queue = RedisStreamsQueue(REDIS_URL, key_prefix=q.key_prefix, worker_ttl_s=1.0)
    retired = RetiredAdapters.from_url(REDIS_URL, q.key_prefix)
    worker = Worker(queue, {"tiny": local}, q, worker_id="wr", drain_timeout_s=5, retired=retired)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    gateway = QueuedBackend("tiny", queue, q)  # type: ignore[arg-type]
    try:
        kept, deleted = adapter(files.loras["old"], name="kept"), adapter(files.loras["old"])
        assert await text(gateway, kept) == await text(gateway, deleted)
        assert sorted(local.loaded_adapters()) == sorted([kept.engine_name, deleted.engine_name])
        await retired.retire(deleted.engine_name)  # what DELETE /admin/adapters/... does
        await wait_until(lambda: local.loaded_adapters() == [kept.engine_name], timeout_s=5)
        with pytest.raises(ModelNotFound):  # a job queued before the delete reached the worker: 404
            await text(gateway, deleted)
        assert await retired.retired([kept.engine_name, deleted.engine_name]) == {deleted.engine_name}
    finally:
        worker.drain()
        await finish_tasks([task], 30, "draining the worker")  # 5 s drain plus slack for a loaded machine
        await queue.purge()
        await queue.close()
        await retired.close()


async def test_affinity_routes_a_tenant_adapter_to_the_worker_holding_it() -> None:
    from modelyard.queue.base import WorkerReport
    from modelyard.queue.memory import InProcessQueue

    queue = InProcessQueue()
    held = adapter(Path("/nowhere"))
    await queue.report(WorkerReport("idle", ["tiny"], capacity=8))
    await queue.report(WorkerReport("holder", ["tiny"], in_flight=2, capacity=8, adapters=[held.engine_name]))
    gateway = QueuedBackend("tiny", queue, QueueSettings(routing="affinity", load_cap=0.9))  # type: ignore[arg-type]
    task = asyncio.create_task(gateway.complete(request(held)))
    try:
        (delivery,) = await queue.take("holder", ["tiny"], 1, block_s=5)
        assert delivery.job.target == "holder"  # not the idle worker: it would load the adapter again
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
