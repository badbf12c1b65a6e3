"""The compiled inner loop of a k-means pass: labels, bounds and partial sums of a block, a step at a time.

``lloyd_rows`` walks a block in steps of rows that stay in cache. For each
step it keeps the label of the rows Hamerly's bounds prove stay (when the
block carries bounds), copies the other rows (shifted) with their norms,
runs a GEMM of them against each tile of centroids (``np.dot``, BLAS; a
tile's products stay in L2 for any k) and folds each tile into every row's
running two nearest centroids in one vectorised pass (``nearest_two``, in
the GEMM's dtype), settles rows whose best two are closer than the GEMM's
error bound exactly in float64 (ties to the lower index), then adds every
row of the step, in row order, to its centroid's float64 sum, count and
inertia. The partial state of a block is therefore bitwise the same
whichever rows the bounds skipped. Without its ``accumulate`` flag it
labels a range of the block's rows without the sums, and
``accumulate_rows`` adds them after, in the same order: pieces of a block
labelled by several threads at once.
Compiled with numba (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

# numba's np.dot calls the BLAS of SciPy's cython_blas; loading it with this module lets the
# workers' BLAS thread limit (bigdist.runtime) cover it.
import scipy.linalg.cython_blas  # noqa: F401

# Status of ``lloyd_rows``.
DONE = 0
OUT_OF_RANGE = 1  # a step's values are outside the GEMM dtype's safe range: nothing is usable


@numba.njit(cache=True, nogil=True)
def lloyd_rows(
    block: np.ndarray,
    first_row: int,
    stop_row: int,
    accumulate: bool,
    centroids: np.ndarray,
    gemm: tuple,
    carried: tuple,
    outputs: tuple,
    scratch: tuple,
) -> tuple[int, float, int]:
    """Label rows ``first_row:stop_row`` of a block; with ``accumulate``, add them to their centroid's sums.

    Without ``accumulate`` only the labels, bounds and distances are written (:func:`accumulate_rows`
    sums them later, as these would have). Returns (status, inertia or 0, GEMM rows).

    Parameters
    ----------
    block : ndarray of shape (n, d), the original rows
    first_row, stop_row : int, the rows to label; ``first_row`` a multiple of the step's rows
    accumulate : bool, add the rows to the sums in ``outputs`` (steps of ``first_row`` on)
    centroids : ndarray of shape (k, d), float64, the original centroids
    gemm : tuple ``(centres, shift, half_norms, gemm_half_norms, tile, max_norm, bound_factor, safe_low,
        safe_high, centroid_amax)``: the centroids less ``shift`` (k, d) and ``shift`` (d,) in the GEMM dtype;
        half their squared norms, float64 and in the GEMM dtype; the centroids per GEMM tile; the largest
        centred norm; the error bound of a ``half_norm - product`` value (in float64, or in the GEMM
        dtype) is ``bound_factor * (|row - shift| + max_norm)**2``; the magnitudes the GEMM dtype squares safely
        (``OUT_OF_RANGE`` is returned for a step whose values, or the centroids', lie outside); the
        centroids' largest magnitude
    carried : tuple ``(bounded, labels_before, lower_before, drift_other, half_gap)``, Hamerly's state:
        whether to use it; each row's label (n,) and lower bound (n,) on its distance to every other
        centroid from the last pass; for each centroid the largest move of any other one (k,), and half
        its distance to its nearest other one (k,)
    outputs : tuple ``(labels, lower, distances, sums, counts, moments, with_moments, weights, weight_sums,
        weighted)``: labels (n,), the new lower bounds (n,), squared distances to the centroid (n,), float64
        sums (k, d), counts (k,) and sums of x and x**2 per feature (2, d, only ``with_moments``), added to
        in place; with ``weighted``, the rows' weights (n,) and the centroids' summed weights (k,), and the
        sums and inertia weighted
    scratch : tuple ``(products, shifted, best, second, first, selected, norms)``: flat buffers of at least
        tile * s and s * d values of the GEMM dtype, and of s values: two of the GEMM dtype, int32, int64
        and float64 (s rows per step)

    Returns
    -------
    (status, inertia, rows assigned through the GEMM); on ``OUT_OF_RANGE`` the outputs are partial.
    """
    centres, shift, half_norms, gemm_half_norms, tile, max_norm, bound_factor, safe_low, safe_high, centroid_amax = gemm
    bounded = carried[0]
    labels, lower = outputs[0], outputs[1]
    products_buffer, shifted_buffer, best, second, first, selected, norms = scratch
    n, d = block.shape
    k = centres.shape[0]
    step_rows = selected.shape[0]
    inertia = 0.0
    gemm_rows = 0
    for start in range(first_row, stop_row, step_rows):
        stop = min(start + step_rows, stop_row)
        if bounded:
            m = _keep_proven(block, start, stop, centroids, carried, labels, lower, outputs[2], selected)
        else:
            m = stop - start
            for j in range(m):
                selected[j] = start + j
        if m > 0:
            shifted = shifted_buffer[: m * d].reshape((m, d))
            amax = _gather_shifted(block, selected[:m], shift, shifted, norms, centroid_amax)
            if amax != 0.0 and not safe_low <= amax <= safe_high:
                return OUT_OF_RANGE, 0.0, 0
            for low in range(0, k, tile):
                high = min(low + tile, k)
                products = products_buffer[: (high - low) * m].reshape((high - low, m))
                np.dot(centres[low:high], shifted.T, products)
                nearest_two(products, gemm_half_norms[low:high], low, best[:m], second[:m], first[:m])
            # With one tile its products are every centroid's; with several, the settle recomputes a row's.
            _settle(block, centroids, shifted, norms, products, low == 0, centres, half_norms, gemm_half_norms,
                    max_norm, bound_factor, selected[:m], best, second, first, labels, lower, outputs[2], bounded,
                    carried[1])  # fmt: skip
            gemm_rows += m
        if accumulate:
            inertia += _accumulate_step(block, start, stop, centroids, outputs)
    return DONE, inertia, gemm_rows


@numba.njit(cache=True, nogil=True)
def accumulate_rows(
    block: np.ndarray,
    first_row: int,
    stop_row: int,
    step_rows: int,
    centroids: np.ndarray,
    outputs: tuple,
    inertia: float,
) -> float:
    """Add the labelled rows ``first_row:stop_row`` to their centroid's sums, as ``lloyd_rows`` does.

    The same additions in the same order as :func:`lloyd_rows`'s (steps of
    ``step_rows`` from ``first_row``, a multiple of it): pieces of a block
    summed one after the other, in row order, give bitwise its sums.
    Returns ``inertia``, the running inertia of the rows before, plus theirs.
    """
    for start in range(first_row, stop_row, step_rows):
        inertia += _accumulate_step(block, start, min(start + step_rows, stop_row), centroids, outputs)
    return inertia


@numba.njit(cache=True, nogil=True)
def _keep_proven(
    block: np.ndarray,
    start: int,
    stop: int,
    centroids: np.ndarray,
    carried: tuple,
    labels: np.ndarray,
    lower: np.ndarray,
    distances: np.ndarray,
    selected: np.ndarray,
) -> int:
    """Keep the label of every row of the step that provably has not changed; list the others in ``selected``.

    A row keeps its centroid ``a`` when its exact distance ``u`` to ``a`` is
    below ``max(lower - drift_other[a], half_gap[a])``: its old lower bound on
    the distance to every other centroid, less the farthest any other
    centroid moved, or half the distance from ``a`` to its nearest other
    centroid (then no other centroid can be as near, by the triangle
    inequality). The comparison keeps a relative margin of 1e-9, far above
    the float64 rounding of the bounds, so a kept label is the exact nearest
    centroid, never a tie; its distance goes to ``distances``, for the
    others too (:func:`_settle` keeps it for a row whose label stays). Returns
    how many rows are left to assign.
    """
    _, labels_before, lower_before, drift_other, half_gap = carried
    m = 0
    for i in range(start, stop):
        label = labels_before[i]
        distance = squared_distance(block[i], centroids[label])
        distances[i] = distance
        moved_lower = lower_before[i] - drift_other[label]
        limit = max(moved_lower, half_gap[label]) * (1.0 - 1e-9)
        if limit > 0.0 and distance < limit * limit:
            labels[i] = label
            # The triangle inequality bounds the other centroids by the gap too (less a rounding margin).
            gap_lower = 2.0 * half_gap[label] * (1.0 - 1e-12) - np.sqrt(distance)
            lower[i] = max(moved_lower, gap_lower, 0.0)
        else:
            selected[m] = i
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def _gather_shifted(
    block: np.ndarray,
    rows: np.ndarray,
    shift: np.ndarray,
    shifted: np.ndarray,
    norms: np.ndarray,
    centroid_amax: float,
) -> float:
    """Copy ``block[rows] - shift`` into ``shifted``, their squared norms (float64) into ``norms``.

    Returns the largest magnitude of those rows and the centroids.
    """
    amax = centroid_amax
    for j in range(rows.shape[0]):
        amax = max(amax, _shift_row(block[rows[j]], shift, shifted[j]))
        norms[j] = _squared_norm(shifted[j])
    return amax


# The largest of exact values, in any order: the compiler vectorises it (the data holds no NaN: checked on input).
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "nnan"})
def _shift_row(row: np.ndarray, shift: np.ndarray, out: np.ndarray) -> float:
    amax = 0.0
    for f in range(row.shape[0]):
        amax = max(amax, abs(np.float64(row[f])))
        out[f] = row[f] - shift[f]
    return amax


# Reassociation lets the compiler vectorise the sum; float64 keeps it exact to ~1e-16 relative.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _squared_norm(row: np.ndarray) -> float:
    total = 0.0
    for f in range(row.shape[0]):
        value = np.float64(row[f])
        total += value * value
    return total


@numba.njit(cache=True, nogil=True)
def nearest_two(
    products: np.ndarray, half_norms: np.ndarray, low: int, best: np.ndarray, second: np.ndarray, first: np.ndarray
) -> None:
    """Fold a tile of centroids into every row's smallest and second smallest ``half_norms - products`` value.

    Parameters
    ----------
    products : ndarray of shape (t, s), the GEMM of a tile of shifted centroids, ``low`` the first, and the
        rows (centroid-major, so that the loop over rows is contiguous and vectorises without a reduction's
        dependency chain)
    half_norms : ndarray of shape (t,), half squared norms of the tile's shifted centroids, of the
        products' dtype (all lanes of one width)
    low : int, the index of the tile's first centroid; the tile starting at 0 resets the outputs
    best, second : ndarray of shape (s,), the products' dtype, running; ``second`` equals ``best`` on a tie
    first : ndarray of shape (s,), int32, running: the lowest centroid index reaching ``best``
    """
    t, s = products.shape
    if low == 0:
        best[:] = np.inf
        second[:] = np.inf
        first[:] = 0
    for c in range(t):
        half_norm = half_norms[c]
        label = np.int32(low + c)
        for i in range(s):
            value = half_norm - products[c, i]
            so_far = best[i]
            # The median of (best, second, value), as best <= second: written min(second, ...), the
            # compiler makes it a masked store, three times slower on AMD.
            second[i] = max(so_far, min(second[i], value))
            first[i] = label if value < so_far else first[i]
            best[i] = min(value, so_far)


@numba.njit(cache=True, nogil=True)
def _settle(
    block: np.ndarray,
    centroids: np.ndarray,
    shifted: np.ndarray,
    norms: np.ndarray,
    products: np.ndarray,
    whole: bool,
    centres: np.ndarray,
    half_norms: np.ndarray,
    gemm_half_norms: np.ndarray,
    max_norm: float,
    bound_factor: float,
    selected: np.ndarray,
    best: np.ndarray,
    second: np.ndarray,
    first: np.ndarray,
    labels: np.ndarray,
    lower: np.ndarray,
    distances: np.ndarray,
    bounded: bool,
    labels_before: np.ndarray,
) -> None:
    """Label the selected rows from :func:`nearest_two`'s values, with their distance and a bound on the others.

    ``whole``: ``products`` hold every centroid's values; otherwise a row too
    close to call recomputes them (a dot product in the GEMM dtype errs by
    no more than the GEMM's, whatever the order of its sum). ``bounded``: a
    row that keeps its label from ``labels_before`` keeps the distance
    :func:`_keep_proven` computed (the same function of the same values).
    """
    k = centres.shape[0]
    for j in range(selected.shape[0]):
        i = selected[j]
        norm2 = norms[j]
        exact_best = np.inf
        bound = bound_factor * (np.sqrt(norm2) + max_norm) ** 2
        label = np.int64(first[j])
        nearest = np.float64(best[j])
        other = np.float64(second[j])
        # Each value may err by the bound, a difference by twice it: a runner-up within that of the
        # best is too close to call in the GEMM's precision, so the candidates are compared exactly.
        slack = nearest + 2.0 * bound
        if other <= slack:
            for c in range(k):
                if whole:
                    value = half_norms[c] - products[c, j]
                else:
                    value = np.float64(gemm_half_norms[c] - _dot(centres[c], shifted[j]))
                if value <= slack:
                    total = squared_distance(block[i], centroids[c])
                    if total < exact_best:
                        exact_best = total
                        label = c
            if label != first[j]:
                other = nearest
        labels[i] = label
        if exact_best < np.inf:
            distances[i] = exact_best
        elif not (bounded and label == labels_before[i]):
            distances[i] = squared_distance(block[i], centroids[label])
        # Every value errs by at most the bound, and the row's squared norm by less than twice it.
        lower[i] = np.sqrt(max(norm2 + 2.0 * (other - 2.0 * bound), 0.0))


# Any order of the sum: the error bound holds for every one.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    total = a.dtype.type(0)
    for f in range(a.shape[0]):
        total += a[f] * b[f]
    return total


@numba.njit(cache=True, nogil=True)
def _accumulate_step(block: np.ndarray, start: int, stop: int, centroids: np.ndarray, outputs: tuple) -> float:
    """Add rows ``start:stop`` (labelled, with their distances) to their centroid's sum and count, in row order.

    Returns their inertia.

    Weighted, a row adds ``weight * row`` to the sum, its weight to the centroid's weight and
    ``weight * distance`` to the inertia.
    """
    labels, _, distances, sums, counts, moments, with_moments, weights, weight_sums, weighted = outputs
    inertia = 0.0
    for i in range(start, stop):
        label = labels[i]
        distance = distances[i]
        counts[label] += 1
        if weighted:
            weight = weights[i]
            inertia += weight * distance
            weight_sums[label] += weight
            for f in range(block.shape[1]):
                sums[label, f] += weight * np.float64(block[i, f])
        else:
            inertia += distance
            for f in range(block.shape[1]):
                sums[label, f] += block[i, f]
        if with_moments:
            for f in range(block.shape[1]):
                value = np.float64(block[i, f])
                moments[0, f] += value
                moments[1, f] += value * value
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
