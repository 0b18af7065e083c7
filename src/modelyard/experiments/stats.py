"""Statistics of experiments, each naming its method; distributions come from scipy and statsmodels.

- :func:`welch` — Welch's t-test (Welch 1947) for a difference of means, with a confidence interval
  on the absolute lift (Welch-Satterthwaite degrees of freedom) and on the relative lift by the delta
  method (as GrowthBook's frequentist engine does).
- :func:`two_proportions` — the two-proportion z-test (statsmodels ``proportions_ztest``), with a
  Wald interval on the difference (``confint_proportions_2indep``).
- :func:`mann_whitney` — the Mann-Whitney U test for skewed data such as latency (scipy).
- :func:`bootstrap_p95` — a percentile-bootstrap interval for the difference of 95th percentiles
  (Efron & Tibshirani 1993; scipy ``bootstrap``).
- :func:`srm` — the sample-ratio-mismatch chi-square goodness-of-fit test; p < 0.001 marks a result
  untrustworthy (the threshold GrowthBook and Microsoft's ExP use; Fabijan et al. 2019).
- :func:`confidence_sequence` — an always-valid confidence sequence on a difference of means, the
  normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon (2021, eq. 14), as GrowthBook's
  sequential testing uses it: it may be looked at after every unit without inflating the error rate.
- :func:`holm` — Holm's step-down correction across metrics (Holm 1979; statsmodels ``multipletests``).
- :func:`sample_size` — units per variant for a two-sided two-sample test to detect a given absolute
  effect (statsmodels ``NormalIndPower``; for a rate, Cohen's h via ``proportion_effectsize``).

Every function takes plain sequences and returns a :class:`Comparison` or plain numbers. scipy and
statsmodels are imported inside the functions that use them (about 1.3 s of one core): ``serve``
imports this module at start-up for the canary controller, and pays for them at the first check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SRM_THRESHOLD = 0.001
TUNING_N = 5000  # the sample size at which the sequential interval is tightest (GrowthBook's default)


@dataclass(slots=True, frozen=True)
class Comparison:
    """Treatment (``b``) against control (``a``): ``lift`` is b - a, ``relative`` (b - a) / a."""

    method: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    lift: float
    ci_low: float
    ci_high: float
    p_value: float
    relative: float | None = None
    relative_ci_low: float | None = None
    relative_ci_high: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def _arr(x: Sequence[float]) -> np.ndarray:
    return np.asarray(x, dtype=float)


def welch(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> Comparison:
    """Welch's t-test of mean(b) - mean(a) with its (1 - alpha) interval, and the relative lift's
    interval by the delta method: Var(mb/ma) ≈ vb/(nb·ma²) + mb²·va/(na·ma⁴)."""
    from scipy import stats as sps

    xa, xb = _arr(a), _arr(b)
    na, nb = len(xa), len(xb)
    ma, mb = float(xa.mean()), float(xb.mean())
    va, vb = float(xa.var(ddof=1)), float(xb.var(ddof=1))
    se2 = va / na + vb / nb
    if se2 > 0:
        df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
        t = (mb - ma) / math.sqrt(se2)
        p = float(2 * sps.t.sf(abs(t), df))
        half = float(sps.t.ppf(1 - alpha / 2, df)) * math.sqrt(se2)
    else:  # both arms constant: equal or certainly different
        p, half = (1.0 if ma == mb else 0.0), 0.0
    rel = rlo = rhi = None
    if ma != 0:
        rel = mb / ma - 1
        rvar = vb / (nb * ma**2) + mb**2 * va / (na * ma**4)
        rhalf = float(sps.norm.ppf(1 - alpha / 2)) * math.sqrt(rvar)
        rlo, rhi = rel - rhalf, rel + rhalf
    return Comparison("welch_t", na, nb, ma, mb, mb - ma, mb - ma - half, mb - ma + half, p, rel, rlo, rhi)


def two_proportions(
    successes_a: int, n_a: int, successes_b: int, n_b: int, alpha: float = 0.05
) -> Comparison:
    """The two-proportion z-test (pooled variance) of p_b - p_a and the Wald interval of the difference."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    pa, pb = successes_a / n_a, successes_b / n_b
    if successes_a + successes_b in (0, n_a + n_b):  # both all-zero or all-one: no evidence either way
        return Comparison("two_proportion_z", n_a, n_b, pa, pb, pb - pa, 0.0, 0.0, 1.0)
    _, p = proportions_ztest([successes_b, successes_a], [n_b, n_a])
    lo, hi = confint_proportions_2indep(successes_b, n_b, successes_a, n_a, method="wald", alpha=alpha)
    rel = pb / pa - 1 if pa > 0 else None
    return Comparison("two_proportion_z", n_a, n_b, pa, pb, pb - pa, float(lo), float(hi), float(p), rel)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """The Mann-Whitney U test (two-sided); the lift shown is the difference of medians (no interval)."""
    from scipy import stats as sps

    xa, xb = _arr(a), _arr(b)
    res = sps.mannwhitneyu(xb, xa, alternative="two-sided")
    ma, mb = float(np.median(xa)), float(np.median(xb))
    return Comparison(
        "mann_whitney_u", len(xa), len(xb), ma, mb, mb - ma, math.nan, math.nan, float(res.pvalue)
    )


