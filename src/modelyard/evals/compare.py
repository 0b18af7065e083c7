"""Paired comparison of two eval runs: did the candidate (``b``) get worse than the baseline (``a``)?

Items are paired by id; repeats are first reduced per item exactly as in the summary
(:mod:`modelyard.evals.summary`: mean score, passed when at least half the repeats passed), so a
comparison's pass rates are the summaries' pass rates over the paired items. Targets pair by name;
two single-target runs pair their only targets whatever their names.

Statistics, per target pair (``b - a``):

- **Score difference**: the mean of the per-item differences, with a paired bootstrap percentile
  confidence interval at level ``1 - alpha`` (Efron & Tibshirani 1993, *An Introduction to the
  Bootstrap*, ch. 13): items are resampled with replacement ``resamples`` times (10,000 by default)
  with numpy's PCG64 seeded by ``seed``, so the same documents always give the same interval.
- **McNemar's exact test** on the discordant pairs (McNemar 1947, *Psychometrika* 12:153-157):
  ``pass_to_fail`` items passed in ``a`` and failed in ``b``, ``fail_to_pass`` the reverse; under
  the null each discordant pair is a fair coin, so the two-sided p-value is the exact binomial
  ``min(1, 2 * P(X <= min(n01, n10)))`` with ``X ~ Bin(n01 + n10, 1/2)``.

**Verdict** (one pre-declared test, so the false-positive rate stays at most ``alpha``): McNemar's
p-value below ``alpha`` (0.05 by default) with more pass-to-fail than fail-to-pass items is a
``regression``, the reverse an ``improvement``, anything else ``no significant difference``. The
bootstrap interval is the effect size beside it (``score_significant`` says whether it excludes 0);
it does not change the verdict, because either test alone holds ``alpha`` and both together would
not (a simulation in ``tests/evals/test_compare.py`` measures both error rates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelyard.evals.summary import item_outcomes

COMPARE_DOCUMENT_VERSION = 1
DEFAULT_ALPHA = 0.05
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 20_240_601
REGRESSION = "regression"
IMPROVEMENT = "improvement"
NO_DIFFERENCE = "no significant difference"
_CELLS_PER_CHUNK = 2_000_000  # resampled indices held at once (16 MB), whatever the item count


def mcnemar_exact_p(pass_to_fail: int, fail_to_pass: int) -> float:
    """Two-sided exact McNemar p-value (McNemar 1947), the binomial test of the discordant pairs."""
    n = pass_to_fail + fail_to_pass
    if n == 0:
        return 1.0
    k = min(pass_to_fail, fail_to_pass)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap_ci(
    differences: Sequence[float], *, alpha: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of the mean paired difference (Efron & Tibshirani 1993), deterministic in ``seed``."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return (math.nan, math.nan)
    rng = np.random.Generator(np.random.PCG64(seed))
    means = np.empty(resamples)
    rows = max(1, _CELLS_PER_CHUNK // d.size)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        means[start:stop] = d[rng.integers(0, d.size, size=(stop - start, d.size))].mean(axis=1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def verdict_of(p_value: float, pass_to_fail: int, fail_to_pass: int, alpha: float) -> str:
    if p_value < alpha and pass_to_fail > fail_to_pass:
        return REGRESSION
    if p_value < alpha and fail_to_pass > pass_to_fail:
        return IMPROVEMENT
    return NO_DIFFERENCE


def compare_targets(
    results_a: Sequence[Mapping[str, Any]],
    target_a: str,
    results_b: Sequence[Mapping[str, Any]],
    target_b: str,
    *,
    alpha: float = DEFAULT_ALPHA,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The comparison of one target pair (see the module docstring); ``b`` is the candidate."""
    a = item_outcomes(results_a, target_a)
    b = item_outcomes(results_b, target_b)
    paired = [i for i in a if i in b]
    diffs = [b[i].score - a[i].score for i in paired]
    regressed = [i for i in paired if a[i].passed and not b[i].passed]
    improved = [i for i in paired if b[i].passed and not a[i].passed]
    p_value = mcnemar_exact_p(len(regressed), len(improved))
    low, high = paired_bootstrap_ci(diffs, alpha=alpha, resamples=resamples, seed=seed)
    n = len(paired)

    def mean(values: list[float]) -> float | None:
        return sum(values) / n if n else None

    pass_a = mean([float(a[i].passed) for i in paired])
    pass_b = mean([float(b[i].passed) for i in paired])
    return {
        "target_a": target_a,
        "target_b": target_b,
        "items": n,
        "only_a": [i for i in a if i not in b],
        "only_b": [i for i in b if i not in a],
        "mean_score_a": mean([a[i].score for i in paired]),
        "mean_score_b": mean([b[i].score for i in paired]),
        "score_diff": mean(diffs),
        "ci_low": None if math.isnan(low) else low,
        "ci_high": None if math.isnan(high) else high,
        "ci_level": 1 - alpha,
        "score_significant": bool(n and (low > 0 or high < 0)),
        "pass_rate_a": pass_a,
        "pass_rate_b": pass_b,
        "pass_rate_diff": None if pass_a is None or pass_b is None else pass_b - pass_a,
        "pass_to_fail": len(regressed),
        "fail_to_pass": len(improved),
        "mcnemar_p": p_value,
        "verdict": verdict_of(p_value, len(regressed), len(improved), alpha),
        "regressed_items": regressed,
        "improved_items": improved,
    }


