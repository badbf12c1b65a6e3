"""Radius neighbours on blocks: the tile kernel and the merge of ragged partial results (NumPy and numba).

A partial result covers one query block and is a dict of CSR-style arrays:
``counts`` (m,) int64 pairs per query row, ``indices`` (nnz,) int64 global
train rows and ``keys`` (nnz,) float64, row after row, each row's entries in
increasing train index; ``first_query`` is the global row of the block's
first query.

Every metric of the registry decides inclusion on an exact float64 value,
as a float64 brute force does. GEMM family: the float GEMM only proposes
candidates (with the same error bound as the kNN scan) and every candidate's
key is recomputed exactly in float64; ``correlation`` is ``cosine`` of rows
centred in float64; values whose squares leave the float range are scaled
by a power of two, as in the kNN (``bigdist.kernels.tiles.GemmTiles``).
Direct metrics: every distance of the tile is computed in float64 by the
compiled loops of ``bigdist.kernels.direct`` (SciPy ``cdist``'s values) and
compared with the radius as it is made.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numba
import numpy as np

from bigdist.errors import TooManyNeighborsError, ValueRangeError
from bigdist.kernels.direct import DIRECT_METRICS, check_values, direct_code, direct_within
from bigdist.kernels.metrics import keys_to_values
from bigdist.kernels.scaling import scale_back
from bigdist.kernels.scan import pair_key
from bigdist.kernels.tiles import GemmTiles

# Relative slack on the candidate bound, so a key whose reported value is
# exactly at the radius (sqrt of a rounded square) is never filtered out early.
_SLACK = 16 * np.finfo(np.float64).eps


def radius_key(metric: str, radius: float) -> float:
    """The largest key (smaller is better) a pair within ``radius`` can have, with a little slack."""
    if metric == "euclidean":
        bound = radius * radius
    elif metric == "inner_product":
        bound = -radius  # neighbours are the rows whose inner product is at least the radius
    else:
        bound = radius
    return bound + abs(bound) * _SLACK + np.finfo(np.float64).tiny


# How the compiled loop tests inclusion of an exact key (see ``within``).
_SQRT_AT_MOST, _AT_MOST, _NEGATED_AT_LEAST = 0, 1, 2
# Scores checked at once against a row's threshold before looking at any one of them.
_CHUNK = 64


def _inclusion_code(metric: str) -> int:
    return {"euclidean": _SQRT_AT_MOST, "inner_product": _NEGATED_AT_LEAST}.get(metric, _AT_MOST)


@numba.njit(cache=True, nogil=True)
def _inside(key: float, inclusion: int, radius: float) -> bool:
    if inclusion == _SQRT_AT_MOST:
        return np.sqrt(max(key, 0.0)) <= radius
    if inclusion == _NEGATED_AT_LEAST:
        return -key >= radius
    return key <= radius


@numba.njit(cache=True, nogil=True)
def collect_pairs(
    scores: np.ndarray,
    queries: np.ndarray,
    train: np.ndarray,
    threshold: np.ndarray,
    code: int,
    query_norms: np.ndarray,
    train_norms: np.ndarray,
    inclusion: int,
    radius: float,
    self_offset: int,
    out_rows: np.ndarray,
    out_columns: np.ndarray,
    out_keys: np.ndarray,
) -> int:
    """Append the pairs of one sub-tile within the radius to the output buffers; return their number.

    Parameters
    ----------
    scores : ndarray of shape (r, w), the GEMM's scores (larger is better)
    queries, train : ndarray of shape (r, d) and (w, d), the rows the exact keys come from (correlation: centred)
    threshold : ndarray of shape (r,), in the scores' dtype: lower scores cannot be within the radius
    code : int, from ``metric_code``; query_norms, train_norms : float64 norms (cosine only)
    inclusion : int, from ``_inclusion_code``; radius : float
    self_offset : int, skip the pairs with ``column - row == self_offset`` (self-join), or a value out of range
    out_rows, out_columns, out_keys : ndarray, buffers of equal length

    Returns
    -------
    int, pairs written, or -1 when the buffers are too small (then nothing is meaningful; retry larger)
    """
    rows, width = scores.shape
    full = width - width % _CHUNK
    count = 0
    for i in range(rows):
        bound = threshold[i]
        row = scores[i]
        for start in range(0, full, _CHUNK):
            # A fixed-length count the compiler vectorises; most chunks have nothing to offer. Indexed from 0
            # within a slice: a computed index may be negative as far as the compiler knows (wraparound, scalar).
            chunk = row[start : start + _CHUNK]
            passing = np.int32(0)
            for offset in range(_CHUNK):
                passing += np.int32(chunk[offset] >= bound)
            if passing:
                count = _append(scores, queries, train, i, start, start + _CHUNK, bound, code, query_norms,
                                train_norms, inclusion, radius, self_offset, out_rows, out_columns, out_keys, count)  # fmt: skip # noqa: E501
                if count < 0:
                    return -1
        if full < width:
            count = _append(scores, queries, train, i, full, width, bound, code, query_norms, train_norms, inclusion,
                            radius, self_offset, out_rows, out_columns, out_keys, count)  # fmt: skip
            if count < 0:
                return -1
    return count


@numba.njit(cache=True, nogil=True)
def _append(scores, queries, train, i, start, stop, bound, code, query_norms, train_norms, inclusion, radius, self_offset, out_rows, out_columns, out_keys, count):  # type: ignore[no-untyped-def] # fmt: skip # noqa: E501
    """Re-check the passing scores of row ``i`` in [start, stop); the new count, or -1 when the buffers are full."""
    for j in range(start, stop):
        if scores[i, j] >= bound and j - i != self_offset:
            key = pair_key(queries[i], train[j], code, query_norms[i], train_norms[j])
            if _inside(key, inclusion, radius):
                if count == len(out_rows):
                    return -1
                out_rows[count] = i
                out_columns[count] = j
                out_keys[count] = key
                count += 1
    return count


def _score_floor(bound: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``bound`` in the scores' dtype, rounded down, so no borderline score is dropped."""
    lowest = -np.finfo(dtype).max
    rounded = np.maximum(bound, lowest).astype(dtype)
    # A bound below the dtype's range (an infinite radius) is already at its floor.
    too_high = (rounded.astype(np.float64) > bound) & (rounded > lowest)
    rounded[too_high] = np.nextafter(rounded[too_high], dtype.type(-np.inf))
    return np.maximum(rounded, dtype.type(lowest))


