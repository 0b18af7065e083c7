"""Canary rollouts: an experiment of two variants, ``stable`` and ``canary``, whose canary weight a
controller moves through steps (for example 5, 25, 50, 100 %), gated on the canary's health against
the stable version's, as Argo Rollouts' and Flagger's analyses do.

Each step lasts at least ``min_duration_s`` and needs ``min_samples`` requests of each variant since
it began. :func:`gate` compares error rate, latency, time to first token (streamed requests) and
explicit feedback scores (per request) with the always-valid confidence sequence of
:mod:`modelyard.experiments.stats`, so the controller may look every period:

- ``fail`` — a metric of the canary is worse (its interval excludes zero the bad way);
- ``inconclusive`` — fewer than ``min_samples`` requests of either variant;
- ``pass`` — enough requests and no metric worse.

:func:`decide` turns the gate into an action: ``rollback`` after ``failure_limit`` failures (canary
weight 0, the alias unchanged, the experiment stopped, an audit entry and a warning); ``wait`` until
the step's minimum duration has passed; ``pause`` after ``inconclusive_limit`` inconclusive checks at
or past that duration (never advance on no data); ``advance`` to the next step on a pass; ``promote``
on a pass of the last step (the registry alias moves to the canary's version, if one is named, and
the experiment is concluded). :func:`run_rollouts` applies the actions; ``serve`` runs it as the
periodic task ``experiments.canary`` under the jobs lease, so exactly one gateway advances a rollout.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.experiments import stats
from modelyard.experiments.records import Experiment, Status
from modelyard.experiments.report import Row, request_rows
from modelyard.experiments.store import ExperimentStore

log = logging.getLogger("modelyard.experiments.canary")
STABLE, CANARY = "stable", "canary"
# gated metrics and the direction in which the canary is worse: ``ttft_ms`` counts streamed requests only,
# ``feedback`` only the requests someone rated (``POST /v1/feedback``); a metric with too few values of
# either variant is not gated this check
GATED = {"error_rate": "higher", "latency_ms": "higher", "ttft_ms": "higher", "feedback": "lower"}
MIN_FAIL_SAMPLES = 5  # a canary is failed on evidence, never on one unlucky request
DECISIONS: Counter[str] = Counter()  # this process's checks by action, exported as a Prometheus counter


@dataclass(slots=True, frozen=True)
class Gate:
    verdict: str  # pass | fail | inconclusive
    reason: str


def rollout_state(
    steps: list[int],
    *,
    min_duration_s: float = 60.0,
    min_samples: int = 50,
    failure_limit: int = 1,
    inconclusive_limit: int = 3,
    promote_alias: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The initial rollout state; ``steps`` are increasing canary percentages ending at 100."""
    if (
        not steps
        or any(not isinstance(s, int) or not 0 < s <= 100 for s in steps)
        or steps != sorted(set(steps))
    ):
        raise InvalidRequest("steps are increasing percentages from 1 to 100", param="steps")
    if steps[-1] != 100:
        raise InvalidRequest("the last step is 100 (%)", param="steps")
    return {
        "steps": steps, "step": 0, "step_started_at": (now or datetime.now(UTC)).isoformat(),
        "min_duration_s": min_duration_s, "min_samples": min_samples, "failure_limit": failure_limit,
        "inconclusive_limit": inconclusive_limit, "failures": 0, "inconclusive": 0,
        "state": "progressing", "promote_alias": promote_alias, "history": [],
    }  # fmt: skip


def gate(rows: list[Row], min_samples: int, alpha: float = 0.05) -> Gate:
    """The canary's health against the stable version's over ``rows`` (one per request)."""
    for metric, worse in GATED.items():
        a = [r[metric] for r in rows if r["variant"] == STABLE and metric in r]
        b = [r[metric] for r in rows if r["variant"] == CANARY and metric in r]
        if len(a) >= 2 and len(b) >= MIN_FAIL_SAMPLES:
            c = stats.confidence_sequence(a, b, alpha)
            if (c.ci_low > 0) if worse == "higher" else (c.ci_high < 0):
                return Gate("fail", f"`{metric}` of the canary is worse: {c.mean_b:.4g} vs {c.mean_a:.4g}")
    n = {v: sum(1 for r in rows if r["variant"] == v) for v in (STABLE, CANARY)}
    if min(n.values()) < min_samples:
        return Gate(
            "inconclusive",
            f"not enough data: stable {n[STABLE]}, canary {n[CANARY]} requests (needs {min_samples})",
        )
    return Gate("pass", "no gated metric of the canary is worse")


def decide(state: dict[str, Any], g: Gate, now: datetime) -> tuple[str, dict[str, Any]]:
    """(action, new state) for one check of the current step."""
    s = {**state, "history": list(state["history"])}
    elapsed = (now - datetime.fromisoformat(s["step_started_at"])).total_seconds()
    action = "wait"
    if g.verdict == "fail":
        s["failures"] += 1
        action = "rollback" if s["failures"] >= s["failure_limit"] else "wait"
    elif elapsed < s["min_duration_s"]:
        action = "wait"
    elif g.verdict == "inconclusive":
        s["inconclusive"] += 1
        action = "pause" if s["inconclusive"] >= s["inconclusive_limit"] else "wait"
    else:
        action = "promote" if s["step"] == len(s["steps"]) - 1 else "advance"
    if action == "rollback":
        s["state"] = "rolled_back"
    elif action == "pause":
        s["state"] = "paused"
    elif action == "promote":
        s["state"] = "promoted"
    elif action == "advance":
        s.update(step=s["step"] + 1, step_started_at=now.isoformat(), failures=0, inconclusive=0)
    if action != "wait":
        s["history"].append(
            {"at": now.isoformat(), "step": state["step"], "action": action, "reason": g.reason}
        )
    return action, s