def _names(doc: Mapping[str, Any]) -> list[str]:
    return [str(t["name"]) for t in doc.get("targets") or []]


def pair_targets(doc_a: Mapping[str, Any], doc_b: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Target pairs: the shared names in ``a``'s order, or the only target of each single-target run."""
    names_a, names_b = _names(doc_a), _names(doc_b)
    shared = [(n, n) for n in names_a if n in names_b]
    if not shared and len(names_a) == 1 and len(names_b) == 1:
        return [(names_a[0], names_b[0])]
    return shared


def _run_ref(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "run_id": doc.get("run_id"),
        "created_at": doc.get("created_at"),
        "suite": (doc.get("suite") or {}).get("name"),
        "dataset": doc.get("dataset"),
        "git_commit": doc.get("git_commit"),
    }


def overall_verdict(verdicts: Sequence[str]) -> str:
    if REGRESSION in verdicts:
        return REGRESSION
    if IMPROVEMENT in verdicts:
        return IMPROVEMENT
    return NO_DIFFERENCE


def compare_runs(
    doc_a: Mapping[str, Any],
    doc_b: Mapping[str, Any],
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The compare document: ``{"version", "kind": "eval_compare", "alpha", "resamples", "seed",
    "a", "b", "warnings", "comparisons": [...], "verdict"}`` (``a`` is the baseline)."""
    target_pairs = list(pairs) if pairs is not None else pair_targets(doc_a, doc_b)
    warnings: list[str] = []
    digest_a = (doc_a.get("dataset") or {}).get("digest")
    digest_b = (doc_b.get("dataset") or {}).get("digest")
    if digest_a != digest_b:
        warnings.append(
            f"the runs used different datasets ({digest_a} vs {digest_b}); only shared item ids pair"
        )
    if not target_pairs:
        warnings.append("no target pairs: the runs share no target name")
    comparisons = [
        compare_targets(
            doc_a.get("results") or [],
            ta,
            doc_b.get("results") or [],
            tb,
            alpha=alpha,
            resamples=resamples,
            seed=seed,
        )
        for ta, tb in target_pairs
    ]
    for c in comparisons:
        if c["only_a"] or c["only_b"]:
            warnings.append(
                f"{c['target_a']}/{c['target_b']}: {len(c['only_a'])} item(s) only in a, {len(c['only_b'])} only in b"
            )
    return {
        "version": COMPARE_DOCUMENT_VERSION,
        "kind": "eval_compare",
        "alpha": alpha,
        "resamples": resamples,
        "seed": seed,
        "a": _run_ref(doc_a),
        "b": _run_ref(doc_b),
        "warnings": warnings,
        "comparisons": comparisons,
        "verdict": overall_verdict([c["verdict"] for c in comparisons]),
    }
