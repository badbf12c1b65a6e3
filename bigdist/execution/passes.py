"""Passes over one set of rows (k-means, mean shift) and their labels, as bounded waves of fused tasks.

A pass is one task per row block (times a few *columns*: blocks of mean-shift
seeds) that reads its rows itself (:class:`~bigdist.execution.sources.InputRows`,
integrity checks included) and runs a block kernel
``chunk(block, first_row, *along_blocks, [carried_block], *extra)`` on them.
The partial states come back to the client, which folds them as they arrive
in the fixed grouping of the single-graph tree reduction
(:class:`TreeFold`: leaves ``split_every`` at a time, level by level), so
the merged state is bitwise the same whatever order the tasks finish in. At
most a window of tasks is in flight, refilled as tasks complete (see
:mod:`bigdist.execution.executors`).

Per-row state carried from one pass to the next (Hamerly's bounds, the
k-means|| nearest candidates) stays where the work is: in this process on the
local schedulers, and on a Client as one future per block on the worker that
computed it. A task finds its block's state in its worker's memory (it is
placed there) and, when that worker was lost, rebuilds it or runs without it
(the kernels give the same partial state either way).

A row block may be held in pieces (k-means on a Client with fewer blocks
than workers): a pass then labels the pieces on every worker at once and
sums them block by block along a chain of small tasks in row order, so that
its partial state is bitwise the unsplit block's (:class:`PassColumn`).

Labels are written block by block to a Zarr group through the same waves,
each block marked when stored, so a killed run resumes.
"""

from __future__ import annotations

import logging
import math
import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from bigdist.blas import limited_blas
from bigdist.execution.executors import ambient_client, open_executor, run_window
from bigdist.execution.jobs import OutputArray, RowBlock, row_blocks
from bigdist.execution.sources import InputRows, rows_of
from bigdist.execution.waves import Progress, ProgressCallback, window_size
from bigdist.io.store import (
    PROGRESS_GROUP,
    WRITE_CONFIG,
    StorageOptions,
    mark_complete,
    normalise_path,
    open_output,
    regular_chunks,
    store_block,
)

logger = logging.getLogger(__name__)


class TreeFold:
    """Merge ``n_leaves`` partials with ``combine(list)`` in the grouping of a tree reduction, as they arrive.

    The grouping is that of :func:`bigdist.reductions.block_tree_reduce`:
    consecutive leaves ``split_every`` at a time, level by level, until at
    most ``split_every`` remain, which one last ``combine`` merges. A group is
    merged as soon as all its members have arrived, so the client holds at
    most the partials of unfinished groups.
    """

    def __init__(self, n_leaves: int, combine: Callable[[list[Any]], Any], split_every: int) -> None:
        if n_leaves < 1:
            raise ValueError(f"a tree needs at least one leaf, got n_leaves={n_leaves}")
        self.combine = combine
        self.split_every = split_every
        self.sizes = [n_leaves]
        while self.sizes[-1] > split_every:
            self.sizes.append(math.ceil(self.sizes[-1] / split_every))
        self.levels: list[dict[int, Any]] = [{} for _ in self.sizes]

    def add(self, index: int, value: Any) -> None:
        """The partial of leaf ``index``; merges every group it completes."""
        level, top = 0, len(self.sizes) - 1
        while level < top:
            pending = self.levels[level]
            pending[index] = value
            group = index // self.split_every
            members = range(group * self.split_every, min((group + 1) * self.split_every, self.sizes[level]))
            if any(member not in pending for member in members):
                return
            value = self.combine([pending.pop(member) for member in members])
            index, level = group, level + 1
        self.levels[top][index] = value

    def result(self) -> Any:
        """The merged state, once every leaf has arrived."""
        top = self.levels[-1]
        if len(top) != self.sizes[-1]:
            raise RuntimeError(f"the fold has {len(top)} of its {self.sizes[-1]} top partials")
        return self.combine([top[i] for i in range(self.sizes[-1])])


@dataclass
class CarriedRows:
    """Per-row state of a pass, one entry per row block (or piece): arrays in this process, or futures on a Client.

    On a Client, a block's future may be lost with its worker: the task of
    the next pass then rebuilds the state or runs without it.
    """

    blocks: list[Any]
    client: Any = None

    def release(self) -> None:
        if self.client is not None:
            futures = [future for future in self.blocks if future is not None]
            if futures:
                self.client.cancel(futures)
        self.blocks = []


