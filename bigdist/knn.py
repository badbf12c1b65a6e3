"""Exact k-nearest neighbours of a query set within a train set, both out of core."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from bigdist import config, display
from bigdist.errors import ParameterError, PlanError
from bigdist.execution.jobs import Job
from bigdist.execution.knn import cast_distances, knn_job, write_knn
from bigdist.execution.waves import ProgressCallback
from bigdist.io import check_int, write_group
from bigdist.kernels.dense import function_knn_chunk
from bigdist.kernels.registry import get_metric
from bigdist.kernels.sparse import sparse_knn_chunk
from bigdist.metric_setup import distance_function, load_inputs, metric_arrays
from bigdist.planning import even_blocks, query_blocks, split_rows
from bigdist.precomputed import precomputed_topk
from bigdist.reductions import knn_topk
from bigdist.resources import compute

logger = logging.getLogger(__name__)


@dataclass
class KNNResult:
    """Result of :func:`knn`: lazy arrays for what fits in one graph, waves for writing.

    Attributes
    ----------
    distances : dask array of shape (n_queries, k)
        Distances to the neighbours, nearest first; for ``inner_product`` the
        inner products, largest first. float32 when both inputs are float32.
        Built on first use as one graph of (query blocks x train blocks)
        tiles: fine while that is small; :meth:`to_zarr` never builds it.
    indices : dask array of shape (n_queries, k), int64
        Global rows of the neighbours in the train set.
    """

    k: int
    metric: str
    n_queries: int
    n_train: int
    n_features: int
    self_join: bool
    params: dict[str, Any] = field(default_factory=dict)
    query_array: da.Array | None = field(default=None, repr=False)
    train_array: da.Array | None = field(default=None, repr=False)
    p: float = 2.0
    split_every: int = 8
    # The metric the tiles compute: seuclidean and mahalanobis are euclidean on transformed rows.
    kernel_metric: str | None = None
    # A tile kernel in place of knn_chunk: sparse rows, or a user's metric function.
    chunk: Any = field(default=None, repr=False)
    out_dtype: np.dtype | None = None
    sparse: bool = False
    # metric="precomputed": the lazy (distances, indices), read from the given matrix.
    precomputed: tuple[da.Array, da.Array] | None = field(default=None, repr=False)

    @cached_property
    def _lazy(self) -> tuple[da.Array, da.Array]:
        if self.precomputed is not None:
            return self.precomputed
        result = knn_topk(
            self.query_array,
            self.train_array,
            k=self.k,
            metric=self._kernel_metric,
            p=self.p,
            exclude_self=self.self_join,
            split_every=self.split_every,
            tile_query_rows=config.get("knn.tile-query-rows"),
            tile_train_rows=config.get("knn.tile-train-rows"),
            chunk=self.chunk,
        )
        out_dtype = self._out_dtype
        distances = result["distance"].map_blocks(
            partial(cast_distances, dtype=out_dtype, metric=self.metric),
            dtype=out_dtype,
            meta=np.empty((0, 0), dtype=out_dtype),
            name=f"bigdist-knn-distances-{tokenize(result, out_dtype)}",
        )
        return distances, result["index"]

    @property
    def _kernel_metric(self) -> str:
        return self.kernel_metric or self.metric

    @property
    def _out_dtype(self) -> np.dtype:
        if self.out_dtype is not None:
            return np.dtype(self.out_dtype)
        return np.result_type(self.query_array.dtype, self.train_array.dtype)

    @property
    def _waves(self) -> bool:
        # Panel tasks read dense rows; sparse blocks and precomputed matrices are written from the lazy graph.
        return self.precomputed is None and not self.sparse

    @property
    def distances(self) -> da.Array:
        return self._lazy[0]

    @property
    def indices(self) -> da.Array:
        return self._lazy[1]

    @property
    def flops(self) -> float:
        """Floating-point operations of the distance GEMMs (2·m·n·d)."""
        return 2.0 * self.n_queries * self.n_train * self.n_features

    @property
    def job(self) -> Job:
        """The :class:`bigdist.execution.jobs.Job` that :meth:`to_zarr` runs (what ``bd.plan`` describes)."""
        if not self._waves:
            what = "sparse rows" if self.sparse else "precomputed distances"
            raise PlanError(f"a kNN of {what} is written from one graph, not in waves, so it has no job to describe")
        return knn_job(
            self._wave_queries(),
            self.train_array,
            k=self.k,
            metric=self._kernel_metric,
            params=self.params,
            out_dtype=self._out_dtype,
        )

    def _wave_queries(self) -> da.Array:
        # Regular row blocks, each one Zarr chunk of the output (as the single-graph write rechunked them).
        size, n_rows = max(self.query_array.chunks[0]), self.query_array.shape[0]
        return split_rows(self.query_array, (size,) * (n_rows // size) + ((n_rows % size,) if n_rows % size else ()))

    def compute(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Compute distances and indices in one pass on the ambient scheduler."""
        return compute(self.distances, self.indices, **kwargs)

    def to_zarr(
        self,
        path: str,
        *,
        overwrite: bool = False,
        attrs: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> str:
        """Write ``distances`` and ``indices`` to a Zarr group, in bounded waves of fused tasks.

        A window of (query block, train panel) tasks is in flight at a time
        on the ambient scheduler (``bigdist.execution``); each task reads its
        train rows itself. Each finished query block is written and marked;
        the group is marked complete after the last one, and an unfinished
        group of the same run is resumed (its written blocks kept).

        Parameters
        ----------
        path : str, local path or fsspec URL
        overwrite : bool
            Replace a finished output (or another run's unfinished one).
        attrs : dict, optional
            More attributes of the run, e.g. the CLI's config.
        progress : callable, optional
            ``progress(done, total, elapsed_seconds)`` after every written query block.
        storage_options : dict, optional
            fsspec options of the output URL's filesystem, as for :func:`bigdist.io.write_group`.

        Returns
        -------
        str, the path
        """
        # n_train: the column count of the graph a reader builds (bigdist.read_knn_graph).
        attrs = {"knn": {**self.params, "n_train": self.n_train}, **(attrs or {})}
        if not self._waves:
            logger.info("knn to %s: %s rows are written from one graph, not in waves", path,
                        "sparse" if self.sparse else "precomputed")  # fmt: skip
            return write_group(
                path,
                {"distances": self.distances, "indices": self.indices},
                attrs=attrs,
                overwrite=overwrite,
                storage_options=storage_options,
            )
        return write_knn(
            path,
            self._wave_queries(),
            self.train_array,
            k=self.k,
            metric=self._kernel_metric,
            p=self.p,
            self_join=self.self_join,
            split_every=self.split_every,
            attrs=attrs,
            overwrite=overwrite,
            progress=progress,
            chunk=self.chunk,
            out_dtype=self._out_dtype,
            storage_options=storage_options,
        )

    def _rows(self) -> list[tuple[str, Any]]:
        shown = {"k", "metric", "self_join", "split_every"}
        params = ", ".join(f"{key}={value!r}" for key, value in self.params.items() if key not in shown)
        queries = "the train rows, each itself excluded (self-join)" if self.self_join else f"{self.n_queries:,}"
        return [
            ("queries", queries),
            ("train", f"{self.n_train:,} rows x {self.n_features:,} features"),
            ("k", self.k),
            ("metric", self.metric + (f" ({params})" if params else "")),
            ("distances", display.array_summary(self.distances)),
            ("indices", display.array_summary(self.indices)),
            ("work", f"{self.flops / 1e9:,.3g} GFLOP of distances"),
        ]

    def __repr__(self) -> str:
        return display.text(
            "KNNResult",
            [("n_queries", f"{self.n_queries:,}"), ("n_train", f"{self.n_train:,}"), ("n_features", self.n_features),
             ("k", self.k), ("metric", repr(self.metric)), ("self_join", self.self_join),
             ("distances", display.array_summary(self.distances))],
        )  # fmt: skip

    def _repr_html_(self) -> str:
        return display.html_table("bigdist KNNResult", self._rows())


def _check_k(k: Any, n_train: int, self_join: bool) -> int:
    k = check_int("k", k)
    available = n_train - 1 if self_join else n_train
    if k > available:
        where = (
            f"the self-join of {n_train} rows (each row's own match is excluded)"
            if self_join
            else f"a train set of {n_train} rows"
        )
        raise ParameterError(f"k={k} exceeds the {available} neighbours available in {where}; use k <= {available}")
    return k


def check_metric(metric: Any, **params: Any) -> str:
    """The canonical name of a metric or alias from the registry; ParameterError lists the valid ones.

    ``params`` are the metric's parameters (``p`` and ``w`` for ``minkowski``, ``V``, ``VI``), checked too.
    A callable or DistanceMetric gets a descriptive name (``callable:<name>``).
    """
    return get_metric(metric, **params).name


def _precomputed_knn(distances: Any, train: Any, k: int, split_every: int) -> KNNResult:
    values, indices, k, self_join, matrix = precomputed_topk(distances, train, k, split_every, _check_k)
    return KNNResult(
        k=k,
        metric="precomputed",
        n_queries=matrix.shape[0],
        n_train=matrix.shape[1],
        n_features=0,  # no GEMM: the distances are read, not computed
        self_join=self_join,
        params={"k": k, "metric": "precomputed", "self_join": self_join, "split_every": split_every},
        split_every=split_every,
        precomputed=(values, indices),
    )


def knn(
    queries: Any,
    train: Any = None,
    k: int = 10,
    metric: Any = "euclidean",
    *,
    split_every: int | None = None,
    **params: Any,
) -> KNNResult:
    """Exact k nearest neighbours of every query row among the train rows.

    Nothing of size (n_queries, n_train) is ever built: each task reduces one
    (query block, train block) tile to its top-k, and the partial results are
    merged by a tree reduction. float32 inputs are scored with a float32 GEMM
    and the candidates re-checked in float64, so neighbours and distances equal
    a float64 brute force (ties go to the lower index).

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        NumPy or dask array, Zarr array, or a path/URL of a Zarr array or
        ``.npy`` file; or sparse (a scipy.sparse matrix, or a dask array of
        sparse blocks), read in CSR row blocks and never densified whole:
        ``euclidean``, ``sqeuclidean``, ``cosine``, ``inner_product`` by a
        sparse product and an exact re-check, ``manhattan`` exactly pair by
        pair, the other metrics on bounded dense tiles. With
        ``metric="precomputed"``, the (n_queries, n_train) matrix of
        distances (>= 0), read in row blocks and never gathered.
    train : array-like of shape (n_train, n_features) or None
        The reference set. None means the self-join: neighbours of each row of
        ``queries`` within ``queries``, the row itself excluded by index (an
        exact duplicate is still found, at distance 0). With
        ``metric="precomputed"``: None for the self-join of a square matrix
        (the diagonal excluded by index), else the train rows' own
        (n_train, n_train) matrix, as an estimator fitted on it holds (only
        its number of rows is read, to check the columns of ``queries``).
    k : int
        Number of neighbours, 1 <= k <= n_train (n_train - 1 for the self-join).
    metric : str, callable or sklearn.metrics.DistanceMetric
        Any name of ``bigdist.kernels.registry.metric_names()``. The GEMM
        family (``euclidean``/``l2``, ``sqeuclidean``, ``cosine``,
        ``correlation``, ``inner_product``/``dot``) is scored by a GEMM and
        re-checked exactly; the direct metrics (``manhattan``/``cityblock``/``l1``,
        ``chebyshev``, ``minkowski``, ``canberra``, ``braycurtis``, ``chi2``,
        ``hamming``, ``haversine``, ``nan_euclidean`` and the boolean
        ``jaccard``, ``dice``, ``rogerstanimoto``, ``russellrao``,
        ``sokalsneath``, ``yule``) by a compiled float64 loop;
        ``seuclidean``, ``mahalanobis`` and weighted ``minkowski`` as
        Euclidean/Minkowski distances of transformed float64 rows. ``cosine`` is
        1 - cosine similarity (a zero row has similarity 0; ``correlation``
        is the cosine of mean-centred rows); ``inner_product`` ranks by
        largest inner product and reports it. A callable ``f(u, v) -> float``
        (compiled with numba when possible) or a ``DistanceMetric`` object is
        evaluated on dense sub-tiles, float64 distances. ``"precomputed"``:
        ``queries`` holds the distances themselves.
    split_every : int, optional
        Fan-in of the reduction across train blocks; default from the
        ``bigdist.split-every`` config.
    **params
        Parameters of the metric, as scikit-learn's ``metric_params``: ``p``
        (> 0) and ``w`` (weights >= 0) for ``minkowski``, ``V`` (variances)
        for ``seuclidean``, ``VI`` (inverse covariance) for ``mahalanobis``
        (estimated from queries and train stacked when not given, as
        scikit-learn does), keyword arguments of a callable.

    Returns
    -------
    KNNResult
        Lazy ``distances`` and ``indices``, each of shape (n_queries, k).
    """
    resolved = get_metric(metric, **params)
    metric = resolved.name
    if split_every is None:
        split_every = config.get("split-every")
    split_every = check_int("split_every", split_every, minimum=2)
    if resolved.precomputed:
        return _precomputed_knn(queries, train, k, split_every)
    query_array, train_array, self_join, sparse = load_inputs(resolved, queries, train)
    k = _check_k(k, train_array.shape[0], self_join)
    kernel_metric, query_array, train_array = metric_arrays(resolved, query_array, train_array, self_join)

    chunk = None
    if sparse:
        # Sparse blocks keep their stored-value budget; only their row count is capped.
        query_array = query_array.rechunk({0: even_blocks(query_array.shape[0], config.get("knn.query-block-rows"))})
        chunk = partial(sparse_knn_chunk, k=k, metric=kernel_metric.name, p=kernel_metric.p, exclude_self=self_join,
                        tile_query_rows=config.get("knn.tile-query-rows"),
                        tile_train_rows=config.get("knn.tile-train-rows"))  # fmt: skip
    else:
        query_array = query_blocks(query_array)
    if resolved.function:
        chunk = partial(function_knn_chunk, k=k, function=distance_function(resolved), exclude_self=self_join)
    # A user's function gives float64 distances, as scikit-learn reports them.
    out_dtype = np.dtype(np.float64) if resolved.function else np.result_type(query_array.dtype, train_array.dtype)
    params = {"k": k, "metric": metric, **resolved.describe(), "self_join": self_join, "split_every": split_every}
    logger.info(
        "knn: %d queries x %d train rows x %d features, k=%d, metric=%s, %d x %d blocks",
        query_array.shape[0],
        train_array.shape[0],
        train_array.shape[1],
        k,
        metric,
        query_array.numblocks[0],
        train_array.numblocks[0],
    )
    return KNNResult(
        k=k,
        metric=metric,
        n_queries=query_array.shape[0],
        n_train=train_array.shape[0],
        n_features=train_array.shape[1],
        self_join=self_join,
        params=params,
        query_array=query_array,
        train_array=train_array,
        p=kernel_metric.p,
        split_every=split_every,
        kernel_metric=kernel_metric.name,
        chunk=chunk,
        out_dtype=out_dtype,
        sparse=sparse,
    )


__all__ = ["KNNResult", "check_metric", "knn"]
