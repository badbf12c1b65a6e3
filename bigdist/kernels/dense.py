"""Neighbours from dense tiles of distances: user metric functions and precomputed matrices (NumPy and numba).

A *function metric* is a user's callable ``f(u, v, **params) -> float``
(compiled with numba when it can be: a compiled loop over the pairs of a
sub-tile; else called from Python, pair by pair) or a scikit-learn
``DistanceMetric`` object (its ``pairwise`` on each sub-tile). A
*precomputed* tile is a block of the user's distance matrix. Either way the
kernels reduce a dense float64 tile of distances at once: to its top-k
(sorted by distance, ties to the lower index, NaN ranking last as infinity),
to the pairs within a radius, or keep it (``pairwise_distances``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numba
import numpy as np
import scipy.sparse
from numba.core.errors import NumbaError

from bigdist.errors import InputValueError
from bigdist.kernels.pairwise import zero_diagonal
from bigdist.kernels.radius import check_cap, empty_partial
from bigdist.kernels.topk import PAD_INDEX, TOPK_DTYPE, empty_topk, topk_merge

logger = logging.getLogger(__name__)

# Distances of one sub-tile held at once: a few MB of float64.
TILE_ELEMENTS = 2**19


@numba.njit(nogil=True)
def _compiled_pairs(function, queries, train, out):  # type: ignore[no-untyped-def]
    for i in range(queries.shape[0]):
        for j in range(train.shape[0]):
            out[i, j] = function(queries[i], train[j])


@functools.lru_cache(maxsize=64)
def _compiled(function: Callable[..., float]) -> Any:
    """A numba dispatcher of ``function``, or None when numba cannot compile it (then it runs pair by pair)."""
    try:
        dispatcher = numba.njit(nogil=True)(function)
        probe = np.zeros((1, 1))
        _compiled_pairs(dispatcher, probe, probe, np.empty((1, 1)))
    except (NumbaError, TypeError, ValueError) as error:
        logger.warning(
            "metric %r: numba cannot compile it (%s); calling it from Python for each pair, which is slow "
            "(write it with NumPy operations numba supports, or use a named metric)",
            getattr(function, "__name__", function),
            str(error).splitlines()[0] if str(error) else type(error).__name__,
        )
        return None
    return dispatcher


class DistanceFunction:
    """A user's metric as a function of two blocks of rows: ``(m, d), (n, d) -> (m, n)`` float64.

    Parameters
    ----------
    pair_function : callable ``f(u, v, **params) -> float``, optional
    params : dict, keyword arguments of ``pair_function`` (then it is called from Python)
    block_function : callable ``(X, Y) -> ndarray of shape (len(X), len(Y))``, optional
        E.g. a ``DistanceMetric``'s ``pairwise``.
    label : str, the metric's name in messages
    """

    def __init__(
        self,
        *,
        pair_function: Callable[..., float] | None = None,
        params: dict[str, Any] | None = None,
        block_function: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        label: str,
    ) -> None:
        self.pair_function = pair_function
        self.params = dict(params or {})
        self.block_function = block_function
        self.label = label

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.label, id(self.pair_function), id(self.block_function), repr(self.params))

    def __call__(self, queries: Any, train: Any) -> np.ndarray:
        if scipy.sparse.issparse(queries) or scipy.sparse.issparse(train):
            return self._sparse(scipy.sparse.csr_matrix(queries), scipy.sparse.csr_matrix(train))
        queries = np.ascontiguousarray(queries, dtype=np.float64)
        train = np.ascontiguousarray(train, dtype=np.float64)
        if self.block_function is not None:
            out = np.asarray(self.block_function(queries, train), dtype=np.float64)
            if out.shape != (len(queries), len(train)):
                raise InputValueError(
                    f"metric {self.label}: its pairwise gave shape {out.shape} for blocks of {len(queries)} and "
                    f"{len(train)} rows; it must give ({len(queries)}, {len(train)})"
                )
            return out
        out = np.empty((len(queries), len(train)))
        assert self.pair_function is not None
        compiled = None if self.params else _compiled(self.pair_function)
        if compiled is not None:
            _compiled_pairs(compiled, queries, train, out)
            return out
        return self._pairs(queries, train, out)

    def _sparse(self, queries: scipy.sparse.csr_matrix, train: scipy.sparse.csr_matrix) -> np.ndarray:
        """Sparse blocks as scikit-learn gives them to a metric: whole blocks, or 1-row CSR matrices pair by pair."""
        if self.block_function is not None:
            return self(queries.toarray(), train.toarray())
        out = np.empty((queries.shape[0], train.shape[0]))
        rows = [train[j] for j in range(train.shape[0])]
        return self._pairs((queries[i] for i in range(queries.shape[0])), rows, out)

    def _pairs(self, queries: Iterable[Any], train: Sequence[Any] | np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[i, j]`` = the pair function of query ``i`` and train row ``j``, called from Python."""
        assert self.pair_function is not None
        for i, query in enumerate(queries):
            for j, row in enumerate(train):
                value = self.pair_function(query, row, **self.params)
                try:
                    out[i, j] = value
                except (TypeError, ValueError) as error:
                    raise InputValueError(
                        f"metric {self.label} returned {value!r} for a pair of rows; it must return one number"
                    ) from error
        return out


