"""The run document's ``summary``: per target, what its results add up to.

Items, not results, are the unit (repeats are samples of one item; ``compare`` pairs items the
same way). For each target and item, over its repeats:

- the item's **score** is the mean of its results' ``score`` (a result with an ``error`` scores 0);
- the item **passes** when at least half of its repeats passed (an errored result failed), so one
  flaky repeat in three does not fail an item and with ``repeats: 1`` it is simply the result.

Then ``pass_rate`` is the share of items that pass, ``mean_score`` the mean item score, and
``per_scorer`` applies the same two rules to each scorer's own verdicts. ``result_pass_rate`` (an
extension of the document) is the plain share of results that passed. Latency percentiles are over
results without an error (linear interpolation, numpy's default); tokens and cost are sums
(``cost_usd`` is null when no result has a known cost).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PASS_FRACTION = 0.5


@dataclass(slots=True, frozen=True)
class ItemOutcome:
    """One item's repeats for one target, reduced: mean score, share of repeats passed, the verdict."""

    item_id: str
    score: float
    pass_fraction: float
    repeats: int

    @property
    def passed(self) -> bool:
        return self.pass_fraction >= PASS_FRACTION


def result_verdict(result: Mapping[str, Any]) -> tuple[float, bool]:
    """``(score, passed)`` of one result entry; an errored result scores 0 and fails."""
    if result.get("error"):
        return 0.0, False
    return float(result.get("score") or 0.0), bool(result.get("passed"))


def _scorer_score(result: Mapping[str, Any], scorer: str) -> tuple[float, bool]:
    if result.get("error"):
        return 0.0, False
    verdict = (result.get("scores") or {}).get(scorer)
    if not verdict:
        return 0.0, False
    return float(verdict.get("score") or 0.0), bool(verdict.get("passed"))


def _reduce(groups: Mapping[str, list[tuple[float, bool]]]) -> dict[str, ItemOutcome]:
    return {
        item_id: ItemOutcome(
            item_id,
            sum(s for s, _ in pairs) / len(pairs),
            sum(1 for _, p in pairs if p) / len(pairs),
            len(pairs),
        )
        for item_id, pairs in groups.items()
    }


def item_outcomes(
    results: Iterable[Mapping[str, Any]], target: str, scorer: str | None = None
) -> dict[str, ItemOutcome]:
    """Item id -> :class:`ItemOutcome` for ``target`` (overall, or for one ``scorer``), in first-seen order."""
    groups: dict[str, list[tuple[float, bool]]] = {}
    for result in results:
        if result.get("target") != target:
            continue
        value = result_verdict(result) if scorer is None else _scorer_score(result, scorer)
        groups.setdefault(str(result["item_id"]), []).append(value)
    return _reduce(groups)


def _rates(outcomes: Mapping[str, ItemOutcome]) -> tuple[float | None, float | None]:
    if not outcomes:
        return None, None
    values = list(outcomes.values())
    return (
        sum(1 for o in values if o.passed) / len(values),
        sum(o.score for o in values) / len(values),
    )


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def _target_name(target: Any) -> str:
    return str(target["name"]) if isinstance(target, Mapping) else str(target)


def _scorer_names(results: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for result in results:
        for name in result.get("scores") or {}:
            names.setdefault(name, None)
    return list(names)


def summarize_target(
    results: Sequence[Mapping[str, Any]], target: str, scorers: Sequence[str] | None = None
) -> dict[str, Any]:
    """The summary entry of one target (see the module docstring for the rules)."""
    mine = [r for r in results if r.get("target") == target]
    scorer_names = list(scorers) if scorers is not None else _scorer_names(mine)
    outcomes = item_outcomes(mine, target)
    pass_rate, mean_score = _rates(outcomes)
    ok = [r for r in mine if not r.get("error")]
    per_scorer: dict[str, dict[str, float | None]] = {}
    for name in scorer_names:
        s_rate, s_mean = _rates(item_outcomes(mine, target, name))
        per_scorer[name] = {"mean": s_mean, "pass_rate": s_rate}
    usages = [r.get("usage") or {} for r in mine]
    costs = [float(r["cost_usd"]) for r in mine if r.get("cost_usd") is not None]
    latencies = [float(r["latency_s"]) for r in ok if r.get("latency_s") is not None]
    return {
        "items": len(outcomes),
        "results": len(mine),
        "errors": len(mine) - len(ok),
        "pass_rate": pass_rate,
        "mean_score": mean_score,
        "result_pass_rate": (sum(1 for r in mine if result_verdict(r)[1]) / len(mine)) if mine else None,
        "per_scorer": per_scorer,
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "prompt_tokens": sum(int(u.get("prompt_tokens") or 0) for u in usages),
        "completion_tokens": sum(int(u.get("completion_tokens") or 0) for u in usages),
        "cost_usd": sum(costs) if costs else None,
    }


def summarize(
    results: Sequence[Mapping[str, Any]],
    targets: Sequence[Any],
    scorers: Sequence[Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The run document's ``summary``: target name -> :func:`summarize_target`, in ``targets`` order.

    ``targets`` are the document's target objects (or plain names); ``scorers`` the document's scorer
    objects (or names), so that a scorer never reached still appears; by default those in the results.
    """
    names = None if scorers is None else [_target_name(s) for s in scorers]
    return {_target_name(t): summarize_target(results, _target_name(t), names) for t in targets}
