"""How the algorithms cut their query rows into tasks (shared by kNN and radius neighbours)."""

from __future__ import annotations

import dask.array as da

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
    return queries.rechunk({0: even_blocks(queries.shape[0], max_rows)})


__all__ = ["even_blocks", "query_blocks"]
