"""Routing policies over worker load reports (pure function)."""

from __future__ import annotations

import pytest

from modelyard.gateway.worker_router import pick_worker
from modelyard.queue.base import WorkerReport


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