def _sub_tiles(m: int, n: int) -> int:
    """Train rows per sub-tile so that ``m`` by that many distances stay within TILE_ELEMENTS."""
    return max(1, min(n, TILE_ELEMENTS // max(m, 1)))


def tile_topk(distances: np.ndarray, first_query: int, first_train: int, *, k: int, exclude_self: bool) -> np.ndarray:
    """The top-k of each row of a dense tile of distances.

    Parameters
    ----------
    distances : ndarray of shape (m, w), any real dtype; NaN ranks as infinity
    first_query, first_train : int, global rows of the tile's first row and column
    k : int
    exclude_self : bool, drop each row's pair with its own global row (self-join)

    Returns
    -------
    structured ndarray of shape (m, k), dtype TOPK_DTYPE, sorted by (key, index)
    """
    m, w = distances.shape
    part = np.empty((m, w), dtype=TOPK_DTYPE)
    keys = part["key"]
    keys[...] = distances
    keys[np.isnan(keys)] = np.inf
    part["index"] = np.arange(first_train, first_train + w, dtype=np.int64)
    if exclude_self:
        rows = np.arange(m)
        own = first_query + rows - first_train
        inside = (own >= 0) & (own < w)
        # Padding sorts after every real pair, an infinite one too.
        part["key"][rows[inside], own[inside]] = np.inf
        part["index"][rows[inside], own[inside]] = PAD_INDEX
    if w < k:
        part = np.concatenate([part, empty_topk(m, k - w)], axis=1)
    return topk_merge(part, k)


def tile_within(
    distances: np.ndarray, first_query: int, first_train: int, *, radius: float, exclude_self: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of a dense tile at distance <= radius: (rows within the tile, global columns, distances)."""
    inside = distances <= radius
    if exclude_self:
        rows = np.arange(distances.shape[0])
        own = first_query + rows - first_train
        keep = (own >= 0) & (own < distances.shape[1])
        inside[rows[keep], own[keep]] = False
    rows, columns = np.nonzero(inside)
    return rows, columns + first_train, distances[rows, columns].astype(np.float64)


def function_knn_chunk(
    queries: np.ndarray,
    train: np.ndarray,
    query_index: np.ndarray,
    train_index: np.ndarray,
    *,
    k: int,
    function: DistanceFunction,
    exclude_self: bool,
) -> np.ndarray:
    """Exact top-k of every query row within one train block, for a function metric.

    Parameters
    ----------
    queries : ndarray of shape (m, d); train : ndarray of shape (n, d)
    query_index, train_index : ndarray of shape (m,) and (n,), int64, consecutive global rows
    k : int; function : DistanceFunction; exclude_self : bool

    Returns
    -------
    structured ndarray of shape (m, k), dtype TOPK_DTYPE, sorted by (key, index)
    """
    m, n = queries.shape[0], train.shape[0]
    best = empty_topk(m, k)
    if m == 0 or n == 0:
        return best
    first_query, first_train = int(query_index[0]), int(train_index[0])
    step = _sub_tiles(m, n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        found = tile_topk(function(queries, train[start:stop]), first_query, first_train + start, k=k,
                          exclude_self=exclude_self)  # fmt: skip
        best = topk_merge(np.concatenate([best, found], axis=1), k)
    return best


def function_radius_chunk(
    queries: np.ndarray,
    train: np.ndarray,
    first_query: int,
    first_train: int,
    *,
    radius: float,
    function: DistanceFunction,
    exclude_self: bool,
    max_neighbors: int,
) -> dict[str, Any]:
    """Every pair of a query block and a train block within the radius, for a function metric.

    Returns the partial result of ``bigdist.kernels.radius`` (counts, indices, keys, first_query).
    """
    m, n = queries.shape[0], train.shape[0]
    if m == 0 or n == 0:
        return empty_partial(m, first_query)
    counts = np.zeros(m, dtype=np.int64)
    rows, indices, keys = [], [], []
    step = _sub_tiles(m, n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        distances = function(queries, train[start:stop])
        tile_rows, columns, values = tile_within(
            distances, first_query, first_train + start, radius=radius, exclude_self=exclude_self
        )
        counts += np.bincount(tile_rows, minlength=m)
        check_cap(counts, first_query, max_neighbors)
        rows.append(tile_rows)
        indices.append(columns)
        keys.append(values)
    order = np.lexsort((np.concatenate(indices), np.concatenate(rows)))
    return {
        "counts": counts,
        "indices": np.concatenate(indices)[order],
        "keys": np.concatenate(keys)[order],
        "first_query": first_query,
    }


def function_pairwise_chunk(
    queries: np.ndarray,
    train: np.ndarray,
    query_index: np.ndarray,
    train_index: np.ndarray,
    *,
    function: DistanceFunction,
    self_join: bool,
) -> np.ndarray:
    """The (query block, train block) block of the distance matrix of a function metric, float64.

    In a self-join the distance of a row to itself is 0 (as scikit-learn's ``pairwise_distances(X)``).
    """
    out = function(queries, train)
    if self_join and len(query_index) and len(train_index):
        zero_diagonal(out, int(query_index[0]), int(train_index[0]))
    return out


def precomputed_knn_chunk(
    distances: np.ndarray, query_index: np.ndarray, train_index: np.ndarray, *, k: int, exclude_self: bool
) -> np.ndarray:
    """Top-k of each row of one block of a precomputed distance matrix, shape (m, w) -> (m, k) TOPK_DTYPE.

    The block is reduced in column sub-tiles, so a wide block holds one sub-tile of (key, index) pairs at a time.
    Raises InputValueError at the first negative distance (naming its global row and column).
    """
    m, w = distances.shape
    best = empty_topk(m, k)
    if m == 0 or w == 0:
        return best
    first_query, first_train = int(query_index[0]), int(train_index[0])
    check_precomputed(distances, first_query, first_train)
    step = _sub_tiles(m, w)
    for start in range(0, w, step):
        found = tile_topk(distances[:, start : start + step], first_query, first_train + start, k=k,
                          exclude_self=exclude_self)  # fmt: skip
        best = found if start == 0 else topk_merge(np.concatenate([best, found], axis=1), k)
    return best


def precomputed_radius_chunk(
    distances: np.ndarray, first_query: int, first_train: int, *, radius: float, exclude_self: bool,
    max_neighbors: int,
) -> dict[str, Any]:  # fmt: skip
    """The pairs of one block of a precomputed distance matrix within the radius, as a radius partial result."""
    check_precomputed(distances, first_query, first_train)
    m = distances.shape[0]
    rows, columns, values = tile_within(distances, first_query, first_train, radius=radius, exclude_self=exclude_self)
    counts = np.bincount(rows, minlength=m).astype(np.int64)
    check_cap(counts, first_query, max_neighbors)
    return {"counts": counts, "indices": columns, "keys": values, "first_query": first_query}


def precomputed_graph_knn_chunk(
    graph: scipy.sparse.csr_matrix, query_index: np.ndarray, train_index: np.ndarray, *, k: int, exclude_self: bool
) -> np.ndarray:
    """Top-k of each row of one CSR block of a precomputed graph, shape (m, w) -> (m, k) TOPK_DTYPE.

    As in scikit-learn, the stored entries (explicit zeros too) are the
    candidate neighbours and an absent entry is none: a row with fewer than
    k entries keeps padding, which :func:`check_graph_neighbours` refuses after the merge.
    """
    m = graph.shape[0]
    best = empty_topk(m, k)
    if m == 0 or graph.shape[1] == 0:
        return best
    first_query, first_train = int(query_index[0]), int(train_index[0])
    check_precomputed(graph, first_query, first_train)
    rows = np.repeat(np.arange(m), np.diff(graph.indptr))
    columns = graph.indices.astype(np.int64) + first_train
    keys = graph.data.astype(np.float64)
    if exclude_self:
        keep = columns != first_query + rows
        rows, columns, keys = rows[keep], columns[keep], keys[keep]
    order = np.lexsort((columns, keys, rows))
    rows, columns, keys = rows[order], columns[order], keys[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    take = rank < k
    best["key"][rows[take], rank[take]] = keys[take]
    best["index"][rows[take], rank[take]] = columns[take]
    return best


def check_graph_neighbours(result: np.ndarray, *, k: int) -> np.ndarray:
    """Raise InputValueError when a row of a precomputed graph gave fewer than k neighbours; else return ``result``."""
    found = (result["index"] != PAD_INDEX).sum(axis=1)
    if len(found) and found.min() < k:
        # scikit-learn's wording, which its users and tests match.
        raise InputValueError(
            f"{k} neighbors per samples are required, but some samples have only {int(found.min())} neighbors in "
            f"precomputed graph matrix. Decrease number of neighbors used or recompute the graph with more neighbors."
        )
    return result


def precomputed_graph_radius_chunk(
    graph: scipy.sparse.csr_matrix, first_query: int, first_train: int, *, radius: float, exclude_self: bool,
    max_neighbors: int,
) -> dict[str, Any]:  # fmt: skip
    """The stored entries of one CSR block of a precomputed graph within the radius, as a radius partial result."""
    check_precomputed(graph, first_query, first_train)
    m = graph.shape[0]
    rows = np.repeat(np.arange(m), np.diff(graph.indptr))
    columns = graph.indices.astype(np.int64) + first_train
    keep = graph.data <= radius
    if exclude_self:
        keep &= columns != first_query + rows
    rows, columns = rows[keep], columns[keep]
    counts = np.bincount(rows, minlength=m).astype(np.int64)
    check_cap(counts, first_query, max_neighbors)
    return {
        "counts": counts,
        "indices": columns,
        "keys": graph.data[keep].astype(np.float64),
        "first_query": first_query,
    }


def check_precomputed(distances: Any, first_query: int, first_train: int) -> None:
    """Raise InputValueError when a block of a precomputed distance matrix holds a negative value (as scikit-learn).

    ``distances`` is a dense block, or a CSR block of a graph (its stored entries checked).
    """
    if scipy.sparse.issparse(distances):
        negative = np.flatnonzero(distances.data < 0)
        if not len(negative):
            return
        row = int(np.searchsorted(distances.indptr, negative[0], side="right") - 1)
        col, value = int(distances.indices[negative[0]]), distances.data[negative[0]].item()
    else:
        negative = distances < 0
        if not negative.any():
            return
        row, col = (int(v[0]) for v in np.nonzero(negative))
        value = distances[row, col].item()
    # scikit-learn's first sentence, which its users and tests match.
    raise InputValueError(
        f"Negative values in data passed to precomputed distance matrix: metric='precomputed' needs distances >= 0; "
        f"the matrix holds {value!r} at row {first_query + row}, column {first_train + col}: pass distances (not "
        f"similarities; e.g. 1 - S for cosine similarities S)"
    )


__all__ = [
    "DistanceFunction",
    "check_graph_neighbours",
    "check_precomputed",
    "function_knn_chunk",
    "function_pairwise_chunk",
    "function_radius_chunk",
    "precomputed_graph_knn_chunk",
    "precomputed_graph_radius_chunk",
    "precomputed_knn_chunk",
    "precomputed_radius_chunk",
    "tile_topk",
    "tile_within",
]
