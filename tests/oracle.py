"""The one brute-force float64 oracle the tests compare bigdist against.

Built on SciPy's ``cdist`` and NumPy's stable argsort, independent of bigdist.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def knn_keys(queries: np.ndarray, train: np.ndarray, metric: str) -> np.ndarray:
    """All (m, n) keys in float64, smaller is better."""
    q = np.asarray(queries, dtype=np.float64)
    x = np.asarray(train, dtype=np.float64)
    if metric in ("euclidean", "sqeuclidean"):
        return cdist(q, x, "sqeuclidean")
    if metric == "inner_product":
        return -(q @ x.T)
    if metric == "cosine":
        qn = np.linalg.norm(q, axis=1)
        xn = np.linalg.norm(x, axis=1)
        # A zero row has cosine similarity 0 with everything (scikit-learn's convention).
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = (q @ x.T) / np.outer(qn, xn)
        sim[~np.isfinite(sim)] = 0.0
        return np.clip(1.0 - sim, 0.0, 2.0)
    raise ValueError(metric)


def knn_oracle(
    queries: np.ndarray, train: np.ndarray | None, k: int, metric: str = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours, ties by the lower index; ``train=None`` is the self-join."""
    self_join = train is None
    keys = knn_keys(queries, queries if self_join else train, metric)
    if self_join:
        np.fill_diagonal(keys, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(keys, order, axis=1)
    if metric == "euclidean":
        best = np.sqrt(best)
    elif metric == "inner_product":
        best = -best
    return best, order
