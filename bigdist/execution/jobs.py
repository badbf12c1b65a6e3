"""A job as the execution layer runs it and the plan describes it: blocks, panels, tasks, outputs.

A :class:`Job` is pure description, built without touching the data: the
query rows cut into :class:`RowBlock` s, the train rows into blocks grouped
into :class:`Panel` s, and one fused :class:`Task` per (query block, panel)
that reads the panel's train rows itself and reduces them (to a top-k, a
block of the matrix, ...). The results of the panels of one query block are
merged and written to the :class:`OutputArray` s, one Zarr chunk per query
block. Passes over one set of rows (k-means, mean-shift, labels) have no
panels: one task per row block, against ``n_train`` centroids or seeds.

Its numbers (tasks, FLOPs, bytes read and written) are exact counts of what
the waves will run, so ``bd.plan`` can print them and estimate time and
disk; :meth:`Job.n_waves` gives the waves for a window of tasks in flight.
The names here are stable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RowBlock:
    """Rows ``[start, stop)`` of an input, block ``index`` of its row chunking."""

    index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Panel:
    """Consecutive train blocks ``blocks`` (rows ``[start, stop)``) scored by one task against one query block."""

    index: int
    blocks: tuple[int, ...]
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class OutputArray:
    """An array of the output group: one chunk per query block along rows.

    ``chunks`` is dask-style, the sizes along each axis; the attributes
    ``numblocks`` and ``ndim`` let the output writers treat it like a dask array.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[tuple[int, ...], ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numblocks(self) -> tuple[int, ...]:
        return tuple(len(sizes) for sizes in self.chunks)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Task:
    """One fused read-and-compute task: query block ``query_block`` against panel ``panel``.

    ``panel`` is None for a pass (no train rows). ``bytes_read`` counts the
    query rows and the panel's train rows it reads; ``flops`` its arithmetic.
    """

    query_block: int
    panel: int | None
    query_rows: int
    train_rows: int
    bytes_read: int
    flops: float


@dataclass(frozen=True)
class Job:
    """Everything the waves run, and everything the plan needs to know about it, in numbers.

    Attributes
    ----------
    kind : str
        ``"knn"``, ``"pairwise"``, ``"radius"``, ``"classify"``, ``"kmeans-pass"``, ``"meanshift-pass"``, ``"labels"``.
    n_queries, n_train, n_features : int
        Query rows, train rows (centroids or seeds for a pass), features.
    query_itemsize, train_itemsize : int
        Bytes per value of the inputs as computed (4 for float32, 8 for float64).
    query_blocks : tuple of RowBlock
        The query rows of each task; each is one chunk of every output.
    train_blocks : tuple of RowBlock
        The train row blocks (as the train input is chunked); empty for a pass.
    panels : tuple of Panel
        Train blocks grouped for one task each; empty for a pass.
    outputs : tuple of OutputArray
        What the job writes; their nbytes is the disk it needs (before compression).
    flops_per_pair : float
        Arithmetic per (query row, train row): ``2 * n_features`` for a GEMM.
    train_in_store : bool
        Panel tasks read their train rows themselves (a store, or a lazy
        graph with no data in it); False when the rows are in memory and are
        scattered to the workers once.
    params : dict
        The job's parameters (k, metric, ...), as written to the output's attributes.
    """

    kind: str
    n_queries: int
    n_train: int
    n_features: int
    query_itemsize: int
    train_itemsize: int
    query_blocks: tuple[RowBlock, ...]
    train_blocks: tuple[RowBlock, ...]
    panels: tuple[Panel, ...]
    outputs: tuple[OutputArray, ...]
    flops_per_pair: float
    train_in_store: bool
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks_per_query_block(self) -> int:
        return max(1, len(self.panels))

    @property
    def n_tasks(self) -> int:
        """Fused read-and-compute tasks (merge and write tasks not counted: see :attr:`n_merge_tasks`)."""
        return len(self.query_blocks) * self.tasks_per_query_block

    def n_merge_tasks(self, split_every: int) -> int:
        """Tasks that merge the panels' results of each query block, ``split_every`` at a time, and write them."""
        panels = self.tasks_per_query_block
        # A tree of fan-in s over p leaves has ceil((p - 1) / (s - 1)) merges; the last one also writes.
        per_block = max(1, math.ceil((panels - 1) / (split_every - 1)))
        return len(self.query_blocks) * per_block

    def n_waves(self, window: int) -> int:
        """Waves of at most ``window`` tasks in flight that the fused tasks take."""
        return math.ceil(self.n_tasks / max(1, window))

    @property
    def flops(self) -> float:
        return float(self.n_queries) * float(self.n_train) * self.flops_per_pair

    @property
    def bytes_read(self) -> int:
        """Bytes every task reads, summed: each query block once per panel, each panel once per query block."""
        query = self.n_queries * self.n_features * self.query_itemsize
        train = 0 if not self.panels else self.n_train * self.n_features * self.train_itemsize
        return query * self.tasks_per_query_block + train * len(self.query_blocks)

    @property
    def bytes_written(self) -> int:
        return sum(output.nbytes for output in self.outputs)

    def task(self, query_block: int, panel: int | None) -> Task:
        """The task of query block ``query_block`` and panel ``panel`` (None for a pass)."""
        block = self.query_blocks[query_block]
        train_rows = 0 if panel is None else self.panels[panel].rows
        counted_train = self.n_train if panel is None else train_rows
        return Task(
            query_block=query_block,
            panel=panel,
            query_rows=block.rows,
            train_rows=train_rows,
            bytes_read=(block.rows * self.query_itemsize + train_rows * self.train_itemsize) * self.n_features,
            flops=float(block.rows) * counted_train * self.flops_per_pair,
        )

    def tasks(self) -> Iterator[Task]:
        """Every task in the order the waves submit them: query block by query block, panels in order."""
        for i in range(len(self.query_blocks)):
            if not self.panels:
                yield self.task(i, None)
                continue
            for p in range(len(self.panels)):
                yield self.task(i, p)


def row_blocks(chunks: Sequence[int]) -> tuple[RowBlock, ...]:
    """The blocks of a row chunking, e.g. ``row_blocks((3, 3, 2))``."""
    stops = np.cumsum(chunks)
    return tuple(
        RowBlock(index=i, start=int(stop - size), stop=int(stop))
        for i, (size, stop) in enumerate(zip(chunks, stops, strict=True))
    )


def group_panels(
    train_blocks: Sequence[RowBlock],
    query_rows: int,
    flops_per_pair: float,
    panel_flops: float,
    unit_rows: int = 0,
) -> tuple[Panel, ...]:
    """Consecutive train blocks grouped so one task does about ``panel_flops`` against ``query_rows`` queries.

    Every panel has at least one block; the blocks of a panel are read one
    after the other inside the task, so its size sets the task's duration, not its memory.
    With ``unit_rows`` (rows the store decodes at once, a chunk larger than a block), a
    panel ends only where a stored chunk does: each task then decodes its chunks once,
    where a panel per block would decode each chunk once per block.
    """
    panels: list[Panel] = []
    current: list[RowBlock] = []
    for block in train_blocks:
        current.append(block)
        rows = current[-1].stop - current[0].start
        at_unit_end = unit_rows <= 0 or block.stop % unit_rows == 0
        if rows * query_rows * flops_per_pair >= panel_flops and at_unit_end:
            panels.append(Panel(len(panels), tuple(b.index for b in current), current[0].start, current[-1].stop))
            current = []
    if current:
        panels.append(Panel(len(panels), tuple(b.index for b in current), current[0].start, current[-1].stop))
    return tuple(panels)


__all__ = ["Job", "OutputArray", "Panel", "RowBlock", "Task", "group_panels", "row_blocks"]
