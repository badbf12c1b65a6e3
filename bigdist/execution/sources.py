"""Row blocks that a task reads itself, instead of depending on their keys.

An input that :func:`bigdist.io.as_array` opened from a store (a Zarr
array through the integrity checks of ``bigdist.io.integrity``, a ``.npy``
file, ...) is read by :class:`StoreReader` straight from the store — row
range, cast and NaN check, a few small attributes whatever the size of the
input — and each stored chunk once per task even when it spans several
blocks. Any other lazy input (a user's dask pipeline, synthetic data) is
read by :class:`BlockReader` from each block's own graph, culled layer by
layer from the input's high-level graph without materialising it, and run
inside the task with the synchronous scheduler. Either way no train-block
key ever reaches the scheduler and no block travels between workers.
Inputs whose graph holds the data itself (NumPy arrays, persisted dask
arrays) are instead persisted once on a Client and their block futures
passed to the tasks (:class:`InputRows`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask._task_spec import GraphNode
from dask.blockwise import Blockwise
from dask.core import flatten, get_dependencies
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from bigdist.io.arrays import StoredRows, stored_rows

# Array data found in one block's graph above this share of the block's bytes: the rows are in the graph,
# not in a store, and would be shipped inside every task that reads them.
_DATA_SHARE = 0.25

# Culled block graphs kept for panels read again by the next query block: bounded, so the client's
# memory does not grow with the number of blocks (culling one again costs about a millisecond).
_CACHED_BLOCKS = 1024


class BlockReader:
    """Row blocks of an input, each computed when asked from its own culled graph.

    The graphs are culled when first needed — when the reader is pickled
    into a task, or iterated in this process — so readers made for work not
    yet submitted cost a few bytes each.

    Parameters
    ----------
    rows : InputRows
        The input whose blocks these are.
    blocks : list of int
        Their row-block numbers.
    """

    def __init__(self, rows: InputRows, blocks: Sequence[int]) -> None:
        # Keys, starts and graphs are looked up when needed: a job makes readers for every panel of a block.
        self._rows: InputRows | None = rows
        self.blocks = blocks
        self._graphs: list[dict[Any, Any]] | None = None
        self._keys: list[Any] | None = None
        self._starts: list[int] | None = None

    @property
    def keys(self) -> list[Any]:
        """The key of each block in its graph."""
        if self._keys is None:
            assert self._rows is not None  # a pickled reader carries its keys
            self._keys = [self._rows.keys[j] for j in self.blocks]
        return self._keys

    @property
    def starts(self) -> list[int]:
        """Global first row of each block."""
        if self._starts is None:
            assert self._rows is not None
            self._starts = [self._rows.starts[j] for j in self.blocks]
        return self._starts

    @property
    def graphs(self) -> list[dict[Any, Any]]:
        """One graph per block, holding only the tasks that block needs."""
        if self._graphs is None:
            assert self._rows is not None
            self._graphs = [self._rows.block_graph(j) for j in self.blocks]
        return self._graphs

    def __getstate__(self) -> dict[str, Any]:
        # The graphs, never the whole input's InputRows.
        state = {"blocks": list(self.blocks), "_keys": self.keys, "_starts": self.starts, "_graphs": self.graphs}
        return {**state, "_rows": None}

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block) for each block in turn: only one block is held at a time."""
        for graph, key, start in zip(self.graphs, self.keys, self.starts, strict=True):
            yield start, np.asarray(dask.get(graph, key))

    def __repr__(self) -> str:
        return f"BlockReader({len(self)} blocks from row {self.starts[0] if self.starts else 0})"


class StoreReader:
    """Row blocks read straight from the store of an input :func:`bigdist.io.as_array` opened (no graph).

    Consecutive blocks that share a stored chunk (chunks larger than a
    block) are read with one read, so each chunk is decompressed once per
    reader, not once per block; only that chunk's rows are held at a time.

    Parameters
    ----------
    stored : StoredRows
        How the input's rows are read, cast and checked.
    starts, stops : list of int
        Global first row and end row of each block.
    """

    def __init__(self, stored: StoredRows, starts: Sequence[int], stops: Sequence[int]) -> None:
        self.stored = stored
        self.starts = list(starts)
        self.stops = list(stops)

    def __len__(self) -> int:
        return len(self.starts)

    def _reads(self) -> Iterator[list[int]]:
        """The blocks, as runs that one read covers."""
        unit = self.stored.unit_rows
        run: list[int] = []
        for i, start in enumerate(self.starts):
            joins = bool(run) and unit > 0 and self.stops[run[-1]] == start and start // unit == (start - 1) // unit
            if run and not joins:
                yield run
                run = []
            run.append(i)
        if run:
            yield run

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block) for each block in turn."""
        for run in self._reads():
            first = self.starts[run[0]]
            rows = self.stored.read(first, self.stops[run[-1]])
            for i in run:
                start = self.starts[i]
                yield start, self.stored.check(rows[start - first : self.stops[i] - first], start)

    def __repr__(self) -> str:
        return f"StoreReader({len(self)} blocks from row {self.starts[0] if self.starts else 0}, {self.stored!r})"


class FetchedBlocks:
    """Row blocks already in memory (the results of persisted block futures), with the same interface."""

    def __init__(self, blocks: Sequence[np.ndarray], starts: Sequence[int]) -> None:
        self.blocks = list(blocks)
        self.starts = list(starts)

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        yield from zip(self.starts, self.blocks, strict=True)


def rows_of(
    source: BlockReader | StoreReader | FetchedBlocks | Sequence[np.ndarray], starts: Sequence[int] | None = None
) -> Any:
    """``source`` as an iterable of (first row, block): futures resolved by distributed arrive as lists of arrays."""
    if isinstance(source, (BlockReader, StoreReader, FetchedBlocks)):
        return source
    return FetchedBlocks(source, starts or [])


def cull(graph: dict[Any, Any], key: Any) -> dict[Any, Any]:
    """The tasks of ``graph`` that ``key`` needs, itself included."""
    needed: dict[Any, Any] = {}
    stack = [key]
    while stack:
        current = stack.pop()
        if current in needed:
            continue
        needed[current] = graph[current]
        stack.extend(dep for dep in get_dependencies(graph, current) if dep not in needed)
    return needed


class _LegacyTasks(Exception):
    """A layer holds tasks in dask's old tuple form, whose dependencies need every key of the graph."""