def bootstrap_p95(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05, n_resamples: int = 2000, seed: int = 0
) -> Comparison:
    """The difference of 95th percentiles with a percentile-bootstrap interval (each arm resampled on
    its own); the p-value is left NaN: read the interval."""
    from scipy import stats as sps

    xa, xb = _arr(a), _arr(b)

    def diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> Any:
        return np.percentile(y, 95, axis=axis) - np.percentile(x, 95, axis=axis)

    res = sps.bootstrap(
        (xa, xb), diff, n_resamples=n_resamples, confidence_level=1 - alpha, method="percentile",
        vectorized=True, random_state=np.random.default_rng(seed),
    )  # fmt: skip
    pa, pb = float(np.percentile(xa, 95)), float(np.percentile(xb, 95))
    ci = res.confidence_interval
    return Comparison(
        "bootstrap_p95", len(xa), len(xb), pa, pb, pb - pa, float(ci.low), float(ci.high), math.nan
    )


def srm(observed: Sequence[int], weights: Sequence[float]) -> float:
    """The p-value of the chi-square test that ``observed`` counts follow ``weights``."""
    from scipy import stats as sps

    obs = np.asarray(observed, dtype=float)
    total = obs.sum()
    if total == 0:
        return 1.0
    w = np.asarray(weights, dtype=float)
    return float(sps.chisquare(obs, w / w.sum() * total).pvalue)


def sequential_halfwidth(var_diff: float, n: int, alpha: float = 0.05, tuning_n: int = TUNING_N) -> float:
    """The half-width of the normal-mixture confidence sequence (Howard et al. 2021, eq. 14) for a
    difference of means whose estimate has variance ``var_diff`` after ``n`` units in total.

    With σ² = var_diff · n (one unit's variance) and mixing ρ² tuned so the boundary is tightest
    at ``tuning_n`` units, the half-width is
    σ · sqrt(2 (nρ² + 1) / (n² ρ²) · ln(sqrt(nρ² + 1) / α))."""
    if n <= 0 or var_diff <= 0:
        return math.inf if n <= 0 else 0.0
    la = -2 * math.log(alpha)
    rho2 = (la + math.log(la + 1)) / tuning_n
    s2 = var_diff * n
    return math.sqrt(s2) * math.sqrt(
        2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha)
    )


def confidence_sequence(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> Comparison:
    """mean(b) - mean(a) with its always-valid interval; ``p_value`` is 0 when the interval excludes
    zero and 1 otherwise (a confidence sequence gives a decision, not a fixed-horizon p-value)."""
    xa, xb = _arr(a), _arr(b)
    ma, mb = float(xa.mean()), float(xb.mean())
    var = float(xa.var(ddof=1)) / len(xa) + float(xb.var(ddof=1)) / len(xb)
    half = sequential_halfwidth(var, len(xa) + len(xb), alpha)
    lo, hi = mb - ma - half, mb - ma + half
    return Comparison(
        "confidence_sequence", len(xa), len(xb), ma, mb, mb - ma, lo, hi, 0.0 if lo > 0 or hi < 0 else 1.0
    )


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Holm-adjusted p-values (NaN stays NaN)."""
    from statsmodels.stats.multitest import multipletests

    ps = [p for p in p_values if math.isfinite(p)]
    if not ps:
        return list(p_values)
    adjusted = iter(multipletests(ps, alpha=alpha, method="holm")[1])
    return [float(next(adjusted)) if math.isfinite(p) else p for p in p_values]


def sample_size(
    mde: float,
    *,
    sd: float | None = None,
    baseline_rate: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Units per variant (two variants, equal split) to detect an absolute difference ``mde`` with a
    two-sided test at ``alpha`` and ``power``: of a mean with standard deviation ``sd``, or of a rate
    whose control value is ``baseline_rate``."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if mde <= 0:
        raise ValueError("the minimum detectable effect must be positive")
    if (sd is None) == (baseline_rate is None):
        raise ValueError("give either sd (a mean) or baseline_rate (a rate)")
    if sd is not None:
        effect = mde / sd
    else:
        assert baseline_rate is not None
        if not 0 < baseline_rate < 1 or not 0 < baseline_rate + mde < 1:
            raise ValueError("rates must stay between 0 and 1")
        effect = abs(float(proportion_effectsize(baseline_rate + mde, baseline_rate)))
    n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0)
    return int(math.ceil(float(n)))