def empty_partial(n_rows: int, first_query: int) -> dict[str, Any]:
    """A partial result with no pairs."""
    return {
        "counts": np.zeros(n_rows, dtype=np.int64),
        "indices": np.empty(0, dtype=np.int64),
        "keys": np.empty(0),
        "first_query": first_query,
    }


def check_cap(counts: np.ndarray, first_query: int, max_neighbors: int) -> None:
    """Raise TooManyNeighborsError when a query row has more than ``max_neighbors`` pairs."""
    over = np.flatnonzero(counts > max_neighbors)
    if len(over):
        row = int(over[0])
        raise TooManyNeighborsError(
            f"query {first_query + row} has at least {int(counts[row])} neighbours within the radius, more than "
            f"the cap of {max_neighbors} per query ({len(over)} queries of its block are over it); use a smaller "
            f"radius, or raise the cap with max_neighbors= or the bigdist.radius.max-neighbors config "
            f"(memory grows with it)"
        )


class _Pairs:
    """The pairs a tile task finds, and the growable buffers its compiled collectors write into.

    Each query row's count is kept as sub-tiles come in, so a row over the
    cap raises within one sub-tile of reaching it, not after the whole tile.
    """

    def __init__(self, capacity: int, n_rows: int, first_query: int, max_neighbors: int) -> None:
        self._allocate(capacity)
        self._counts = np.zeros(n_rows, dtype=np.int64)
        self._first_query = first_query
        self._max_neighbors = max_neighbors
        self._rows: list[np.ndarray] = []
        self._indices: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []

    def _allocate(self, capacity: int) -> None:
        self._buffers = (np.empty(capacity, np.int64), np.empty(capacity, np.int64), np.empty(capacity))

    def collect(self, fill: Callable[..., int], row_offset: int, index_offset: int) -> None:
        """Keep the pairs ``fill(rows, columns, keys)`` writes (their number, or -1: buffers too small).

        The buffers double until ``fill`` succeeds and stay large for the
        next sub-tiles, so a task recomputes at most a few sub-tiles however
        dense its pairs are.
        """
        while (count := fill(*self._buffers)) < 0:
            self._allocate(2 * len(self._buffers[0]))
        rows, columns, keys = self._buffers
        step_counts = np.bincount(rows[:count])
        counts = self._counts[row_offset : row_offset + len(step_counts)]
        counts += step_counts
        check_cap(counts, self._first_query + row_offset, self._max_neighbors)
        self._rows.append(rows[:count] + row_offset)
        self._indices.append(columns[:count] + index_offset)
        self._keys.append(keys[:count].copy())

    def partial(self) -> dict[str, Any]:
        """The partial result (rows in order, each row's pairs by increasing train index)."""
        rows = np.concatenate(self._rows)
        indices = np.concatenate(self._indices)
        order = np.lexsort((indices, rows))
        return {
            "counts": self._counts,
            "indices": indices[order],
            "keys": np.concatenate(self._keys)[order],
            "first_query": self._first_query,
        }


