"""Picks the deployment for a request: policy order, circuit breakers, then fallback models.

Per deployment the router keeps in-flight count, an EWMA of time to first token, the prompt
prefixes it recently served and a circuit breaker. :meth:`Router.candidates` returns the
deployments to try, best first; the pipeline walks the list until one answers (fallbacks),
reporting each outcome back through :meth:`Router.track`.

One model may have deployments of different kinds, e.g. a queued pool of engine workers and remote
OpenAI-compatible servers; they are ordered by one rule. Each reports a
:class:`~modelyard.gateway.backends.base.RouteView` (load = in-flight / capacity, whether it can
serve the request's adapter, adapter and prefix hits); a deployment that cannot serve the adapter
is dropped whatever the policy. ``least_loaded`` sorts by load; ``affinity`` puts deployments under
``load_cap`` first, those holding the adapter, then those holding the prefix, then the rest, each
by load; deployments above the cap follow, by load. A full deployment is never dropped, only
ordered last: a queued pool still takes the request into its queue.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from modelyard.errors import InvalidRequest, ModelNotFound, OverCapacity
from modelyard.gateway.backends.base import NO_HINT, Backend, RouteHint, RouteView
from modelyard.settings import CircuitBreakerSettings, RouterPolicy

PREFIXES_KEPT = 256  # per deployment, as many as a worker reports


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
    prefixes: dict[str, None] = field(default_factory=dict)  # recently served, oldest first

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
    prefix: str | None = None


class Router:
    """Routing state for every model name served. Single-threaded: used from the event loop only."""

    def __init__(
        self,
        policy: RouterPolicy,
        breaker: CircuitBreakerSettings,
        *,
        ewma_alpha: float = 0.2,
        fallbacks: dict[str, list[str]] | None = None,
        load_cap: float = 0.8,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.load_cap = load_cap
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

    def candidates(self, model: str, hint: RouteHint = NO_HINT) -> list[Deployment]:
        """Deployments to try for ``model``, best first, then those of its fallback models.

        Raises ``ModelNotFound`` for an unknown name, ``InvalidRequest`` when no deployment of the
        model can serve the request's adapter, and ``OverCapacity`` when every circuit is open.
        """
        if model not in self._by_model:
            raise ModelNotFound(f"The model `{model}` does not exist", param="model")
        out: list[Deployment] = []
        seen = {model}
        chain = [model]
        for name in chain:
            out.extend(self._ordered([d for d in self._by_model.get(name, ()) if self._available(d)], hint))
            for nxt in self._fallbacks.get(name, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    chain.append(nxt)
        if not out:
            if hint.lora is not None and not any(self.view(d, hint).serves for d in self._by_model[model]):
                raise InvalidRequest(
                    f"no deployment of `{model}` serves the adapter `{hint.lora.model_name}`", param="model"
                )
            raise OverCapacity(f"no healthy deployment for model `{model}`; retry later")
        return out

    def view(self, dep: Deployment, hint: RouteHint = NO_HINT) -> RouteView:
        """The deployment's load and affinity for a request with ``hint`` (see the module docstring)."""
        route_view = getattr(dep.backend, "route_view", None)
        if route_view is not None:
            v: RouteView = route_view(hint, dep.in_flight)
        else:
            v = RouteView(
                dep.in_flight / dep.weight, hint.lora is None or getattr(dep.backend, "local", False)
            )
        if hint.prefix is not None and not v.prefix_hit and hint.prefix in dep.prefixes:
            v = replace(v, prefix_hit=True)
        return v

    def _ordered(self, deps: list[Deployment], hint: RouteHint) -> list[Deployment]:
        if hint.lora is not None:  # correctness before policy: never send an adapter request astray
            deps = [d for d in deps if self.view(d, hint).serves]
        if len(deps) <= 1:
            return deps
        rnd = self._rng.random
        if self.policy is RouterPolicy.LEAST_LOADED:
            return sorted(deps, key=lambda d: (self.view(d, hint).load, rnd()))
        if self.policy is RouterPolicy.AFFINITY:
            return sorted(deps, key=lambda d: (*self._affinity_rank(self.view(d, hint)), rnd()))
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

    def _affinity_rank(self, v: RouteView) -> tuple[int, float]:
        if v.load >= self.load_cap:
            return 3, v.load
        return (0 if v.adapter_hit else 1 if v.prefix_hit else 2), v.load

    def _available(self, dep: Deployment) -> bool:
        if dep.state is BreakerState.CLOSED:
            return True
        if dep.state is BreakerState.OPEN and self._clock() - dep.opened_at >= self._breaker.reset_after_s:
            dep.state = BreakerState.HALF_OPEN
            dep.trial_in_flight = False
        return dep.state is BreakerState.HALF_OPEN and not dep.trial_in_flight

    @contextmanager
    def track(self, dep: Deployment, hint: RouteHint = NO_HINT) -> Iterator[Attempt]:
        """Count the attempt in flight; the caller marks ``first_byte`` / ``failed`` on the handle."""
        if dep.state is BreakerState.HALF_OPEN:
            dep.trial_in_flight = True
        attempt = Attempt(dep, self._clock(), prefix=hint.prefix)
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
        if attempt.prefix is not None:  # its KV cache (or the upstream's) now likely holds the prefix
            dep.prefixes.pop(attempt.prefix, None)
            dep.prefixes[attempt.prefix] = None
            if len(dep.prefixes) > PREFIXES_KEPT:
                del dep.prefixes[next(iter(dep.prefixes))]
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
