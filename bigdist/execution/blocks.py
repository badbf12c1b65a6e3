"""Lazy arrays whose blocks are independent (a distance matrix, labels) written to Zarr in waves.

Each task computes a run of consecutive blocks of one row of blocks from
their own culled graph — the query block and train blocks they read
included — stores each and marks it done, as :func:`bigdist.io.write_group`
does, so outputs and resumption are the same byte for byte. Only for
arrays whose blocks share nothing but reads of the inputs: work shared by
blocks of different rows (a reduction over all rows feeding every block)
would be repeated by every task (``write_group`` writes those as one graph).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np

from bigdist import config
from bigdist.errors import ParameterError
from bigdist.execution.sources import GraphCuller
from bigdist.execution.waves import BlockWork, ProgressCallback, run_blocks
from bigdist.io.store import (
    PROGRESS_GROUP,
    WRITE_CONFIG,
    StorageOptions,
    mark_complete,
    normalise_path,
    open_output,
    output_fingerprint,
    regular_chunks,
    store_block,
)

logger = logging.getLogger(__name__)


class BlockGraph:
    """Blocks and the culled graph that computes them, opaque to dask (a dict argument would be read as tasks)."""

    def __init__(self, graph: dict[Any, Any], keys: list[Any]) -> None:
        self.graph = graph
        self.keys = keys

    def compute(self) -> list[Any]:
        return list(dask.get(self.graph, self.keys))

    def __repr__(self) -> str:
        return f"BlockGraph({len(self.keys)} blocks, {len(self.graph)} tasks)"


def compute_and_store(
    blocks: BlockGraph,
    targets: list[Any],
    regions: list[Any],
    markers: list[Any],
    indices: list[Any],
) -> int:
    """Compute the blocks (their shared reads once) and store each, then mark it done."""
    values = blocks.compute()
    for value, target, region, marker, index in zip(values, targets, regions, markers, indices, strict=True):
        store_block(np.asarray(value), target, region, marker, index)
    return len(values)


def _no_op_merge(partials: list[Any]) -> list[Any]:
    return []


def _done(partials: list[Any]) -> int:
    return 0


def write_blocks(
    path: str,
    arrays: Mapping[str, da.Array],
    *,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    flops_per_element: float = 0.0,
    progress: ProgressCallback | None = None,
    storage_options: StorageOptions = None,
) -> str:
    """Write lazy arrays to a Zarr group in waves: one task per run of blocks of one row, reading its own inputs.

    Parameters
    ----------
    path : str, local path or fsspec URL
    arrays : dict of str to dask array of shape (n_rows, ...)
        Arrays with the same row blocks; block ``(i, j, ...)`` of each is one Zarr chunk.
    attrs, overwrite, storage_options
        As for :func:`bigdist.io.write_group` (same fingerprint: either resumes the other's output).
    flops_per_element : float
        Arithmetic per output element (``2 * n_features`` for a GEMM distance): consecutive blocks of a row
        are grouped into tasks of about ``bigdist.execution.panel-flops``; 0 means one block per task.
    progress : callable, optional
        ``progress(done, total, elapsed_seconds)`` after every finished row of blocks.

    Returns
    -------
    str, the path
    """
    path = normalise_path(path)
    sources = {name: regular_chunks(array)[0] for name, array in arrays.items()}
    rows = {array.chunks[0] for array in sources.values()}
    if len(rows) != 1:
        raise ParameterError(f"write_blocks needs arrays with the same row blocks, got {sorted(rows)}")
    group, done = open_output(
        path,
        sources,
        fingerprint=output_fingerprint(sources),
        attrs=attrs or {},
        overwrite=overwrite,
        storage_options=storage_options,
    )
    # Culled per task, never materialised whole (a distance matrix's graph grows with m x n blocks).
    cullers = {name: GraphCuller(array.__dask_graph__()) for name, array in sources.items()}
    targets = {name: group[name].with_config(WRITE_CONFIG) for name in sources}
    markers = {name: group[f"{PROGRESS_GROUP}/{name}"] for name in sources}
    starts = {
        name: [np.concatenate([[0], np.cumsum(sizes)]).astype(int) for sizes in array.chunks]
        for name, array in sources.items()
    }
    n_rows = len(next(iter(rows)))
    panel_flops = float(config.get("execution.panel-flops"))

    def tasks_of_row(i: int) -> list[tuple[Any, tuple[Any, ...]]]:
        work = []
        for name, array in sources.items():
            rest = [index for index in np.ndindex(*array.numblocks[1:]) if not done[name][(i, *index)]]
            elements = math.prod(size[0] for size in array.chunks)
            per_task = max(1, int(panel_flops // max(1.0, elements * flops_per_element))) if flops_per_element else 1
            for start in range(0, len(rest), per_task):
                indices = [(i, *index) for index in rest[start : start + per_task]]
                keys = [(array.name, *index) for index in indices]
                graph = cullers[name](keys)
                regions = [
                    tuple(slice(int(s[b]), int(s[b + 1])) for s, b in zip(starts[name], index, strict=True))
                    for index in indices
                ]
                copies = len(keys)
                args = (BlockGraph(graph, keys), [targets[name]] * copies, regions, [markers[name]] * copies, indices)
                work.append((compute_and_store, args))
        return work

    def blocks() -> Any:
        for i in range(n_rows):
            work = tasks_of_row(i)
            if work:
                yield BlockWork(index=i, panels=work, combine=_no_op_merge, finish=_done)

    finished = sum(all(done[name][i].all() for name in sources) for i in range(n_rows))
    run_blocks(
        blocks(),
        total=n_rows,
        done=finished,
        split_every=int(config.get("split-every")),
        name="bigdist-write-blocks",
        what=f"write {path}",
        progress=progress,
    )
    return mark_complete(path, storage_options=storage_options)


__all__ = ["BlockGraph", "compute_and_store", "write_blocks"]
