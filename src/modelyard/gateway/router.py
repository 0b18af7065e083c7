"""Picks the deployment for a request: policy order, circuit breakers, then fallback models.

Per deployment the router keeps in-flight count, an EWMA of time to first token and a circuit
breaker. :meth:`Router.candidates` returns the deployments to try, best first; the pipeline walks
the list until one answers (fallbacks), reporting each outcome back through :meth:`Router.track`.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from modelyard.errors import ModelNotFound, OverCapacity
from modelyard.gateway.backends.base import Backend
from modelyard.settings import CircuitBreakerSettings, RouterPolicy


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class Deployment:
    """A backend plus the router's live view of it."""

    backend: Backend
    weight: float = 1.0
    in_flight: int = 0
    ewma_ttft_s: float | None = None
    failures: int = 0
    state: BreakerState = BreakerState.CLOSED
    opened_at: float = 0.0
    trial_in_flight: bool = False
    served: int = 0
    errors: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.backend.name


@dataclass(slots=True)
class Attempt:
    """Handle the pipeline uses to report how one try on a deployment went."""

    deployment: Deployment
    started: float
    first_byte: bool = False
    failed: bool = False


class Router:
    """Routing state for every model name served. Single-threaded: used from the event loop only."""

    def __init__(
        self,
        policy: RouterPolicy,
        breaker: CircuitBreakerSettings,
        *,
        ewma_alpha: float = 0.2,
        fallbacks: dict[str, list[str]] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._breaker = breaker
        self._alpha = ewma_alpha
        self._fallbacks = fallbacks or {}
        self._rng = rng or random.Random()
        self._clock = clock
        self._by_model: dict[str, list[Deployment]] = {}

    def add(self, backend: Backend, weight: float = 1.0) -> Deployment:
        dep = Deployment(backend=backend, weight=weight)
        self._by_model.setdefault(backend.model, []).append(dep)
        return dep

    def models(self) -> list[str]:
        return list(self._by_model)

    def deployments(self, model: str | None = None) -> list[Deployment]:
        if model is not None:
            return list(self._by_model.get(model, ()))
        return [d for deps in self._by_model.values() for d in deps]

    def has_model(self, model: str) -> bool:
        return model in self._by_model

    def candidates(self, model: str) -> list[Deployment]:
        """Deployments to try for ``model``, best first, then those of its fallback models.

        Raises ``ModelNotFound`` for an unknown name and ``OverCapacity`` when every circuit is open.
        """
        if model not in self._by_model:
            raise ModelNotFound(f"The model `{model}` does not exist", param="model")
        out: list[Deployment] = []
        seen = {model}
        chain = [model]
        for name in chain:
            out.extend(self._ordered([d for d in self._by_model.get(name, ()) if self._available(d)]))
            for nxt in self._fallbacks.get(name, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    chain.append(nxt)
        if not out:
            raise OverCapacity(f"no healthy deployment for model `{model}`; retry later")
        return out

    def _ordered(self, deps: list[Deployment]) -> list[Deployment]:
        if len(deps) <= 1:
            return deps
        rnd = self._rng.random
        if self.policy is RouterPolicy.LEAST_LOADED:
            return sorted(deps, key=lambda d: (d.in_flight / d.weight, rnd()))
        if self.policy is RouterPolicy.LATENCY:
            # Unmeasured deployments sort first so each gets probed once.
            return sorted(deps, key=lambda d: (d.ewma_ttft_s or 0.0, rnd()))
        pool, out = list(deps), []
        while pool:
            pick = rnd() * sum(d.weight for d in pool)
            for i, d in enumerate(pool):
                pick -= d.weight
                if pick <= 0 or i == len(pool) - 1:
                    out.append(pool.pop(i))
                    break
        return out

    def _available(self, dep: Deployment) -> bool:
        if dep.state is BreakerState.CLOSED:
            return True
        if dep.state is BreakerState.OPEN and self._clock() - dep.opened_at >= self._breaker.reset_after_s:
            dep.state = BreakerState.HALF_OPEN
            dep.trial_in_flight = False
        return dep.state is BreakerState.HALF_OPEN and not dep.trial_in_flight

    @contextmanager
    def track(self, dep: Deployment) -> Iterator[Attempt]:
        """Count the attempt in flight; the caller marks ``first_byte`` / ``failed`` on the handle."""
        if dep.state is BreakerState.HALF_OPEN:
            dep.trial_in_flight = True
        attempt = Attempt(dep, self._clock())
        dep.in_flight += 1
        try:
            yield attempt
        finally:
            dep.in_flight -= 1
            if attempt.failed:
                self._failure(dep)
            elif attempt.first_byte:
                self._success(dep)
            elif dep.state is BreakerState.HALF_OPEN:
                dep.trial_in_flight = False

    def first_byte(self, attempt: Attempt) -> None:
        """Record time to first token (or to the whole response, for non-streaming calls)."""
        attempt.first_byte = True
        ttft = self._clock() - attempt.started
        dep = attempt.deployment
        dep.ewma_ttft_s = (
            ttft if dep.ewma_ttft_s is None else (self._alpha * ttft + (1 - self._alpha) * dep.ewma_ttft_s)
        )

    def _success(self, dep: Deployment) -> None:
        dep.served += 1
        dep.failures = 0
        dep.state = BreakerState.CLOSED
        dep.trial_in_flight = False

    def _failure(self, dep: Deployment) -> None:
        dep.errors += 1
        dep.failures += 1
        if dep.state is BreakerState.HALF_OPEN or dep.failures >= self._breaker.failure_threshold:
            dep.state = BreakerState.OPEN
            dep.opened_at = self._clock()
            dep.trial_in_flight = False