@dataclass(frozen=True)
class _WorkerKey:
    """The key of a block's carried state in the memory of the worker meant to run the task (not a dependency)."""

    key: str


def _worker_value(ref: _WorkerKey) -> Any:
    from distributed import get_worker

    data = get_worker().data
    try:
        return data[ref.key]
    except KeyError:
        return None  # its worker was lost, or the task ran on another one


def _along_pieces(along: Sequence[Any], starts: list[int]) -> list[list[np.ndarray]]:
    """The pieces of each ``along`` input (an (n_rows, 1) array) as contiguous 1-D arrays."""
    return [[np.ascontiguousarray(piece[:, 0]) for _, piece in rows_of(rows, starts)] for rows in along]


def pass_task(
    chunk: Callable[..., Any],
    source: Any,
    starts: list[int],
    along: list[Any],
    carried: Any,
    extra: Sequence[Any],
    takes_carried: bool,
    rebuild: Callable[..., Any] | None,
) -> Any:
    """One row block of a pass: read its rows (and its blocks of the ``along`` inputs), run ``chunk`` on them.

    A block of several pieces is put together first. ``carried`` is the
    block's state from the last pass (an array, a :class:`_WorkerKey`, or
    None); a missing one is rebuilt with ``rebuild(block, first_row,
    *along_blocks)`` when given, else passed as None.
    """
    pieces = list(rows_of(source, starts))
    along_pieces = _along_pieces(along, starts)
    if isinstance(carried, _WorkerKey):
        carried = _worker_value(carried)
    if isinstance(extra, _Extra):
        extra, rebuild = extra.values, extra.rebuild
    with limited_blas():  # dask threads x BLAS threads within the cores, on any scheduler
        first_row = pieces[0][0]
        block = _joined([piece for _, piece in pieces])
        along_blocks = [_joined(parts) for parts in along_pieces]
        if takes_carried and carried is None and rebuild is not None:
            carried = rebuild(block, first_row, *along_blocks)
        before = [carried] if takes_carried else []
        return chunk(block, first_row, *along_blocks, *before, *extra)


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def label_task(
    chunk: Callable[..., Any], source: Any, starts: list[int], carried: Any, extra: _Extra, takes: bool
) -> Any:
    """One piece of a block labelled (``chunk``'s ``(labelled, carried piece)``), on a Client."""
    ((first_row, piece),) = list(rows_of(source, starts))
    if isinstance(carried, _WorkerKey):
        carried = _worker_value(carried)
    with limited_blas():
        return chunk(piece, first_row, *([carried] if takes else []), *extra.values)


def accumulate_task(
    accumulate: Callable[..., Any],
    source: Any,
    starts: list[int],
    along: list[Any],
    labelled: tuple[Any, Any],
    running: Any,
    extra: _Extra,
) -> Any:
    """One labelled piece added to its block's running state (the result of the piece before it), on a Client."""
    ((first_row, piece),) = list(rows_of(source, starts))
    along_piece = [parts[0] for parts in _along_pieces(along, starts)]
    with limited_blas():
        return accumulate(piece, first_row, *along_piece, labelled[0], running, *extra.values)


def _shared(extra: _Extra) -> _Extra:
    return extra


class _Extra:
    """What every task of a pass shares (its arguments, the rebuild function and the candidates it holds).

    Sent once to a Client as one task's result, which dask leaves whole.
    """

    def __init__(self, values: tuple[Any, ...], rebuild: Callable[..., Any] | None = None) -> None:
        self.values = values
        self.rebuild = rebuild


@dataclass(frozen=True)
class PassColumn:
    """One reduction of a pass: ``chunk`` and its ``extra`` arguments over every row block, merged by ``combine``.

    With ``accumulate``, a block's pieces (the ``groups`` of :func:`run_pass`)
    are labelled each on its own, ``chunk(piece, first_row, [carried piece],
    *extra)`` returning ``(labelled, carried piece)`` (on a Client all at
    once, each on the worker holding it), then summed in row order, one
    piece after the other: ``accumulate(piece, first_row, *along_pieces,
    labelled, running, *extra)`` returns the running state with the piece
    added (``running`` is None for a block's first piece; the last one's is
    the block's partial). Only the cheap summation runs in sequence. On a
    Client only: locally a block's pieces share the process's threads anyway.
    """

    chunk: Callable[..., Any]
    combine: Callable[[list[Any]], Any]
    extra: tuple[Any, ...] = ()
    accumulate: Callable[..., Any] | None = None


