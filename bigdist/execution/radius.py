"""Radius neighbours written to Zarr as waves of fused tasks over train panels, in two phases.

The CSR offsets of a query block are only known once every block before it
is done, so the output is written twice over, both times in bounded waves:

1. *Stage.* One task scores a query block against a panel of consecutive
   train blocks, reading the rows itself (:mod:`bigdist.execution.sources`),
   and keeps the pairs within the radius. A finish task merges the panels'
   pairs and writes them to the block's own arrays in the staging area
   ``bigdist_progress/radius/block-<i>/{counts,indices,distances}``, then its
   pair count in ``bigdist_progress/radius/sizes``, then its marker
   ``bigdist_progress/staged``.
2. *Concatenate.* With every block staged, the final ``indptr``,
   ``indices`` and ``distances`` are created (chunked as the single-graph
   write chunks them: the largest query block, the largest block of pairs),
   and one task per final chunk reads the staged slices it covers and writes
   the chunk, marked like any output block.

The group is marked complete last, which also removes the staging area (it
lies under the markers' prefix). A killed run resumes in either phase:
staged blocks are not recomputed, written chunks not rewritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import zarr
from dask.base import tokenize

from bigdist import config
from bigdist.blas import limited_blas
from bigdist.execution.jobs import Job, OutputArray
from bigdist.execution.knn import flops_per_pair
from bigdist.execution.panels import panel_job, panel_summary, run_panels
from bigdist.execution.sources import InputRows, rows_of
from bigdist.execution.waves import BlockWork, ProgressCallback, run_blocks
from bigdist.io.integrity import output_codecs
from bigdist.io.store import (
    PROGRESS_GROUP,
    WRITE_CONFIG,
    StorageOptions,
    create_arrays,
    mark_complete,
    normalise_path,
    open_output,
    store_block,
    store_region,
    update_attrs,
)
from bigdist.kernels.radius import radius_combine, radius_finish, radius_merge

logger = logging.getLogger(__name__)

STAGING = f"{PROGRESS_GROUP}/radius"
STAGED = f"{PROGRESS_GROUP}/staged"
ARRAYS = ("indptr", "indices", "distances")


def radius_job(
    query_array: Any, train_array: Any, *, metric: str, params: dict[str, Any], train_rows: InputRows | None = None
) -> Job:
    """The :class:`Job` of radius neighbours written to Zarr: one staged block per query block.

    Parameters
    ----------
    query_array : dask array of shape (n_queries, n_features), each row block one staged block
    train_array : dask array of shape (n_train, n_features)
    metric : str, canonical name of the metric the tiles compute
    params : dict, the run's parameters (as written to the output's attributes)
    train_rows : InputRows, optional
        Of ``train_array``, if already made.

    Its one output is ``indptr``: the pairs' arrays have sizes known only after the run.
    """
    n_queries = query_array.shape[0]
    return panel_job(
        "radius",
        query_array,
        train_array,
        flops_per_pair=flops_per_pair(metric, query_array.shape[1]),
        outputs=(OutputArray("indptr", (n_queries + 1,), np.dtype(np.int64), ((n_queries + 1,),)),),
        params=params,
        train_rows=train_rows,
    )


def radius_panel(
    queries: Any,
    query_starts: list[int],
    train: Any,
    train_starts: list[int],
    *,
    kernel: Callable[..., Any],
    max_neighbors: int,
) -> dict[str, Any]:
    """Pairs of one query block within a panel of train blocks, read one block at a time.

    ``kernel(queries, train, first_query, first_train)`` is ``radius_chunk`` with its options
    (or a user's metric function's kernel). Returns a partial result (``bigdist.kernels.radius``).
    """
    ((query_start, query_rows),) = list(rows_of(queries, query_starts))
    found = []
    with limited_blas():  # dask threads x BLAS threads within the cores, on any scheduler
        for train_start, train_rows in rows_of(train, train_starts):
            found.append(kernel(query_rows, train_rows, query_start, train_start))
    # In train order here, so the stable merge of the single graph applies.
    return radius_combine(found, max_neighbors=max_neighbors)


def stage_block(
    partials: list[dict[str, Any]],
    group: zarr.Group,
    block: int,
    *,
    max_neighbors: int,
    metric: str,
    sort_results: bool,
    dtype: np.dtype,
) -> int:
    """Merge a query block's panels and write its pairs to the staging area, its size, then its marker."""
    result = radius_finish(
        radius_merge(partials, max_neighbors=max_neighbors), metric=metric, sort_results=sort_results, dtype=dtype
    )
    codecs = output_codecs(config.get("io.compressor"))
    for name in ("counts", "indices", "distances"):
        values = result[name]
        # Overwrite: a block whose marker is unset may have been half staged by a killed run.
        staged = group.create_array(
            f"{STAGING}/block-{block}/{name}",
            shape=values.shape,
            dtype=values.dtype,
            chunks=(max(1, len(values)),),
            compressors=codecs,
            config=WRITE_CONFIG,
            overwrite=True,
        )
        store_region(staged, (slice(None),), values)
    store_region(group[f"{STAGING}/sizes"], (block,), len(result["indices"]))
    store_region(group[STAGED], (block,), 1)
    return 1


