"""Exact k-nearest neighbours of a query set within a train set, both out of core."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from bigdist import config
from bigdist.errors import ParameterError
from bigdist.execution.jobs import Job
from bigdist.execution.knn import cast_distances, knn_job, write_knn
from bigdist.execution.waves import ProgressCallback
from bigdist.io import as_array, check_features, check_int
from bigdist.kernels.registry import get_metric
from bigdist.planning import query_blocks
from bigdist.reductions import knn_topk

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

    @cached_property
    def _lazy(self) -> tuple[da.Array, da.Array]:
        result = knn_topk(
            self.query_array,
            self.train_array,
            k=self.k,
            metric=self.metric,
            p=self.p,
            exclude_self=self.self_join,
            split_every=self.split_every,
            tile_query_rows=config.get("knn.tile-query-rows"),
            tile_train_rows=config.get("knn.tile-train-rows"),
        )
        out_dtype = np.result_type(self.query_array.dtype, self.train_array.dtype)
        distances = result["distance"].map_blocks(
            partial(cast_distances, dtype=out_dtype, metric=self.metric),
            dtype=out_dtype,
            meta=np.empty((0, 0), dtype=out_dtype),
            name=f"bigdist-knn-distances-{tokenize(result, out_dtype)}",
        )
        return distances, result["index"]

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
        return knn_job(self._wave_queries(), self.train_array, k=self.k, metric=self.metric, params=self.params)

    def _wave_queries(self) -> da.Array:
        # Regular row blocks, each one Zarr chunk of the output (as the single-graph write rechunked them).
        return self.query_array.rechunk({0: max(self.query_array.chunks[0])})

    def compute(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Compute distances and indices in one pass on the ambient scheduler."""
        return dask.compute(self.distances, self.indices, **kwargs)

    def to_zarr(
        self,
        path: str,
        *,
        overwrite: bool = False,
        attrs: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
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

        Returns
        -------
        str, the path
        """
        return write_knn(
            path,
            self._wave_queries(),
            self.train_array,
            k=self.k,
            metric=self.metric,
            p=self.p,
            self_join=self.self_join,
            split_every=self.split_every,
            attrs={"knn": self.params, **(attrs or {})},
            overwrite=overwrite,
            progress=progress,
        )


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

    ``params`` are the metric's parameters (``p`` for ``minkowski``), checked too.
    """
    return get_metric(metric, **params).name


def knn(
    queries: Any,
    train: Any = None,
    k: int = 10,
    metric: str = "euclidean",
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
        NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file.
    train : array-like of shape (n_train, n_features) or None
        The reference set. None means the self-join: neighbours of each row of
        ``queries`` within ``queries``, the row itself excluded by index (an
        exact duplicate is still found, at distance 0).
    k : int
        Number of neighbours, 1 <= k <= n_train (n_train - 1 for the self-join).
    metric : str
        Any name of ``bigdist.kernels.registry.metric_names()``. The GEMM
        family (``euclidean``/``l2``, ``sqeuclidean``, ``cosine``,
        ``correlation``, ``inner_product``/``dot``) is scored by a GEMM and
        re-checked exactly; the direct metrics (``manhattan``/``cityblock``/``l1``,
        ``chebyshev``, ``minkowski``, ``canberra``, ``braycurtis``, ``chi2``,
        ``hamming``, ``jaccard``) by a compiled float64 loop. ``cosine`` is
        1 - cosine similarity (a zero row has similarity 0; ``correlation``
        is the cosine of mean-centred rows); ``inner_product`` ranks by
        largest inner product and reports it.
    split_every : int, optional
        Fan-in of the reduction across train blocks; default from the
        ``bigdist.split-every`` config.
    **params
        Parameters of the metric: ``p`` (> 0) for ``minkowski``.

    Returns
    -------
    KNNResult
        Lazy ``distances`` and ``indices``, each of shape (n_queries, k).
    """
    resolved = get_metric(metric, **params)
    metric = resolved.name
    self_join = train is None
    train_array = as_array(queries if self_join else train, name="queries" if self_join else "train")
    query_array = train_array if self_join else as_array(queries, name="queries")
    check_features(query_array, train_array)
    k = _check_k(k, train_array.shape[0], self_join)
    if split_every is None:
        split_every = config.get("split-every")
    split_every = check_int("split_every", split_every, minimum=2)

    query_array = query_blocks(query_array)
    params = {"k": k, "metric": metric, **resolved.params, "self_join": self_join, "split_every": split_every}
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
        p=resolved.p,
        split_every=split_every,
    )


__all__ = ["KNNResult", "check_metric", "knn"]
