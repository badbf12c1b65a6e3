"""Exact radius neighbours of a query set within a train set, both out of core, with ragged results."""

from __future__ import annotations

import logging
import numbers
import operator
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed

from bigdist import config
from bigdist.errors import ParameterError
from bigdist.io import as_array, check_features, check_int, check_number, write_group
from bigdist.io.store import normalise_path, prepare_output
from bigdist.kernels.registry import ResolvedMetric, get_metric
from bigdist.planning import query_blocks
from bigdist.reductions import radius_pairs

logger = logging.getLogger(__name__)


def _object_rows(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Split a flat array into an object array of per-row arrays (scikit-learn's ragged format)."""
    out = np.empty(len(counts), dtype=object)
    out[:] = np.split(values, np.cumsum(counts)[:-1]) if len(counts) else []
    return out


def _block_objects(block: dict[str, Any], key: str) -> np.ndarray:
    return _object_rows(block[key], block["counts"])


@dataclass
class RadiusResult:
    """Lazy result of :func:`radius_neighbors`: one Delayed per query block.

    Attributes
    ----------
    blocks : list of Delayed
        Each computes a dict with ``counts`` (rows of the block,) int64,
        ``indices`` (nnz,) int64 global train rows and ``distances`` (nnz,).
    block_rows : tuple of int
        Query rows of each block.
    """

    blocks: list[Delayed]
    block_rows: tuple[int, ...]
    radius: float
    metric: str
    n_queries: int
    n_train: int
    dtype: np.dtype
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> da.Array:
        """Lazy neighbour count of each query, shape (n_queries,) int64."""
        parts = [
            da.from_delayed(dask.delayed(operator.getitem, pure=True)(block, "counts"), shape=(rows,), dtype=np.int64)
            for block, rows in zip(self.blocks, self.block_rows, strict=True)
        ]
        return da.concatenate(parts)

    def to_dask(self) -> tuple[da.Array, da.Array]:
        """Lazy (distances, indices), each a dask array of shape (n_queries,) of dtype object (one array per query)."""
        out = []
        for key in ("distances", "indices"):
            parts = [
                da.from_delayed(
                    dask.delayed(_block_objects, pure=True)(block, key),
                    shape=(rows,),
                    dtype=object,
                    meta=np.empty(0, dtype=object),
                )
                for block, rows in zip(self.blocks, self.block_rows, strict=True)
            ]
            out.append(da.concatenate(parts))
        return out[0], out[1]

    def compute(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices) as NumPy object arrays of shape (n_queries,), as scikit-learn returns them."""
        indptr, indices, distances = self.to_csr(**kwargs)
        counts = np.diff(indptr)
        return _object_rows(distances, counts), _object_rows(indices, counts)

    def to_csr(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr (n_queries + 1,) int64, indices (nnz,) int64, distances (nnz,)) in memory."""
        blocks = dask.compute(*self.blocks, **kwargs)
        counts = np.concatenate([block["counts"] for block in blocks])
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices = np.concatenate([block["indices"] for block in blocks]).astype(np.int64)
        distances = np.concatenate([block["distances"] for block in blocks]).astype(self.dtype)
        return indptr, indices, distances

    def to_zarr(self, path: str, *, overwrite: bool = False, attrs: dict[str, Any] | None = None) -> str:
        """Write the CSR arrays ``indptr``, ``indices`` and ``distances`` to a Zarr group.

        The pairs are computed once and held in the cluster's memory (each
        query's at most ``max_neighbors``) until their sizes are known, then
        written block by block; the group is marked complete only after its
        last block. Query ``i``'s neighbours are ``indices[indptr[i]:indptr[i + 1]]``.
        """
        prepare_output(normalise_path(path), overwrite, "result")
        blocks = dask.persist(*self.blocks)
        # Only a total per block comes to the client; each block's part of indptr is made in the cluster.
        sizes = dask.compute(*(dask.delayed(_block_size, pure=True)(block) for block in blocks))
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        indptr = [da.zeros(1, dtype=np.int64)] + [
            da.from_delayed(dask.delayed(_block_indptr, pure=True)(block, offset), shape=(rows,), dtype=np.int64)
            for block, offset, rows in zip(blocks, offsets[:-1], self.block_rows, strict=True)
        ]
        arrays: dict[str, Any] = {"indptr": da.concatenate(indptr)}
        for key, dtype in (("indices", np.int64), ("distances", self.dtype)):
            parts = [
                da.from_delayed(dask.delayed(operator.getitem, pure=True)(block, key), shape=(size,), dtype=dtype)
                for block, size in zip(blocks, sizes, strict=True)
            ]
            arrays[key] = da.concatenate(parts)
        return str(
            write_group(path, arrays, attrs={"radius_neighbors": self.params, **(attrs or {})}, overwrite=overwrite)
        )


def _block_size(block: dict[str, np.ndarray]) -> int:
    return int(block["counts"].sum())


def _block_indptr(block: dict[str, np.ndarray], offset: int) -> np.ndarray:
    """The block's entries of indptr after the leading 0: where each of its queries' pairs end."""
    return offset + np.cumsum(block["counts"], dtype=np.int64)


def _check_radius(radius: Any, metric: ResolvedMetric) -> float:
    if not metric.metric.similarity and isinstance(radius, numbers.Real) and radius == np.inf:
        # Every train row, as scikit-learn gives (within the bigdist.radius.max-neighbors cap).
        return np.inf
    value = check_number("radius", radius)
    if not metric.metric.similarity and value < 0:
        raise ParameterError(
            f"radius must be >= 0 for the distance metric {metric.name!r}, got radius={radius!r}; no pair is "
            f"closer than 0"
        )
    return value


def radius_neighbors(
    queries: Any,
    train: Any = None,
    radius: float = 1.0,
    metric: str = "euclidean",
    *,
    sort_results: bool = False,
    max_neighbors: int | None = None,
    split_every: int | None = None,
    **params: Any,
) -> RadiusResult:
    """Every train row within ``radius`` of each query row, exactly.

    Each task reduces one (query block, train block) tile to the pairs within
    the radius, deciding each on an exact float64 value, so the boundary
    (distance equal to the radius, included) is decided as a float64 brute
    force (SciPy's ``cdist``) decides it. For the GEMM family a float GEMM
    proposes candidates and each is re-checked in float64; the direct
    metrics compute every distance in float64 in a compiled loop. The
    per-block results are merged across train blocks by a tree (``split_every``).

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file.
    train : array-like of shape (n_train, n_features) or None
        None means the self-join within ``queries``, each row excluding itself.
    radius : float
        Distances <= radius are neighbours. For ``inner_product`` the
        neighbours are the rows whose inner product is >= radius.
    metric : str
        Any name of ``bigdist.kernels.registry.metric_names()``, as for
        :func:`bigdist.knn`: the GEMM family (``euclidean``/``l2``,
        ``sqeuclidean``, ``cosine``, ``correlation``, ``inner_product``/``dot``)
        and the direct metrics (``manhattan``/``cityblock``/``l1``,
        ``chebyshev``, ``minkowski``, ``canberra``, ``braycurtis``, ``chi2``,
        ``hamming``, ``jaccard``).
    sort_results : bool, default=False
        Each query's neighbours nearest first (ties by index); otherwise in
        increasing train index.
    max_neighbors : int, optional
        Cap on the neighbours of one query (default: the
        ``bigdist.radius.max-neighbors`` config). A query with more raises
        :class:`bigdist.errors.TooManyNeighborsError` naming the query, its
        count and the fix, so a dense region cannot exhaust memory.
    split_every : int, optional
        Fan-in of the merge across train blocks (default from config).
    **params
        Parameters of the metric: ``p`` (> 0) for ``minkowski``.

    Returns
    -------
    RadiusResult
        Lazy; ``.compute()`` gives (distances, indices) as object arrays of
        shape (n_queries,) like scikit-learn, ``.to_csr()`` the CSR arrays,
        ``.to_zarr(path)`` writes them, ``.counts`` is lazy.

    Raises
    ------
    ParameterError
        Unknown metric or metric parameter, a bad radius, ``max_neighbors`` or ``split_every``.
    InputValueError
        When computed: values the metric is not defined for (``chi2``: negative; ``jaccard``: not boolean).
    """
    resolved = get_metric(metric, **params)
    metric = resolved.name
    radius = _check_radius(radius, resolved)
    self_join = train is None
    train_array = as_array(queries if self_join else train, name="queries" if self_join else "train")
    query_array = train_array if self_join else as_array(queries, name="queries")
    check_features(query_array, train_array)
    if max_neighbors is None:
        max_neighbors = config.get("radius.max-neighbors")
    max_neighbors = check_int("max_neighbors", max_neighbors)
    if split_every is None:
        split_every = config.get("split-every")
    split_every = check_int("split_every", split_every, minimum=2)
    query_array = query_blocks(query_array)
    out_dtype = np.result_type(query_array.dtype, train_array.dtype)
    blocks = radius_pairs(
        query_array,
        train_array,
        radius=radius,
        metric=metric,
        exclude_self=self_join,
        split_every=split_every,
        max_neighbors=max_neighbors,
        sort_results=bool(sort_results),
        out_dtype=out_dtype,
        tile_query_rows=config.get("knn.tile-query-rows"),
        tile_train_rows=config.get("knn.tile-train-rows"),
        p=resolved.p,
    )
    logger.info(
        "radius_neighbors: %d queries x %d train rows, radius=%g, metric=%s, %d x %d blocks",
        query_array.shape[0],
        train_array.shape[0],
        radius,
        metric,
        query_array.numblocks[0],
        train_array.numblocks[0],
    )
    params = {
        "radius": radius,
        "metric": metric,
        **resolved.params,
        "self_join": self_join,
        "sort_results": bool(sort_results),
        "max_neighbors": max_neighbors,
        "split_every": split_every,
    }
    return RadiusResult(
        blocks=blocks,
        block_rows=tuple(int(rows) for rows in query_array.chunks[0]),
        radius=radius,
        metric=metric,
        n_queries=int(query_array.shape[0]),
        n_train=int(train_array.shape[0]),
        dtype=np.dtype(out_dtype),
        params=params,
    )


__all__ = ["RadiusResult", "radius_neighbors"]