def run_pass(
    rows: InputRows,
    columns: Sequence[PassColumn],
    *,
    split_every: int,
    name: str,
    what: str,
    along: Sequence[InputRows] = (),
    carried: CarriedRows | None = None,
    takes_carried: bool = False,
    returns_carried: bool = False,
    rebuild: Callable[..., Any] | None = None,
    window: int | None = None,
    progress: ProgressCallback | None = None,
    groups: Sequence[Sequence[int]] | None = None,
) -> tuple[list[Any], CarriedRows | None]:
    """Run one pass: every column's kernel over every row block, in bounded waves; the merged state of each.

    Parameters
    ----------
    rows : InputRows of the (n_rows, n_features) data
    columns : list of PassColumn
        Each is one task per row block (mean shift: one per block of seeds); k-means has one.
    split_every : int
        Fan-in of the fold (the grouping of the single-graph tree reduction).
    name, what : str
        Prefix of the task keys; what the progress lines call the pass.
    along : list of InputRows of (n_rows, 1) arrays
        Per-row inputs (sample weights), chunked like ``rows``; each block's column goes to the kernel.
    carried : CarriedRows, optional
        The last pass's per-row state (with ``takes_carried``); None for a first pass.
    takes_carried : bool
        The kernel takes the block's carried state (None when unknown) after the ``along`` blocks.
    returns_carried : bool
        The kernel returns ``(partial, new_carried_block)``, kept for the next pass (one column only).
    rebuild : callable, optional
        ``rebuild(block, first_row, *along_blocks)``: a block's carried state when it was lost.
    window : int, optional
        Tasks in flight; default :func:`~bigdist.execution.waves.window_size` of the ambient scheduler.
    progress : callable, optional
        ``progress(done, total, elapsed_seconds)`` after every row block.
    groups : list of lists of int, optional
        The row blocks as runs of consecutive chunks of ``rows`` (its pieces), default one chunk each. The
        carried state is per block, or per piece for a column with ``accumulate``.

    Returns
    -------
    (list of merged states, one per column; CarriedRows or None)
    """
    if returns_carried and len(columns) != 1:
        raise ValueError(f"a pass that carries state has one column, got {len(columns)}")
    client = ambient_client()
    if any(column.accumulate is not None for column in columns) and (client is None or rebuild is not None):
        raise ValueError("a pass whose blocks are summed piece by piece runs on a Client and rebuilds no state")
    window = window or window_size(client)
    groups = [[j] for j in range(len(rows.keys))] if groups is None else [list(group) for group in groups]
    n_blocks = len(groups)
    folds = [TreeFold(n_blocks, column.combine, split_every) for column in columns]
    meter = Progress(what, n_blocks * len(columns), 0, progress)
    logger.debug(
        "%s: %d row blocks x %d columns in windows of %d tasks%s", what, n_blocks, len(columns), window,
        ", per-row state kept on the workers" if returns_carried and client is not None else "",
    )  # fmt: skip
    with open_executor(f"{name}-{uuid.uuid4().hex[:12]}", client) as executor:
        run = _Pass(
            executor, client, rows, groups, columns, along, carried, takes_carried, returns_carried, rebuild, folds
        )
        kept = run.run(window, meter)
    return [fold.result() for fold in folds], kept