def concat_pairs(
    _partials: list[Any],
    group: zarr.Group,
    name: str,
    start: int,
    stop: int,
    pieces: list[tuple[int, int, int]],
    chunk: int,
) -> int:
    """Write chunk ``chunk`` (pairs ``[start, stop)``) of ``indices`` or ``distances`` from its staged slices.

    ``pieces``: (block, first, last) slices of the blocks' staged arrays, in order.
    """
    target = group[name].with_config(WRITE_CONFIG)
    values = [group[f"{STAGING}/block-{block}/{name}"][first:last] for block, first, last in pieces]
    data = np.concatenate(values) if values else np.empty(0, dtype=target.dtype)
    return store_block(data, target, (slice(start, stop),), group[f"{PROGRESS_GROUP}/{name}"], (chunk,))


def concat_indptr(
    _partials: list[Any], group: zarr.Group, start: int, stop: int, pieces: list[tuple[int, int, int]], chunk: int
) -> int:
    """Write chunk ``chunk`` (entries ``[start, stop)``) of ``indptr`` from the staged counts.

    Entry ``e > 0`` is where query ``e - 1``'s pairs end. ``pieces``: (block, first query of the
    block, pairs before the block) of the blocks holding queries ``start - 1`` to ``stop - 2``.
    """
    values = [np.zeros(1, dtype=np.int64)] if start == 0 else []
    first, last = max(start - 1, 0), stop - 1
    for block, block_start, offset in pieces:
        counts = group[f"{STAGING}/block-{block}/counts"][...]
        # The same sums as the single graph's per-block indptr: offset + cumsum of the block's counts.
        ends = offset + np.cumsum(counts, dtype=np.int64)
        values.append(ends[max(first, block_start) - block_start : min(last, block_start + len(counts)) - block_start])
    data = np.concatenate(values).astype(np.int64)
    target = group["indptr"].with_config(WRITE_CONFIG)
    return store_block(data, target, (slice(start, stop),), group[f"{PROGRESS_GROUP}/indptr"], (chunk,))


def _final_arrays(job: Job, sizes: np.ndarray, dtype: np.dtype) -> dict[str, OutputArray]:
    """The CSR arrays, chunked as ``write_group`` stores the single graph's (largest block along the axis)."""
    m, nnz = job.n_queries, int(sizes.sum())
    rows = max(1, max(block.rows for block in job.query_blocks))
    pairs = max(1, int(sizes.max()))

    def chunks(length: int, size: int) -> tuple[tuple[int, ...], ...]:
        full, rest = divmod(length, size)
        return ((size,) * full + ((rest,) if rest else ()) or (0,),)

    return {
        "indptr": OutputArray("indptr", (m + 1,), np.dtype(np.int64), chunks(m + 1, rows)),
        "indices": OutputArray("indices", (nnz,), np.dtype(np.int64), chunks(nnz, pairs)),
        "distances": OutputArray("distances", (nnz,), np.dtype(dtype), chunks(nnz, pairs)),
    }


def _open_final(group: zarr.Group, arrays: dict[str, OutputArray]) -> dict[str, np.ndarray]:
    """The final arrays' markers, creating the arrays unless a resumed run had created all of them."""
    if all(name in group and f"{PROGRESS_GROUP}/{name}" in group for name in arrays):
        return {name: np.asarray(group[f"{PROGRESS_GROUP}/{name}"][...]).astype(bool) for name in arrays}
    return create_arrays(group, arrays, overwrite=True)


