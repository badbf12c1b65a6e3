"""Graph builders: map a tile kernel over block pairs and tree-reduce the partials.

Each function returns a lazy dask array whose graph has named layers
(``bigdist-knn-tile``, ``bigdist-topk-merge``) so the dashboard tells the
story. The per-block maths is in ``bigdist.kernels``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from bigdist.kernels.knn import RESULT_DTYPE, knn_agg, knn_chunk, knn_combine
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
