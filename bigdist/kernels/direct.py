"""Metrics without a GEMM form: compiled loops over coordinates (numba; no dask).

The train rows of a sub-tile are transposed into a float64 buffer of shape
(d, w); each query row then runs over the coordinates in the outer loop and
over the w train rows in the inner loop, which the compiler vectorises
without reordering any sum. Every pair is thus summed coordinate by
coordinate in float64, in the same order as SciPy's ``cdist``, so the values
equal its values (to an ulp for Minkowski p = 3, 4, where a product replaces
``pow``), and float32 inputs are computed in float64, as ``cdist`` does.

Values where ``cdist`` gives NaN (see ``bigdist.kernels.registry``):
``braycurtis`` of two zero rows is 0; ``jaccard``, ``dice`` and
``sokalsneath`` of two all-false rows are 0. ``chi2`` is
``0.5 * sum((a - b)**2 / (a + b))`` over the coordinates with ``a + b > 0``.
The boolean metrics read a non-zero value as True (scikit-learn converts the
data to booleans for them) and count the four kinds of coordinates
(true-true, true-false, false-true, false-false) as SciPy's boolean
``cdist`` does. ``haversine`` is scikit-learn's great-circle distance of
[latitude, longitude] rows in radians; ``nan_euclidean`` scikit-learn's
Euclidean distance over the coordinates present (not NaN) in both rows,
scaled by ``n_features / present``, NaN when none is.
"""

from __future__ import annotations

import numba
import numpy as np

from bigdist.errors import InputValueError
from bigdist.kernels.registry import METRICS
from bigdist.kernels.topk import PAD_INDEX, TOPK_DTYPE, empty_topk

(MANHATTAN, CHEBYSHEV, MINKOWSKI, CANBERRA, BRAYCURTIS, CHI2, HAMMING, JACCARD, DICE, ROGERSTANIMOTO, RUSSELLRAO,
 SOKALSNEATH, YULE, HAVERSINE, NAN_EUCLIDEAN) = range(15)  # fmt: skip
_CODES = {
    "manhattan": MANHATTAN,
    "chebyshev": CHEBYSHEV,
    "minkowski": MINKOWSKI,
    "canberra": CANBERRA,
    "braycurtis": BRAYCURTIS,
    "chi2": CHI2,
    "hamming": HAMMING,
    "jaccard": JACCARD,
    "dice": DICE,
    "rogerstanimoto": ROGERSTANIMOTO,
    "russellrao": RUSSELLRAO,
    "sokalsneath": SOKALSNEATH,
    "yule": YULE,
    "haversine": HAVERSINE,
    "nan_euclidean": NAN_EUCLIDEAN,
}
_BOOLEAN_FIRST = JACCARD
DIRECT_METRICS = tuple(_CODES)
# Train rows transposed at once: (d, TILE) float64 stays in L2 cache at d up to a few hundred.
TILE = 256
# Relative distance from the radius, in ulps plus one per feature, within which a Minkowski distance is
# recomputed by pow: the products of p <= 8 err by at most p - 1 roundings per term, the d roundings of
# the sum may then fall differently, and the p-th root divides it all by p.
_POW_RECHECK = 16.0


def direct_code(metric: str) -> int:
    """The integer the compiled loops know a direct metric by."""
    return _CODES[metric]


def check_values(block: np.ndarray, metric: str, name: str, first_row: int) -> None:
    """Raise InputValueError when ``block`` holds values ``metric`` is not defined for.

    The registry says which values a metric takes: ``chi2`` needs values >= 0
    (the boolean metrics read any value as a boolean, ``nan_euclidean`` takes NaN).
    ``first_row`` is the global row of ``block[0]``, for the message.
    """
    values = METRICS[metric].values
    if values == "nonnegative":
        bad = block < 0
        need = f"non-negative values ({metric} divides by a + b)"
        fix = "shift or rescale the data to be non-negative (e.g. histograms, counts), or use another metric"
    else:
        return
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise InputValueError(
            f"metric {metric!r} needs {need}; {name} holds {block[row, col].item()!r} at row {first_row + row}, "
            f"column {col}: {fix}"
        )