def radius_chunk(
    queries: np.ndarray,
    train: np.ndarray,
    first_query: int,
    first_train: int,
    *,
    radius: float,
    metric: str,
    exclude_self: bool,
    max_neighbors: int,
    tile_query_rows: int,
    tile_train_rows: int,
    p: float = 2.0,
) -> dict[str, Any]:
    """Every pair of a query block and a train block within the radius.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    train : ndarray of shape (n, d)
    first_query, first_train : int, global rows of ``queries[0]`` and ``train[0]``
    radius : float
    metric : str, a canonical name of ``bigdist.kernels.registry.METRICS``
        The GEMM family proposes candidates by a GEMM and re-checks them in
        float64 (``correlation`` is ``cosine`` of rows centred in float64);
        the direct metrics compute every distance in float64
        (``bigdist.kernels.direct.direct_within``).
    exclude_self : bool, skip pairs whose global rows are equal (self-join)
    max_neighbors : int, cap on the pairs of one query row
    tile_query_rows, tile_train_rows : int, sub-tile shape (the scores of one sub-tile are all that is held)
    p : float, the Minkowski order (other metrics ignore it)

    Returns
    -------
    dict, a partial result (see the module docstring)

    Raises
    ------
    InputValueError
        Values the metric is not defined for (``chi2``: negative; ``jaccard``: not boolean).
    TooManyNeighborsError
        A query row with more than ``max_neighbors`` pairs.
    ValueRangeError
        Values so large that the squared distances found exceed the float64 range.
    """
    m, n = queries.shape[0], train.shape[0]
    if m == 0 or n == 0:
        return empty_partial(m, first_query)
    pairs = _Pairs(4 * min(tile_query_rows, m) + 1024, m, first_query, max_neighbors)
    if metric in DIRECT_METRICS:
        check_values(queries, metric, "queries", first_query)
        check_values(train, metric, "train", first_train)
        code = direct_code(metric)
        for x_start in range(0, n, tile_train_rows):
            x_stop = min(x_start + tile_train_rows, n)
            for q_start in range(0, m, tile_query_rows):
                q_stop = min(q_start + tile_query_rows, m)
                self_offset = _self_offset(exclude_self, first_query + q_start, first_train + x_start)
                fill = partial(
                    direct_within, queries[q_start:q_stop], train[x_start:x_stop], code, p, radius, self_offset
                )
                pairs.collect(fill, q_start, first_train + x_start)
        return pairs.partial()
    exponent = _gemm_pairs(pairs, queries, train, first_query, first_train, radius, metric, exclude_self,
                           tile_query_rows, tile_train_rows)  # fmt: skip
    found = pairs.partial()
    found["keys"] = scale_back(found["keys"], exponent, f"radius neighbours with metric={metric!r}")
    return found


def _self_offset(exclude_self: bool, first_query: int, first_train: int) -> int:
    """The ``column - row`` of a row's pair with itself within a sub-tile, or a value no pair has."""
    return first_query - first_train if exclude_self else -(2**62)


