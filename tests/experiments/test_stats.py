"""The statistics by simulation (seeded): error rates of the fixed-horizon tests on A/A experiments,
the sequential test under continuous peeking, the power the sample-size calculator promises, SRM."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from modelyard.experiments import stats

SIMS = 1000
SE_5PCT = math.sqrt(0.05 * 0.95 / SIMS)  # 0.0069: ±1.5 % is about two simulation standard errors


def test_welch_false_positive_rate_on_aa_is_five_percent() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(10, 3, (SIMS, 200)), rng.normal(10, 3, (SIMS, 200))
    p = np.array([stats.welch(a[i], b[i]).p_value for i in range(SIMS)])
    assert 0.035 <= (p < 0.05).mean() <= 0.065
    reference = sps.ttest_ind(b[:20], a[:20], axis=1, equal_var=False).pvalue
    assert p[:20] == pytest.approx(reference)
    covered = [stats.welch(a[i], b[i]) for i in range(200)]
    assert sum(c.ci_low <= 0 <= c.ci_high for c in covered) >= 180  # the interval covers the truth


def test_two_proportion_false_positive_rate_on_aa_is_five_percent() -> None:
    rng = np.random.default_rng(12)
    sa, sb = rng.binomial(800, 0.3, SIMS), rng.binomial(800, 0.3, SIMS)
    p = np.array(
        [stats.two_proportions(int(x), 800, int(y), 800).p_value for x, y in zip(sa, sb, strict=True)]
    )
    assert 0.035 <= (p < 0.05).mean() <= 0.065


def test_mann_whitney_false_positive_rate_on_skewed_aa_is_five_percent() -> None:
    rng = np.random.default_rng(13)
    a, b = rng.lognormal(5, 1, (SIMS, 150)), rng.lognormal(5, 1, (SIMS, 150))
    p = sps.mannwhitneyu(b, a, axis=1).pvalue  # the vectorised twin of stats.mann_whitney
    assert stats.mann_whitney(a[0], b[0]).p_value == pytest.approx(p[0])
    assert 0.035 <= (p < 0.05).mean() <= 0.065


def test_sequential_test_peeked_every_50_units_stays_under_five_percent() -> None:
    rng = np.random.default_rng(14)
    n_max, every = 1000, 50
    a, b = rng.normal(0, 1, (SIMS, n_max)), rng.normal(0, 1, (SIMS, n_max))
    rejected = np.zeros(SIMS, dtype=bool)
    fixed_rejected = np.zeros(SIMS, dtype=bool)  # the same peeking with the fixed-horizon t-test
    for n in range(every, n_max + 1, every):
        ma, mb = a[:, :n].mean(1), b[:, :n].mean(1)
        var = a[:, :n].var(1, ddof=1) / n + b[:, :n].var(1, ddof=1) / n
        half = np.array([stats.sequential_halfwidth(v, 2 * n) for v in var])
        rejected |= np.abs(mb - ma) > half
        fixed_rejected |= np.abs(mb - ma) > 1.96 * np.sqrt(var)
    assert rejected.mean() <= 0.05
    assert fixed_rejected.mean() > 0.15  # peeking a fixed-horizon test inflates its error: the foil
    one = stats.confidence_sequence(a[0], b[0])
    assert one.ci_high - one.ci_low > 2 * 1.96 * math.sqrt(2 / n_max)  # wider than the fixed interval


def test_a_planted_effect_of_the_calculated_size_is_found_at_the_stated_power() -> None:
    mde, sd, power = 0.5, 2.0, 0.8
    n = stats.sample_size(mde, sd=sd, power=power)
    assert 240 <= n <= 260  # 2 (z_.975 + z_.8)² σ²/δ² = 251.2
    rng = np.random.default_rng(15)
    a, b = rng.normal(10, sd, (SIMS, n)), rng.normal(10 + mde, sd, (SIMS, n))
    found = (sps.ttest_ind(b, a, axis=1, equal_var=False).pvalue < 0.05).mean()
    se = math.sqrt(power * (1 - power) / SIMS)
    assert abs(found - power) <= 3 * se


def test_a_planted_rate_effect_is_found_at_the_stated_power() -> None:
    n = stats.sample_size(0.05, baseline_rate=0.2)
    rng = np.random.default_rng(16)
    sa, sb = rng.binomial(n, 0.2, SIMS), rng.binomial(n, 0.25, SIMS)
    p = np.array([stats.two_proportions(int(x), n, int(y), n).p_value for x, y in zip(sa, sb, strict=True)])
    assert abs((p < 0.05).mean() - 0.8) <= 3 * math.sqrt(0.16 / SIMS)


def test_srm_fails_a_45_55_split_of_a_50_50_experiment_and_passes_a_fair_one() -> None:
    rng = np.random.default_rng(17)
    planted = rng.binomial(4000, 0.45)
    assert stats.srm([planted, 4000 - planted], [50, 50]) < stats.SRM_THRESHOLD
    fair = rng.binomial(4000, 0.5, SIMS)
    false_alarms = np.mean([stats.srm([int(x), 4000 - int(x)], [50, 50]) < stats.SRM_THRESHOLD for x in fair])
    assert false_alarms <= 0.005


def test_relative_lift_interval_by_delta_method_covers_the_truth() -> None:
    rng = np.random.default_rng(18)
    hits = 0
    for _ in range(300):
        c = stats.welch(rng.normal(10, 2, 400), rng.normal(11, 2, 400))
        assert c.relative_ci_low is not None and c.relative_ci_high is not None
        hits += c.relative_ci_low <= 0.1 <= c.relative_ci_high
    assert 0.91 <= hits / 300 <= 0.99


def test_bootstrap_p95_interval_finds_a_slower_tail() -> None:
    rng = np.random.default_rng(19)
    a, b = rng.lognormal(5, 0.5, 400), rng.lognormal(5, 0.5, 400) * 1.5
    c = stats.bootstrap_p95(a, b)
    assert c.ci_low > 0 and c.ci_low <= c.lift <= c.ci_high
    same = stats.bootstrap_p95(a, rng.lognormal(5, 0.5, 400))
    assert same.ci_low < 0 < same.ci_high


def test_holm_matches_the_step_down_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 → ×3, ×2, ×1 with running max: 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(stats.holm([0.01, math.nan])[1])


def test_sample_size_rejects_impossible_input() -> None:
    with pytest.raises(ValueError):
        stats.sample_size(0)
    with pytest.raises(ValueError):
        stats.sample_size(0.1, baseline_rate=0.95)
