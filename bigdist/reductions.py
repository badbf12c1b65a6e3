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
from dask.core import flatten
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from bigdist.blas import BlasLimited
from bigdist.kernels.bounds import new_run
from bigdist.kernels.knn import RESULT_DTYPE, knn_agg, knn_chunk, knn_combine
from bigdist.kernels.labels import fmax_reduce, lookup_chunk
from bigdist.kernels.meanshift import kth_agg, kth_chunk, kth_combine
from bigdist.kernels.radius import radius_chunk, radius_combine, radius_finish
from bigdist.kernels.topk import TOPK_DTYPE

# Above this size in all (their size times the number of blocks), the extra arguments of a block
# kernel become keys of their own instead of being copied into every task.
INLINE_EXTRA_BYTES = 2**20


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
    p: float = 2.0,
    tile_query_rows: int,
    tile_train_rows: int,
    chunk: Any = None,
) -> da.Array:
    """Exact top-k of every query row over the whole train set, lazily.

    Parameters
    ----------
    queries : dask array of shape (m, d), rows chunked, features in one chunk
    train : dask array of shape (n, d), rows chunked, features in one chunk
    k : int
    metric : str, a canonical name of ``bigdist.kernels.registry.METRICS``
    exclude_self : bool
        The self-join: skip the pair of a row with itself (same global index).
    split_every : int
        Fan-in of the tree reduction across train blocks.
    p : float
        The Minkowski order (other metrics ignore it).
    tile_query_rows, tile_train_rows : int
        Sub-tile shape inside each task.
    chunk : callable, optional
        The tile kernel ``chunk(queries, train, query_index, train_index)`` in place of ``knn_chunk``
        (a user's metric function: ``bigdist.kernels.dense.function_knn_chunk``).

    Returns
    -------
    dask array of shape (m, k), dtype ``RESULT_DTYPE`` (fields ``distance``, ``index``),
    chunked like ``queries`` along rows
    """
    query_index = da.arange(queries.shape[0], chunks=(queries.chunks[0],), dtype=np.int64)
    train_index = da.arange(train.shape[0], chunks=(train.chunks[0],), dtype=np.int64)
    token = tokenize(queries, train, k, metric, p, exclude_self, tile_query_rows, tile_train_rows, chunk)
    tiles = da.blockwise(
        BlasLimited(
            chunk
            or partial(
                knn_chunk,
                k=k,
                metric=metric,
                p=p,
                exclude_self=exclude_self,
                tile_query_rows=tile_query_rows,
                tile_train_rows=tile_train_rows,
                run=new_run(),  # not in the token: the graph's names stay deterministic
            )
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
    return topk_tree(tiles, k=k, metric=metric, split_every=split_every)


def topk_tree(tiles: da.Array, *, k: int, metric: str, split_every: int) -> da.Array:
    """Merge the top-k partials of tiles laid side by side, (m, s * k) TOPK_DTYPE in blocks of k columns,
    by a tree across the column blocks into (m, k) ``RESULT_DTYPE``."""
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
    array: da.Array,
    chunk: Any,
    combine: Any,
    *,
    split_every: int,
    name: str,
    extra: tuple[Any, ...] = (),
    along: tuple[da.Array, ...] = (),
) -> Delayed:
    """Map ``chunk(block, first_row, *extra)`` over the row blocks and tree-reduce with ``combine(list)``.

    The blocks of the ``along`` arrays (per-row inputs such as sample weights, chunked like the rows of ``array``) come
    right after ``first_row``.

    The partial states may be any Python objects (dicts of small arrays);
    ``extra`` arguments (e.g. centroids) are put in the graph once, not per task, unless they are
    small arrays (``INLINE_EXTRA_BYTES``).

    Returns
    -------
    dask Delayed of the merged state
    """
    token = tokenize(array, chunk, combine, split_every, extra, along)
    layers, dependencies, chunk_keys = _chunk_layer(array, chunk, extra, name, token, along=along)
    return _tree(layers, dependencies, chunk_keys, combine, split_every, name, token)


def map_row_blocks(
    array: da.Array,
    chunk: Any,
    *,
    dtype: Any,
    name: str,
    extra: tuple[Any, ...] = (),
    chunks: tuple[int, ...] | None = None,
    along: tuple[da.Array, ...] = (),
) -> da.Array:
    """``chunk(block, first_row, *extra)`` on every row block, as a 1-D dask array.

    ``extra`` goes in the graph as in :func:`block_tree_reduce` (once, or in every task when small),
    never captured per task; ``along`` as there. ``chunks``: the length of each block's output,
    default its row count.
    """
    token = tokenize(array, chunk, extra, along)
    layers, dependencies, chunk_keys = _chunk_layer(array, chunk, extra, name, token, along=along)
    sizes = array.chunks[0] if chunks is None else chunks
    return da.Array(HighLevelGraph(layers, dependencies), chunk_keys[0][0], chunks=(sizes,), dtype=dtype)


def _chunk_layer(
    array: da.Array,
    chunk: Any,
    extra: tuple[Any, ...],
    name: str,
    token: str,
    along: tuple[da.Array, ...] = (),
) -> tuple[dict[str, dict[Any, Any]], dict[str, set[str]], list[tuple[str, int]]]:
    """The graph layers of ``chunk`` over the row blocks (built directly: a pass is rebuilt every iteration).

    The chunk is ``chunk(block, first_row, *along_blocks, *extra)``: the blocks of the ``along``
    arrays, chunked like the rows of ``array``, come right after ``first_row``.
    """
    layer_name = f"{name}-chunk-{token}"
    # Row blocks in order (``array`` has its feature axis in one chunk, or is 1-D).
    blocks = list(flatten(array.__dask_keys__()))
    tasks: dict[Any, Any] = {}
    if all(isinstance(value, np.ndarray) for value in extra) and (
        len(blocks) * sum(value.nbytes for value in extra) <= INLINE_EXTRA_BYTES
    ):
        # Small arrays go in every task: a key of their own costs a task and a transfer before the blocks start.
        extra_args = list(extra)
    else:
        extra_args = [(f"{name}-extra-{token}", j) for j in range(len(extra))]
        tasks.update(zip(extra_args, extra, strict=True))
    along_keys = [list(flatten(rows.__dask_keys__())) for rows in along]
    for rows in along:
        if rows.chunks[0] != array.chunks[0]:
            raise ValueError(f"per-row inputs must be chunked like the rows: {rows.chunks[0]} != {array.chunks[0]}")
    for i, (block, offset) in enumerate(zip(blocks, _offsets(array), strict=True)):
        tasks[(layer_name, i)] = (
            BlasLimited(chunk),
            block,
            offset,
            *(keys[i] for keys in along_keys),
            *extra_args,
        )
    collections = [array, *along]
    graph = HighLevelGraph.from_collections(layer_name, tasks, dependencies=collections)
    return dict(graph.layers), dict(graph.dependencies), [(layer_name, i) for i in range(len(blocks))]


def _offsets(array: da.Array) -> list[int]:
    return [int(offset) for offset in np.concatenate([[0], np.cumsum(array.chunks[0])[:-1]])]


def _merge_levels(
    leaves: list[Any], combine: Any, split_every: int, merge_name: str
) -> tuple[dict[Any, Any], list[Any]]:
    """Merge tasks that reduce ``leaves`` with ``combine(list)``, ``split_every`` at a time, to at most
    ``split_every`` keys; returns the tasks and those keys."""
    tasks: dict[Any, Any] = {}
    level, depth = leaves, 0
    while len(level) > split_every:
        level_keys = []
        for i, start in enumerate(range(0, len(level), split_every)):
            key = (merge_name, depth, i)
            tasks[key] = (combine, list(level[start : start + split_every]))
            level_keys.append(key)
        level, depth = level_keys, depth + 1
    return tasks, level


def _tree(
    layers: dict[str, dict[Any, Any]],
    dependencies: dict[str, set[str]],
    leaves: list[Any],
    combine: Any,
    split_every: int,
    name: str,
    token: str,
) -> Delayed:
    """Merge ``leaves`` with ``combine(list)``, ``split_every`` at a time, into one Delayed."""
    merge_name = f"{name}-merge-{token}"
    tasks, top = _merge_levels(leaves, combine, split_every, merge_name)
    root = (merge_name, "root")
    tasks[root] = (combine, list(top))
    layers[merge_name] = tasks
    dependencies[merge_name] = {key[0] for key in leaves}
    return Delayed(root, HighLevelGraph(layers, dependencies), layer=merge_name)


def lookup_rows(indices: da.Array, values: da.Array, *, split_every: int) -> da.Array:
    """``values[indices]`` for a lazy (m, k) index array, without gathering ``values`` anywhere.

    Each task looks up, for one block of index rows, the entries that fall in
    one block of value rows (``bigdist-label-lookup``); a tree reduction
    across value blocks keeps the one real entry of each (``bigdist-label-merge``).

    Parameters
    ----------
    indices : dask array of shape (m, k), int64, global rows of ``values``; k in one chunk
    values : dask array of shape (n, n_outputs), float (finite), rows chunked, outputs in one chunk
    split_every : int
        Fan-in of the reduction across value blocks.

    Returns
    -------
    dask array of shape (m, k, n_outputs), dtype of ``values``, chunked like ``indices`` along rows
    """
    value_index = da.arange(values.shape[0], chunks=(values.chunks[0],), dtype=np.int64)
    partials = da.blockwise(
        lookup_chunk,
        "ijko",
        indices,
        "ik",
        values,
        "jo",
        value_index,
        "j",
        adjust_chunks={"j": 1},
        concatenate=True,
        dtype=values.dtype,
        meta=np.empty((0, 0, 0, 0), dtype=values.dtype),
        name=f"bigdist-label-lookup-{tokenize(indices, values)}",
    )
    return da.reduction(
        partials,
        chunk=fmax_reduce,
        combine=fmax_reduce,
        aggregate=fmax_reduce,
        axis=1,
        keepdims=False,
        split_every={1: split_every},
        dtype=values.dtype,
        meta=np.empty((0, 0, 0), dtype=values.dtype),
        concatenate=True,
        name="bigdist-label-merge",
    )


def radius_pairs(
    queries: da.Array,
    train: da.Array,
    *,
    radius: float,
    metric: str,
    exclude_self: bool,
    split_every: int,
    max_neighbors: int,
    sort_results: bool,
    out_dtype: np.dtype,
    tile_query_rows: int,
    tile_train_rows: int,
    p: float = 2.0,
    tile_kernel: Any = None,
) -> list[Delayed]:
    """Radius neighbours of each query block: tile tasks merged by a tree across train blocks.

    Ragged results do not fit a dask array, so each query block ends in one
    Delayed (layers ``bigdist-radius-tile``, ``bigdist-radius-merge``,
    ``bigdist-radius-finish``). ``metric`` is a canonical name of
    ``bigdist.kernels.registry.METRICS``, ``p`` the Minkowski order.

    Returns
    -------
    list of Delayed, one per query block, each computing a dict with ``counts``
    (rows of the block,) int64, ``indices`` (nnz,) int64 and ``distances`` (nnz,)
    of ``out_dtype``; rows in order, each row's pairs by increasing train
    index, or nearest first with ``sort_results``. ``tile_kernel``, optional, replaces ``radius_chunk``:
    ``tile_kernel(query_block, train_block, first_query, first_train)`` (a user's metric function).
    """
    token = tokenize(queries, train, radius, metric, p, exclude_self, split_every, max_neighbors, sort_results,
                     tile_kernel)  # fmt: skip
    tile = BlasLimited(
        tile_kernel
        or partial(
            radius_chunk,
            radius=radius,
            metric=metric,
            p=p,
            exclude_self=exclude_self,
            max_neighbors=max_neighbors,
            tile_query_rows=tile_query_rows,
            tile_train_rows=tile_train_rows,
        )
    )
    combine = partial(radius_combine, max_neighbors=max_neighbors)
    finish = partial(radius_finish, metric=metric, sort_results=sort_results, dtype=out_dtype)
    query_offsets = np.concatenate([[0], np.cumsum(queries.chunks[0])[:-1]]).astype(int)
    train_offsets = np.concatenate([[0], np.cumsum(train.chunks[0])[:-1]]).astype(int)
    train_blocks = train.to_delayed().ravel()
    results = []
    for i, (query_block, query_offset) in enumerate(zip(queries.to_delayed().ravel(), query_offsets, strict=True)):
        level = [
            dask.delayed(tile, pure=True)(
                query_block,
                train_block,
                int(query_offset),
                int(train_offset),
                dask_key_name=(f"bigdist-radius-tile-{token}", i, j),
            )
            for j, (train_block, train_offset) in enumerate(zip(train_blocks, train_offsets, strict=True))
        ]
        depth = 0
        while len(level) > 1:
            level = [
                dask.delayed(combine, pure=True)(
                    level[start : start + split_every], dask_key_name=(f"bigdist-radius-merge-{depth}-{token}", i, n)
                )
                for n, start in enumerate(range(0, len(level), split_every))
            ]
            depth += 1
        results.append(dask.delayed(finish, pure=True)(level[0], dask_key_name=(f"bigdist-radius-finish-{token}", i)))
    return results


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
        BlasLimited(partial(kth_chunk, k=k)),
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