@numba.njit(cache=True, nogil=True)
def insert_sorted(best_keys: np.ndarray, best_indices: np.ndarray, row: int, key: float, index: int) -> None:
    """Put (key, index) into row ``row`` of a running top-k kept in (key, index) order, dropping the last.

    The caller has checked that it beats the last slot. An infinite key goes before the pad slots
    (inf, PAD_INDEX), so a pad slot takes even an infinite distance.
    """
    pos = best_keys.shape[1] - 1
    while pos > 0 and (
        best_keys[row, pos - 1] > key or (best_keys[row, pos - 1] == key and best_indices[row, pos - 1] == PAD_INDEX)
    ):
        best_keys[row, pos] = best_keys[row, pos - 1]
        best_indices[row, pos] = best_indices[row, pos - 1]
        pos -= 1
    best_keys[row, pos] = key
    best_indices[row, pos] = index


@numba.njit(cache=True, nogil=True)
def _transpose(train: np.ndarray, out: np.ndarray) -> None:
    """``out[:, :w] = train.T`` in float64."""
    for j in range(train.shape[0]):
        for f in range(train.shape[1]):
            out[f, j] = train[j, f]


@numba.njit(cache=True, nogil=True)
def _pow_sums(query: np.ndarray, xt: np.ndarray, w: int, p: float, acc: np.ndarray) -> None:
    """``acc[j] += sum_f |query[f] - xt[f, j]| ** p`` for j < w, by ``pow`` as SciPy's cdist computes Minkowski."""
    for f in range(xt.shape[0]):
        q = np.float64(query[f])
        for j in range(w):
            acc[j] += abs(q - xt[f, j]) ** p


@numba.njit(cache=True, nogil=True)
def _row_distances(query: np.ndarray, xt: np.ndarray, w: int, code: int, p: float, acc: np.ndarray, aux: np.ndarray):  # type: ignore[no-untyped-def]  # noqa: E501
    """Distances of one query row to the first ``w`` columns of ``xt`` (d, TILE), into ``acc[:w]``.

    ``aux`` of shape (3, TILE) is scratch for the metrics that count several sums.
    """
    d = xt.shape[0]
    acc[:w] = 0.0
    if code >= _BOOLEAN_FIRST and code <= YULE:
        _boolean_distances(query, xt, w, code, acc, aux)
        return
    if code == HAVERSINE:
        lat = np.float64(query[0])
        lon = np.float64(query[1])
        for j in range(w):
            half_lat = np.sin(0.5 * (xt[0, j] - lat))
            half_lon = np.sin(0.5 * (xt[1, j] - lon))
            chord = half_lat * half_lat + np.cos(lat) * np.cos(xt[0, j]) * half_lon * half_lon
            acc[j] = 2.0 * np.arcsin(np.sqrt(chord))
        return
    if code == NAN_EUCLIDEAN:
        present = aux[0]
        present[:w] = 0.0
        for f in range(d):
            q = np.float64(query[f])
            if q != q:
                continue
            for j in range(w):
                diff = q - xt[f, j]
                if diff == diff:
                    acc[j] += diff * diff
                    present[j] += 1.0
        for j in range(w):
            acc[j] = np.sqrt(acc[j] * (d / present[j])) if present[j] > 0 else np.nan
        return
    if code == MANHATTAN:
        for f in range(d):
            q = np.float64(query[f])
            for j in range(w):
                acc[j] += abs(q - xt[f, j])
    elif code == CHEBYSHEV:
        for f in range(d):
            q = np.float64(query[f])
            for j in range(w):
                acc[j] = max(acc[j], abs(q - xt[f, j]))
    elif code == MINKOWSKI:
        power = int(p) if p <= 8 and p == int(p) else -1
        if power == 3:
            # The commonest integer orders by multiplication, which vectorises (pow does not).
            for f in range(d):
                q = np.float64(query[f])
                for j in range(w):
                    base = abs(q - xt[f, j])
                    acc[j] += base * base * base
        elif power == 4:
            for f in range(d):
                q = np.float64(query[f])
                for j in range(w):
                    base = q - xt[f, j]
                    square = base * base
                    acc[j] += square * square
        elif 0 < power <= 8:
            for f in range(d):
                q = np.float64(query[f])
                for j in range(w):
                    base = abs(q - xt[f, j])
                    term = base
                    for _ in range(power - 1):
                        term *= base
                    acc[j] += term
        else:
            _pow_sums(query, xt, w, p, acc)
        for j in range(w):
            acc[j] = acc[j] ** (1.0 / p)
    elif code == CANBERRA:
        for f in range(d):
            q = np.float64(query[f])
            for j in range(w):
                x = xt[f, j]
                denom = abs(q) + abs(x)
                acc[j] += abs(q - x) / denom if denom > 0 else 0.0
    elif code == BRAYCURTIS:
        total = aux[0]
        total[:w] = 0.0
        for f in range(d):
            q = np.float64(query[f])
            for j in range(w):
                acc[j] += abs(q - xt[f, j])
                total[j] += abs(q + xt[f, j])
        for j in range(w):
            if total[j] > 0:
                acc[j] = acc[j] / total[j]
            elif acc[j] > 0:
                acc[j] = np.inf
    elif code == CHI2:
        for f in range(d):
            q = np.float64(query[f])
            for j in range(w):
                x = xt[f, j]
                total = q + x
                diff = q - x
                acc[j] += diff * diff / total if total > 0 else 0.0
        for j in range(w):
            acc[j] *= 0.5
    else:  # HAMMING
        for f in range(d):
            q = np.float64(query[f])
            for j in range(w):
                acc[j] += 1.0 if q != xt[f, j] else 0.0
        for j in range(w):
            acc[j] /= d