def _concat_work(
    group: zarr.Group, job: Job, sizes: np.ndarray, arrays: dict[str, OutputArray], done: dict[str, np.ndarray]
) -> Iterator[BlockWork]:
    """A task per final chunk not yet written, each told which staged slices it covers."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    starts = np.array([block.start for block in job.query_blocks] + [job.n_queries], dtype=np.int64)
    number = 0
    for name in ARRAYS:
        bounds = np.concatenate([[0], np.cumsum(arrays[name].chunks[0])]).astype(np.int64)
        for chunk in range(len(bounds) - 1):
            start, stop = int(bounds[chunk]), int(bounds[chunk + 1])
            if done[name][chunk] or stop == start:
                continue
            if name == "indptr":
                # Blocks holding queries start - 1 .. stop - 2.
                lo = int(np.searchsorted(starts, max(start - 1, 0), side="right")) - 1
                hi = int(np.searchsorted(starts, stop - 1, side="left"))
                pieces = [(b, int(starts[b]), int(offsets[b])) for b in range(lo, hi)]
                finish, args = concat_indptr, (group, start, stop, pieces, chunk)
            else:
                lo = int(np.searchsorted(offsets, start, side="right")) - 1
                hi = int(np.searchsorted(offsets, stop, side="left"))
                pieces = [
                    (b, int(max(start, offsets[b]) - offsets[b]), int(min(stop, offsets[b + 1]) - offsets[b]))
                    for b in range(lo, hi)
                    if sizes[b]
                ]
                finish, args = concat_pairs, (group, name, start, stop, pieces, chunk)
            yield BlockWork(index=number, panels=[], combine=_no_combine, finish=finish, finish_args=args)
            number += 1


def _no_combine(partials: list[Any]) -> Any:
    raise AssertionError("a concatenation task has no panels to combine")  # never called: blocks without panels


def write_radius(
    path: str,
    query_array: Any,
    train_array: Any,
    *,
    kernel: Callable[..., Any],
    metric: str,
    radius: float,
    p: float,
    self_join: bool,
    max_neighbors: int,
    sort_results: bool,
    out_dtype: np.dtype,
    split_every: int,
    attrs: dict[str, Any],
    overwrite: bool,
    progress: ProgressCallback | None = None,
    storage_options: StorageOptions = None,
) -> str:
    """Write the radius neighbours of ``query_array`` within ``train_array`` to a Zarr group, in waves.

    ``kernel(queries, train, first_query, first_train)`` gives a tile's pairs
    (``radius_chunk`` with its options); ``metric`` is the tiles' metric
    (for the keys' values). An unfinished output of the same run is resumed.

    Returns
    -------
    str, the path
    """
    path = normalise_path(path)
    queries = InputRows(query_array)
    train = queries if train_array is query_array else InputRows(train_array)
    job = radius_job(
        query_array, train_array, metric=metric, params=attrs.get("radius_neighbors", {}), train_rows=train
    )
    fingerprint = tokenize(
        "bigdist-radius-waves",
        query_array.name,
        query_array.chunks,
        train_array.name,
        radius,
        metric,
        p,
        self_join,
        max_neighbors,
        sort_results,
        str(np.dtype(out_dtype)),
        kernel,
    )
    group, _ = open_output(
        path, {}, fingerprint=fingerprint, attrs=attrs, overwrite=overwrite, storage_options=storage_options
    )
    n_blocks = len(job.query_blocks)
    if f"{STAGING}/sizes" not in group or STAGED not in group:
        # New, or killed before any block was staged: the staging area's bookkeeping, one chunk per block.
        group.create_array(
            f"{STAGING}/sizes",
            shape=(n_blocks,),
            dtype="int64",
            chunks=(1,),
            fill_value=-1,
            compressors=None,
            overwrite=True,
        )
        group.create_array(
            STAGED, shape=(n_blocks,), dtype="uint8", chunks=(1,), fill_value=0, compressors=None, overwrite=True
        )
    staged = np.asarray(group[STAGED][...]).astype(bool)
    finish = partial(
        stage_block, max_neighbors=max_neighbors, metric=metric, sort_results=sort_results, dtype=np.dtype(out_dtype)
    )
    panel = partial(radius_panel, kernel=kernel, max_neighbors=max_neighbors)
    merge = partial(radius_merge, max_neighbors=max_neighbors)
    logger.info(
        "radius neighbours to %s: %s (%d blocks staged before)", path, panel_summary(job, train), int(staged.sum())
    )
    run_panels(
        job,
        queries,
        train,
        panel,
        skip=staged,
        combine=merge,
        finish=finish,
        finish_args=lambda block: (group, block.index),
        split_every=split_every,
        name="bigdist-radius-panel",
        what=f"radius neighbours {path} (pairs staged)",
        progress=progress,
    )

    sizes = np.asarray(group[f"{STAGING}/sizes"][...])
    arrays = _final_arrays(job, sizes, out_dtype)
    update_attrs(path, storage_options=storage_options, bigdist={"arrays": list(ARRAYS)})
    done = _open_final(group, arrays)
    total = sum(int(np.count_nonzero(np.diff(np.concatenate([[0], np.cumsum(a.chunks[0])])))) for a in arrays.values())
    written = sum(int(d.sum()) for d in done.values())
    logger.info(
        "radius neighbours to %s: %d pairs staged, concatenated into %d chunks (%d written before)",
        path,
        int(sizes.sum()),
        total,
        written,
    )
    run_blocks(
        _concat_work(group, job, sizes, arrays, done),
        total=total,
        done=written,
        split_every=2,
        name="bigdist-radius-concat",
        what=f"radius neighbours {path} (CSR arrays)",
    )
    return mark_complete(path, storage_options=storage_options)


__all__ = ["radius_job", "radius_panel", "stage_block", "write_radius"]
