"""Neighbours from a precomputed distance matrix (``metric="precomputed"``), reduced block by block.

The matrix is read in row blocks of about ``bigdist.chunk-bytes`` (a dask
array's column chunks are joined, as for any input); each task reduces its
block to the top-k or to the pairs within the radius, column sub-tile by
sub-tile, so nothing larger than a block is ever held and the matrix is
never gathered. As in scikit-learn, the distances must be >= 0 and finite.

A sparse matrix (scipy.sparse, or a dask array of sparse blocks) is a
precomputed graph, as scikit-learn's ``kneighbors_graph(mode="distance")``
gives: its stored entries (explicit zeros too) are the candidate neighbours
and an absent entry is none, so a kNN query needs k stored entries per row.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse
from dask.base import tokenize

from bigdist.errors import InputDtypeError, InputShapeError
from bigdist.io import as_array, check_int
from bigdist.io.sparse import as_sparse_array, is_sparse
from bigdist.kernels.dense import (
    check_graph_neighbours,
    check_precomputed,
    precomputed_graph_knn_chunk,
    precomputed_graph_radius_chunk,
    precomputed_knn_chunk,
    precomputed_radius_chunk,
)
from bigdist.kernels.radius import radius_finish
from bigdist.kernels.topk import TOPK_DTYPE
from bigdist.reductions import topk_tree

logger = logging.getLogger(__name__)


def precomputed_inputs(distances: Any, train: Any) -> tuple[da.Array, bool]:
    """The distance matrix as a dask array, and whether it is a self-join.

    ``train`` is None (self-join: ``distances`` is the square matrix of a set
    with itself) or the train set's own precomputed matrix, as an estimator
    fitted on it holds: only its number of rows is used, to check the columns.

    Raises
    ------
    InputShapeError
        A self-join of a matrix that is not square, or columns that do not match the train rows.
    """
    matrix = _matrix(distances)
    n_queries, n_columns = matrix.shape
    if train is None:
        if n_queries != n_columns:
            raise InputShapeError(
                f"metric='precomputed' without train rows needs the square matrix of distances within one set, got "
                f"shape {matrix.shape}; for distances of queries to train rows pass the train rows' own square "
                f"matrix as train (as an estimator fitted on it does)"
            )
        return matrix, True
    n_train = int(train.shape[0]) if hasattr(train, "shape") else as_array(train).shape[0]
    if n_columns != n_train:
        raise InputShapeError(
            f"metric='precomputed': the distance matrix has {n_columns} columns but there are {n_train} train rows; "
            f"pass the (n_queries, n_train) = (n_queries, {n_train}) matrix of distances to the train rows"
        )
    return matrix, False


def _matrix(distances: Any) -> da.Array:
    """Dense distances as a dask array; a sparse graph as CSR blocks (rows chunked, columns in one chunk)."""
    if is_sparse(distances):
        check_graph_format(distances)
        return as_sparse_array(distances, name="distances")
    return as_array(distances, name="distances")


def check_graph_format(graph: Any) -> None:
    """Refuse a scipy.sparse graph whose format does not keep explicit zeros apart from absent entries.

    As scikit-learn: CSR, CSC, COO and LIL keep a stored 0 (a neighbour at
    distance 0); DOK, BSR and DIA do not, so the graph they hold is ambiguous.
    """
    if scipy.sparse.issparse(graph) and graph.format not in ("csr", "csc", "coo", "lil"):
        raise InputDtypeError(
            f"Sparse matrix in {graph.format!r} format is not supported due to its handling of explicit zeros, as "
            f"a precomputed graph (metric='precomputed'); convert it with graph.tocsr() where it was built"
        )


def precomputed_topk(
    distances: Any, train: Any, k: int, split_every: int, check_k: Any
) -> tuple[da.Array, da.Array, int, bool, da.Array]:
    """Top-k of each row of a precomputed matrix: (distances, indices, n_train, self_join, matrix), lazily.

    ``check_k(k, n_train, self_join)`` validates ``k`` (``bigdist.knn``'s rule).
    """
    matrix, self_join = precomputed_inputs(distances, train)
    n_queries, n_train = matrix.shape
    k = check_k(k, n_train, self_join)
    query_index = da.arange(n_queries, chunks=(matrix.chunks[0],), dtype=np.int64)
    train_index = da.arange(n_train, chunks=(matrix.chunks[1],), dtype=np.int64)
    graph = is_sparse(matrix)
    tiles = da.blockwise(
        partial(precomputed_graph_knn_chunk if graph else precomputed_knn_chunk, k=k, exclude_self=self_join),
        "ij",
        matrix,
        "ij",
        query_index,
        "i",
        train_index,
        "j",
        adjust_chunks={"j": k},
        concatenate=True,
        dtype=TOPK_DTYPE,
        meta=np.empty((0, 0), dtype=TOPK_DTYPE),
        name=f"bigdist-precomputed-tile-{tokenize(matrix, k, self_join)}",
    )
    result = topk_tree(tiles, k=k, metric="precomputed", split_every=split_every)
    if graph:
        result = result.map_blocks(check_graph_neighbours, k=k, dtype=result.dtype, meta=result._meta)
    logger.info("knn: precomputed %d x %d distances, k=%d, %d row blocks", n_queries, n_train, k, matrix.numblocks[0])
    distances_out = result["distance"].astype(matrix.dtype)
    return distances_out, result["index"], k, self_join, matrix


def precomputed_pairs(
    distances: Any, train: Any, *, radius: float, max_neighbors: int, sort_results: bool
) -> tuple[list[Any], da.Array, bool]:
    """The pairs within ``radius`` of each row block of a precomputed matrix: (Delayed blocks, matrix, self_join)."""
    matrix, self_join = precomputed_inputs(distances, train)
    max_neighbors = check_int("max_neighbors", max_neighbors)
    chunk = precomputed_graph_radius_chunk if is_sparse(matrix) else precomputed_radius_chunk
    tile = partial(chunk, radius=radius, exclude_self=self_join, max_neighbors=max_neighbors)
    finish = partial(radius_finish, metric="precomputed", sort_results=sort_results, dtype=matrix.dtype)
    token = tokenize(matrix, radius, self_join, max_neighbors, sort_results)
    offsets = np.concatenate([[0], np.cumsum(matrix.chunks[0])[:-1]]).astype(int)
    blocks = [
        dask.delayed(finish, pure=True)(
            dask.delayed(tile, pure=True)(
                block, int(offset), 0, dask_key_name=(f"bigdist-precomputed-radius-{token}", i)
            ),
            dask_key_name=(f"bigdist-radius-finish-{token}", i),
        )
        for i, (block, offset) in enumerate(zip(matrix.to_delayed().ravel(), offsets, strict=True))
    ]
    logger.info("radius_neighbors: precomputed %d x %d distances, radius=%g", *matrix.shape, radius)
    return blocks, matrix, self_join


def precomputed_matrix(distances: Any, train: Any) -> da.Array:
    """``pairwise_distances`` of a precomputed matrix: the matrix itself, checked (>= 0, finite), lazily.

    Any shape, as scikit-learn's; with ``train`` its columns are checked against the train rows.
    """
    matrix = as_array(distances, name="distances") if train is None else precomputed_inputs(distances, train)[0]
    query_index = da.arange(matrix.shape[0], chunks=(matrix.chunks[0],), dtype=np.int64)
    return da.blockwise(
        _checked_block,
        "ij",
        matrix,
        "ij",
        query_index,
        "i",
        dtype=matrix.dtype,
        meta=np.empty((0, 0), dtype=matrix.dtype),
        name=f"bigdist-precomputed-check-{tokenize(matrix)}",
    )


def _checked_block(block: np.ndarray, query_index: np.ndarray) -> np.ndarray:
    check_precomputed(block, int(query_index[0]) if len(query_index) else 0, 0)
    return block


__all__ = ["check_graph_format", "precomputed_inputs", "precomputed_matrix", "precomputed_pairs", "precomputed_topk"]
