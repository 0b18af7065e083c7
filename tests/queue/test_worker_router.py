"""Routing policies over worker load reports (pure function), and the queued backend's use of them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from modelyard.gateway.backends.base import BackendRequest, Endpoint
from modelyard.gateway.backends.queued import QueuedBackend
from modelyard.gateway.worker_router import pick_worker
from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.queue.base import WorkerReport
from modelyard.queue.memory import InProcessQueue
from modelyard.settings import QueueSettings
from modelyard.tenancy.records import AdapterInfo


def rep(wid: str, in_flight: int = 0, *, cap: int = 10, **kw: object) -> WorkerReport:
    return WorkerReport(worker_id=wid, models=["m"], in_flight=in_flight, capacity=cap, **kw)  # type: ignore[arg-type]


def test_pull_never_targets() -> None:
    assert pick_worker([rep("a")], "m", policy="pull") is None


def test_least_loaded_then_kv_usage() -> None:
    reports = [rep("a", 5), rep("b", 2), rep("c", 2, kv_cache_usage=0.1)]
    assert pick_worker(reports, "m", policy="least_loaded") == "b"


def test_skips_draining_full_and_other_models() -> None:
    reports = [
        rep("a", 0, draining=True),
        rep("b", 10),
        WorkerReport(worker_id="c", models=["other"]),
        rep("d", 9),
    ]
    assert pick_worker(reports, "m", policy="least_loaded") == "d"
    assert pick_worker([rep("b", 10)], "m", policy="least_loaded") is None  # all full: shared queue
    assert pick_worker([], "m", policy="affinity") is None  # no worker yet: scale from zero


def test_adapter_affinity_beats_prefix_and_load() -> None:
    reports = [rep("a", 1), rep("b", 3, prefix_hashes=["p"]), rep("c", 5, adapters=["tenant-x"])]
    assert pick_worker(reports, "m", policy="affinity", adapter="tenant-x", prefix="p") == "c"
    assert pick_worker(reports, "m", policy="affinity", prefix="p") == "b"
    assert pick_worker(reports, "m", policy="affinity", prefix="zzz") == "a"


def test_load_cap_stops_affinity_from_overloading_one_worker() -> None:
    reports = [rep("a", 1), rep("b", 9, prefix_hashes=["p"])]
    assert pick_worker(reports, "m", policy="affinity", prefix="p", load_cap=0.8) == "a"
    assert pick_worker(reports, "m", policy="affinity", prefix="p", load_cap=0.95) == "b"


def test_unknown_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown routing policy"):
        pick_worker([rep("a")], "m", policy="random")


async def test_queued_backend_targets_the_worker_with_the_tenant_adapter_loaded() -> None:
    """Workers report adapters by the engine's name (``tenant/name/id``); the job must name that worker."""
    queue = InProcessQueue(worker_ttl_s=30)
    await queue.report(rep("idle", 0))
    await queue.report(rep("warm", 3, adapters=["t1/sql/a1"]))
    queued = QueuedBackend("m", queue, QueueSettings(routing="affinity"))
    adapter = AdapterInfo("a1", "t1", "m", "sql", "/adapters/sql", datetime(2026, 1, 1, tzinfo=UTC))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    req = BackendRequest(
        Endpoint.CHAT, body, ChatCompletionRequest.model_validate(body), "r1", "m", lora=adapter
    )
    agen = queued.stream(req)
    waiting = asyncio.create_task(agen.__anext__())  # submits, then waits for replies
    try:
        (delivery,) = await queue.take("warm", ["m"], 10, 2.0)
        assert delivery.job.target == "warm" and delivery.job.lora is not None
        assert delivery.job.lora["id"] == "a1"
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await agen.aclose()
