"""Drift statistics on synthetic embeddings: A/A, a shifted sample, and MMD's false-positive rate."""

from __future__ import annotations

import time

import numpy as np
import pytest

from drift_stream import BEFORE, HashingEmbedder, window
from modelyard.monitoring.drift.methods import (
    centroid_distance,
    chunk_threshold,
    domain_classifier_auc,
    mmd,
    subsample,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_an_a_a_split_of_one_window_gives_an_auc_near_one_half() -> None:
    rng = np.random.default_rng(0)
    emb = HashingEmbedder().embed(window(400, BEFORE, rng))
    order = rng.permutation(len(emb))
    auc = domain_classifier_auc(emb[order[:200]], emb[order[200:]])
    assert abs(auc - 0.5) < 0.08, auc
    stat, p = mmd(emb[order[:200]], emb[order[200:]])
    assert p > 0.05 and abs(stat) < 0.005


def test_a_shift_is_detected_by_all_three() -> None:
    rng = np.random.default_rng(1)
    a = _unit(rng.normal(size=(300, 64)) + 1.0)
    b = _unit(rng.normal(size=(300, 64)) + 1.0 + np.r_[np.full(8, 0.8), np.zeros(56)])
    assert domain_classifier_auc(a, b) > 0.7
    assert mmd(a, b)[1] < 0.01
    threshold = chunk_threshold(a, 50, centroid_distance)
    assert threshold is not None and centroid_distance(a, b) > threshold
    assert centroid_distance(a, a) < 1e-9


def test_mmd_false_positive_rate_is_near_alpha() -> None:
    """Simulation of the permutation test's level: 80 A/A pairs at alpha 0.1 (expect ~8)."""
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(80):
        x = _unit(rng.normal(size=(80, 16)))
        p = mmd(x[:40], x[40:], permutations=99, seed=int(rng.integers(1 << 30)))[1]
        hits += p < 0.1
    assert 2 <= hits <= 16, hits


def test_big_windows_are_subsampled_and_run_in_seconds() -> None:
    rng = np.random.default_rng(3)
    big = _unit(rng.normal(size=(10_000, 384)).astype(np.float32))
    other = _unit(rng.normal(size=(10_000, 384)).astype(np.float32))
    assert len(subsample(big, 500, rng)) == 500
    t = time.perf_counter()
    domain_classifier_auc(big, other)
    mmd(big, other)
    centroid_distance(big, other)
    assert time.perf_counter() - t < 20


def test_mmd_equals_the_textbook_unbiased_estimate_with_sklearn_kernels() -> None:
    """MMD²_u of Gretton et al. (2012, eq. 3) written out with scikit-learn's RBF kernel, against the
    vectorised permutation code (no subsampling at these sizes)."""
    from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel

    rng = np.random.default_rng(4)
    x, y = _unit(rng.normal(size=(60, 16))), _unit(rng.normal(size=(45, 16)) + 0.3)
    gamma = 1.0 / float(np.median(euclidean_distances(x, y) ** 2))
    kxx, kyy, kxy = (
        rbf_kernel(x, x, gamma=gamma),
        rbf_kernel(y, y, gamma=gamma),
        rbf_kernel(x, y, gamma=gamma),
    )
    m, n = len(x), len(y)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.sum() / (m * n)
    )
    assert mmd(x, y)[0] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_output_tests_match_scipy_and_statsmodels() -> None:
    from scipy.stats import mannwhitneyu
    from statsmodels.stats.proportion import proportions_ztest

    from modelyard.monitoring.drift.methods import mann_whitney_p, two_proportion_p

    rng = np.random.default_rng(5)
    a, b = rng.integers(10, 60, 200).astype(float), rng.integers(15, 70, 150).astype(float)  # many ties
    expected = mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-9)
    assert mann_whitney_p(np.full(5, 3.0), np.full(5, 3.0)) == 1.0
    z, p = proportions_ztest([12, 30], [200, 180])
    assert two_proportion_p(12, 200, 30, 180) == pytest.approx(p, rel=1e-9)
    assert two_proportion_p(0, 10, 0, 10) == 1.0