@numba.njit(cache=True, nogil=True)
def _boolean_distances(query: np.ndarray, xt: np.ndarray, w: int, code: int, acc: np.ndarray, aux: np.ndarray) -> None:
    """The boolean metrics of one query row, non-zero read as True: counts of the four kinds of coordinates.

    ``acc`` collects the true-false coordinates, ``aux[0]`` the false-true
    ones, ``aux[1]`` the true-true ones; false-false is the rest.
    """
    d = xt.shape[0]
    false_true = aux[0]
    both = aux[1]
    false_true[:w] = 0.0
    both[:w] = 0.0
    for f in range(d):
        q = np.float64(query[f]) != 0
        for j in range(w):
            x = xt[f, j] != 0
            acc[j] += 1.0 if q and not x else 0.0
            false_true[j] += 1.0 if x and not q else 0.0
            both[j] += 1.0 if q and x else 0.0
    for j in range(w):
        tf = acc[j]
        ft = false_true[j]
        tt = both[j]
        ff = d - tt - tf - ft
        differ = tf + ft
        if code == JACCARD:
            value = differ / (tt + differ) if tt + differ > 0 else 0.0
        elif code == DICE:
            value = differ / (2.0 * tt + differ) if tt + differ > 0 else 0.0
        elif code == ROGERSTANIMOTO:
            value = 2.0 * differ / (tt + ff + 2.0 * differ)
        elif code == RUSSELLRAO:
            value = (d - tt) / d
        elif code == SOKALSNEATH:
            value = 2.0 * differ / (tt + 2.0 * differ) if tt + differ > 0 else 0.0
        else:  # YULE
            value = 2.0 * tf * ft / (tt * ff + tf * ft) if tf * ft > 0 else 0.0
        acc[j] = value


@numba.njit(cache=True, nogil=True)
def direct_block(queries: np.ndarray, train: np.ndarray, code: int, p: float, out: np.ndarray) -> None:
    """All distances between two blocks, ``out[i, j] = dist(queries[i], train[j])``.

    Parameters
    ----------
    queries : ndarray of shape (m, d), any real dtype
    train : ndarray of shape (n, d), any real dtype
    code : int, from ``direct_code``
    p : float, the Minkowski order (other metrics ignore it)
    out : ndarray of shape (m, n), float32 or float64; computed in float64, rounded once
    """
    m, d = queries.shape
    n = train.shape[0]
    xt = np.empty((d, TILE))
    acc = np.empty(TILE)
    aux = np.empty((3, TILE))
    for start in range(0, n, TILE):
        w = min(TILE, n - start)
        _transpose(train[start : start + w], xt)
        for i in range(m):
            _row_distances(queries[i], xt, w, code, p, acc, aux)
            for j in range(w):
                out[i, start + j] = acc[j]


