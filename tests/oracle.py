"""The one brute-force float64 oracle the tests compare bigdist against.

Built on SciPy's ``cdist`` and NumPy's stable argsort, independent of bigdist.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

_SCIPY_NAMES = {"manhattan": "cityblock", "l1": "cityblock", "cityblock": "cityblock", "l2": "euclidean"}
# Metrics of the registry the tests feed boolean data.
BOOLEAN_METRICS = ("jaccard", "hamming", "dice", "rogerstanimoto", "russellrao", "sokalsneath", "yule")
# Metrics that need data or parameters of their own (2-D radians, NaN, V / VI): tests/test_sklearn_metrics.py.
OWN_DATA_METRICS = ("seuclidean", "mahalanobis", "haversine", "nan_euclidean")


def _cosine_distance(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    qn = np.linalg.norm(q, axis=1)
    xn = np.linalg.norm(x, axis=1)
    # A zero row has cosine similarity 0 with everything (scikit-learn's convention).
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = (q @ x.T) / np.outer(qn, xn)
    sim[~np.isfinite(sim)] = 0.0
    return np.clip(1.0 - sim, 0.0, 2.0)


def distances(queries: np.ndarray, train: np.ndarray, metric: str, **params) -> np.ndarray:
    """The (m, n) distance matrix in float64, with bigdist's documented values where cdist gives NaN.

    ``inner_product`` gives the inner products; ``chi2`` is 0.5 * sum((a - b)**2 / (a + b)) over a + b > 0.
    """
    q = np.asarray(queries, dtype=np.float64)
    x = np.asarray(train, dtype=np.float64)
    if metric in ("inner_product", "dot"):
        return q @ x.T
    if metric == "cosine":
        return _cosine_distance(q, x)
    if metric == "correlation":
        return _cosine_distance(q - q.mean(axis=1, keepdims=True), x - x.mean(axis=1, keepdims=True))
    if metric == "chi2":
        total = q[:, None, :] + x[None, :, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            terms = (q[:, None, :] - x[None, :, :]) ** 2 / total
        return 0.5 * np.where(total > 0, terms, 0.0).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cdist(q, x, _SCIPY_NAMES.get(metric, metric), **params)
    if metric in ("braycurtis", "dice", "sokalsneath"):
        out[np.isnan(out)] = 0.0  # two zero (all-false) rows
    return out


def knn_keys(queries: np.ndarray, train: np.ndarray, metric: str, **params) -> np.ndarray:
    """All (m, n) keys in float64, smaller is better."""
    if metric in ("euclidean", "sqeuclidean"):
        return cdist(np.asarray(queries, dtype=np.float64), np.asarray(train, dtype=np.float64), "sqeuclidean")
    if metric == "inner_product":
        return -distances(queries, train, metric)
    return distances(queries, train, metric, **params)


def knn_oracle(
    queries: np.ndarray, train: np.ndarray | None, k: int, metric: str = "euclidean", **params
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours, ties by the lower index; ``train=None`` is the self-join."""
    self_join = train is None
    keys = knn_keys(queries, queries if self_join else train, metric, **params)
    if self_join:
        np.fill_diagonal(keys, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(keys, order, axis=1)
    if metric == "euclidean":
        best = np.sqrt(best)
    elif metric == "inner_product":
        best = -best
    return best, order