def _walk(mapping: Mapping[Any, Any], wanted: set[Any], out: dict[Any, Any]) -> set[Any]:
    """Copy the tasks of ``mapping`` that ``wanted`` needs into ``out``; return the keys needed from outside it."""
    outside: set[Any] = set()
    stack = list(wanted)
    while stack:
        key = stack.pop()
        if key in out:
            continue
        if key not in mapping:
            outside.add(key)
            continue
        task = mapping[key]
        out[key] = task
        if isinstance(task, GraphNode):
            stack.extend(task.dependencies)
        elif isinstance(task, (tuple, list, dict, set, str, bytes)):
            # An old-style task, or a container or alias that may name other keys.
            raise _LegacyTasks(key)
        # Anything else is a literal that needs nothing (from_array's source object, a NumPy array).
    return outside


def cull_layers(graph: HighLevelGraph, keys: Sequence[Any], order: Sequence[str]) -> dict[Any, Any]:
    """The tasks of ``keys`` and of what they need, culled layer by layer without materialising ``graph``.

    ``HighLevelGraph.cull`` copies every materialised layer whole (``dict(layer)``), which costs O(blocks)
    per call; here a materialised layer is walked from the wanted keys only and a Blockwise layer builds
    only the wanted output blocks, so a block's graph costs O(its own tasks).

    Parameters
    ----------
    graph : HighLevelGraph
    keys : list of keys
    order : list of str
        The layer names of ``graph`` in reverse topological order (dependents first).

    Raises
    ------
    _LegacyTasks
        When a layer the keys need holds tasks in the old tuple form.
    """
    needed = set(keys)
    out: dict[Any, Any] = {}
    for name in order:
        if not needed:
            break
        layer = graph.layers[name]
        if isinstance(layer, Blockwise):
            mine = {key for key in needed if isinstance(key, tuple) and key and key[0] == layer.output}
            if not mine:
                continue
            culled, dependencies = layer.cull(mine, ())
            tasks = dict(culled)
            out.update(tasks)
            needed -= mine
            needed |= {dep for deps in dependencies.values() for dep in deps if dep not in out}
        elif isinstance(layer, MaterializedLayer):
            mine = {key for key in needed if key in layer.mapping}
            if mine:
                needed = (needed - mine) | _walk(layer.mapping, mine, out)
        else:
            raise _LegacyTasks(name)  # another Layer type: only its own cull knows its keys
    return out


class GraphCuller:
    """The tasks that some keys of a collection's graph need, culled without materialising the graph.

    A high-level graph is culled layer by layer (:func:`cull_layers`); a
    graph with old-style tuple tasks, or a plain dict, is materialised once
    and culled key by key, as before.

    Parameters
    ----------
    graph : HighLevelGraph or dict
        A collection's ``__dask_graph__()``.
    """

    def __init__(self, graph: Any) -> None:
        self._hlg: HighLevelGraph | None = graph if isinstance(graph, HighLevelGraph) else None
        self._order = list(reversed(graph._toposort_layers())) if self._hlg is not None else []
        self._graph: dict[Any, Any] = {} if self._hlg is not None else dict(graph)

    def __call__(self, keys: Sequence[Any]) -> dict[Any, Any]:
        if self._hlg is not None:
            try:
                return cull_layers(self._hlg, keys, self._order)
            except _LegacyTasks:
                # Old-style tasks name their dependencies only among all keys: materialise once, as dask does.
                self._graph, self._hlg = dict(self._hlg), None
        graph: dict[Any, Any] = {}
        for key in keys:
            graph.update(cull(self._graph, key))
        return graph