class _Pass:
    """The tasks of one pass, submitted through the executor and folded as they come back.

    On the local schedulers the carried state comes back with each partial
    and stays in this process; on a Client it stays on the worker as a key
    of its own, and the next pass's task is placed where it is.
    """

    def __init__(
        self,
        executor: Any,
        client: Any,
        rows: InputRows,
        groups: list[list[int]],
        columns: Sequence[PassColumn],
        along: Sequence[InputRows],
        carried: CarriedRows | None,
        takes_carried: bool,
        returns_carried: bool,
        rebuild: Callable[..., Any] | None,
        folds: list[TreeFold],
    ) -> None:
        self.executor, self.client = executor, client
        self.rows, self.groups, self.columns, self.along = rows, groups, columns, along
        self.carried, self.takes, self.returns, self.rebuild = carried, takes_carried, returns_carried, rebuild
        self.folds = folds
        # Carried state per piece for a pass summed piece by piece, else per block.
        by_piece = columns[0].accumulate is not None
        self.kept: list[Any] = [None] * (len(rows.keys) if by_piece else len(groups))

    def run(self, window: int, meter: Progress) -> CarriedRows | None:
        tasks = ((i, c) for i in range(len(self.groups)) for c in range(len(self.columns)))

        def done(task: tuple[int, int], value: Any) -> None:
            i, c = task
            if self.returns and self.client is None:
                value, self.kept[i] = value
            self.folds[c].add(i, value)
            meter.advance()

        if self.client is None:
            run_window(self.executor, tasks, self._submit_local, done, window)
            return CarriedRows(self.kept) if self.returns else None
        # Shared arguments (centroids, seeds) sent once, not inside every task: as a task, not scattered data,
        # so a worker lost with its copy recomputes it.
        extras = [
            self.executor.submit(_shared, _Extra(column.extra, self.rebuild), key=f"extra-{c}", track=False)
            for c, column in enumerate(self.columns)
        ]
        previous = [] if self.carried is None else self.carried.blocks
        live = [future for future in previous if future is not None]
        holders = self.client.who_has(live) if live else {}
        try:
            run_window(self.executor, tasks, lambda task: self._submit_distributed(task, extras, previous, holders),
                       done, window)  # fmt: skip
        except BaseException:
            kept = [future for future in self.kept if future is not None]
            if kept:
                self.client.cancel(kept)
            raise
        finally:
            # Released, not cancelled: a cancel would cancel the tasks that used them, and so the carried states.
            for future in extras:
                future.release()
        return CarriedRows(self.kept, self.client) if self.returns else None

    def _submit_local(self, task: tuple[int, int]) -> Any:
        i, c = task
        column, group = self.columns[c], self.groups[i]
        before = None if self.carried is None else self.carried.blocks[i]
        along = [rows.reader(group) for rows in self.along]
        starts = [self.rows.starts[piece] for piece in group]
        args = (column.chunk, self.rows.reader(group), starts, along, before, column.extra, self.takes, self.rebuild)
        return self.executor.submit(pass_task, *args, key=f"{i}-{c}")

    def _submit_distributed(
        self, task: tuple[int, int], extras: list[Any], previous: list[Any], holders: Mapping[str, Any]
    ) -> Any:
        i, c = task
        if self.columns[c].accumulate is not None:
            return self._submit_chain(i, c, extras, previous, holders)
        client, executor, group = self.client, self.executor, self.groups[i]
        before = previous[i] if previous else None
        args = (
            self.columns[c].chunk,
            self.rows.source(group, client),
            [self.rows.starts[piece] for piece in group],
            [rows.source(group, client) for rows in self.along],
            None if before is None else _WorkerKey(before.key),
            extras[c],
            self.takes,
            None,  # in the shared arguments
        )
        placed = _placed(before, holders)
        if not self.returns:
            return executor.submit(pass_task, *args, key=f"{i}-{c}", **placed)
        future = executor.submit(pass_task, *args, key=f"{i}-{c}", track=False, **placed)
        # The partial comes to the client, the state stays in the worker's memory as a key of its own.
        self.kept[i] = executor.submit(operator.getitem, future, 1, key=f"carried-{i}", track=False)
        return executor.submit(operator.getitem, future, 0, key=f"partial-{i}")

    def _submit_chain(self, i: int, c: int, extras: list[Any], previous: list[Any], holders: Mapping[str, Any]) -> Any:
        """Block ``i`` as one labelling task per piece, run at once, and a chain summing them in row order."""
        client, executor, column = self.client, self.executor, self.columns[c]
        running = None
        for j, piece in enumerate(self.groups[i]):
            # In row order on each worker, a piece's sum before the next piece's labels: the chain keeps up.
            order = {"priority": -piece}
            before = previous[piece] if previous else None
            source, starts = self.rows.source([piece], client), [self.rows.starts[piece]]
            ref = None if before is None else _WorkerKey(before.key)
            placed = {**order, **_placed(before, holders)}
            labelled = executor.submit(label_task, column.chunk, source, starts, ref, extras[c], self.takes,
                                       key=f"label-{piece}-{c}", track=False, **placed)  # fmt: skip
            if self.returns:
                self.kept[piece] = executor.submit(operator.getitem, labelled, 1, key=f"carried-{piece}", track=False)
            along = [rows.source([piece], client) for rows in self.along]
            last = j == len(self.groups[i]) - 1
            key = f"{i}-{c}" if last else f"sum-{piece}-{c}"
            # The summation goes where the piece is (its rows outweigh the running state).
            running = executor.submit(accumulate_task, column.accumulate, source, starts, along, labelled, running,
                                      extras[c], key=key, track=last, **order)  # fmt: skip
        return running


