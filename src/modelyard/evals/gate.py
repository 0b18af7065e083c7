"""The release gate of a run, and the exit code a CI job reads.

A suite's ``gate:`` mapping::

    gate:
      min_pass_rate: 0.8              # every target; or per target: {default: 0.8, my-model: 0.9}
      max_regression: 0.05            # pass-rate drop against the baseline; or {pass_rate: 0.05, mean_score: 0.1}
      baseline_run: <run id or path>  # loaded by the runner, handed here as a document
      significant_only: false         # true: a drop beyond max_regression fails only if compare calls it a regression

Rates are the summary's (:mod:`modelyard.evals.summary`). A drop is ``baseline - current`` for the
target of the same name (the only targets when both runs have one). The regression reasons quote the
paired statistics of :mod:`modelyard.evals.compare` (McNemar p-value, bootstrap CI of the score
difference), and the gate object carries those comparisons. A target without results fails
``min_pass_rate``; a target missing from the baseline is noted, not failed.

Exit codes of ``modelyard eval run`` and ``eval report`` (:func:`exit_code`):

- **0**: the run completed and its gate passed (or it has no gate);
- **1**: the run completed and its gate failed;
- **2**: the run itself failed (bad suite, unreachable target, broken scorer: ``status: "error"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.evals.compare import REGRESSION, compare_runs, pair_targets

EXIT_PASSED = 0
EXIT_GATE_FAILED = 1
EXIT_RUN_FAILED = 2
GATE_KEYS = frozenset({"min_pass_rate", "max_regression", "baseline_run", "significant_only"})


class GateSpecError(InvalidRequest):
    """A gate that cannot be read; ``param`` names the field (``gate.min_pass_rate``)."""

    code = "invalid_gate"


def _rate(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GateSpecError(f"{param}: must be a number in [0, 1], not {value!r}", param=param)
    if not 0.0 <= value <= 1.0:
        raise GateSpecError(f"{param}: must be in [0, 1], not {value!r}", param=param)
    return float(value)


def parse_gate(spec: Any, where: str = "gate") -> dict[str, Any]:
    """Check and normalise a gate spec: ``min_pass_rate`` -> {target or "default": rate},
    ``max_regression`` -> {"pass_rate"?, "mean_score"?}. Raises :class:`GateSpecError`."""
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise GateSpecError(f"{where}: must be a mapping", param=where)
    for key in spec:
        if key not in GATE_KEYS:
            raise GateSpecError(
                f"{where}.{key}: unknown gate field; use {', '.join(sorted(GATE_KEYS))}",
                param=f"{where}.{key}",
            )
    min_rates: dict[str, float] = {}
    raw_min = spec.get("min_pass_rate")
    if isinstance(raw_min, Mapping):
        for name, value in raw_min.items():
            min_rates[str(name)] = _rate(value, f"{where}.min_pass_rate.{name}")
    elif raw_min is not None:
        min_rates["default"] = _rate(raw_min, f"{where}.min_pass_rate")
    max_reg: dict[str, float] = {}
    raw_reg = spec.get("max_regression")
    if isinstance(raw_reg, Mapping):
        for key, value in raw_reg.items():
            if key not in ("pass_rate", "mean_score"):
                param = f"{where}.max_regression.{key}"
                raise GateSpecError(f"{param}: use pass_rate or mean_score", param=param)
            max_reg[str(key)] = _rate(value, f"{where}.max_regression.{key}")
    elif raw_reg is not None:
        max_reg["pass_rate"] = _rate(raw_reg, f"{where}.max_regression")
    significant_only = spec.get("significant_only", False)
    if not isinstance(significant_only, bool):
        param = f"{where}.significant_only"
        raise GateSpecError(f"{param}: must be true or false", param=param)
    return {
        "min_pass_rate": min_rates,
        "max_regression": max_reg,
        "baseline_run": spec.get("baseline_run"),
        "significant_only": significant_only,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def evaluate_gate(
    doc: Mapping[str, Any], gate_spec: Any, baseline_doc: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The run document's ``gate`` object: ``{"passed", "reasons", "min_pass_rate", "max_regression",
    "baseline_run", "significant_only", "comparisons", "notes"}``; ``reasons`` lists every failed check."""
    gate = parse_gate(gate_spec)
    summary: Mapping[str, Any] = doc.get("summary") or {}
    reasons: list[str] = []
    for target in [str(t["name"]) for t in doc.get("targets") or []]:
        bound = gate["min_pass_rate"].get(target, gate["min_pass_rate"].get("default"))
        if bound is None:
            continue
        rate = (summary.get(target) or {}).get("pass_rate")
        if rate is None or rate < bound:
            reasons.append(f"{target}: pass rate {_fmt(rate)} < min_pass_rate {bound:.3f}")
    for name in gate["min_pass_rate"]:
        if name != "default" and name not in summary:
            reasons.append(f"{name}: min_pass_rate names a target the run does not have")
    comparisons: list[dict[str, Any]] = []
    notes: list[str] = []
    if gate["max_regression"] and baseline_doc is None:
        reasons.append("max_regression is set but there is no baseline run to compare with")
    elif gate["max_regression"] and baseline_doc is not None:
        comparisons = compare_runs(baseline_doc, doc)["comparisons"]
        reasons.extend(_regression_reasons(doc, baseline_doc, gate, comparisons))
        compared = {c["target_b"] for c in comparisons}
        notes.extend(
            f"{name}: not in the baseline run, not compared"
            for name in (str(t["name"]) for t in doc.get("targets") or [])
            if name not in compared
        )
    baseline_run = gate["baseline_run"]
    if baseline_doc is not None:
        baseline_run = baseline_doc.get("run_id") or baseline_run
    return {
        "passed": not reasons,
        "reasons": reasons,
        "min_pass_rate": gate["min_pass_rate"] or None,
        "max_regression": gate["max_regression"] or None,
        "baseline_run": baseline_run,
        "significant_only": gate["significant_only"],
        "comparisons": comparisons,
        "notes": notes,
    }


