"""The compiled inner loop of the kNN tile: one pass over a sub-tile of scores, into a pool per row.

A NumPy selection (``argpartition``, or masks + ``nonzero``) costs as much
per score as the GEMM that made it at d=128; this loop touches each score
once with a single comparison against the row's running bound, and does
real work only for the few scores that pass. Those go to the row's *pool*
with their approximate key's interval ``[a - M, a + M]`` (``M`` the GEMM's
error bound), not re-checked yet: most of them are pushed out by better
ones later, and an exact re-check costs a d-length float64 sum (1.4 us at
d=1024), a sorted insert into the top-k O(k). The bound is ``U``, the k-th
smallest upper end in the pool: no pair whose lower end is above it can be
among the k nearest. When the pool is full, entries above ``U`` are dropped
and, when that frees too little (many ties), the pool is settled exactly:
its entries re-checked and cut to the k best. At the end of a block only the
survivors are re-checked in float64 (``pair_key``) and sorted by
(key, index), so the result is the same exact top-k, with the same keys, as
re-checking every candidate. Compiled with numba (``cache=True``: compiled
once per installation, not per process).
"""

from __future__ import annotations

import numba
import numpy as np

L2, COSINE, INNER_PRODUCT = 0, 1, 2
# Scores checked at once against a row's bound before looking at any one of them.
CHUNK = 64


def metric_code(metric: str) -> int:
    """The integer the compiled loop knows a metric by."""
    return {"euclidean": L2, "sqeuclidean": L2, "cosine": COSINE, "inner_product": INNER_PRODUCT}[metric]


# Reassociation lets the compiler vectorise the sums (5x faster at d=128); float64 keeps them exact to ~1e-16
# relative in any order, far inside the GEMM margins the pools compare them with.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def pair_key(query: np.ndarray, train: np.ndarray, code: int, query_norm: float, train_norm: float) -> float:
    """Exact float64 key of one pair of original rows (norms only used by cosine)."""
    total = 0.0
    if code == L2:
        for f in range(query.shape[0]):
            diff = np.float64(query[f]) - np.float64(train[f])
            total += diff * diff
        return total
    for f in range(query.shape[0]):
        total += np.float64(query[f]) * np.float64(train[f])
    if code == INNER_PRODUCT:
        return -total
    denom = query_norm * train_norm
    cosine = total / denom if denom > 0 else 0.0
    return min(max(1.0 - cosine, 0.0), 2.0)


@numba.njit(cache=True, nogil=True)
def _score_threshold(kth_key: float, alpha: float, beta: float, margin: float, cell: np.ndarray) -> float:
    """Scores below this cannot belong to a key within the margin of the k-th key.

    Rounded down to the scores' dtype through ``cell`` (``cell[1]`` holds the
    dtype's lowest finite value), so the hot loop compares in that dtype and
    never drops a borderline score, and -inf (a masked score) never passes.
    """
    bound = (alpha - (kth_key + margin)) / beta
    cell[0] = bound
    if cell[0] > bound:
        cell[0] = np.nextafter(cell[0], cell[1])
    if not cell[0] > cell[1]:
        cell[0] = cell[1]
    return cell[0]


def pool_width(k: int) -> int:
    """Entries of one row's pool: room for k survivors and as many newcomers between two compactions."""
    return 2 * k + 16


def pool_row_bytes(k: int) -> int:
    """Bytes of one row's pool (see ``new_pool``)."""
    return pool_width(k) * (8 + 8 + 8 + 1) + 16


