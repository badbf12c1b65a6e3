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
    moments : ndarray of shape (2, d), float64, running sums of x and x**2

    Returns
    -------
    float, the inertia of the step
    """
    n_rows, k = products.shape
    n_features = rows.shape[1]
    inertia = 0.0
    for i in range(n_rows):
        best = np.inf
        second = np.inf
        label = 0
        for c in range(k):
            value = half_norms[c] - products[i, c]
            if value < best:
                second = best
                best = value
                label = c
            elif value < second:
                second = value
        distance = max(centred_norms2[i] + 2.0 * best, 0.0)
        # Each value may err by the bound, a difference by twice it.
        if second - best <= 2.0 * bounds[i]:
            # Too close to call in the GEMM's precision: decide exactly.
            exact_best = np.inf
            for c in range(k):
                if half_norms[c] - products[i, c] <= best + 2.0 * bounds[i]:
                    total = 0.0
                    for f in range(n_features):
                        diff = np.float64(rows[i, f]) - centroids[c, f]
                        total += diff * diff
                    if total < exact_best:
                        exact_best = total
                        label = c
            distance = exact_best
        labels[i] = label
        distances[i] = distance
        inertia += distance
        counts[label] += 1
        for f in range(n_features):
            value = np.float64(rows[i, f])
            sums[label, f] += value
            moments[0, f] += value
            moments[1, f] += value * value
    return inertia