def _regression_reasons(
    doc: Mapping[str, Any],
    baseline: Mapping[str, Any],
    gate: Mapping[str, Any],
    comparisons: list[dict[str, Any]],
) -> list[str]:
    reasons: list[str] = []
    current, before = doc.get("summary") or {}, baseline.get("summary") or {}
    by_pair = {(c["target_a"], c["target_b"]): c for c in comparisons}
    paired = pair_targets(baseline, doc)
    for name_a, name_b in paired:
        stats = by_pair[(name_a, name_b)]
        for metric, bound in gate["max_regression"].items():
            old, new = (before.get(name_a) or {}).get(metric), (current.get(name_b) or {}).get(metric)
            if old is None or new is None:
                continue
            drop = old - new
            if drop <= bound + 1e-12:
                continue
            if gate["significant_only"] and stats["verdict"] != REGRESSION:
                continue
            reasons.append(
                f"{name_b}: {metric} fell {drop:.3f} ({old:.3f} -> {new:.3f}) > max_regression {bound:.3f}"
                f" (McNemar p={stats['mcnemar_p']:.4f}, {stats['pass_to_fail']} pass->fail,"
                f" {stats['fail_to_pass']} fail->pass; score diff {_fmt(stats['score_diff'])}"
                f" [{100 * stats['ci_level']:.0f}% CI {_fmt(stats['ci_low'])}, {_fmt(stats['ci_high'])}];"
                f" verdict: {stats['verdict']})"
            )
    return reasons


def run_status(gate: Mapping[str, Any] | None, *, run_failed: bool) -> str:
    """The document's ``status``: ``error`` when the run failed, else ``failed``/``passed`` by the gate."""
    if run_failed:
        return "error"
    return "failed" if gate is not None and not gate.get("passed", True) else "passed"


def exit_code(doc: Mapping[str, Any]) -> int:
    """0 gate passed (or none), 1 gate failed, 2 the run failed (see the module docstring)."""
    if doc.get("status") == "error":
        return EXIT_RUN_FAILED
    gate = doc.get("gate")
    if doc.get("status") == "failed" or (gate is not None and not gate.get("passed", True)):
        return EXIT_GATE_FAILED
    return EXIT_PASSED