@numba.njit(cache=True, nogil=True)
def scan_tile(
    scores: np.ndarray,
    first_query: int,
    first_train: int,
    alpha: np.ndarray,
    beta: float,
    margin: np.ndarray,
    exclude_self: bool,
    pool: tuple,  # type: ignore[type-arg]
    rows: tuple,  # type: ignore[type-arg]
    k: int,
) -> None:
    """Fold one sub-tile of scores into the rows' pools, in place.

    Parameters
    ----------
    scores : ndarray of shape (r, w), the GEMM's scores (larger is better)
    first_query, first_train : int, global index of the sub-tile's first row and column
    alpha, margin : ndarray of shape (r,), float64, per-row key constant and error bound
    beta : float, ``key = alpha - beta * score``
    exclude_self : bool, skip the pair of a row with its own global index
    pool : tuple, the rows' pools (see ``new_pool``), sliced to the sub-tile's rows
    rows : tuple, what an exact re-check reads (see ``settle``); every pooled index not yet
        re-checked must be among its rows
    k : int
    """
    n_rows, width = scores.shape
    low, high, index, checked, upper, count = pool
    capacity = low.shape[1]
    cell = np.empty(2, dtype=scores.dtype)
    cell[1] = -np.finfo(scores.dtype).max
    if exclude_self:
        # Mask each row's pair with itself, so the hot loop needs no check.
        for i in range(n_rows):
            own_column = first_query + i - first_train
            if 0 <= own_column < width:
                scores[i, own_column] = -np.inf
    full = width - width % CHUNK
    for i in range(n_rows):
        row = scores[i]
        if upper[i] == np.inf and width >= 2 * k:
            # A row's first sub-tile, with no bound yet: nearly every score would pass (be pooled, then
            # compacted away). The k-th best score here bounds the k-th key from the start: the k scores
            # at or above it will be pooled, each with an upper end at most this bound.
            kth_score = np.partition(row, width - k)[width - k]
            upper[i] = min(upper[i], alpha[i] - beta * np.float64(kth_score) + margin[i])
        threshold = _score_threshold(upper[i], alpha[i], beta, margin[i], cell)
        for start in range(0, width, CHUNK):
            stop = min(start + CHUNK, width)
            if start < full:
                # The hot loop: a fixed-length count that the compiler
                # vectorises; almost every chunk has nothing to offer. Indexed
                # from 0 within a slice: ``row[start + offset]`` may be negative as far
                # as the compiler knows, and its wraparound check kept the loop scalar (8x slower).
                chunk = row[start:stop]
                passing = np.int32(0)
                for offset in range(CHUNK):
                    passing += np.int32(chunk[offset] >= threshold)
                if passing == 0:
                    continue
            # Pooled here, not in a function of its own: a call that takes the pool's arrays
            # costs more (reference counts) than the few stores it makes.
            for j in range(start, stop):
                if row[j] >= threshold:
                    key = alpha[i] - beta * np.float64(row[j])
                    c = count[i]
                    low[i, c] = key - margin[i]
                    high[i, c] = key + margin[i]
                    index[i, c] = first_train + j
                    checked[i, c] = False
                    count[i] = c + 1
                    if c + 1 == capacity:
                        _compact(i, pool, rows, k)
                        threshold = _score_threshold(upper[i], alpha[i], beta, margin[i], cell)


def new_pool(n_rows: int, k: int) -> tuple[np.ndarray, ...]:
    """Empty pools of ``n_rows`` rows: (low, high, index, checked, upper, count).

    ``low``/``high`` (float64) bound each entry's exact key (both equal to it once
    re-checked, ``checked``), ``index`` its global train row; ``upper`` is the
    row's bound U (+inf until k entries are in, unless a bound from other train
    rows is set), ``count`` its entries. A row may end with fewer than k
    entries when its starting bound kept the rest out.
    """
    width = pool_width(k)
    return (
        np.empty((n_rows, width)),
        np.empty((n_rows, width)),
        np.empty((n_rows, width), dtype=np.int64),
        np.empty((n_rows, width), dtype=np.bool_),
        np.full(n_rows, np.inf),
        np.zeros(n_rows, dtype=np.int64),
    )


@numba.njit(cache=True, nogil=True)
def _kth_smallest(values: np.ndarray, k: int) -> float:
    """The k-th smallest of ``values`` (1-based k <= len(values))."""
    return np.partition(values, k - 1)[k - 1]  # a copy: the pool keeps its order


