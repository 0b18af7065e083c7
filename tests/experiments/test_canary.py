"""Canary rollouts on the real store (SQLite and PostgreSQL), with request-log rows written as the
request log writes them: a bad version rolls back on its own, a good one is promoted step by step and
the alias moved, no traffic pauses it, a model without a stable version is refused. Streamed requests
gate on time to first token and rated ones on feedback; each check is counted by action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from canary_traffic import register, traffic

from modelyard.errors import Conflict, InvalidRequest
from modelyard.experiments.canary import (
    CANARY,
    DECISIONS,
    STABLE,
    Gate,
    decide,
    rollout_state,
    run_rollouts,
    start_rollout,
)
from modelyard.experiments.records import Status
from modelyard.experiments.report import request_rows
from modelyard.experiments.store import ExperimentStore
from modelyard.registry import Registry

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def start(store: ExperimentStore, registry: Registry, **kw: object) -> str:
    exp = start_rollout(store, registry, "chat", 2, min_duration_s=60, min_samples=20, now=T0, **kw)  # type: ignore[arg-type]
    assert exp.status is Status.RUNNING and [v.weight for v in exp.variants] == [95, 5]
    assert [v.model for v in exp.variants] == ["chat:1", "chat:2"]
    return exp.id


def test_a_bad_version_rolls_back_on_its_own(registry: Registry, store: ExperimentStore) -> None:
    register(registry)
    eid = start(store, registry)
    traffic(registry, store, eid, T0 + timedelta(seconds=5), 10, canary_status=502)
    assert run_rollouts(store, registry.engine, registry, T0 + timedelta(seconds=10)) == {eid: "rollback"}
    exp = store.get(eid)
    assert exp.status is Status.STOPPED and exp.rollout is not None and exp.rollout["state"] == "rolled_back"
    assert {v.name: v.weight for v in exp.variants} == {STABLE: 100, CANARY: 0}
    assert "error_rate" in exp.rollout["history"][-1]["reason"]
    assert registry.get_model("chat").aliases["production"] == 1  # the alias is unchanged
    assert run_rollouts(store, registry.engine, registry, T0 + timedelta(seconds=20)) == {}


def test_a_slow_version_rolls_back_on_latency(registry: Registry, store: ExperimentStore) -> None:
    register(registry)
    eid = start(store, registry)
    traffic(registry, store, eid, T0 + timedelta(seconds=5), 10, canary_ms=400.0)
    assert run_rollouts(store, registry.engine, registry, T0 + timedelta(seconds=10)) == {eid: "rollback"}
    assert "latency_ms" in (store.get(eid).rollout or {})["history"][-1]["reason"]


def test_a_version_slow_to_its_first_token_rolls_back_on_ttft(
    registry: Registry, store: ExperimentStore
) -> None:
    register(registry)
    eid = start(store, registry)
    traffic(registry, store, eid, T0 + timedelta(seconds=5), 10, canary_ttft_ms=300.0)
    assert run_rollouts(store, registry.engine, registry, T0 + timedelta(seconds=10)) == {eid: "rollback"}
    assert "ttft_ms" in (store.get(eid).rollout or {})["history"][-1]["reason"]


def test_streamed_rows_carry_the_inter_token_latency(registry: Registry, store: ExperimentStore) -> None:
    register(registry)
    eid = start(store, registry)
    traffic(registry, store, eid, T0 + timedelta(seconds=5), 3, canary_ttft_ms=40.0)
    rows = request_rows(registry.engine, store, store.exposures(eid, T0), {})
    assert len(rows) == 6
    for r in rows:  # 3 output tokens: two gaps after the first
        assert r["itl_ms"] == pytest.approx((r["latency_ms"] - r["ttft_ms"]) / 2)
    assert {round(r["ttft_ms"]) for r in rows if r["variant"] == CANARY} == {40, 41, 42}


def test_a_version_rated_lower_rolls_back_on_feedback(registry: Registry, store: ExperimentStore) -> None:
    register(registry)
    eid = start(store, registry)
    before = DECISIONS["rollback"]
    traffic(registry, store, eid, T0 + timedelta(seconds=5), 10, feedback=(5.0, 1.0))
    assert run_rollouts(store, registry.engine, registry, T0 + timedelta(seconds=10)) == {eid: "rollback"}
    assert "feedback" in (store.get(eid).rollout or {})["history"][-1]["reason"]
    assert DECISIONS["rollback"] == before + 1


def test_a_version_rated_higher_is_not_rolled_back(registry: Registry, store: ExperimentStore) -> None:
    register(registry)
    eid = start(store, registry)
    traffic(registry, store, eid, T0 + timedelta(seconds=5), 25, feedback=(2.0, 5.0))
    assert run_rollouts(store, registry.engine, registry, T0 + timedelta(seconds=61)) == {eid: "advance"}


def test_a_good_version_is_promoted_step_by_step_and_the_alias_moved(
    registry: Registry, store: ExperimentStore
) -> None:
    register(registry)
    eid = start(store, registry)
    seq = [0]
    now = T0
    actions = []
    for step in range(4):
        traffic(registry, store, eid, now + timedelta(seconds=1), 25, seq=seq)
        early = run_rollouts(store, registry.engine, registry, now + timedelta(seconds=30))
        assert early == {eid: "wait"}  # the step's minimum duration has not passed
        now += timedelta(seconds=61)
        actions.append(run_rollouts(store, registry.engine, registry, now)[eid])
        if step < 3:
            weights = {v.name: v.weight for v in store.get(eid).variants}
            assert weights[CANARY] == [25, 50, 100][step]
    assert actions == ["advance", "advance", "advance", "promote"]
    exp = store.get(eid)
    assert exp.status is Status.CONCLUDED and (exp.rollout or {})["state"] == "promoted"
    assert registry.get_model("chat").aliases["production"] == 2


def test_no_traffic_pauses_and_never_advances(registry: Registry, store: ExperimentStore) -> None:
    register(registry)
    eid = start(store, registry, inconclusive_limit=2)
    assert run_rollouts(store, registry.engine, registry, T0 + timedelta(seconds=61)) == {eid: "wait"}
    assert run_rollouts(store, registry.engine, registry, T0 + timedelta(seconds=62)) == {eid: "pause"}
    exp = store.get(eid)
    assert exp.status is Status.PAUSED and (exp.rollout or {})["step"] == 0
    assert {v.name: v.weight for v in exp.variants}[CANARY] == 5


def test_bad_rollouts_are_4xx_and_create_nothing(registry: Registry, store: ExperimentStore) -> None:
    registry.register_model("chat")
    registry.create_version(
        "chat", artifact_uri="https://example.com/chat-1", architecture="llama", context_length=128
    )
    registry.create_version(
        "chat", artifact_uri="https://example.com/chat-2", architecture="llama", context_length=128
    )
    with pytest.raises(InvalidRequest, match="no stable version"):
        start_rollout(store, registry, "chat", 2)
    registry.set_alias("chat", "production", 1)
    with pytest.raises(InvalidRequest, match="no version 7"):
        start_rollout(store, registry, "chat", 7)
    with pytest.raises(InvalidRequest, match="the last step is 100"):
        start_rollout(store, registry, "chat", 2, steps=[5, 50])
    assert store.list_experiments() == []
    start_rollout(store, registry, "chat", 2)
    with pytest.raises(Conflict):
        start_rollout(store, registry, "chat", 2)
    assert len(store.list_experiments()) == 1


def test_failure_limit_tolerates_one_bad_check() -> None:
    s = rollout_state([10, 100], failure_limit=2, min_duration_s=0, now=T0)
    action, s = decide(s, Gate("fail", "x"), T0)
    assert action == "wait" and s["failures"] == 1
    action, s = decide(s, Gate("fail", "x"), T0)
    assert action == "rollback" and s["state"] == "rolled_back"