def _array_bytes(value: Any) -> int:
    """Bytes of NumPy data inside a graph value (a literal, a data node, a task's arguments)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    inner = getattr(value, "value", None)
    if isinstance(inner, np.ndarray):
        return inner.nbytes
    args = getattr(value, "args", None)
    if isinstance(args, tuple):
        return sum(_array_bytes(arg) for arg in args)
    if isinstance(value, (tuple, list)):
        return sum(_array_bytes(item) for item in value)
    return 0


def _holds_futures(graph: dict[Any, Any]) -> bool:
    return any(type(value).__name__ in ("Future", "Alias") and "distributed" in type(value).__module__
               for value in graph.values())  # fmt: skip


class _BlockKeys(Sequence[Any]):
    """The keys ``(name, i, 0)`` of the row blocks of a 2-D array with one feature chunk, made when asked."""

    def __init__(self, name: str, n_blocks: int) -> None:
        self.name = name
        self.n_blocks = n_blocks

    def __len__(self) -> int:
        return self.n_blocks

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [(self.name, i, 0) for i in range(*index.indices(self.n_blocks))]
        i = range(self.n_blocks)[index]  # IndexError and negative indices as a list does
        return (self.name, i, 0)


def _block_keys(array: da.Array) -> Sequence[Any]:
    """The keys of ``array``'s row blocks, in order."""
    if array.ndim == 2 and array.numblocks[1] == 1:
        return _BlockKeys(array.name, array.numblocks[0])
    return list(flatten(array.__dask_keys__()))


class InputRows:
    """How the tasks of a job get the row blocks of one input (a rows-chunked 2-D dask array).

    An input that :func:`bigdist.io.as_array` opened from a store is read
    by :class:`StoreReader` from the store itself (no graph at all). Any
    other input's graph is never materialised on the client: each block's
    share of it is culled layer by layer when a task needs it (O(the block's
    own tasks)), and only the most recent blocks' graphs are kept.

    Parameters
    ----------
    array : dask array of shape (n_rows, n_features), features in one chunk
    """

    def __init__(self, array: da.Array) -> None:
        self.array = array
        self.keys = _block_keys(array)
        bounds = np.concatenate([[0], np.cumsum(array.chunks[0])]).tolist()
        self.starts: list[int] = bounds[:-1]
        self._stops: list[int] = bounds[1:]
        self._stored = stored_rows(array)
        self._cull = GraphCuller(array.__dask_graph__())
        self._culled: OrderedDict[int, dict[Any, Any]] = OrderedDict()
        # Readers cull in the local scheduler's threads.
        self._lock = threading.Lock()
        self.in_store = self._stored is not None or self._reads_itself()
        self._futures: list[Any] | None = None

    @property
    def unit_rows(self) -> int:
        """Rows the store decodes at once when a stored chunk spans several blocks, else 0."""
        if self._stored is None or self._stored.unit_rows <= max(self.array.chunks[0], default=0):
            return 0
        return self._stored.unit_rows

    def block_graph(self, index: int) -> dict[Any, Any]:
        """The tasks that row block ``index`` needs, itself included."""
        with self._lock:
            graph = self._culled.get(index)
            if graph is not None:
                self._culled.move_to_end(index)
                return graph
            graph = self._cull([self.keys[index]])
            self._culled[index] = graph
            if len(self._culled) > _CACHED_BLOCKS:
                self._culled.popitem(last=False)
            return graph

    def _reads_itself(self) -> bool:
        """Whether a block's graph reads its rows from somewhere (a store, a lazy source) rather than holding them."""
        graph = self.block_graph(0)
        if _holds_futures(graph):
            return False
        block_bytes = self.array.chunks[0][0] * self.array.shape[1] * self.array.dtype.itemsize
        return sum(_array_bytes(value) for value in graph.values()) <= _DATA_SHARE * block_bytes

    def reader(self, blocks: Sequence[int]) -> BlockReader | StoreReader:
        """A reader of ``blocks`` (row-block numbers) to run inside a task."""
        if self._stored is not None:
            return StoreReader(self._stored, [self.starts[j] for j in blocks], [self._stops[j] for j in blocks])
        return BlockReader(self, blocks)

    def futures(self, client: Any) -> list[Any]:
        """The block futures of the input persisted once on ``client`` (for inputs held in memory)."""
        if self._futures is None:
            persisted = client.persist(self.array)
            self._futures = list(flatten(client.futures_of(persisted)))
            by_key = {future.key: future for future in self._futures}
            self._futures = [by_key[key] for key in self.keys]
        return self._futures

    def source(self, blocks: Sequence[int], client: Any | None) -> Any:
        """What a task receives for ``blocks``: a reader, or (in memory, on a Client) their futures."""
        if self.in_store or client is None:
            return self.reader(blocks)
        futures = self.futures(client)
        return [futures[j] for j in blocks]


__all__ = ["BlockReader", "FetchedBlocks", "GraphCuller", "InputRows", "StoreReader", "cull", "cull_layers", "rows_of"]
