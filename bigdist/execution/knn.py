"""kNN (and its self-join) written to Zarr as waves of fused tasks over train panels.

One task scores a query block against a panel of consecutive train blocks,
reading the rows itself (:mod:`bigdist.execution.sources`), one train block
at a time through the tile kernel ``bigdist.kernels.knn.knn_chunk``, and
folds each tile into the panel's top-k. The panels of a query block are
merged (the same selection by (key, index) as the single-graph reduction,
so the result does not depend on how they are grouped) and the block is
written to ``distances`` and ``indices`` and marked done.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import numpy as np
from dask.base import tokenize

from bigdist import config
from bigdist.blas import limited_blas
from bigdist.errors import ValueRangeError
from bigdist.execution.jobs import Job, OutputArray
from bigdist.execution.panels import panel_job, panel_summary, run_panels
from bigdist.execution.sources import InputRows, rows_of
from bigdist.execution.waves import ProgressCallback
from bigdist.io.store import (
    PROGRESS_GROUP,
    WRITE_CONFIG,
    StorageOptions,
    mark_complete,
    normalise_path,
    open_output,
    store_block,
)
from bigdist.kernels.bounds import new_run
from bigdist.kernels.knn import knn_agg, knn_chunk, knn_combine
from bigdist.kernels.registry import get_metric

logger = logging.getLogger(__name__)


def cast_distances(distances: np.ndarray, dtype: np.dtype, metric: str) -> np.ndarray:
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


def flops_per_pair(metric: str, n_features: int) -> float:
    """Arithmetic per (query row, train row): a GEMM's 2·d, about 3·d for the direct metrics' loops.

    A user's function (``callable:<name>``, not in the registry) is counted as a direct metric.
    """
    gemm = not metric.startswith("callable:") and get_metric(metric).gemm
    return (2.0 if gemm else 3.0) * n_features


def knn_job(
    query_array: Any,
    train_array: Any,
    *,
    k: int,
    metric: str,
    params: dict[str, Any],
    train_rows: InputRows | None = None,
    out_dtype: np.dtype | None = None,
) -> Job:
    """The :class:`Job` of a kNN written to Zarr: one output chunk per query block.

    Parameters
    ----------
    query_array : dask array of shape (n_queries, n_features), regular row blocks (each one output chunk)
    train_array : dask array of shape (n_train, n_features)
    k : int
    metric : str, canonical name
    params : dict, the run's parameters (as written to the output's attributes)
    train_rows : InputRows, optional
        Of ``train_array``, if already made (it materialises the train graph once).
    out_dtype : dtype, optional
        Of the distances; default the inputs' result type (a user's metric function gives float64).
    """
    n_queries = query_array.shape[0]
    if out_dtype is None:
        out_dtype = np.result_type(query_array.dtype, train_array.dtype)
    chunks = (tuple(query_array.chunks[0]), (k,))
    return panel_job(
        "knn",
        query_array,
        train_array,
        flops_per_pair=flops_per_pair(metric, query_array.shape[1]),
        outputs=(
            OutputArray("distances", (n_queries, k), np.dtype(out_dtype), chunks),
            OutputArray("indices", (n_queries, k), np.dtype(np.int64), chunks),
        ),
        params=params,
        train_rows=train_rows,
    )


def knn_panel(
    queries: Any,
    query_starts: list[int],
    train: Any,
    train_starts: list[int],
    *,
    k: int,
    metric: str,
    p: float,
    exclude_self: bool,
    tile_query_rows: int,
    tile_train_rows: int,
    run: str | None = None,
    chunk: Any = None,
) -> np.ndarray:
    """Top-k of one query block within a panel of train blocks, read one block at a time.

    ``run`` shares the bounds of the run's tiles (see ``knn_chunk``).
    ``chunk(queries, train, query_index, train_index)``, optional, replaces ``knn_chunk``
    (a user's metric function, ``bigdist.kernels.dense.function_knn_chunk``).

    Returns
    -------
    structured ndarray of shape (query rows, k), dtype TOPK_DTYPE
    """
    ((query_start, query_rows),) = list(rows_of(queries, query_starts))
    query_index = np.arange(query_start, query_start + len(query_rows), dtype=np.int64)
    kernel = chunk or partial(
        knn_chunk,
        k=k,
        metric=metric,
        p=p,
        exclude_self=exclude_self,
        tile_query_rows=tile_query_rows,
        tile_train_rows=tile_train_rows,
        run=run,
    )
    best = None
    with limited_blas():  # dask threads x BLAS threads within the cores, on any scheduler
        for train_start, train_rows in rows_of(train, train_starts):
            train_index = np.arange(train_start, train_start + len(train_rows), dtype=np.int64)
            tile = kernel(query_rows, train_rows, query_index, train_index)
            best = tile if best is None else knn_combine(np.concatenate([best, tile], axis=1), k=k)
    return best


def knn_panel_options(*, k: int, metric: str, p: float, exclude_self: bool, chunk: Any = None) -> dict[str, Any]:
    """The keyword arguments of :func:`knn_panel` for one run, its tile sizes from config (read now)."""
    return {
        "run": new_run(),
        "k": k,
        "metric": metric,
        "p": p,
        "exclude_self": exclude_self,
        "tile_query_rows": config.get("knn.tile-query-rows"),
        "tile_train_rows": config.get("knn.tile-train-rows"),
        "chunk": chunk,
    }


def knn_merge(partials: list[np.ndarray], *, k: int) -> np.ndarray:
    """Merge the top-k of several panels of one query block."""
    return knn_combine(np.concatenate(partials, axis=1), k=k)


def knn_finish(
    partials: list[np.ndarray],
    targets: dict[str, Any],
    markers: dict[str, Any],
    rows: slice,
    block: int,
    *,
    k: int,
    metric: str,
    dtype: np.dtype,
) -> int:
    """Final merge of a query block, written to both arrays, each marked done after it is stored."""
    merged = knn_agg(np.concatenate(partials, axis=1), k=k, metric=metric)
    values = {"distances": cast_distances(merged["distance"], dtype, metric), "indices": merged["index"]}
    for name, value in values.items():
        store_block(value, targets[name], (rows, slice(0, k)), markers[name], (block, 0))
    return 1


def write_knn(
    path: str,
    query_array: Any,
    train_array: Any,
    *,
    k: int,
    metric: str,
    p: float,
    self_join: bool,
    split_every: int,
    attrs: dict[str, Any],
    overwrite: bool,
    progress: ProgressCallback | None = None,
    chunk: Any = None,
    out_dtype: np.dtype | None = None,
    storage_options: StorageOptions = None,
) -> str:
    """Write the exact kNN of ``query_array`` within ``train_array`` to a Zarr group, in waves.

    ``query_array`` has regular row blocks, one output chunk each. An
    unfinished output of the same run is resumed: its written blocks are kept.
    ``storage_options`` (as for :func:`bigdist.io.write_group`) open the output
    here; the finish tasks write through the pickled zarr arrays, which carry them.

    Returns
    -------
    str, the path
    """
    path = normalise_path(path)
    queries = InputRows(query_array)
    train = queries if train_array is query_array else InputRows(train_array)
    job = knn_job(
        query_array, train_array, k=k, metric=metric, params=attrs.get("knn", {}), train_rows=train, out_dtype=out_dtype
    )
    distances, indices = job.outputs
    fingerprint = tokenize(
        "bigdist-knn-waves", query_array.name, query_array.chunks, train_array.name, k, metric, p, self_join, chunk
    )
    group, done = open_output(
        path,
        {"distances": distances, "indices": indices},
        fingerprint=fingerprint,
        attrs=attrs,
        overwrite=overwrite,
        storage_options=storage_options,
    )
    targets = {name: group[name].with_config(WRITE_CONFIG) for name in ("distances", "indices")}
    markers = {name: group[f"{PROGRESS_GROUP}/{name}"] for name in ("distances", "indices")}
    finished = done["distances"][:, 0] & done["indices"][:, 0]
    merge = partial(knn_merge, k=k)
    finish = partial(knn_finish, k=k, metric=metric, dtype=distances.dtype)
    panel = partial(knn_panel, **knn_panel_options(k=k, metric=metric, p=p, exclude_self=self_join, chunk=chunk))
    logger.info("knn to %s: %s", path, panel_summary(job, train))
    run_panels(
        job,
        queries,
        train,
        panel,
        skip=finished,
        combine=merge,
        finish=finish,
        finish_args=lambda block: (targets, markers, slice(block.start, block.stop), block.index),
        split_every=split_every,
        name="bigdist-knn-panel",
        what=f"knn {path}",
        progress=progress,
    )
    return mark_complete(path, storage_options=storage_options)


__all__ = ["cast_distances", "flops_per_pair", "knn_finish", "knn_job", "knn_panel", "knn_panel_options", "write_knn"]
