"""Row blocks that a task reads itself, from the small graph of each block, instead of depending on their keys.

A block of an input made by :func:`bigdist.io.as_array` from a Zarr store
is three tiny tasks: read the chunks (through the integrity checks of
``bigdist.io.integrity``), cast, check for NaN. :class:`BlockReader` carries
those tasks, culled from the input's graph, into the task that needs the
rows and runs them there with the synchronous scheduler: no train-block key
ever reaches the scheduler and no block travels between workers. Inputs
whose graph holds the data itself (NumPy arrays, persisted dask arrays) are
instead persisted once on a Client and their block futures passed to the
tasks (:class:`InputRows`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.core import flatten, get_dependencies

# Array data found in one block's graph above this share of the block's bytes: the rows are in the graph,
# not in a store, and would be shipped inside every task that reads them.
_DATA_SHARE = 0.25


class BlockReader:
    """Row blocks of an input, each computed when asked from its own culled graph.

    Parameters
    ----------
    graphs : list of dict
        One graph per block, holding only the tasks that block needs.
    keys : list
        The key of each block in its graph.
    starts : list of int
        Global first row of each block.
    """

    def __init__(self, graphs: list[dict[Any, Any]], keys: list[Any], starts: list[int]) -> None:
        self.graphs = graphs
        self.keys = keys
        self.starts = starts

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block) for each block in turn: only one block is held at a time."""
        for graph, key, start in zip(self.graphs, self.keys, self.starts, strict=True):
            yield start, np.asarray(dask.get(graph, key))

    def __repr__(self) -> str:
        return f"BlockReader({len(self)} blocks from row {self.starts[0] if self.starts else 0})"


class FetchedBlocks:
    """Row blocks already in memory (the results of persisted block futures), with the same interface."""

    def __init__(self, blocks: Sequence[np.ndarray], starts: Sequence[int]) -> None:
        self.blocks = list(blocks)
        self.starts = list(starts)

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        yield from zip(self.starts, self.blocks, strict=True)


def rows_of(source: BlockReader | FetchedBlocks | Sequence[np.ndarray], starts: Sequence[int] | None = None) -> Any:
    """``source`` as an iterable of (first row, block): futures resolved by distributed arrive as lists of arrays."""
    if isinstance(source, (BlockReader, FetchedBlocks)):
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


class InputRows:
    """How the tasks of a job get the row blocks of one input (a rows-chunked 2-D dask array).

    The input's graph is materialised once on the client (a few small tasks
    per block); each block's share of it is culled when a reader asks for it.

    Parameters
    ----------
    array : dask array of shape (n_rows, n_features), features in one chunk
    """

    def __init__(self, array: da.Array) -> None:
        self.array = array
        self.keys = list(flatten(array.__dask_keys__()))
        self.starts = [int(s) for s in np.concatenate([[0], np.cumsum(array.chunks[0])[:-1]])]
        self._graph = dict(array.__dask_graph__())
        self._culled: dict[int, dict[Any, Any]] = {}
        self.in_store = self._reads_itself()
        self._futures: list[Any] | None = None

    def _block_graph(self, index: int) -> dict[Any, Any]:
        graph = self._culled.get(index)
        if graph is None:
            graph = cull(self._graph, self.keys[index])
            # Panels are read by every query block: keep the culled graphs (a few tasks each).
            self._culled[index] = graph
        return graph

    def _reads_itself(self) -> bool:
        """Whether a block's graph reads its rows from somewhere (a store, a lazy source) rather than holding them."""
        graph = self._block_graph(0)
        if _holds_futures(graph):
            return False
        block_bytes = self.array.chunks[0][0] * self.array.shape[1] * self.array.dtype.itemsize
        return sum(_array_bytes(value) for value in graph.values()) <= _DATA_SHARE * block_bytes

    def reader(self, blocks: Sequence[int]) -> BlockReader:
        """A reader of ``blocks`` (row-block numbers) to run inside a task."""
        return BlockReader(
            [self._block_graph(j) for j in blocks], [self.keys[j] for j in blocks], [self.starts[j] for j in blocks]
        )

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


__all__ = ["BlockReader", "FetchedBlocks", "InputRows", "cull", "rows_of"]
