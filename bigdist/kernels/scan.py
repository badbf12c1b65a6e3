"""The compiled inner loop of the kNN tile: one pass over a sub-tile of scores.

A NumPy selection (``argpartition``, or masks + ``nonzero``) costs as much
per score as the GEMM that made it at d=128; this loop touches each score
once with a single comparison against the row's running bound, and does
real work only for the few scores that pass: recompute the pair's key
exactly in float64 from the original rows and insert it into the row's
sorted top-k. Compiled with numba (``cache=True``: compiled once per
installation, not per process).
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def scan_tile(
    scores: np.ndarray,
    queries: np.ndarray,
    train: np.ndarray,
    first_query: int,
    first_train: int,
    alpha: np.ndarray,
    beta: float,
    margin: np.ndarray,
    query_norms: np.ndarray,
    train_norms: np.ndarray,
    code: int,
    exclude_self: bool,
    best_keys: np.ndarray,
    best_indices: np.ndarray,
) -> None:
    """Fold one sub-tile of scores into the rows' top-k, in place.

    Parameters
    ----------
    scores : ndarray of shape (r, w), the GEMM's scores (larger is better)
    queries : ndarray of shape (r, d), the original query rows
    train : ndarray of shape (w, d), the original train rows
    first_query, first_train : int, global index of ``queries[0]`` and ``train[0]``
    alpha, margin : ndarray of shape (r,), float64, per-row key constant and error bound
    beta : float, ``key = alpha - beta * score``
    query_norms, train_norms : ndarray of shape (r,) and (w,), float64 (cosine only)
    code : int, from ``metric_code``
    exclude_self : bool, skip the pair of a row with its own global index
    best_keys, best_indices : ndarray of shape (r, k), each row sorted by (key, index)
    """
    rows, width = scores.shape
    last = best_keys.shape[1] - 1
    cell = np.empty(2, dtype=scores.dtype)
    cell[1] = -np.finfo(scores.dtype).max
    if exclude_self:
        # Mask each row's pair with itself, so the hot loop needs no check.
        for i in range(rows):
            own_column = first_query + i - first_train
            if 0 <= own_column < width:
                scores[i, own_column] = -np.inf
    state = (scores, queries, train, first_train, alpha, beta, margin, query_norms, train_norms, code, best_keys, best_indices, cell)  # fmt: skip # noqa: E501
    full = width - width % CHUNK
    for i in range(rows):
        threshold = _score_threshold(best_keys[i, last], alpha[i], beta, margin[i], cell)
        for start in range(0, full, CHUNK):
            # The hot loop: a fixed-length count that the compiler
            # vectorises; almost every chunk has nothing to offer.
            passing = 0
            for offset in range(CHUNK):
                if scores[i, start + offset] >= threshold:
                    passing += 1
            if passing:
                threshold = _offer(state, i, start, start + CHUNK, threshold)
        if full < width:
            _offer(state, i, full, width, threshold)


@numba.njit(cache=True, nogil=True)
def _offer(state, i, start, stop, threshold):  # type: ignore[no-untyped-def]
    """Re-check the scores of row ``i`` in [start, stop) that pass; return the new bound.

    ``state`` is the tuple of ``scan_tile``'s arrays and constants.
    """
    scores, queries, train, first_train, alpha, beta, margin, query_norms, train_norms, code, best_keys, best_indices, cell = state  # fmt: skip # noqa: E501
    last = best_keys.shape[1] - 1
    for j in range(start, stop):
        if scores[i, j] >= threshold:
            key = pair_key(queries[i], train[j], code, query_norms[i], train_norms[j])
            if key < best_keys[i, last]:
                _insert(best_keys[i], best_indices[i], key, first_train + j)
                threshold = _score_threshold(best_keys[i, last], alpha[i], beta, margin[i], cell)
    return threshold


@numba.njit(cache=True, nogil=True)
def _insert(keys: np.ndarray, indices: np.ndarray, key: float, index: int) -> None:
    """Insert into a row sorted by (key, index), dropping its last entry.

    Indices arrive in increasing order, so equal keys stay in index order and
    a key equal to the last one never displaces it (ties go to the lower index).
    """
    pos = len(keys) - 1
    while pos > 0 and keys[pos - 1] > key:
        keys[pos] = keys[pos - 1]
        indices[pos] = indices[pos - 1]
        pos -= 1
    keys[pos] = key
    indices[pos] = index