def weights_at(state: dict[str, Any]) -> dict[str, int]:
    w = int(state["steps"][state["step"]])
    return {STABLE: 100 - w, CANARY: w}


def check_rollout(
    store: ExperimentStore, engine: Any, registry: Any, exp: Experiment, now: datetime, alpha: float = 0.05
) -> str:
    """One controller check of the rollout ``exp``: gate, decide, apply. Returns the action."""
    state = exp.rollout
    assert state is not None
    since = datetime.fromisoformat(state["step_started_at"])
    rows = request_rows(engine, store, store.exposures(exp.id, since), {})
    g = gate(rows, int(state["min_samples"]), alpha)
    action, new = decide(state, g, now)
    DECISIONS[action] += 1
    if action == "wait":
        if new != state:
            store.update_rollout(exp.id, new, action="rollout.check")
        return action
    if action == "rollback":
        log.warning("rollout %s rolled back at step %d: %s", exp.id, state["step"], g.reason)
        store.update_rollout(
            exp.id, new, weights={STABLE: 100, CANARY: 0}, status=Status.STOPPED, action="rollout.rollback"
        )
    elif action == "pause":
        log.warning("rollout %s paused at step %d: %s", exp.id, state["step"], g.reason)
        store.update_rollout(exp.id, new, status=Status.PAUSED, action="rollout.pause")
    elif action == "advance":
        store.update_rollout(exp.id, new, weights=weights_at(new), action="rollout.advance")
    else:
        alias = state.get("promote_alias")
        if alias and registry is not None:
            registry.set_alias(alias["name"], alias["alias"], int(alias["version"]), actor="rollout")
        store.update_rollout(exp.id, new, status=Status.CONCLUDED, action="rollout.promote")
    return action


def run_rollouts(
    store: ExperimentStore, engine: Any, registry: Any, now: datetime | None = None
) -> dict[str, str]:
    """Check every running rollout once; {experiment id: action}."""
    now = now or datetime.now(UTC)
    return {
        e.id: check_rollout(store, engine, registry, e, now)
        for e in store.active()
        if e.rollout is not None and e.rollout.get("state") == "progressing"
    }


def start_rollout(
    store: ExperimentStore,
    registry: Any,
    model: str,
    to_version: int,
    *,
    alias: str = "production",
    steps: list[int] | None = None,
    min_duration_s: float = 60.0,
    min_samples: int = 50,
    failure_limit: int = 1,
    inconclusive_limit: int = 3,
    actor: str = "cli",
    now: datetime | None = None,
) -> Experiment:
    """Start a canary of ``model:to_version`` against the version ``model@alias`` points at (the
    stable one) on the route ``model``, split per request. A model without that alias, an unknown
    version, or a route already in a running experiment is a 4xx and nothing is created."""
    now = now or datetime.now(UTC)
    info = registry.get_model(model)
    stable = info.aliases.get(alias)
    if stable is None:
        raise InvalidRequest(
            f"the model `{model}` has no stable version: it has no `{alias}` alias", param="model"
        )
    if not any(v.version == to_version for v in info.versions):
        raise InvalidRequest(f"the model `{model}` has no version {to_version}", param="to")
    if to_version == stable:
        raise InvalidRequest(f"version {to_version} already is `{model}@{alias}`", param="to")
    state = rollout_state(
        steps or [5, 25, 50, 100], min_duration_s=min_duration_s, min_samples=min_samples,
        failure_limit=failure_limit, inconclusive_limit=inconclusive_limit,
        promote_alias={"name": model, "alias": alias, "version": to_version}, now=now,
    )  # fmt: skip
    busy = [
        e.id for e in store.active() if e.route == model and e.route_kind == "model" and e.unit == "request"
    ]
    if busy:
        from modelyard.errors import Conflict

        raise Conflict(
            f"the experiment `{busy[0]}` already runs on route `{model}` by request; stop it first"
        )
    first = state["steps"][0]
    spec = {
        "id": f"rollout-{model}-{to_version}-{int(now.timestamp())}"[:64],
        "route": model, "route_kind": "model", "unit": "request", "primary_metric": "error_rate",
        "guardrails": ["latency_ms"], "rollout": state,
        "variants": [
            {"name": STABLE, "weight": 100 - first, "model": f"{model}:{stable}"},
            {"name": CANARY, "weight": first, "model": f"{model}:{to_version}"},
        ],
    }  # fmt: skip
    exp = store.create(spec, tenant=None, actor=actor)
    return store.transition(exp.id, Status.RUNNING, actor=actor)


def canary_task(settings: Any) -> Any:
    """The periodic task ``experiments.canary``: :func:`run_rollouts` every
    ``experiments.canary_every_s`` on the lease holder (its registry opened on first run)."""
    import anyio

    from modelyard.jobs.periodic import PeriodicTask

    opened: list[Any] = []

    def check() -> dict[str, str]:
        if not opened:
            from modelyard.registry.service import Registry

            registry = Registry(settings.resolved_database_url)
            registry.migrate()
            opened.append(registry)
        registry = opened[0]
        return run_rollouts(ExperimentStore(registry.engine), registry.engine, registry)

    async def run(_token: int) -> None:
        for eid, action in (await anyio.to_thread.run_sync(check)).items():
            if action != "wait":
                log.info("rollout %s: %s", eid, action)

    return PeriodicTask(
        "experiments.canary", settings.experiments.canary_every_s, run,
        "advance, roll back or pause canary rollouts (modelyard rollout start)",
    )  # fmt: skip
