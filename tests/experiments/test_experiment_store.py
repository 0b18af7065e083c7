"""The experiment store on SQLite and PostgreSQL: validation that changes nothing, transitions, the
one-running-experiment-per-route-and-unit rule, weights, exposures and tenant-scoped feedback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidRequest, NotFound
from modelyard.experiments.records import Status, Variant
from modelyard.experiments.store import ExperimentStore, Exposure
from modelyard.registry import Registry


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "id": "exp-1",
        "route": "chat",
        "unit": "user",
        "variants": [
            {"name": "control", "weight": 50, "model": "remote-chat"},
            {"name": "warm", "weight": 50, "model": "remote-chat", "params": {"temperature": 0.9}},
        ],
        **extra,
    }


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 40}]}, "variants"),
        ({"variants": [{"name": "a", "weight": 100}]}, "variants"),
        ({"variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]}, "variants"),
        (
            {"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "params": {"n": 3}}]},
            "variants[1].params",
        ),
        ({"unit": "cookie"}, "unit"),
        ({"primary_metric": "vibes"}, "primary_metric"),
        ({"traffic_percent": 0}, "traffic_percent"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_specs_are_400s_naming_the_field_and_store_nothing(
    store: ExperimentStore, registry: Registry, change: dict[str, Any], param: str
) -> None:
    before = registry.revision()
    with pytest.raises(InvalidRequest) as info:
        store.create(spec(**change), tenant=None)
    assert info.value.param == param
    assert store.list_experiments() == [] and registry.revision() == before


def test_weights_not_summing_to_100_say_their_sum(store: ExperimentStore) -> None:
    with pytest.raises(InvalidRequest, match="sum to 90; they must sum to 100"):
        store.create(spec(variants=[{"name": "a", "weight": 50}, {"name": "b", "weight": 40}]), tenant=None)


def test_an_unknown_target_is_refused_by_the_check(store: ExperimentStore) -> None:
    def check(v: Variant, route: str, kind: str, tenant: str | None) -> None:
        if v.model not in ("remote-chat",):
            raise InvalidRequest(f"no model `{v.model}`", param="variants")

    bad = spec(
        variants=[
            {"name": "a", "weight": 50, "model": "remote-chat"},
            {"name": "b", "weight": 50, "model": "nope"},
        ]
    )
    with pytest.raises(InvalidRequest, match="nope"):
        store.create(bad, tenant=None, check_target=check)
    assert store.list_experiments() == []


def test_lifecycle_and_one_running_experiment_per_route_and_unit(
    store: ExperimentStore, registry: Registry
) -> None:
    e = store.create(spec(), tenant=None, actor="key:k1")
    assert e.status is Status.DRAFT and e.salt == "exp-1" and store.active() == []
    store.create(spec(id="exp-2"), tenant=None)
    store.create(spec(id="exp-3", unit="tenant"), tenant=None)
    before = registry.revision()
    assert store.transition("exp-1", Status.RUNNING).started_at is not None
    assert registry.revision() == before + 1
    with pytest.raises(Conflict, match="exp-1"):
        store.transition("exp-2", Status.RUNNING)
    assert store.get("exp-2").status is Status.DRAFT
    store.transition("exp-3", Status.RUNNING)  # another unit on the same route is fine
    store.transition("exp-1", Status.PAUSED)
    with pytest.raises(Conflict):
        store.transition("exp-2", Status.RUNNING)  # paused still holds the route
    store.transition("exp-1", Status.STOPPED)
    store.transition("exp-2", Status.RUNNING)
    with pytest.raises(Conflict, match="stopped cannot become running"):
        store.transition("exp-1", Status.RUNNING)
    assert store.transition("exp-1", Status.CONCLUDED).ended_at is not None
    with pytest.raises(Conflict):
        store.create(spec(), tenant=None)
    assert {e.id for e in store.active()} == {"exp-2", "exp-3"}


def test_tenants_see_only_their_own_experiments(store: ExperimentStore) -> None:
    store.create(spec(), tenant="acme")
    assert [e.id for e in store.list_experiments("acme")] == ["exp-1"]
    assert store.list_experiments("globex") == []
    with pytest.raises(NotFound):
        store.get("exp-1", "globex")
    with pytest.raises(NotFound):
        store.transition("exp-1", Status.RUNNING, tenant="globex")


def test_set_weights_relays_out_and_validates(store: ExperimentStore) -> None:
    store.create(spec(), tenant=None)
    e = store.set_weights("exp-1", {"control": 60, "warm": 40})
    assert [v.weight for v in e.variants] == [60, 40]
    assert sum(b - a for a, b, n in e.layout if n == "control") == 6000
    with pytest.raises(InvalidRequest):
        store.set_weights("exp-1", {"control": 60, "warm": 30})
    assert [v.weight for v in store.get("exp-1").variants] == [60, 40]


def test_feedback_needs_a_response_of_the_callers_tenant(store: ExperimentStore) -> None:
    store.create(spec(), tenant=None)
    now = datetime.now(UTC)
    store.record_exposures(
        [Exposure("exp-1", "control", "u1", "req-1", "chatcmpl-1", "acme", now),
         Exposure("exp-1", "warm", "u2", "req-2", "chatcmpl-2", "acme", now)]
    )  # fmt: skip
    assert [x.request_id for x in store.exposures("exp-1")] == ["req-1", "req-2"]
    with pytest.raises(NotFound):
        store.add_feedback("chatcmpl-1", tenant="globex", raw="up", score=1.0, comment=None, actor="k")
    with pytest.raises(NotFound):
        store.add_feedback("chatcmpl-9", tenant="acme", raw="up", score=1.0, comment=None, actor="k")
    out = store.add_feedback("chatcmpl-1", tenant="acme", raw="up", score=1.0, comment="good", actor="k")
    assert (out["experiment"], out["variant"]) == ("exp-1", "control")
    store.add_feedback("chatcmpl-1", tenant="acme", raw="2", score=0.25, comment=None, actor="k")
    assert store.feedback(["req-1", "req-2"]) == {"req-1": pytest.approx(0.625)}
