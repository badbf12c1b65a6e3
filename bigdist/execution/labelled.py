"""Labelled neighbours (``bigdist classify``) written to Zarr as waves of fused tasks over train panels.

One task scores a query block against a panel of consecutive train blocks,
as for the kNN (:func:`bigdist.execution.knn.knn_panel`), and also reads the
labels of the panel's rows (the labels are cut into the same panels), so its
partial result carries each candidate's label with it. The panels of a
query block are merged by the kNN's selection, labels following their
neighbours, and a finish task votes on the block and writes every output
array's block, each marked done: a killed run resumes, its written blocks kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from dask.base import tokenize

from bigdist.execution.jobs import Job, OutputArray
from bigdist.execution.knn import cast_distances, knn_job, knn_panel, knn_panel_options
from bigdist.execution.panels import panel_summary, run_panels
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
    store_region,
)
from bigdist.kernels.knn import knn_agg, knn_combine
from bigdist.kernels.labels import values_of_neighbours
from bigdist.kernels.topk import PAD_INDEX, drop_columns, own_columns

logger = logging.getLogger(__name__)

#: ``vote(distances, values)`` of a query block, (m, k) float64 and (m, k, n_outputs), to its output blocks by name.
Vote = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def labelled_job(result: Any, outputs: tuple[OutputArray, ...], params: dict[str, Any]) -> Job:
    """The :class:`Job` of ``bigdist classify``: the kNN's tasks (``result`` a KNNResult), writing ``outputs``."""
    job = knn_job(
        result._wave_queries(),
        result.train_array,
        k=result.k,
        metric=result._kernel_metric,
        params=params,
        out_dtype=result._out_dtype,
    )
    return dataclasses.replace(job, kind="classify", outputs=outputs)


