"""Router policies, circuit breaker and fallback order, on real Router objects with a manual clock."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelyard.errors import ModelNotFound, OverCapacity
from modelyard.gateway.backends.base import Backend, BackendRequest, Endpoint
from modelyard.gateway.router import BreakerState, Router
from modelyard.settings import CircuitBreakerSettings, RouterPolicy


class NamedBackend:
    """The smallest Backend: only its identity matters to the router."""

    endpoints = frozenset(Endpoint)

    def __init__(self, name: str, model: str) -> None:
        self.name, self.model = name, model

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def ready(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {}

    async def complete(self, request: BackendRequest) -> bytes:
        return b"{}"

    async def stream(self, request: BackendRequest) -> AsyncIterator[bytes]:
        yield b"{}"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(policy: RouterPolicy, *, threshold: int = 2, fallbacks: dict[str, list[str]] | None = None):
    clock = Clock()
    router = Router(
        policy,
        CircuitBreakerSettings(failure_threshold=threshold, reset_after_s=10),
        fallbacks=fallbacks,
        rng=random.Random(0),
        clock=clock,
    )
    return router, clock


def test_backend_satisfies_protocol() -> None:
    assert isinstance(NamedBackend("a", "m"), Backend)


def test_weighted_split_follows_weights() -> None:
    router, _ = make(RouterPolicy.WEIGHTED)
    router.add(NamedBackend("a", "m"), weight=3)
    router.add(NamedBackend("b", "m"), weight=1)
    firsts = Counter(router.candidates("m")[0].name for _ in range(4000))
    assert 0.70 < firsts["a"] / 4000 < 0.80
    assert {d.name for d in router.candidates("m")} == {"a", "b"}  # the other one stays as a fallback


def test_least_loaded_prefers_fewest_in_flight_per_weight() -> None:
    router, _ = make(RouterPolicy.LEAST_LOADED)
    a = router.add(NamedBackend("a", "m"))
    b = router.add(NamedBackend("b", "m"), weight=2)
    a.in_flight, b.in_flight = 1, 3  # per weight: a=1.0, b=1.5
    assert router.candidates("m")[0].name == "a"
    a.in_flight = 2  # a=2.0 > b=1.5
    assert router.candidates("m")[0].name == "b"


def test_latency_uses_ewma_of_ttft() -> None:
    router, clock = make(RouterPolicy.LATENCY)
    fast = router.add(NamedBackend("fast", "m"))
    slow = router.add(NamedBackend("slow", "m"))
    for dep, ttft in ((fast, 0.05), (slow, 0.5)):
        with router.track(dep) as attempt:
            clock.now += ttft
            router.first_byte(attempt)
    assert router.candidates("m")[0].name == "fast"
    for _ in range(30):  # the fast one gets slow; the average follows
        with router.track(fast) as attempt:
            clock.now += 2.0
            router.first_byte(attempt)
    assert fast.ewma_ttft_s is not None and fast.ewma_ttft_s > slow.ewma_ttft_s  # type: ignore[operator]
    assert router.candidates("m")[0].name == "slow"


def test_unmeasured_deployment_is_probed_first_under_latency() -> None:
    router, clock = make(RouterPolicy.LATENCY)
    known = router.add(NamedBackend("known", "m"))
    router.add(NamedBackend("new", "m"))
    with router.track(known) as attempt:
        clock.now += 0.01
        router.first_byte(attempt)
    assert router.candidates("m")[0].name == "new"


def test_circuit_breaker_open_half_open_closed() -> None:
    router, clock = make(RouterPolicy.WEIGHTED, threshold=2)
    dep = router.add(NamedBackend("a", "m"))
    for _ in range(2):
        with router.track(dep) as attempt:
            attempt.failed = True
    assert dep.state is BreakerState.OPEN
    with pytest.raises(OverCapacity):
        router.candidates("m")
    clock.now += 10
    assert [d.name for d in router.candidates("m")] == ["a"]  # one trial allowed
    with router.track(dep) as attempt:
        with pytest.raises(OverCapacity):
            router.candidates("m")  # no second trial while the first runs
        attempt.failed = True
    assert dep.state is BreakerState.OPEN  # the trial failed: open again
    clock.now += 10
    router.candidates("m")
    with router.track(dep) as attempt:
        router.first_byte(attempt)
    assert dep.state is BreakerState.CLOSED and dep.failures == 0


def test_in_flight_is_counted() -> None:
    router, _ = make(RouterPolicy.LEAST_LOADED)
    dep = router.add(NamedBackend("a", "m"))
    with router.track(dep):
        assert dep.in_flight == 1
    assert dep.in_flight == 0


def test_fallback_models_follow_own_deployments() -> None:
    router, _ = make(RouterPolicy.WEIGHTED, fallbacks={"big": ["mid"], "mid": ["small", "big"]})
    router.add(NamedBackend("big-1", "big"))
    router.add(NamedBackend("mid-1", "mid"))
    router.add(NamedBackend("small-1", "small"))
    assert [d.name for d in router.candidates("big")] == ["big-1", "mid-1", "small-1"]
    with pytest.raises(ModelNotFound):
        router.candidates("huge")