@numba.njit(cache=True, nogil=True)
def _drop_above(i, pool, k):  # type: ignore[no-untyped-def]
    """Set row ``i``'s bound U from its entries and drop those whose lower end is above it (order kept)."""
    low, high, index, checked, upper, count = pool
    c = count[i]
    if c < k:
        return
    # Never above the bound the row started with (a k-th key carried in from other train rows).
    bound = min(_kth_smallest(high[i, :c], k), upper[i])
    upper[i] = bound
    kept = 0
    for e in range(c):
        if low[i, e] <= bound:
            low[i, kept] = low[i, e]
            high[i, kept] = high[i, e]
            index[i, kept] = index[i, e]
            checked[i, kept] = checked[i, e]
            kept += 1
    count[i] = kept


@numba.njit(cache=True, nogil=True)
def _compact(i, pool, rows, k):  # type: ignore[no-untyped-def]
    """Make room in row ``i``'s full pool: drop what cannot win, else settle it exactly (then k entries stay)."""
    _drop_above(i, pool, k)
    if pool[5][i] > pool[0].shape[1] // 2:
        # Ties within the error bound (duplicates): only exact keys tell them apart.
        _settle_row(i, pool, rows, k)


@numba.njit(cache=True, nogil=True)
def _settle_row(i, pool, rows, k):  # type: ignore[no-untyped-def]
    """Re-check row ``i``'s pooled entries exactly and keep its k best by (key, index), sorted."""
    low, high, index, checked, upper, count = pool
    queries, train, first, query_norms, train_norms, code = rows
    c = count[i]
    for e in range(c):
        if not checked[i, e]:
            j = index[i, e] - first
            key = pair_key(queries[i], train[j], code, query_norms[i], train_norms[j])
            low[i, e] = key
            high[i, e] = key
            checked[i, e] = True
    # By index, then stably by key: (key, index) order, ties to the lower index.
    by_index = np.argsort(index[i, :c])
    order = by_index[np.argsort(low[i, :c][by_index], kind="mergesort")]
    kept = min(c, k)
    keys = low[i, :c][order[:kept]]
    indices = index[i, :c][order[:kept]]
    low[i, :kept] = keys
    high[i, :kept] = keys
    index[i, :kept] = indices
    checked[i, :kept] = True
    count[i] = kept
    if kept == k:
        upper[i] = min(upper[i], keys[k - 1])


@numba.njit(cache=True, nogil=True)
def settle(pool: tuple, rows: tuple, k: int) -> None:  # type: ignore[type-arg]
    """Re-check every pooled entry that can still win, exactly, and cut each row to its k best.

    Parameters
    ----------
    pool : tuple, from ``new_pool``
    rows : tuple (queries, train, first, query_norms, train_norms, code)
        ``queries`` of shape (r, d), the original rows of the pool's rows;
        ``train`` of shape (w, d), original train rows, ``train[j]`` being global row ``first + j``;
        norms of shape (r,) and (w,), float64 (cosine only); ``code`` from ``metric_code``.
    k : int
    """
    for i in range(pool[0].shape[0]):
        _drop_above(i, pool, k)
        _settle_row(i, pool, rows, k)


@numba.njit(cache=True, nogil=True)
def pool_topk(pool: tuple, best_keys: np.ndarray, best_indices: np.ndarray, pad_index: int) -> None:  # type: ignore[type-arg]
    """Write settled pools as sorted top-k rows of shape (r, k), padded with (inf, ``pad_index``)."""
    low, index, count = pool[0], pool[2], pool[5]
    for i in range(best_keys.shape[0]):
        c = count[i]
        best_keys[i, :c] = low[i, :c]
        best_indices[i, :c] = index[i, :c]
        best_keys[i, c:] = np.inf
        best_indices[i, c:] = pad_index
