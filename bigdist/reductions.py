"""Graph builders: map a tile kernel over block pairs and tree-reduce the partials.

Each function returns a lazy dask array whose graph has named layers
(``bigdist-knn-tile``, ``bigdist-topk-merge``) so the dashboard tells the
story. The per-block maths is in ``bigdist.kernels``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed

from bigdist.kernels.knn import RESULT_DTYPE, knn_agg, knn_chunk, knn_combine
from bigdist.kernels.meanshift import kth_agg, kth_chunk, kth_combine
from bigdist.kernels.topk import TOPK_DTYPE


def _ignore_reduction_kwargs(func: Any, block: np.ndarray, axis: Any = None, keepdims: Any = None) -> np.ndarray:
    # dask.array.reduction passes axis/keepdims; the kernels always reduce axis 1.
    return func(block)


def knn_topk(
    queries: da.Array,
    train: da.Array,
    *,
    k: int,
    metric: str,
    exclude_self: bool,
    split_every: int,
    tile_query_rows: int,
    tile_train_rows: int,
) -> da.Array:
    """Exact top-k of every query row over the whole train set, lazily.

    Parameters
    ----------
    queries : dask array of shape (m, d), rows chunked, features in one chunk
    train : dask array of shape (n, d), rows chunked, features in one chunk
    k : int
    metric : str, one of ``bigdist.kernels.metrics.GEMM_METRICS``
    exclude_self : bool
        The self-join: skip the pair of a row with itself (same global index).
    split_every : int
        Fan-in of the tree reduction across train blocks.
    tile_query_rows, tile_train_rows : int
        Sub-tile shape inside each task.

    Returns
    -------
    dask array of shape (m, k), dtype ``RESULT_DTYPE`` (fields ``distance``, ``index``),
    chunked like ``queries`` along rows
    """
    query_index = da.arange(queries.shape[0], chunks=(queries.chunks[0],), dtype=np.int64)
    train_index = da.arange(train.shape[0], chunks=(train.chunks[0],), dtype=np.int64)
    token = tokenize(queries, train, k, metric, exclude_self, tile_query_rows, tile_train_rows)
    tiles = da.blockwise(
        partial(
            knn_chunk,
            k=k,
            metric=metric,
            exclude_self=exclude_self,
            tile_query_rows=tile_query_rows,
            tile_train_rows=tile_train_rows,
        ),
        "ij",
        queries,
        "if",
        train,
        "jf",
        query_index,
        "i",
        train_index,
        "j",
        adjust_chunks={"j": k},
        concatenate=True,
        dtype=TOPK_DTYPE,
        meta=np.empty((0, 0), dtype=TOPK_DTYPE),
        name=f"bigdist-knn-tile-{token}",
    )
    merge = partial(_ignore_reduction_kwargs, partial(knn_combine, k=k))
    return da.reduction(
        tiles,
        chunk=merge,
        combine=merge,
        aggregate=partial(_ignore_reduction_kwargs, partial(knn_agg, k=k, metric=metric)),
        axis=1,
        keepdims=True,
        output_size=k,
        split_every={1: split_every},
        dtype=RESULT_DTYPE,
        meta=np.empty((0, 0), dtype=RESULT_DTYPE),
        concatenate=True,
        name="bigdist-topk-merge",
    )


def block_tree_reduce(
    array: da.Array, chunk: Any, combine: Any, *, split_every: int, name: str, extra: tuple[Any, ...] = ()
) -> Delayed:
    """Map ``chunk(block, first_row, *extra)`` over the row blocks and tree-reduce with ``combine(list)``.

    The partial states may be any Python objects (dicts of small arrays);
    ``extra`` arguments (e.g. centroids) are put in the graph once, not per task.

    Returns
    -------
    dask Delayed of the merged state
    """
    token = tokenize(array, chunk, combine, split_every, extra)
    extra_keys = [dask.delayed(value, pure=True) for value in extra]
    offsets = np.concatenate([[0], np.cumsum(array.chunks[0])[:-1]]).astype(int)
    level = [
        dask.delayed(chunk, pure=True)(block, int(offset), *extra_keys, dask_key_name=(f"{name}-chunk-{token}", i))
        for i, (block, offset) in enumerate(zip(array.to_delayed().ravel(), offsets, strict=True))
    ]
    depth = 0
    while depth == 0 or len(level) > 1:
        level = [
            dask.delayed(combine, pure=True)(
                level[start : start + split_every], dask_key_name=(f"{name}-merge-{depth}-{token}", i)
            )
            for i, start in enumerate(range(0, len(level), split_every))
        ]
        depth += 1
    return level[0]


def kth_neighbour_distance(queries: da.Array, train: da.Array, *, k: int, split_every: int) -> da.Array:
    """Distance of every query row to its k-th nearest train row (the row itself included), lazily.

    For large k (``estimate_bandwidth``): each task keeps the k smallest
    squared distances of its (query block, train block) tile; a tree
    reduction across train blocks keeps the k smallest of those.

    Parameters
    ----------
    queries : dask array of shape (m, d), rows chunked, features in one chunk
    train : dask array of shape (n, d), rows chunked, features in one chunk
    k : int, 1 <= k <= n
    split_every : int

    Returns
    -------
    dask array of shape (m,), float64, chunked like ``queries`` along rows
    """
    token = tokenize(queries, train, k)
    tiles = da.blockwise(
        partial(kth_chunk, k=k),
        "ij",
        queries,
        "if",
        train,
        "jf",
        adjust_chunks={"j": lambda rows: min(rows, k)},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0)),
        name=f"bigdist-kth-tile-{token}",
    )
    merged = da.reduction(
        tiles,
        chunk=partial(_ignore_reduction_kwargs, partial(kth_combine, k=k)),
        combine=partial(_ignore_reduction_kwargs, partial(kth_combine, k=k)),
        aggregate=partial(_ignore_reduction_kwargs, partial(kth_agg, k=k)),
        axis=1,
        keepdims=True,
        output_size=1,
        split_every={1: split_every},
        dtype=np.float64,
        meta=np.empty((0, 0)),
        concatenate=True,
        name="bigdist-kth-merge",
    )
    return merged[:, 0]