@numba.njit(cache=True, nogil=True)
def direct_within(
    queries: np.ndarray,
    train: np.ndarray,
    code: int,
    p: float,
    radius: float,
    self_offset: int,
    out_rows: np.ndarray,
    out_columns: np.ndarray,
    out_distances: np.ndarray,
) -> int:
    """Append the pairs of two blocks at distance <= ``radius`` to the output buffers; return their number.

    The distances are those of :func:`direct_block` (float64, as SciPy's
    ``cdist``), and a Minkowski distance near the radius is recomputed by
    ``pow`` as ``cdist`` computes it, so inclusion at the boundary is decided
    as ``cdist`` decides it.

    Parameters
    ----------
    queries : ndarray of shape (m, d), any real dtype
    train : ndarray of shape (n, d), any real dtype
    code : int, from ``direct_code``; p : float, the Minkowski order (other metrics ignore it)
    radius : float
    self_offset : int, skip the pairs with ``column - row == self_offset`` (self-join), or a value out of range
    out_rows, out_columns : ndarray of int64; out_distances : ndarray of float64; buffers of equal length

    Returns
    -------
    int, pairs written (row, column and distance within the blocks, by column then row),
    or -1 when the buffers are too small (then nothing is meaningful; retry larger)
    """
    m, d = queries.shape
    n = train.shape[0]
    xt = np.empty((d, TILE))
    acc = np.empty(TILE)
    aux = np.empty((3, TILE))
    exact = np.empty(1)
    # Minkowski's integer orders multiply instead of pow (within a few ulps of cdist): pairs this close
    # to the radius are recomputed by pow, so that they are decided on cdist's own value.
    slack = (_POW_RECHECK + d) * np.finfo(np.float64).eps * radius if code == MINKOWSKI else -1.0
    count = 0
    for start in range(0, n, TILE):
        w = min(TILE, n - start)
        _transpose(train[start : start + w], xt)
        for i in range(m):
            _row_distances(queries[i], xt, w, code, p, acc, aux)
            own = self_offset + i - start
            for j in range(w):
                value = acc[j]
                if abs(value - radius) <= slack:
                    exact[0] = 0.0
                    _pow_sums(queries[i], xt[:, j : j + 1], 1, p, exact)
                    value = exact[0] ** (1.0 / p)
                if value <= radius and j != own:
                    if count == len(out_rows):
                        return -1
                    out_rows[count] = i
                    out_columns[count] = start + j
                    out_distances[count] = value
                    count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _direct_topk(
    queries: np.ndarray,
    train: np.ndarray,
    code: int,
    p: float,
    first_query: int,
    first_train: int,
    exclude_self: bool,
    best_keys: np.ndarray,
    best_indices: np.ndarray,
) -> None:
    m, d = queries.shape
    n = train.shape[0]
    last = best_keys.shape[1] - 1
    xt = np.empty((d, TILE))
    acc = np.empty(TILE)
    aux = np.empty((3, TILE))
    for start in range(0, n, TILE):
        w = min(TILE, n - start)
        _transpose(train[start : start + w], xt)
        for i in range(m):
            _row_distances(queries[i], xt, w, code, p, acc, aux)
            own = first_query + i - first_train - start if exclude_self else -1
            for j in range(w):
                # Train indices arrive in increasing order: an equal key never displaces (ties by lower index).
                # A NaN (nan_euclidean with no coordinate in common) ranks last, as infinity.
                key = acc[j] if acc[j] == acc[j] else np.inf
                # A pad slot (inf, PAD_INDEX) takes even an infinite distance (braycurtis with u = -v).
                if (key < best_keys[i, last] or (key == np.inf and best_indices[i, last] == PAD_INDEX)) and j != own:
                    insert_sorted(best_keys, best_indices, i, key, first_train + start + j)


def direct_topk(
    queries: np.ndarray,
    train: np.ndarray,
    query_index: np.ndarray,
    train_index: np.ndarray,
    *,
    k: int,
    metric: str,
    p: float,
    exclude_self: bool,
) -> np.ndarray:
    """Exact top-k of every query row within one train block, for a direct metric.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    train : ndarray of shape (n, d)
    query_index, train_index : ndarray of shape (m,) and (n,), int64, consecutive global rows
    k : int
    metric : str, one of ``DIRECT_METRICS``
    p : float, the Minkowski order
    exclude_self : bool, skip the pair of a row with its own global index

    Returns
    -------
    structured ndarray of shape (m, k), dtype TOPK_DTYPE, sorted by (distance, index)
    """
    m, n = queries.shape[0], train.shape[0]
    if m == 0 or n == 0:
        return empty_topk(m, k)
    first_query, first_train = int(query_index[0]), int(train_index[0])
    check_values(queries, metric, "queries", first_query)
    check_values(train, metric, "train", first_train)
    best_keys = np.full((m, k), np.inf)
    best_indices = np.full((m, k), PAD_INDEX, dtype=np.int64)
    _direct_topk(
        queries, train, direct_code(metric), p, first_query, first_train, exclude_self, best_keys, best_indices
    )
    best = np.empty((m, k), dtype=TOPK_DTYPE)
    best["key"] = best_keys
    best["index"] = best_indices
    return best
