"""The kNN tile kernel and its reduction triplet. NumPy only.

``knn_chunk`` reduces one (query block, train block) tile to its exact top-k
without ever holding the tile: it walks the train block in sub-tiles, scores
each with one GEMM and keeps, per query row, a running bound on the k-th
best key. Sub-tile entries that cannot beat the bound are discarded with a
per-segment maximum, which touches each score once; the few that can are
re-checked exactly in float64 and merged. ``knn_combine`` and ``knn_agg``
merge partial results across train blocks.
"""

from __future__ import annotations

import numpy as np

from bigdist.kernels.metrics import (
    exact_keys,
    gemm_dtype,
    key_beta,
    keys_to_values,
    margin,
    prepare,
    train_center,
)
from bigdist.kernels.topk import empty_topk, merge_candidates, topk_merge

RESULT_DTYPE = np.dtype([("distance", np.float64), ("index", np.int64)])

# Width of the column segments whose maxima decide which scores to look at.
SEGMENT = 256
# Candidate pairs re-checked per batch: bounds the float64 difference rows.
RECHECK_BATCH = 32768


def _recheck(metric: str, queries: np.ndarray, train: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    keys = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), RECHECK_BATCH):
        stop = start + RECHECK_BATCH
        keys[start:stop] = exact_keys(metric, queries[rows[start:stop]], train[cols[start:stop]])
    return keys


def knn_chunk(
    queries: np.ndarray,
    train: np.ndarray,
    query_index: np.ndarray,
    train_index: np.ndarray,
    *,
    k: int,
    metric: str,
    exclude_self: bool,
    tile_query_rows: int,
    tile_train_rows: int,
) -> np.ndarray:
    """Exact top-k of every query row within one train block.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    train : ndarray of shape (n, d)
    query_index : ndarray of shape (m,), int64, global rows of the queries (consecutive)
    train_index : ndarray of shape (n,), int64, global rows of the train block (consecutive)
    k : int
    metric : str, one of ``GEMM_METRICS``
    exclude_self : bool
        Skip pairs whose global indices are equal (self-join).
    tile_query_rows, tile_train_rows : int
        Sub-tile shape; the scores of one sub-tile are all that is held.

    Returns
    -------
    structured ndarray of shape (m, k), dtype TOPK_DTYPE, sorted by (key, index)
    """
    m, d = queries.shape
    n = train.shape[0]
    best = empty_topk(m, k)
    if m == 0 or n == 0:
        return best
    dtype = gemm_dtype(queries.dtype, train.dtype)
    center = train_center(metric, train, dtype)
    prepared_train = prepare(train, metric, center, dtype, "train")
    prepared_queries = prepare(queries, metric, center, dtype, "query")
    bounds = margin(metric, dtype, d, prepared_queries.norms, float(prepared_train.norms.max()))
    beta = key_beta(metric)
    lowest = np.finfo(dtype).min
    first_query, first_train = int(query_index[0]), int(train_index[0])
    tile_train_rows = -(-tile_train_rows // SEGMENT) * SEGMENT

    for q_start in range(0, m, tile_query_rows):
        q_stop = min(q_start + tile_query_rows, m)
        q_rows = prepared_queries.rows[q_start:q_stop]
        alpha = prepared_queries.alpha[q_start:q_stop]
        q_margin = bounds[q_start:q_stop]
        tile_best = best[q_start:q_stop]
        scores_buffer = np.empty((q_stop - q_start, tile_train_rows), dtype=dtype)
        for x_start in range(0, n, tile_train_rows):
            x_stop = min(x_start + tile_train_rows, n)
            width = x_stop - x_start
            padded = -(-width // SEGMENT) * SEGMENT
            scores = scores_buffer[:, :padded]
            np.matmul(q_rows, prepared_train.rows[x_start:x_stop].T, out=scores[:, :width])
            scores[:, width:] = -np.inf
            if exclude_self:
                _mask_self(scores, first_query + q_start, first_train + x_start)

            # A pair can be a neighbour only if its approximate key is within
            # the margin of the current k-th exact key.
            bound = tile_best["key"][:, k - 1] + q_margin
            unfilled = np.flatnonzero(np.isinf(bound))
            if len(unfilled) and width > k:
                # No k exact keys yet: the k-th best approximate score of this
                # sub-tile bounds the k-th exact key from above.
                kth_score = np.partition(scores[unfilled, :width], width - k, axis=1)[:, width - k]
                kth_key = alpha[unfilled] - beta * kth_score.astype(np.float64)
                bound[unfilled] = kth_key + 2 * q_margin[unfilled]
            with np.errstate(invalid="ignore"):
                threshold = ((alpha - bound) / beta).astype(dtype)
            threshold = np.maximum(np.nextafter(threshold, dtype.type(-np.inf)), lowest)

            segments = scores.reshape(-1, SEGMENT)
            n_segments = padded // SEGMENT
            segment_max = segments.max(axis=1).reshape(len(scores), n_segments)
            hit_rows, hit_segments = np.nonzero(segment_max >= threshold[:, None])
            if len(hit_rows) == 0:
                continue
            values = segments[hit_rows * n_segments + hit_segments]
            pair, offset = np.nonzero(values >= threshold[hit_rows, None])
            rows = hit_rows[pair]
            cols = hit_segments[pair] * SEGMENT + offset
            keys = _recheck(metric, queries[q_start:q_stop], train[x_start:x_stop], rows, cols)
            merge_candidates(tile_best, rows, keys, first_train + x_start + cols)
    return best


def _mask_self(scores: np.ndarray, first_query: int, first_train: int) -> None:
    """Set the scores of pairs with equal global index to -inf."""
    rows, width = scores.shape
    start = max(first_query, first_train)
    stop = min(first_query + rows, first_train + width)
    if start < stop:
        same = np.arange(start, stop)
        scores[same - first_query, same - first_train] = -np.inf


def knn_combine(partials: np.ndarray, *, k: int) -> np.ndarray:
    """Merge partial top-k results laid side by side, shape (m, s * k) -> (m, k)."""
    return topk_merge(partials, k)


def knn_agg(partials: np.ndarray, *, k: int, metric: str) -> np.ndarray:
    """Final merge: the k best of each row as (distance, index), shape (m, k)."""
    merged = topk_merge(partials, k)
    out = np.empty(merged.shape, dtype=RESULT_DTYPE)
    out["distance"] = keys_to_values(metric, merged["key"])
    out["index"] = merged["index"]
    return out
