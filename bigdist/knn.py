"""Exact k-nearest neighbours of a query set within a train set, both out of core."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from bigdist import config, display
from bigdist.errors import ParameterError, ValueRangeError
from bigdist.io import as_array, check_features, check_int, write_group
from bigdist.kernels.registry import get_metric
from bigdist.planning import query_blocks
from bigdist.reductions import knn_topk

logger = logging.getLogger(__name__)


@dataclass
class KNNResult:
    """Lazy result of :func:`knn`.

    Attributes
    ----------
    distances : dask array of shape (n_queries, k)
        Distances to the neighbours, nearest first; for ``inner_product`` the
        inner products, largest first. float32 when both inputs are float32.
    indices : dask array of shape (n_queries, k), int64
        Global rows of the neighbours in the train set.
    """

    distances: da.Array
    indices: da.Array
    k: int
    metric: str
    n_queries: int
    n_train: int
    n_features: int
    self_join: bool
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def flops(self) -> float:
        """Floating-point operations of the distance GEMMs (2·m·n·d)."""
        return 2.0 * self.n_queries * self.n_train * self.n_features

    def compute(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Compute distances and indices in one pass on the ambient scheduler."""
        return dask.compute(self.distances, self.indices, **kwargs)

    def to_zarr(
        self, path: str, *, overwrite: bool = False, attrs: dict[str, Any] | None = None, compute: bool = True
    ) -> Any:
        """Write ``distances`` and ``indices`` to a Zarr group, block by block.

        The group is marked complete only after its last block is written.
        With ``compute=False`` a dask object is returned that does the writing.
        """
        return write_group(
            path,
            {"distances": self.distances, "indices": self.indices},
            attrs={"knn": self.params, **(attrs or {})},
            overwrite=overwrite,
            compute=compute,
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

    ``params`` are the metric's parameters (``p`` for ``minkowski``), checked too.
    """
    return get_metric(metric, **params).name


def _cast_distances(distances: np.ndarray, dtype: np.dtype, metric: str) -> np.ndarray:
    """Distances in the output dtype; ValueRangeError rather than infinity when float32 cannot hold them."""
    with np.errstate(over="ignore"):
        out = distances.astype(dtype)
    if out.dtype != distances.dtype and not np.isfinite(out).all():
        overflow = np.isfinite(distances) & ~np.isfinite(out)
        if overflow.any():
            what = "inner products" if metric == "inner_product" else "distances"
            other = " or metric='euclidean' (square roots of these)" if metric == "sqeuclidean" else ""
            raise ValueRangeError(
                f"kNN with metric={metric!r}: {what} up to {np.abs(distances[overflow]).max():.3g} do not fit the "
                f"float32 output of float32 inputs (largest {np.finfo(np.float32).max:.3g}); pass float64 inputs "
                f"(X.astype('float64')){other}"
            )
    return out


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
    result = knn_topk(
        query_array,
        train_array,
        k=k,
        metric=metric,
        p=resolved.p,
        exclude_self=self_join,
        split_every=split_every,
        tile_query_rows=config.get("knn.tile-query-rows"),
        tile_train_rows=config.get("knn.tile-train-rows"),
    )
    out_dtype = np.result_type(query_array.dtype, train_array.dtype)
    distances = result["distance"].map_blocks(
        partial(_cast_distances, dtype=out_dtype, metric=metric),
        dtype=out_dtype,
        meta=np.empty((0, 0), dtype=out_dtype),
        name=f"bigdist-knn-distances-{tokenize(result, out_dtype)}",
    )
    indices = result["index"]
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
        distances=distances,
        indices=indices,
        k=k,
        metric=metric,
        n_queries=query_array.shape[0],
        n_train=train_array.shape[0],
        n_features=train_array.shape[1],
        self_join=self_join,
        params=params,
    )


__all__ = ["KNNResult", "check_metric", "knn"]
