"""How the algorithms cut their query rows into tasks (shared by kNN and radius neighbours)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import Task, TaskRef
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from bigdist import config
from bigdist.io.arrays import rows_per_block


def even_blocks(n_rows: int, max_rows: int) -> tuple[int, ...]:
    """Row counts of the fewest blocks of at most ``max_rows`` rows, as equal as possible.

    Equal blocks, so that no small remainder block leaves a worker idle at
    the end, e.g. ``even_blocks(10, 4) == (4, 3, 3)``.

    Parameters
    ----------
    n_rows : int, >= 1
    max_rows : int, >= 1

    Returns
    -------
    tuple of int, summing to ``n_rows``
    """
    n_blocks = -(-n_rows // max_rows)
    base, extra = divmod(n_rows, n_blocks)
    return (base + 1,) * extra + (base,) * (n_blocks - extra)


def _cut_rows(*blocks: np.ndarray, cuts: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Rows ``lo:hi`` of each block, one after the other (a rechunk's split and merge in one task)."""
    pieces = [block[lo:hi] for block, (lo, hi) in zip(blocks, cuts, strict=True)]
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


class _RowCuts(Mapping[Any, Task]):
    """The tasks of an array's rows cut into new row blocks, each made when asked for.

    A plain rechunk builds every task at once (about 60 us per block: 3.5 s for the 61,036 query blocks of
    1e9 rows); here a task costs nothing until someone reads it, so the waves, which cull one block at a
    time, never pay for the others. A full compute materialises it as any graph.
    """

    def __init__(self, name: str, base: str, base_bounds: list[int], bounds: list[int]) -> None:
        self.name = name
        self.base = base
        self.base_bounds = base_bounds
        self.bounds = bounds

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __iter__(self) -> Iterator[Any]:
        return ((self.name, i, 0) for i in range(len(self)))

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, tuple) and len(key) == 3 and key[0] == self.name and key[2] == 0
            and isinstance(key[1], int) and 0 <= key[1] < len(self)
        )  # fmt: skip

    def __getitem__(self, key: Any) -> Task:
        if key not in self:
            raise KeyError(key)
        start, stop = self.bounds[key[1]], self.bounds[key[1] + 1]
        first = bisect.bisect_right(self.base_bounds, start) - 1
        last = bisect.bisect_left(self.base_bounds, stop) - 1
        blocks = range(first, last + 1)
        cuts = tuple(
            (
                max(start, self.base_bounds[j]) - self.base_bounds[j],
                min(stop, self.base_bounds[j + 1]) - self.base_bounds[j],
            )
            for j in blocks
        )
        return Task(key, _cut_rows, *(TaskRef((self.base, j, 0)) for j in blocks), cuts=cuts)


def split_rows(array: da.Array, rows: tuple[int, ...]) -> da.Array:
    """``array`` re-blocked along rows into blocks of ``rows`` rows, as ``array.rechunk({0: rows})`` but built lazily.

    Parameters
    ----------
    array : dask array of shape (n_rows, n_features)
        Dense blocks; a feature axis of several chunks or sparse blocks are rechunked by dask instead.
    rows : tuple of int, summing to n_rows

    Returns
    -------
    dask array of shape (n_rows, n_features), the same values in the new blocks
    """
    rows = tuple(int(size) for size in rows)
    if rows == tuple(array.chunks[0]):
        return array
    if array.ndim != 2 or array.numblocks[1] != 1 or type(array._meta) is not np.ndarray:
        return array.rechunk({0: rows})
    name = f"bigdist-rows-{tokenize(array.name, rows)}"
    base_bounds = np.concatenate([[0], np.cumsum(array.chunks[0])]).tolist()
    bounds = np.concatenate([[0], np.cumsum(rows)]).tolist()
    layer = MaterializedLayer(_RowCuts(name, array.name, base_bounds, bounds))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[array])
    return da.Array(graph, name, chunks=(rows, array.chunks[1]), meta=array._meta)


def query_blocks(queries: da.Array) -> da.Array:
    """``queries`` rechunked along rows into even blocks of at most ``bigdist.knn.query-block-rows`` rows.

    One task handles one such block against one train block. Wide rows make
    blocks of fewer rows, so that a block stays within ``bigdist.chunk-bytes``.

    Parameters
    ----------
    queries : dask array of shape (n_queries, n_features)

    Returns
    -------
    dask array of shape (n_queries, n_features)
    """
    max_rows = min(config.get("knn.query-block-rows"), rows_per_block(queries.shape[1], queries.dtype.itemsize))
    return split_rows(queries, even_blocks(queries.shape[0], max_rows))


__all__ = ["even_blocks", "query_blocks", "split_rows"]
