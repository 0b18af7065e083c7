"""Drift statistics between a reference (baseline) and a current set of embeddings, rows L2-normalised.

- :func:`domain_classifier_auc` — Evidently's embedding-drift ``model`` method: a classifier learns to
  tell current rows from reference rows and its ROC AUC is the score; drift above 0.55, Evidently's
  default threshold. Here a logistic regression (scikit-learn defaults, ``C=1``) scored by stratified
  k-fold cross-validation (every row is scored by a model that did not see it), so an A/A split gives
  an AUC near 0.5 rather than the optimism of an in-sample fit.
- :func:`auc_null_quantile` — for small windows the fixed 0.55 fires too often (an A/A pair of 300 and
  150 rows has an AUC standard deviation near 0.03), so the threshold used is the larger of 0.55 and
  the one-sided ``1 - alpha`` quantile of the AUC of a classifier that knows nothing: the Mann-Whitney
  null, normal with variance ``(m + n + 1) / (12 m n)`` (Hanley and McNeil 1982). This is the analytic
  form of Evidently's ``bootstrap`` option, which compares to a quantile of random classifiers' AUCs.
- :func:`mmd` — the unbiased MMD² with an RBF kernel whose bandwidth is the median heuristic
  (Gretton et al., "A Kernel Two-Sample Test", JMLR 2012; the median of the reference-to-current
  squared distances, as Evidently's ``mmd`` method takes it), and its permutation p-value
  ``(1 + #{perm >= observed}) / (1 + permutations)`` (Phipson and Smyth 2010).
- :func:`centroid_distance` — the cosine distance between the two centroids (Arize Phoenix's
  "euclidean/cosine distance of centroids").
- :func:`mann_whitney_p` and :func:`two_proportion_p` — output drift: the Mann-Whitney U test
  (normal approximation with tie correction; Mann and Whitney 1947) on response lengths and the
  pooled two-proportion z-test on refusal rates, both two-sided.
- :func:`chunk_threshold` — NannyML's rule for a threshold learned from the baseline: the statistic of
  each baseline chunk against the whole baseline, mean + 3 standard deviations.

Windows bigger than ``max_samples`` are subsampled at random (fixed seed) so that a run stays in
seconds: the classifier at 1,000 and MMD at 500 rows a side by default; the centroid uses every row.
scikit-learn is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

AUC_THRESHOLD = 0.55  # Evidently's default for the domain classifier ("model") method
AUC_MAX_SAMPLES = 1000
MMD_MAX_SAMPLES = 500


def subsample(x: np.ndarray, max_n: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= max_n:
        return x
    return x[np.sort(rng.choice(len(x), size=max_n, replace=False))]


def domain_classifier_auc(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    max_samples: int = AUC_MAX_SAMPLES,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``current`` from ``reference``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(seed)
    ref = subsample(reference, max_samples, rng)
    cur = subsample(current, max_samples, rng)
    x = np.vstack([ref, cur]).astype(np.float64)
    y = np.r_[np.zeros(len(ref)), np.ones(len(cur))]
    k = max(2, min(folds, len(ref), len(cur)))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    proba = cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=cv, method="predict_proba")
    return float(roc_auc_score(y, proba[:, 1]))


def auc_null_quantile(m: int, n: int, alpha: float = 0.001) -> float:
    """The ``1 - alpha`` quantile of a random classifier's ROC AUC on ``m`` negatives, ``n`` positives."""
    from statistics import NormalDist

    return 0.5 + NormalDist().inv_cdf(1.0 - alpha) * ((m + n + 1) / (12.0 * m * n)) ** 0.5


def mmd(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    max_samples: int = MMD_MAX_SAMPLES,
    permutations: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """(unbiased MMD², permutation p-value) with an RBF kernel at the median-heuristic bandwidth."""
    rng = np.random.default_rng(seed)
    ref = subsample(reference, max_samples, rng).astype(np.float64)
    cur = subsample(current, max_samples, rng).astype(np.float64)
    m, n = len(ref), len(cur)
    z = np.vstack([ref, cur])
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)
    cross = d2[:m, m:]
    sigma2 = float(np.median(cross)) if np.any(cross > 0) else 1.0
    k = np.exp(-d2 / sigma2)
    np.fill_diagonal(k, 0.0)
    labels = np.zeros((permutations + 1, m + n))
    labels[0, :m] = 1.0
    for i in range(1, permutations + 1):
        labels[i, rng.permutation(m + n)[:m]] = 1.0
    stats = _mmd2(k, labels, m, n)
    observed = float(stats[0])
    p = (1.0 + float(np.sum(stats[1:] >= observed))) / (1.0 + permutations)
    return observed, p


def _mmd2(k: np.ndarray, a: np.ndarray, m: int, n: int) -> np.ndarray:
    """Unbiased MMD² for each row of ``a`` (1 marks the reference side); ``k`` has a zero diagonal."""
    b = 1.0 - a
    ka, kb = a @ k, b @ k
    xx = np.sum(ka * a, axis=1) / (m * (m - 1))
    yy = np.sum(kb * b, axis=1) / (n * (n - 1))
    xy = np.sum(ka * b, axis=1) / (m * n)
    return xx + yy - 2.0 * xy  # type: ignore[no-any-return]


def centroid_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """``1 - cos(mean(reference), mean(current))``."""
    a = reference.astype(np.float64).mean(axis=0)
    b = current.astype(np.float64).mean(axis=0)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if denom == 0 else float(1.0 - np.dot(a, b) / denom)


def chunk_threshold(
    reference: np.ndarray,
    chunk_size: int,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    *,
    max_chunks: int = 20,
    seed: int = 0,
) -> float | None:
    """mean + 3σ of ``statistic(reference, chunk)`` over disjoint random chunks of the reference
    (NannyML); ``None`` when fewer than three chunks fit."""
    chunks = min(max_chunks, len(reference) // max(chunk_size, 1))
    if chunks < 3:
        return None
    order = np.random.default_rng(seed).permutation(len(reference))
    values = [
        statistic(reference, reference[order[i * chunk_size : (i + 1) * chunk_size]]) for i in range(chunks)
    ]
    return float(np.mean(values) + 3.0 * np.std(values, ddof=1))


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test of ``a`` vs ``b`` (normal approximation)."""
    from statistics import NormalDist

    x = np.concatenate([a, b]).astype(np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # ties share their mean rank
    m, n = len(a), len(b)
    u = ranks[:m].sum() - m * (m + 1) / 2
    ties = float(np.sum(counts**3 - counts))
    var = m * n / 12.0 * ((m + n + 1) - ties / ((m + n) * (m + n - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u - m * n / 2.0) - 0.5) / var**0.5
    return float(min(1.0, 2.0 * (1.0 - NormalDist().cdf(max(z, 0.0)))))


def two_proportion_p(x1: float, n1: int, x2: float, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test of ``x1/n1`` vs ``x2/n2``."""
    from statistics import NormalDist

    pooled = (x1 + x2) / (n1 + n2)
    se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)) ** 0.5
    if se == 0:
        return 1.0
    z = abs(x1 / n1 - x2 / n2) / se
    return float(2.0 * (1.0 - NormalDist().cdf(z)))