def labelled_panel(
    queries: Any,
    query_starts: list[int],
    train: Any,
    train_starts: list[int],
    labels: Any,
    label_starts: list[int],
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one query block within a panel, and the labels of those candidates.

    ``labels`` holds the labels of the panel's rows, one block (from row ``label_starts[0]``).

    Returns
    -------
    (structured ndarray of shape (query rows, k), dtype TOPK_DTYPE; ndarray of shape (query rows, k, n_outputs))
    """
    best = knn_panel(queries, query_starts, train, train_starts, **options)
    ((first, block),) = list(rows_of(labels, label_starts))
    index = best["index"]
    real = index != PAD_INDEX
    values = np.full((*index.shape, block.shape[1]), np.nan, dtype=block.dtype)
    values[real] = block[index[real] - first]
    return best, values


def labelled_merge(partials: list[tuple[np.ndarray, np.ndarray]], *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge several panels' top-k of one query block, each label following its neighbour."""
    candidates = np.concatenate([best for best, _ in partials], axis=1)
    values = np.concatenate([found for _, found in partials], axis=1)
    merged = knn_combine(candidates, k=k)
    return merged, values_of_neighbours(merged["index"], candidates["index"], values)


def labelled_finish(
    partials: list[tuple[np.ndarray, np.ndarray]],
    targets: dict[str, Any],
    markers: dict[str, Any],
    rows: slice,
    block: int,
    *,
    k: int,
    metric: str,
    dtype: np.dtype,
    drop_self: bool,
    vote: Vote,
) -> int:
    """Final merge of a query block, the vote, and each output's block written, then marked done.

    ``drop_self``: the queries are the train rows, asked for k neighbours and
    each losing its own (or its nearest, scikit-learn's rule), as the estimator does.
    """
    candidates = np.concatenate([best for best, _ in partials], axis=1)
    merged = knn_agg(candidates, k=k, metric=metric)
    indices = merged["index"]
    values = values_of_neighbours(indices, candidates["index"], np.concatenate([v for _, v in partials], axis=1))
    # As KNNResult.distances gives them, then in float64 as the estimator votes on them.
    distances = cast_distances(merged["distance"], dtype, metric).astype(np.float64)
    if drop_self:
        columns = own_columns(indices, np.arange(rows.start, rows.stop, dtype=np.int64))
        distances = drop_columns(distances, columns[:, None])
        keep = np.ones(indices.shape, dtype=bool)
        keep[np.arange(len(indices)), columns] = False
        values = values[keep].reshape(len(indices), indices.shape[1] - 1, values.shape[2])
    for name, value in vote(distances, values).items():
        store_region(targets[name], (rows, *(slice(0, size) for size in value.shape[1:])), value)
        # Then the markers of every chunk of the block's rows (several outputs may be one chunk each).
        store_region(markers[name], (block,), 1)
    return 1


def write_labelled(
    path: str,
    result: Any,
    labels: Any,
    *,
    outputs: tuple[OutputArray, ...],
    constants: dict[str, np.ndarray],
    vote: Vote,
    drop_self: bool,
    split_every: int,
    attrs: dict[str, Any],
    overwrite: bool,
    progress: ProgressCallback | None = None,
    storage_options: StorageOptions = None,
) -> str:
    """Write the votes of the kNN ``result`` (a KNNResult) on ``labels`` to a Zarr group, in waves.

    Parameters
    ----------
    result : KNNResult, dense (its panels read the rows)
    labels : dask array of shape (n_train, n_outputs), float64, one row per train row
    outputs : OutputArray, one chunk per query block of ``result._wave_queries()``
        What ``vote`` gives, by name.
    constants : dict of str to ndarray
        Small arrays written whole before the waves (the classes).
    vote, drop_self, split_every, attrs, overwrite, progress, storage_options
        See :func:`labelled_finish`, :func:`bigdist.execution.knn.write_knn` and :func:`bigdist.io.write_group`.

    Returns
    -------
    str, the path
    """
    path = normalise_path(path)
    query_array = result._wave_queries()
    queries, train = InputRows(query_array), InputRows(result.train_array)
    job = labelled_job(result, outputs, attrs.get("classify", {}))
    # The labels cut as the panels: a panel task reads its own rows' labels and no others.
    label_rows = InputRows(labels.rechunk({0: tuple(panel.rows for panel in job.panels)}))
    arrays = {
        **{output.name: output for output in outputs},
        **{
            name: OutputArray(name, value.shape, value.dtype, tuple((size,) for size in value.shape))
            for name, value in constants.items()
        },
    }
    fingerprint = tokenize(
        "bigdist-classify-waves",
        query_array.name,
        query_array.chunks,
        result.train_array.name,
        result.k,
        result._kernel_metric,
        result.p,
        labels.name,
        drop_self,
        vote,
        sorted(arrays),
    )
    group, done = open_output(
        path, arrays, fingerprint=fingerprint, attrs=attrs, overwrite=overwrite, storage_options=storage_options
    )
    for name, value in constants.items():
        if not done[name].all():
            store_block(
                value,
                group[name].with_config(WRITE_CONFIG),
                (slice(None),) * value.ndim,
                group[f"{PROGRESS_GROUP}/{name}"],
                (0,) * value.ndim,
            )
    names = [output.name for output in outputs]
    targets = {name: group[name].with_config(WRITE_CONFIG) for name in names}
    markers = {name: group[f"{PROGRESS_GROUP}/{name}"] for name in names}
    finished = np.logical_and.reduce([done[name].reshape(len(job.query_blocks), -1).all(axis=1) for name in names])
    options = knn_panel_options(
        k=result.k, metric=result._kernel_metric, p=result.p, exclude_self=result.self_join, chunk=result.chunk
    )
    panel = partial(labelled_panel, **options)
    merge = partial(labelled_merge, k=result.k)
    finish = partial(
        labelled_finish,
        k=result.k,
        metric=result._kernel_metric,
        dtype=result._out_dtype,
        drop_self=drop_self,
        vote=vote,
    )
    logger.info("classify to %s: %s", path, panel_summary(job, train))
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
        name="bigdist-classify-panel",
        what=f"classify {path}",
        progress=progress,
        aligned=(label_rows,),
    )
    return mark_complete(path, storage_options=storage_options)


__all__ = ["Vote", "labelled_finish", "labelled_job", "labelled_panel", "write_labelled"]
