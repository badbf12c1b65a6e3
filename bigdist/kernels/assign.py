"""The compiled inner loops of a k-means pass: nearest centroids, then partial sums.

After one GEMM of a step of rows against the centroids, ``nearest_two`` finds
each row's two nearest centroids and ``settle_rows`` labels the row (ties to
the lower index; rows whose best two are closer than the GEMM's error bound
are settled exactly in float64);
``bounded_assign`` keeps the centroid of the rows Hamerly's bounds prove stay.
``accumulate`` then adds every row of the block, in row order, to its
centroid's float64 sum, count and inertia, so the partial state of a block is
bitwise the same whichever rows were skipped. Compiled with numba (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def nearest_two(
    products: np.ndarray, half_norms: np.ndarray, best: np.ndarray, second: np.ndarray, first: np.ndarray
) -> None:
    """For every row of a step, its smallest and second smallest ``half_norms - products`` value, in place.

    Parameters
    ----------
    products : ndarray of shape (k, s), the GEMM of the shifted centroids and rows (centroid-major,
        so that the loop over rows is contiguous and vectorises without a reduction's dependency chain)
    half_norms : ndarray of shape (k,), float64, half squared norms of the shifted centroids
    best, second : ndarray of shape (s,), float64, outputs; ``second`` equals ``best`` on a tie
    first : ndarray of shape (s,), int64, output: the lowest centroid index reaching ``best``
    """
    k, s = products.shape
    best[:] = np.inf
    second[:] = np.inf
    first[:] = 0
    for c in range(k):
        half_norm = half_norms[c]
        for i in range(s):
            value = half_norm - products[c, i]
            runner_up = value if value > best[i] else best[i]
            second[i] = runner_up if runner_up < second[i] else second[i]
            first[i] = c if value < best[i] else first[i]
            best[i] = value if value < best[i] else best[i]


@numba.njit(cache=True, nogil=True)
def settle_rows(
    products: np.ndarray,
    half_norms: np.ndarray,
    rows: np.ndarray,
    centred_norms2: np.ndarray,
    bounds: np.ndarray,
    centroids: np.ndarray,
    best: np.ndarray,
    second: np.ndarray,
    first: np.ndarray,
    labels: np.ndarray,
    lower: np.ndarray,
    with_lower: bool,
) -> None:
    """Label the rows of one step from :func:`nearest_two`'s values, in place.

    Parameters
    ----------
    products, half_norms, best, second, first : as for :func:`nearest_two`
    rows : ndarray of shape (s, d), the original rows
    centred_norms2 : ndarray of shape (s,), float64, squared norms of the shifted rows
    bounds : ndarray of shape (s,), float64, error bound of each ``half_norms - products`` value per row
    centroids : ndarray of shape (k, d), float64, the original centroids
    labels : ndarray of shape (s,), int64, output
    lower : ndarray of shape (s,), output (when ``with_lower``): float64, a lower bound on the
        distance (not squared) of each row to every centroid but its own
    """
    for i in range(rows.shape[0]):
        label = first[i]
        other = second[i]
        # Each value may err by the bound, a difference by twice it: a runner-up within that of the
        # best is too close to call in the GEMM's precision, so the candidates are compared exactly.
        slack = best[i] + 2.0 * bounds[i]
        if second[i] <= slack:
            exact_best = np.inf
            for c in range(products.shape[0]):
                if half_norms[c] - products[c, i] <= slack:
                    total = squared_distance(rows[i], centroids[c])
                    if total < exact_best:
                        exact_best = total
                        label = c
            if label != first[i]:
                other = best[i]
        labels[i] = label
        if with_lower:
            # Every value errs by at most the bound, and the row's squared norm by less than twice it.
            second_distance = centred_norms2[i] + 2.0 * (other - 2.0 * bounds[i])
            lower[i] = np.sqrt(max(second_distance, 0.0))


@numba.njit(cache=True, nogil=True)
def accumulate(
    rows: np.ndarray,
    centroids: np.ndarray,
    labels: np.ndarray,
    distances: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    moments: np.ndarray,
    with_moments: bool,
    step_rows: int,
) -> float:
    """Add every row to its centroid's sum and count, in row order; return the inertia.

    Parameters
    ----------
    rows : ndarray of shape (n, d), the original rows of a block
    centroids : ndarray of shape (k, d), float64
    labels : ndarray of shape (n,), int64
    distances : ndarray of shape (n,), float64, output: squared distance of each row to its centroid
    sums : ndarray of shape (k, d), float64; counts : ndarray of shape (k,), int64
    moments : ndarray of shape (2, d), float64, running sums of x and x**2 (when ``with_moments``)
    step_rows : int, rows whose squared distances are summed before being added to the total
    """
    inertia = 0.0
    for start in range(0, rows.shape[0], step_rows):
        step_inertia = 0.0
        for i in range(start, min(start + step_rows, rows.shape[0])):
            label = labels[i]
            distance = squared_distance(rows[i], centroids[label])
            distances[i] = distance
            step_inertia += distance
            counts[label] += 1
            for f in range(rows.shape[1]):
                sums[label, f] += rows[i, f]
            if with_moments:
                for f in range(rows.shape[1]):
                    value = np.float64(rows[i, f])
                    moments[0, f] += value
                    moments[1, f] += value * value
        inertia += step_inertia
    return inertia


# Reassociation lets the compiler vectorise the sum; float64 keeps it exact to ~1e-16 relative.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def squared_distance(row: np.ndarray, centroid: np.ndarray) -> float:
    """Squared distance of a row to a float64 centroid, in float64 from the original values."""
    total = 0.0
    for f in range(row.shape[0]):
        diff = np.float64(row[f]) - centroid[f]
        total += diff * diff
    return total


@numba.njit(cache=True, nogil=True)
def bounded_assign(
    rows: np.ndarray,
    centroids: np.ndarray,
    labels_before: np.ndarray,
    lower_before: np.ndarray,
    drift_other: np.ndarray,
    half_gap: np.ndarray,
    labels: np.ndarray,
    lower: np.ndarray,
    pending: np.ndarray,
) -> int:
    """Keep the label of every row that provably has not changed (Hamerly's bounds), in place.

    A row keeps its centroid ``a`` when its exact distance ``u`` to ``a`` is
    below ``max(lower - drift_other[a], half_gap[a])``: its old lower bound on
    the distance to every other centroid, less the farthest any other
    centroid moved, or half the distance from ``a`` to its nearest other
    centroid (then no other centroid can be as near, by the triangle
    inequality). The comparison keeps a relative margin of 1e-9, far above
    the float64 rounding of the bounds, so a kept label is the exact nearest
    centroid, never a tie. The other rows are listed in ``pending`` for a full assignment.

    Parameters
    ----------
    rows : ndarray of shape (s, d), the original rows
    centroids : ndarray of shape (k, d), float64, the current centroids
    labels_before, lower_before : ndarray of shape (s,), int64 and float64, from the last pass
    drift_other : ndarray of shape (k,), float64, for each centroid the largest move of any other one
    half_gap : ndarray of shape (k,), float64, half the distance of each centroid to its nearest other one
    labels, lower : ndarray of shape (s,), outputs for the kept rows
    pending : ndarray of shape (s,), int64, output: positions of the rows left to assign

    Returns
    -------
    int, the number of pending rows
    """
    n_pending = 0
    for i in range(rows.shape[0]):
        label = labels_before[i]
        distance = squared_distance(rows[i], centroids[label])
        moved_lower = lower_before[i] - drift_other[label]
        limit = max(moved_lower, half_gap[label]) * (1.0 - 1e-9)
        if limit > 0.0 and distance < limit * limit:
            labels[i] = label
            # The triangle inequality bounds the other centroids by the gap too (less a rounding margin).
            gap_lower = 2.0 * half_gap[label] * (1.0 - 1e-12) - np.sqrt(distance)
            lower[i] = max(moved_lower, gap_lower, 0.0)
        else:
            pending[n_pending] = i
            n_pending += 1
    return n_pending
