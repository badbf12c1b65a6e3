"""The kNN tile kernel and its reduction triplet (NumPy and a compiled scan; no dask).

``knn_chunk`` reduces one (query block, train block) tile to its exact top-k
without ever holding the tile: it walks the train block in sub-tiles, scores
each with one GEMM, and folds the scores into a pool of candidates per row
with ``scan_tile``, which keeps a running bound on each row's k-th key; at
the end of the block only the pooled pairs that can still be among the k
nearest are re-checked, exactly in float64 (``bigdist.kernels.scan``). ``knn_combine``
and ``knn_agg`` merge partial results across train blocks.
"""

from __future__ import annotations

import numpy as np

from bigdist.kernels.bounds import shared_bounds
from bigdist.kernels.direct import DIRECT_METRICS, direct_topk
from bigdist.kernels.metrics import keys_to_values
from bigdist.kernels.scaling import scale_back
from bigdist.kernels.scan import new_pool, pool_row_bytes, pool_topk, scan_tile, settle
from bigdist.kernels.tiles import GemmTiles
from bigdist.kernels.topk import PAD_INDEX, TOPK_DTYPE, empty_topk, merge_sorted

RESULT_DTYPE = np.dtype([("distance", np.float64), ("index", np.int64)])
# Candidate pools held at once (bigdist.kernels.scan): at least one query sub-block's.
POOL_BYTES = 32 * 2**20


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
    p: float = 2.0,
    run: str | None = None,
) -> np.ndarray:
    """Exact top-k of every query row within one train block.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    train : ndarray of shape (n, d)
    query_index : ndarray of shape (m,), int64, global rows of the queries (consecutive)
    train_index : ndarray of shape (n,), int64, global rows of the train block (consecutive)
    k : int
    metric : str, a canonical name of ``bigdist.kernels.registry.METRICS``
        Direct metrics go to ``bigdist.kernels.direct.direct_topk``;
        ``correlation`` is ``cosine`` of rows centred (in float64) on their means.
    exclude_self : bool
        Skip pairs whose global indices are equal (self-join).
    tile_query_rows, tile_train_rows : int
        Sub-tile shape; the scores of one sub-tile are all that is held.
    p : float
        The Minkowski order (other metrics ignore it).
    run : str, optional
        A token from ``bigdist.kernels.bounds.new_run``, the same for every tile of one kNN (same
        queries, train set, k and metric): the GEMM metrics' scans then start from, and tighten, the
        bounds on each query row's k-th key that the run's tiles share in this process. A row may then
        come back with fewer than k real entries (padded), the others being beaten elsewhere.

    Returns
    -------
    structured ndarray of shape (m, k), dtype TOPK_DTYPE, sorted by (key, index)
    """
    if metric in DIRECT_METRICS:
        return direct_topk(queries, train, query_index, train_index, k=k, metric=metric, p=p, exclude_self=exclude_self)
    m, d = queries.shape
    n = train.shape[0]
    if m == 0 or n == 0:
        return empty_topk(m, k)
    tiles = GemmTiles.build(queries, train, metric)
    queries, dtype = tiles.queries, tiles.dtype
    best_keys = np.empty((m, k))
    best_indices = np.empty((m, k), dtype=np.int64)
    first_query, first_train = int(query_index[0]), int(train_index[0])
    # Flat, so that every sub-tile's view is C-contiguous for the compiled scan.
    scores_buffer = np.empty(min(tile_query_rows, m) * min(tile_train_rows, n), dtype=dtype)
    train_buffer = np.empty((min(tile_train_rows, n), d + 1), dtype=dtype)
    # Cosine's exact keys need the norms of every train row a pool may still hold.
    train_norms = np.empty(n)
    # Pools for a group of query rows at a time, within POOL_BYTES: each train sub-tile is prepared once
    # per group and scored against the group's sub-blocks while it is in cache.
    group_rows = min(m, max(tile_query_rows, POOL_BYTES // pool_row_bytes(k)))
    pools = new_pool(group_rows, k)
    bounds = shared_bounds(run, first_query, m) if run is not None else None

    for g_start in range(0, m, group_rows):
        g_stop = min(g_start + group_rows, m)
        pools[4][:] = np.inf
        pools[5][:] = 0
        upper = pools[4][: g_stop - g_start]
        for x_start in range(0, n, tile_train_rows):
            x_stop = min(x_start + tile_train_rows, n)
            tile = tiles.train_tile(x_start, x_stop, buffer=train_buffer, query_rows=slice(g_start, g_stop))
            if bounds is not None:
                np.minimum(upper, _rescaled(bounds[g_start:g_stop], tiles, -1), out=upper)
            train_norms[x_start:x_stop] = tile.norms
            for q_start in range(g_start, g_stop, tile_query_rows):
                q_stop = min(q_start + tile_query_rows, g_stop)
                scores = scores_buffer[: (q_stop - q_start) * (x_stop - x_start)].reshape(
                    q_stop - q_start, x_stop - x_start
                )
                np.matmul(tiles.prepared_queries.rows[q_start:q_stop], tile.prepared.rows.T, out=scores)
                pool = tuple(part[q_start - g_start : q_stop - g_start] for part in pools)
                # Centred rows (correlation) live for one sub-tile: its pooled pairs are re-checked before it goes.
                rows = (
                    (queries[q_start:q_stop], tile.rows, first_train + x_start, tiles.query_norms[q_start:q_stop],
                     tile.norms, tiles.code)
                    if tiles.centred
                    else (queries[q_start:q_stop], tiles.train, first_train, tiles.query_norms[q_start:q_stop],
                          train_norms, tiles.code)
                )  # fmt: skip
                scan_tile(
                    scores,
                    first_query + q_start,
                    first_train + x_start,
                    tiles.prepared_queries.alpha[q_start:q_stop],
                    tiles.beta,
                    tile.bounds[q_start - g_start : q_stop - g_start],
                    exclude_self,
                    pool,
                    rows,
                    k,
                )
                if tiles.centred:
                    settle(pool, rows, k)
            if bounds is not None:
                np.minimum(bounds[g_start:g_stop], _rescaled(upper, tiles, 1), out=bounds[g_start:g_stop])
        pool = tuple(part[: g_stop - g_start] for part in pools)
        # Centred: every pooled pair is re-checked already, so the un-centred rows are never read.
        settle(pool, (queries[g_start:g_stop], tiles.train, first_train, tiles.query_norms[g_start:g_stop],
                      train_norms, tiles.code), k)  # fmt: skip
        pool_topk(pool, best_keys[g_start:g_stop], best_indices[g_start:g_stop], PAD_INDEX)
    if tiles.metric != "cosine":  # cosine keys do not change with the scale
        best_keys = scale_back(best_keys, tiles.exponent, f"kNN with metric={metric!r}")
    best = np.empty((m, k), dtype=TOPK_DTYPE)
    best["key"] = best_keys
    best["index"] = best_indices
    return best


def _rescaled(bounds: np.ndarray, tiles: GemmTiles, direction: int) -> np.ndarray:
    """Bounds on keys taken into (``direction`` -1) or out of (+1) the block's scaled units, rounded up."""
    if tiles.metric == "cosine" or tiles.exponent == 0:  # cosine keys do not change with the scale
        return bounds
    with np.errstate(over="ignore", under="ignore"):
        return np.nextafter(np.ldexp(bounds, direction * 2 * tiles.exponent), np.inf)


def knn_combine(partials: np.ndarray, *, k: int) -> np.ndarray:
    """Merge partial top-k results laid side by side, each sorted, shape (m, s * k) -> (m, k)."""
    return merge_sorted(partials, k)


def knn_agg(partials: np.ndarray, *, k: int, metric: str) -> np.ndarray:
    """Final merge: the k best of each row as (distance, index), shape (m, k)."""
    merged = merge_sorted(partials, k)
    out = np.empty(merged.shape, dtype=RESULT_DTYPE)
    out["distance"] = keys_to_values(metric, merged["key"])
    out["index"] = merged["index"]
    return out
