"""Distance and similarity matrices as lazy dask arrays, streamed block by block."""

from __future__ import annotations

import logging
import math
import warnings
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.array import PerformanceWarning
from dask.base import tokenize

from bigdist import config
from bigdist.blas import BlasLimited
from bigdist.errors import ParameterError
from bigdist.io import as_array, check_features, check_number, in_memory
from bigdist.io.arrays import rows_per_block
from bigdist.kernels.dense import function_pairwise_chunk
from bigdist.kernels.pairwise import cosine_similarity_chunk, out_dtype, pairwise_chunk
from bigdist.kernels.registry import get_metric
from bigdist.kernels.sparse import sparse_pairwise_chunk
from bigdist.knn import knn
from bigdist.metric_setup import distance_function, load_inputs, metric_arrays
from bigdist.planning import even_blocks
from bigdist.precomputed import precomputed_matrix
from bigdist.resources import compute

logger = logging.getLogger(__name__)


def block_shape(n_queries: int, n_train: int, itemsize: int, block_bytes: int) -> tuple[int, int]:
    """Rows and columns of one output block of at most about ``block_bytes``, square unless one side is short.

    Each side is split evenly (e.g. 50,000 rows in 13 blocks of 3,847 rather
    than 12 of 4,096 and one of 848), since Zarr stores edge chunks at full size.
    """
    elements = max(1, block_bytes // itemsize)
    side = max(1, math.isqrt(elements))
    rows = min(n_queries, side)
    cols = min(n_train, max(side, elements // rows))
    rows = min(n_queries, max(rows, elements // cols))
    # Zarr chunks are regular: the largest of the even blocks.
    return even_blocks(n_queries, rows)[0], even_blocks(n_train, cols)[0]


def _inputs(queries: Any, train: Any) -> tuple[da.Array, da.Array, bool]:
    self_join = train is None
    train_array = as_array(queries if self_join else train, name="X" if self_join else "train")
    query_array = train_array if self_join else as_array(queries, name="queries")
    check_features(query_array, train_array)
    return query_array, train_array, self_join


def _blocked(
    query_array: da.Array, train_array: da.Array, dtype: np.dtype, sparse: bool = False
) -> tuple[da.Array, da.Array]:
    block_bytes = config.get("chunk-bytes")
    rows, cols = block_shape(query_array.shape[0], train_array.shape[0], dtype.itemsize, block_bytes)
    # The input blocks stay within chunk-bytes too: against a short side (e.g. k centroids), the output
    # block alone would allow block_bytes / k rows of the other, each of n_features values (sparse blocks
    # store far fewer).
    input_rows = (
        rows if sparse else rows_per_block(query_array.shape[1], max(query_array.itemsize, train_array.itemsize))
    )
    rows = even_blocks(query_array.shape[0], min(rows, input_rows))[0]
    cols = even_blocks(train_array.shape[0], min(cols, input_rows))[0]
    # Regular blocks: each output block is one Zarr chunk, written by one task.
    return query_array.rechunk({0: rows}), train_array.rechunk({0: cols})


def _outer(kernel: Any, *args: Any, **kwargs: Any) -> da.Array:
    with warnings.catch_warnings():
        # Many more output blocks than input blocks is what a distance matrix is.
        warnings.simplefilter("ignore", PerformanceWarning)
        return da.blockwise(BlasLimited(kernel), *args, **kwargs)


def pairwise_distances(queries: Any, train: Any = None, metric: Any = "euclidean", **params: Any) -> da.Array:
    """The full (n_queries, n_train) distance matrix, lazily, in blocks that stream to Zarr.

    Each task computes one block of about ``bigdist.chunk-bytes`` from one
    query block and one train block, so a matrix far bigger than RAM can be
    written with ``D.to_zarr(path)`` (or ``bigdist pairwise``) while memory
    holds a few blocks per worker.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file;
        or sparse (scipy.sparse, dask arrays of sparse blocks; the output blocks are dense), as for
        :func:`bigdist.knn`.
    train : array-like of shape (n_train, n_features) or None
        None means the distances within ``queries`` (the diagonal is exactly 0).
    metric : str, callable or sklearn.metrics.DistanceMetric
        Any name of :func:`bigdist.kernels.registry.metric_names`: the GEMM
        family ``euclidean`` (``l2``), ``sqeuclidean``, ``cosine``,
        ``correlation``, ``inner_product`` (``dot``; the inner products
        themselves), the direct metrics ``manhattan`` (``cityblock``,
        ``l1``), ``chebyshev``, ``minkowski``, ``canberra``, ``braycurtis``,
        ``chi2``, ``hamming``, ``haversine``, ``nan_euclidean`` and the
        boolean ``jaccard``, ``dice``, ``rogerstanimoto``, ``russellrao``,
        ``sokalsneath``, ``yule`` (non-zero read as True, as scikit-learn
        converts), and ``seuclidean``, ``mahalanobis``, weighted
        ``minkowski`` (on transformed float64 rows); or a callable
        ``f(u, v) -> float`` or a ``DistanceMetric`` (float64 output).
        Values equal SciPy's ``cdist`` where it is defined; a zero row
        (constant row for ``correlation``) has cosine distance 1, two zero
        rows have ``braycurtis`` distance 0 (see ``bigdist.kernels.registry``);
        in the self-join (``train=None``) the diagonal is 0.
        ``"precomputed"``: ``queries`` is the distance matrix, returned as
        it is once checked (>= 0, finite; as scikit-learn).
    **params
        Parameters of the metric, as scikit-learn's ``metric_params``: ``p``
        and ``w`` for ``minkowski``, ``V`` for ``seuclidean``, ``VI`` for
        ``mahalanobis`` (estimated from the rows when not given), keywords of a callable.

    Returns
    -------
    dask array of shape (n_queries, n_train)
        float32 when both inputs are float32 (GEMM family: a float32 GEMM on
        rows centred on the train block's mean; see
        ``bigdist.kernels.pairwise`` for its error bound), else float64.
        Regular chunks of about ``bigdist.chunk-bytes``.

    Raises
    ------
    ParameterError
        Unknown metric or parameter, ``p`` <= 0.
    InputValueError
        (on compute) negative values for ``chi2``.
    """
    resolved = get_metric(metric, **params)
    if resolved.precomputed:
        return precomputed_matrix(queries, train)
    query_array, train_array, self_join, sparse = load_inputs(resolved, queries, train, names=("X", "train"))
    kernel_metric, query_array, train_array = metric_arrays(resolved, query_array, train_array, self_join)
    # A user's function gives float64 distances, as scikit-learn's pairwise_distances.
    dtype = np.dtype(np.float64) if resolved.function else out_dtype(query_array.dtype, train_array.dtype)
    query_array, train_array = _blocked(query_array, train_array, dtype, sparse)
    query_index = da.arange(query_array.shape[0], chunks=(query_array.chunks[0],), dtype=np.int64)
    train_index = da.arange(train_array.shape[0], chunks=(train_array.chunks[0],), dtype=np.int64)
    if resolved.function:
        kernel = partial(function_pairwise_chunk, function=distance_function(resolved), self_join=self_join)
    else:
        kernel = partial(
            sparse_pairwise_chunk if sparse else pairwise_chunk,
            metric=kernel_metric.name,
            p=kernel_metric.p,
            gemm=kernel_metric.gemm,
            self_join=self_join,
        )
    token = tokenize(query_array, train_array, kernel, self_join)
    logger.info(
        "pairwise: %d x %d matrix, %s, blocks of %d x %d",
        query_array.shape[0],
        train_array.shape[0],
        resolved.name,
        query_array.chunks[0][0],
        train_array.chunks[0][0],
    )
    return _outer(
        kernel,
        "ij",
        query_array,
        "if",
        train_array,
        "jf",
        query_index,
        "i",
        train_index,
        "j",
        concatenate=True,
        dtype=dtype,
        meta=np.empty((0, 0), dtype=dtype),
        name=f"bigdist-pairwise-{kernel_metric.name.split(':')[0]}-{token}",
    )


def euclidean_distances(queries: Any, train: Any = None, *, squared: bool = False) -> da.Array:
    """Euclidean (or squared Euclidean) distance matrix; ``pairwise_distances`` with that metric.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
    train : array-like of shape (n_train, n_features) or None (distances within ``queries``)
    squared : bool, default=False

    Returns
    -------
    dask array of shape (n_queries, n_train)
    """
    return pairwise_distances(queries, train, "sqeuclidean" if squared else "euclidean")


def cosine_similarity(queries: Any, train: Any = None, *, eps: float = 1e-8) -> da.Array:
    """Cosine-similarity matrix through one normalised GEMM per block.

    Rows are divided by ``max(norm, eps)``, so a zero row has similarity 0
    with everything (the ``eps`` guard of the usual one-matmul recipe);
    values are clipped to [-1, 1].

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
    train : array-like of shape (n_train, n_features) or None (similarities within ``queries``)
    eps : float, default=1e-8
        Smallest norm divided by; must be > 0.

    Returns
    -------
    dask array of shape (n_queries, n_train), float32 when both inputs are float32, else float64
    """
    eps = check_number("eps", eps, minimum=0, open_minimum=True)
    query_array, train_array, _ = _inputs(queries, train)
    dtype = out_dtype(query_array.dtype, train_array.dtype)
    query_array, train_array = _blocked(query_array, train_array, dtype)
    return _outer(
        partial(cosine_similarity_chunk, eps=eps),
        "ij",
        query_array,
        "if",
        train_array,
        "jf",
        concatenate=True,
        dtype=dtype,
        meta=np.empty((0, 0), dtype=dtype),
        name=f"bigdist-cosine-similarity-{tokenize(query_array, train_array, eps)}",
    )


def pairwise_distances_argmin_min(
    queries: Any, train: Any, metric: Any = "euclidean", *, split_every: int | None = None, **params: Any
) -> tuple[Any, Any]:
    """For each query row, the closest train row and its distance, without building the matrix.

    This is :func:`bigdist.knn` with ``k=1``: each tile is reduced as it is
    computed, and ties go to the lower index. In-memory queries (NumPy,
    lists, scipy.sparse) give NumPy results, as scikit-learn's function,
    whatever the train rows are (a dask or Zarr array too); lazy queries give
    lazy results.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
    train : array-like of shape (n_train, n_features)
    metric : str, any metric of :func:`pairwise_distances`
        For ``inner_product`` the row with the largest inner product, and that product.
    split_every : int, optional
        Fan-in of the reduction across train blocks (default from config).
    **params
        Parameters of the metric (``p`` for ``minkowski``).

    Returns
    -------
    argmin : ndarray or dask array of shape (n_queries,), int64
        As scikit-learn's ``pairwise_distances_argmin_min``: indices first.
    distances : ndarray or dask array of shape (n_queries,)
    """
    if train is None:
        raise ParameterError("pairwise_distances_argmin_min needs train rows; for neighbours within one set use knn")
    result = knn(queries, train, k=1, metric=metric, split_every=split_every, **params)
    argmin, distances = result.indices[:, 0], result.distances[:, 0]
    return compute(argmin, distances) if in_memory(queries) else (argmin, distances)


__all__ = [
    "block_shape",
    "cosine_similarity",
    "euclidean_distances",
    "pairwise_distances",
    "pairwise_distances_argmin_min",
]
