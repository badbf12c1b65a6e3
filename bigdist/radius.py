"""Exact radius neighbours of a query set within a train set, both out of core, with ragged results."""

from __future__ import annotations

import logging
import numbers
import operator
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed

from bigdist import config, display
from bigdist.errors import ParameterError, PlanError
from bigdist.execution.jobs import Job
from bigdist.execution.radius import radius_job, write_radius
from bigdist.execution.waves import ProgressCallback
from bigdist.io import check_int, check_number, write_group
from bigdist.io.store import normalise_path, prepare_output
from bigdist.kernels.dense import function_radius_chunk
from bigdist.kernels.radius import radius_chunk
from bigdist.kernels.registry import ResolvedMetric, get_metric
from bigdist.kernels.sparse import sparse_radius_chunk
from bigdist.metric_setup import distance_function, load_inputs, metric_arrays
from bigdist.planning import even_blocks, query_blocks
from bigdist.precomputed import precomputed_pairs
from bigdist.reductions import radius_pairs
from bigdist.resources import compute, persist

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
    """Lazy result of :func:`radius_neighbors`: one Delayed per query block while it fits one graph, waves to write.

    Attributes
    ----------
    blocks : list of Delayed
        Built on first use as one graph of (query blocks x train blocks) tiles,
        each block computing a dict with ``counts`` (rows of the block,) int64,
        ``indices`` (nnz,) int64 global train rows and ``distances`` (nnz,);
        :meth:`to_zarr` never builds it (but for sparse rows and precomputed distances).
    block_rows : tuple of int
        Query rows of each block.
    """

    block_rows: tuple[int, ...]
    radius: float
    metric: str
    n_queries: int
    n_train: int
    dtype: np.dtype
    params: dict[str, Any] = field(default_factory=dict)
    query_array: da.Array | None = field(default=None, repr=False)
    train_array: da.Array | None = field(default=None, repr=False)
    # Keyword arguments of bigdist.reductions.radius_pairs (the single graph) but the two inputs.
    pairs_options: dict[str, Any] = field(default_factory=dict, repr=False)
    sparse: bool = False
    # metric="precomputed": the per-block Delayeds, read from the given matrix.
    precomputed_blocks: list[Delayed] | None = field(default=None, repr=False)

    @cached_property
    def blocks(self) -> list[Delayed]:
        if self.precomputed_blocks is not None:
            return self.precomputed_blocks
        return radius_pairs(self.query_array, self.train_array, **self.pairs_options)

    @property
    def _waves(self) -> bool:
        # Panel tasks read dense rows; sparse blocks and precomputed matrices are written from the single graph.
        return self.precomputed_blocks is None and not self.sparse

    @property
    def job(self) -> Job:
        """The :class:`bigdist.execution.jobs.Job` that :meth:`to_zarr` runs (what ``bd.plan`` describes)."""
        if not self._waves:
            what = "sparse rows" if self.sparse else "precomputed distances"
            raise PlanError(
                f"radius neighbours of {what} are written from one graph, not in waves, so they have no job to describe"
            )
        return radius_job(self.query_array, self.train_array, metric=self.pairs_options["metric"], params=self.params)

    def _tile_kernel(self) -> Any:
        options = self.pairs_options
        if options["tile_kernel"] is not None:
            return options["tile_kernel"]
        return partial(
            radius_chunk,
            radius=options["radius"],
            metric=options["metric"],
            p=options["p"],
            exclude_self=options["exclude_self"],
            max_neighbors=options["max_neighbors"],
            tile_query_rows=options["tile_query_rows"],
            tile_train_rows=options["tile_train_rows"],
        )

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
        blocks = compute(*self.blocks, **kwargs)
        counts = np.concatenate([block["counts"] for block in blocks])
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices = np.concatenate([block["indices"] for block in blocks]).astype(np.int64)
        distances = np.concatenate([block["distances"] for block in blocks]).astype(self.dtype)
        return indptr, indices, distances

    def to_zarr(
        self,
        path: str,
        *,
        overwrite: bool = False,
        attrs: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> str:
        """Write the CSR arrays ``indptr``, ``indices`` and ``distances`` to a Zarr group, in bounded waves.

        A window of (query block, train panel) tasks is in flight at a time on
        the ambient scheduler (``bigdist.execution.radius``); each task reads
        its train rows itself. Each query block's pairs are staged inside the
        group as soon as they are found, then concatenated into the CSR
        arrays chunk by chunk; the group is marked complete after the last
        chunk, and an unfinished group of the same run is resumed (staged
        blocks and written chunks kept). Query ``i``'s neighbours are
        ``indices[indptr[i]:indptr[i + 1]]``. Sparse rows and precomputed
        distances are written from the single graph instead.

        Parameters
        ----------
        path : str, local path or fsspec URL
        overwrite : bool
            Replace a finished output (or another run's unfinished one).
        attrs : dict, optional
            More attributes of the run, e.g. the CLI's config.
        progress : callable, optional
            ``progress(done, total, elapsed_seconds)`` after every staged query block.
        storage_options : dict, optional
            fsspec options of the output URL's filesystem, as for :func:`bigdist.io.write_group`.

        Returns
        -------
        str, the path
        """
        attrs = {"radius_neighbors": self.params, **(attrs or {})}
        if not self._waves:
            logger.info("radius neighbours to %s: %s rows are written from one graph, not in waves", path,
                        "sparse" if self.sparse else "precomputed")  # fmt: skip
            return self._write_single_graph(path, attrs=attrs, overwrite=overwrite, storage_options=storage_options)
        options = self.pairs_options
        return write_radius(
            path,
            self.query_array,
            self.train_array,
            kernel=self._tile_kernel(),
            metric=options["metric"],
            radius=options["radius"],
            p=options["p"],
            self_join=options["exclude_self"],
            max_neighbors=options["max_neighbors"],
            sort_results=options["sort_results"],
            out_dtype=self.dtype,
            split_every=options["split_every"],
            attrs=attrs,
            overwrite=overwrite,
            progress=progress,
            storage_options=storage_options,
        )

    def _write_single_graph(
        self, path: str, *, attrs: dict[str, Any], overwrite: bool, storage_options: dict[str, Any] | None = None
    ) -> str:
        """The pairs computed once and held in the cluster's memory until their sizes are known, then written."""
        prepare_output(normalise_path(path), overwrite, "result", storage_options=storage_options)
        blocks = persist(*self.blocks)
        # Only a total per block comes to the client; each block's part of indptr is made in the cluster.
        sizes = compute(*(dask.delayed(_block_size, pure=True)(block) for block in blocks))
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
        return str(write_group(path, arrays, attrs=attrs, overwrite=overwrite, storage_options=storage_options))

    def _rows(self) -> list[tuple[str, Any]]:
        return [
            ("queries", "the train rows (self-join)" if self.params.get("self_join") else f"{self.n_queries:,}"),
            ("train", f"{self.n_train:,} rows"),
            ("radius", f"{self.radius:g}"),
            ("metric", self.metric),
            ("pairs", f"lazy: {len(self.block_rows):,} query blocks of {self.dtype} distances and int64 indices"),
        ]

    def __repr__(self) -> str:
        return display.text(
            "RadiusResult",
            [("n_queries", f"{self.n_queries:,}"), ("n_train", f"{self.n_train:,}"), ("radius", f"{self.radius:g}"),
             ("metric", repr(self.metric)), ("blocks", len(self.block_rows)), ("lazy", True)],
        )  # fmt: skip

    def _repr_html_(self) -> str:
        return display.html_table("bigdist RadiusResult", self._rows())


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


def _precomputed_radius(
    distances: Any, train: Any, radius: float, sort_results: bool, max_neighbors: int | None
) -> RadiusResult:
    if max_neighbors is None:
        max_neighbors = config.get("radius.max-neighbors")
    blocks, matrix, self_join = precomputed_pairs(
        distances, train, radius=radius, max_neighbors=max_neighbors, sort_results=bool(sort_results)
    )
    params = {"radius": radius, "metric": "precomputed", "self_join": self_join, "sort_results": bool(sort_results),
              "max_neighbors": max_neighbors}  # fmt: skip
    return RadiusResult(
        precomputed_blocks=blocks,
        block_rows=tuple(int(rows) for rows in matrix.chunks[0]),
        radius=radius,
        metric="precomputed",
        n_queries=int(matrix.shape[0]),
        n_train=int(matrix.shape[1]),
        dtype=np.dtype(matrix.dtype),
        params=params,
    )


def radius_neighbors(
    queries: Any,
    train: Any = None,
    radius: float = 1.0,
    metric: Any = "euclidean",
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
        NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file;
        or sparse (scipy.sparse, dask arrays of sparse blocks), as for :func:`bigdist.knn`.
        With ``metric="precomputed"`` the (n_queries, n_train) distance matrix.
    train : array-like of shape (n_train, n_features) or None
        None means the self-join within ``queries``, each row excluding itself.
        With ``metric="precomputed"``: None for a square matrix's self-join,
        else the train rows' own square matrix (only its row count is read), as for :func:`bigdist.knn`.
    radius : float
        Distances <= radius are neighbours. For ``inner_product`` the
        neighbours are the rows whose inner product is >= radius.
    metric : str, callable or sklearn.metrics.DistanceMetric
        Any metric of :func:`bigdist.knn`: the GEMM family (``euclidean``/``l2``,
        ``sqeuclidean``, ``cosine``, ``correlation``, ``inner_product``/``dot``),
        the direct metrics (``manhattan``/``cityblock``/``l1``,
        ``chebyshev``, ``minkowski``, ``canberra``, ``braycurtis``, ``chi2``,
        ``hamming``, ``haversine``, ``nan_euclidean``, ``jaccard``, ``dice``,
        ``rogerstanimoto``, ``russellrao``, ``sokalsneath``, ``yule``), the
        metrics of transformed rows (``seuclidean``, ``mahalanobis``, weighted
        ``minkowski``: inclusion decided on the transformed rows' float64
        distance), a callable or a DistanceMetric.
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
        Parameters of the metric, as for :func:`bigdist.knn` (``p``, ``w``, ``V``, ``VI``, a callable's keywords).

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
        When computed: values the metric is not defined for (``chi2``: negative).
    """
    resolved = get_metric(metric, **params)
    metric = resolved.name
    radius = _check_radius(radius, resolved)
    if resolved.precomputed:
        return _precomputed_radius(queries, train, radius, sort_results, max_neighbors)
    query_array, train_array, self_join, sparse = load_inputs(resolved, queries, train)
    kernel_metric, query_array, train_array = metric_arrays(resolved, query_array, train_array, self_join)
    if max_neighbors is None:
        max_neighbors = config.get("radius.max-neighbors")
    max_neighbors = check_int("max_neighbors", max_neighbors)
    if split_every is None:
        split_every = config.get("split-every")
    split_every = check_int("split_every", split_every, minimum=2)
    tiles = {"tile_query_rows": config.get("knn.tile-query-rows"), "tile_train_rows": config.get("knn.tile-train-rows")}
    # A user's function gives float64 distances, as scikit-learn reports them.
    out_dtype = np.float64 if resolved.function else np.result_type(query_array.dtype, train_array.dtype)
    tile_kernel = None
    if sparse:
        # Sparse blocks keep their stored-value budget; only their row count is capped.
        query_array = query_array.rechunk({0: even_blocks(query_array.shape[0], config.get("knn.query-block-rows"))})
        tile_kernel = partial(sparse_radius_chunk, radius=radius, metric=kernel_metric.name, p=kernel_metric.p,
                              exclude_self=self_join, max_neighbors=max_neighbors, **tiles)  # fmt: skip
    else:
        query_array = query_blocks(query_array)
    if resolved.function:
        tile_kernel = partial(function_radius_chunk, radius=radius, function=distance_function(resolved),
                              exclude_self=self_join, max_neighbors=max_neighbors)  # fmt: skip
    pairs_options = {
        "radius": radius,
        "metric": kernel_metric.name,
        "exclude_self": self_join,
        "split_every": split_every,
        "max_neighbors": max_neighbors,
        "sort_results": bool(sort_results),
        "out_dtype": out_dtype,
        **tiles,
        "p": kernel_metric.p,
        "tile_kernel": tile_kernel,
    }
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
        **resolved.describe(),
        "self_join": self_join,
        "sort_results": bool(sort_results),
        "max_neighbors": max_neighbors,
        "split_every": split_every,
    }
    return RadiusResult(
        block_rows=tuple(int(rows) for rows in query_array.chunks[0]),
        radius=radius,
        metric=metric,
        n_queries=int(query_array.shape[0]),
        n_train=int(train_array.shape[0]),
        dtype=np.dtype(out_dtype),
        params=params,
        query_array=query_array,
        train_array=train_array,
        pairs_options=pairs_options,
        sparse=bool(sparse),
    )


__all__ = ["RadiusResult", "radius_neighbors"]
