"""UMAP's fuzzy memberships of a kNN graph, on NumPy arrays of neighbours (self first).

The per-row bandwidth search and the membership strengths of McInnes et al.
(2018), as umap-learn and scanpy's ``method="umap"`` compute them, vectorised
over rows: each row's bandwidth ``sigma`` is bisected until the memberships
of its neighbours sum to ``log2(n_neighbors)``.
"""

from __future__ import annotations

import numpy as np

# umap-learn's constants: the tolerance of the bisection, and the smallest
# bandwidth relative to the mean distance.
_TOLERANCE = 1e-5
_MIN_SCALE = 1e-3


def _nearest_nonzero(distances: np.ndarray, local_connectivity: float) -> np.ndarray:
    """rho: the distance to the ``local_connectivity``-th neighbour at a distance above 0 (interpolated)."""
    positive = distances > 0
    counts = positive.sum(axis=1)
    # Positive distances first, each row's order kept.
    order = np.argsort(~positive, axis=1, kind="stable")
    nonzero = np.take_along_axis(distances, order, axis=1)
    index = int(np.floor(local_connectivity))
    fraction = local_connectivity - index
    rho = np.zeros(len(distances), dtype=np.float32)
    enough = counts >= local_connectivity
    if index > 0:
        rho[enough] = nonzero[enough, index - 1]
        if fraction > _TOLERANCE and index < distances.shape[1]:
            rho[enough] += fraction * (nonzero[enough, index] - nonzero[enough, index - 1])
    else:
        rho[enough] = fraction * nonzero[enough, 0]
    few = ~enough & (counts > 0)
    rho[few] = np.where(positive[few], distances[few], 0).max(axis=1)
    return rho


def smooth_knn_dist(
    distances: np.ndarray, n_neighbors: float, *, n_iter: int = 64, local_connectivity: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's bandwidth and distance to its nearest neighbour.

    Parameters
    ----------
    distances : ndarray of shape (n_samples, n_neighbors)
        Distances to each row's neighbours, nearest first, the row itself first (distance 0).
    n_neighbors : float
        The memberships of a row sum to ``log2(n_neighbors)``.
    n_iter : int
        Bisection steps at most.
    local_connectivity : float
        Neighbours assumed fully connected (membership 1).

    Returns
    -------
    sigmas : ndarray of shape (n_samples,), float32
    rhos : ndarray of shape (n_samples,), float32
    """
    distances = np.asarray(distances, dtype=np.float32)
    target = np.log2(n_neighbors)
    rho = _nearest_nonzero(distances, local_connectivity)
    n_rows = len(distances)
    low = np.zeros(n_rows)
    high = np.full(n_rows, np.inf)
    mid = np.ones(n_rows)
    active = np.arange(n_rows)
    # Past the self column, the shift by rho is in float32 as in umap-learn.
    shifted = (distances[:, 1:] - rho[:, None]).astype(np.float64)
    for _ in range(n_iter):
        if not active.size:
            break
        rows = shifted[active]
        with np.errstate(over="ignore"):
            total = np.where(rows > 0, np.exp(-(rows / mid[active, None])), 1.0).sum(axis=1)
        converged = np.abs(total - target) < _TOLERANCE
        active, total = active[~converged], total[~converged]
        above = total > target
        high[active] = np.where(above, mid[active], high[active])
        low[active] = np.where(above, low[active], mid[active])
        bounded = np.isfinite(high[active])
        mid[active] = np.where(bounded, (low[active] + high[active]) / 2.0, mid[active] * 2.0)
    sigma = mid.astype(np.float32)
    # A floor on the bandwidth: the row's mean distance, or the whole graph's where rho is 0.
    floor = np.where(rho > 0, distances.mean(axis=1), distances.mean()) * _MIN_SCALE
    sigma = np.where(sigma < floor, floor, sigma).astype(np.float32)
    return sigma, rho


def membership_strengths(
    indices: np.ndarray, distances: np.ndarray, sigmas: np.ndarray, rhos: np.ndarray
) -> np.ndarray:
    """Membership of each (row, neighbour) pair: 0 for the row itself, 1 within rho, exp(-(d - rho) / sigma) beyond.

    Parameters
    ----------
    indices : ndarray of shape (n_samples, n_neighbors), int
    distances : ndarray of shape (n_samples, n_neighbors)
    sigmas, rhos : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_samples, n_neighbors), float32
    """
    distances = np.asarray(distances, dtype=np.float32)
    excess = distances - rhos[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = np.exp(-(excess / sigmas[:, None]))
    values = np.where((excess <= 0) | (sigmas[:, None] == 0), 1.0, values).astype(np.float32)
    values[indices == np.arange(len(indices))[:, None]] = 0.0
    return values
