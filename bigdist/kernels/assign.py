"""The compiled inner loop of a k-means pass: nearest centroid and partial sums in one sweep.

After one GEMM of a step of rows against the centroids, this loop finds each
row's nearest centroid (ties to the lower index; rows whose best two are
closer than the GEMM's error bound are settled exactly in float64) and adds
the row to its centroid's float64 sum, count and inertia, touching each
score and each value once. Compiled with numba (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def assign_accumulate(
    products: np.ndarray,
    half_norms: np.ndarray,
    rows: np.ndarray,
    centred_norms2: np.ndarray,
    bounds: np.ndarray,
    centroids: np.ndarray,
    labels: np.ndarray,
    distances: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    moments: np.ndarray,
    with_moments: bool,
) -> float:
    """Label the rows of one step and fold them into the partial sums, in place.

    Parameters
    ----------
    products : ndarray of shape (s, k), the GEMM of the shifted rows and centroids
    half_norms : ndarray of shape (k,), half squared norms of the shifted centroids
    rows : ndarray of shape (s, d), the original rows
    centred_norms2 : ndarray of shape (s,), float64, squared norms of the shifted rows
    bounds : ndarray of shape (s,), float64, error bound of each ``half_norms - products`` value per row
    centroids : ndarray of shape (k, d), float64, the original centroids
    labels, distances : ndarray of shape (s,), outputs (int64, float64)
    sums : ndarray of shape (k, d), float64; counts : ndarray of shape (k,), int64
    moments : ndarray of shape (2, d), float64, running sums of x and x**2 (when ``with_moments``)

    Returns
    -------
    float, the inertia of the step
    """
    n_rows, k = products.shape
    n_features = rows.shape[1]
    inertia = 0.0
    for i in range(n_rows):
        best = _row_min(products[i], half_norms)
        slack = best + 2.0 * bounds[i]
        # Each value may err by the bound, a difference by twice it: more than
        # one value within that of the best is too close to call in the GEMM's precision.
        if _count_within(products[i], half_norms, slack) == 1:
            label = _first_at_most(products[i], half_norms, best)
            distance = max(centred_norms2[i] + 2.0 * best, 0.0)
        else:
            label, distance = _exact_nearest(products[i], half_norms, slack, rows[i], centroids)
        labels[i] = label
        distances[i] = distance
        inertia += distance
        counts[label] += 1
        for f in range(n_features):
            sums[label, f] += rows[i, f]
        if with_moments:
            for f in range(n_features):
                value = np.float64(rows[i, f])
                moments[0, f] += value
                moments[1, f] += value * value
    return inertia


@numba.njit(cache=True, nogil=True, fastmath=True)
def _row_min(products: np.ndarray, half_norms: np.ndarray) -> float:
    # A plain reduction the compiler vectorises.
    best = np.inf
    for c in range(products.shape[0]):
        best = min(best, half_norms[c] - products[c])
    return best


@numba.njit(cache=True, nogil=True)
def _count_within(products: np.ndarray, half_norms: np.ndarray, limit: float) -> int:
    count = 0
    for c in range(products.shape[0]):
        if half_norms[c] - products[c] <= limit:
            count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _first_at_most(products: np.ndarray, half_norms: np.ndarray, limit: float) -> int:
    for c in range(products.shape[0]):
        if half_norms[c] - products[c] <= limit:
            return c
    return products.shape[0] - 1


@numba.njit(cache=True, nogil=True)
def _exact_nearest(
    products: np.ndarray, half_norms: np.ndarray, limit: float, row: np.ndarray, centroids: np.ndarray
) -> tuple[int, float]:
    """Among the centroids within ``limit``, the exactly nearest (lowest index on ties)."""
    label = 0
    exact_best = np.inf
    for c in range(products.shape[0]):
        if half_norms[c] - products[c] <= limit:
            total = 0.0
            for f in range(row.shape[0]):
                diff = np.float64(row[f]) - centroids[c, f]
                total += diff * diff
            if total < exact_best:
                exact_best = total
                label = c
    return label, exact_best