def _gemm_pairs(pairs, queries, train, first_query, first_train, radius, metric, exclude_self, tile_query_rows, tile_train_rows):  # type: ignore[no-untyped-def]  # fmt: skip # noqa: E501
    """Collect the pairs of a GEMM-family metric: GEMM candidates, each re-checked exactly in float64.

    The keys are those of the scaled rows (see ``GemmTiles``); ``radius_chunk`` scales them back.
    """
    m, n = queries.shape[0], train.shape[0]
    tiles = GemmTiles.build(queries, train, metric)
    queries, metric, dtype = tiles.queries, tiles.metric, tiles.dtype
    radius = scaled_radius(metric, radius, tiles.exponent)
    limit = radius_key(metric, radius)
    inclusion = _inclusion_code(metric)
    # Reused by every sub-tile: a fresh allocation this large would be page-faulted in each time.
    scores_buffer = np.empty(min(tile_query_rows, m) * min(tile_train_rows, n), dtype=dtype)
    for x_start in range(0, n, tile_train_rows):
        x_stop = min(x_start + tile_train_rows, n)
        tile = tiles.train_tile(x_start, x_stop)
        for q_start in range(0, m, tile_query_rows):
            q_stop = min(q_start + tile_query_rows, m)
            scores = scores_buffer[: (q_stop - q_start) * (x_stop - x_start)].reshape(
                q_stop - q_start, x_stop - x_start
            )
            np.matmul(tiles.prepared_queries.rows[q_start:q_stop], tile.prepared.rows.T, out=scores)
            threshold = _score_floor(
                (tiles.prepared_queries.alpha[q_start:q_stop] - (limit + tile.bounds[q_start:q_stop])) / tiles.beta,
                dtype,
            )
            fill = partial(
                collect_pairs, scores, queries[q_start:q_stop], tile.rows, threshold, tiles.code,
                tiles.query_norms[q_start:q_stop], tile.norms, inclusion, radius,
                _self_offset(exclude_self, first_query + q_start, first_train + x_start),
            )  # fmt: skip
            pairs.collect(fill, q_start, first_train + x_start)
    return tiles.exponent if metric != "cosine" else 0


def scaled_radius(metric: str, radius: float, exponent: int) -> float:
    """The radius in the units of rows scaled by ``2**-exponent`` (exact: a power of two)."""
    if metric == "cosine":
        return radius
    return float(np.ldexp(radius, -exponent if metric == "euclidean" else -2 * exponent))


def _merge_rows(
    partials: list[dict[str, Any]], max_neighbors: int, order_of: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> dict[str, Any]:
    """Partial results of one query block as one, the entries put in the order ``order_of(rows, indices)`` gives."""
    if len(partials) == 1:
        return partials[0]
    counts = np.sum([part["counts"] for part in partials], axis=0)
    first_query = partials[0]["first_query"]
    check_cap(counts, first_query, max_neighbors)
    rows = np.concatenate([np.repeat(np.arange(len(part["counts"])), part["counts"]) for part in partials])
    indices = np.concatenate([part["indices"] for part in partials])
    order = order_of(rows, indices)
    return {
        "counts": counts.astype(np.int64),
        "indices": indices[order],
        "keys": np.concatenate([part["keys"] for part in partials])[order],
        "first_query": first_query,
    }


def radius_combine(partials: list[dict[str, Any]], *, max_neighbors: int) -> dict[str, Any]:
    """Merge partial results of one query block, given in increasing train order."""
    # Stable: within a row, earlier train blocks (lower indices) stay first.
    return _merge_rows(partials, max_neighbors, lambda rows, _indices: np.argsort(rows, kind="stable"))


def radius_merge(partials: list[dict[str, Any]], *, max_neighbors: int) -> dict[str, Any]:
    """Merge partial results of one query block given in any order and any grouping.

    Each row's entries end in increasing train index, as :func:`radius_combine`
    gives them for partials in train order: a train row is in one partial
    only, so sorting by (row, index) decides the order whatever arrived first.
    """
    return _merge_rows(partials, max_neighbors, lambda rows, indices: np.lexsort((indices, rows)))


def radius_finish(partial: dict[str, Any], *, metric: str, sort_results: bool, dtype: np.dtype) -> dict[str, Any]:
    """Turn keys into reported values; with ``sort_results`` order each row nearest first (ties by index).

    Returns
    -------
    dict with ``counts`` (m,) int64, ``indices`` (nnz,) int64, ``distances`` (nnz,) of ``dtype``

    Raises
    ------
    ValueRangeError
        A value beyond the range of ``dtype`` (float32 output of float32 inputs).
    """
    counts, indices, keys = partial["counts"], partial["indices"], partial["keys"]
    if sort_results and len(keys):
        rows = np.repeat(np.arange(len(counts)), counts)
        order = np.lexsort((indices, keys, rows))
        indices, keys = indices[order], keys[order]
    values = keys_to_values(metric, keys)
    with np.errstate(over="ignore"):
        distances = values.astype(dtype)
    overflow = np.isfinite(values) & ~np.isfinite(distances)
    if overflow.any():
        what = "inner products" if metric == "inner_product" else "distances"
        raise ValueRangeError(
            f"radius neighbours with metric={metric!r}: {what} up to {np.abs(values[overflow]).max():.3g} do not "
            f"fit the {dtype} output (largest {np.finfo(dtype).max:.3g}); pass float64 inputs (X.astype('float64'))"
        )
    return {"counts": counts, "indices": indices, "distances": distances}