def _placed(before: Any, holders: Mapping[str, Any]) -> dict[str, Any]:
    """Placed where the task's carried state is, but run elsewhere if that worker is gone."""
    where = list(holders.get(before.key, ())) if before is not None else []
    return {"workers": where, "allow_other_workers": True} if where else {}


def _store_labels(
    chunk: Any, source: Any, starts: list[int], target: Any, region: slice, marker: Any, index: int
) -> int:
    if isinstance(chunk, _Extra):
        (chunk,) = chunk.values
    ((first_row, block),) = list(rows_of(source, starts))
    with limited_blas():
        labels = chunk(block, first_row)
    return store_block(np.asarray(labels), target, (region,), marker, (index,))


def write_labels(
    path: str,
    rows: da.Array,
    chunk: Callable[[np.ndarray, int], np.ndarray],
    small: Mapping[str, np.ndarray],
    *,
    fingerprint: str,
    attrs: Mapping[str, Any],
    overwrite: bool,
    what: str,
    progress: ProgressCallback | None = None,
    storage_options: StorageOptions = None,
) -> str:
    """Write ``small`` arrays (centroids, ...) and the rows' labels to a Zarr group, the labels in waves.

    Parameters
    ----------
    path : str, local path or fsspec URL
    rows : dask array of shape (n_rows, n_features)
        The data; its row blocks are made regular (one Zarr chunk each) as :func:`bigdist.io.write_group` does.
    chunk : callable
        ``chunk(block, first_row)``: the int64 labels of a block, shape (block rows,).
    small : dict of str to ndarray
        Written whole from the client before the labels.
    fingerprint : str
        Token of the run: an unfinished output of the same fingerprint resumes (its labelled blocks kept).
    attrs, overwrite, storage_options
        As for :func:`bigdist.io.write_group`.
    what : str
        What the progress lines call the job.
    progress : callable, optional
        ``progress(done, total, elapsed_seconds)`` after every labelled block.

    Returns
    -------
    str, the path
    """
    path = normalise_path(path)
    rows = regular_chunks(rows)[0]
    outputs = {
        name: OutputArray(name, value.shape, value.dtype, tuple((size,) for size in value.shape))
        for name, value in small.items()
    }
    outputs["labels"] = OutputArray("labels", (rows.shape[0],), np.dtype(np.int64), (tuple(rows.chunks[0]),))
    group, done = open_output(
        path, outputs, fingerprint=fingerprint, attrs=attrs, overwrite=overwrite, storage_options=storage_options
    )
    markers = {name: group[f"{PROGRESS_GROUP}/{name}"] for name in outputs}
    for name, value in small.items():
        if not done[name].all():
            store_block(
                value, group[name], tuple(slice(0, size) for size in value.shape), markers[name], (0,) * value.ndim
            )
    reader = InputRows(rows)
    target = group["labels"].with_config(WRITE_CONFIG)
    blocks = [block for block in row_blocks(rows.chunks[0]) if not done["labels"][block.index]]
    client = ambient_client()
    meter = Progress(what, len(done["labels"]), len(done["labels"]) - len(blocks), progress)
    with open_executor(f"bigdist-labels-{uuid.uuid4().hex[:12]}", client) as executor:
        # On a Client the kernel and its centroids are sent once, not inside every task.
        shared = chunk if client is None else executor.submit(_shared, _Extra((chunk,)), key="extra", track=False)

        def submit(b: RowBlock) -> Any:
            # Independent writes; each block is marked after it is stored.
            source = reader.source([b.index], client)
            args = (shared, source, [b.start], target, slice(b.start, b.stop), markers["labels"], b.index)
            return executor.submit(_store_labels, *args, key=str(b.index))

        run_window(executor, blocks, submit, lambda b, _: meter.advance(), window_size(client))
    return mark_complete(path, storage_options=storage_options)


__all__ = ["CarriedRows", "PassColumn", "TreeFold", "pass_task", "run_pass", "write_labels"]
