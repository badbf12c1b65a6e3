"""Jobs of (query block, train panel) tasks, and their run in waves.

The kNN, ``bigdist classify`` and the radius neighbours cut their inputs the
same way — the query rows in their row blocks, the train blocks grouped into
panels of about ``bigdist.execution.panel-flops`` — and give the waves the
same work for each query block: one task per panel, reading the query block
and the panel's train blocks itself, then a merge and a finish. They differ
in what a panel computes and what the finish writes, which they pass in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from bigdist import config
from bigdist.execution.jobs import Job, OutputArray, RowBlock, group_panels, row_blocks
from bigdist.execution.sources import InputRows
from bigdist.execution.waves import BlockWork, ProgressCallback, ambient_client, run_blocks


def panel_job(
    kind: str,
    query_array: Any,
    train_array: Any,
    *,
    flops_per_pair: float,
    outputs: tuple[OutputArray, ...],
    params: dict[str, Any],
    train_rows: InputRows | None = None,
) -> Job:
    """The :class:`Job` of one task per (query block, panel of train blocks).

    Parameters
    ----------
    kind : str, the job's kind (``"knn"``, ``"radius"``, ...)
    query_array : dask array of shape (n_queries, n_features), each row block one query block
    train_array : dask array of shape (n_train, n_features)
    flops_per_pair : float
        Arithmetic per (query row, train row); with ``bigdist.execution.panel-flops`` (read now) it sizes the panels.
    outputs : tuple of OutputArray
    params : dict, the run's parameters (as written to the output's attributes)
    train_rows : InputRows, optional
        Of ``train_array``, if already made (it materialises the train graph once).
    """
    n_queries, n_features = query_array.shape
    train_blocks = row_blocks(train_array.chunks[0])
    train_rows = train_rows or InputRows(train_array)
    return Job(
        kind=kind,
        n_queries=n_queries,
        n_train=train_array.shape[0],
        n_features=n_features,
        query_itemsize=query_array.dtype.itemsize,
        train_itemsize=train_array.dtype.itemsize,
        query_blocks=row_blocks(query_array.chunks[0]),
        train_blocks=train_blocks,
        panels=group_panels(
            train_blocks,
            max(query_array.chunks[0]),
            flops_per_pair,
            float(config.get("execution.panel-flops")),
            train_rows.unit_rows,
        ),
        outputs=outputs,
        flops_per_pair=flops_per_pair,
        train_in_store=train_rows.in_store,
        params=params,
    )


def panel_summary(job: Job, train: InputRows) -> str:
    """The tasks of ``job`` in words, for the log line that starts a run."""
    read = "inside the tasks" if train.in_store else "from blocks persisted once"
    return (
        f"{len(job.query_blocks)} query blocks x {len(job.panels)} panels of {len(job.train_blocks)} train blocks "
        f"= {job.n_tasks} tasks, train rows read {read}"
    )


def run_panels(
    job: Job,
    queries: InputRows,
    train: InputRows,
    panel: Callable[..., Any],
    *,
    skip: np.ndarray,
    combine: Callable[[list[Any]], Any],
    finish: Callable[..., Any],
    finish_args: Callable[[RowBlock], tuple[Any, ...]],
    split_every: int,
    name: str,
    what: str,
    progress: ProgressCallback | None = None,
    aligned: Sequence[InputRows] = (),
) -> None:
    """Run the query blocks of ``job`` not marked in ``skip`` in waves, one task per (query block, panel).

    Parameters
    ----------
    job : Job with panels
    queries, train : InputRows
        Of the job's query and train arrays (the same object for a self-join).
    panel : callable
        ``panel(query_source, [query_start], train_source, train_starts, *aligned_args)``: the partial
        result of one query block within one panel.
    skip : ndarray of shape (n_query_blocks,), bool
        Query blocks already written (a resumed run): no work for them.
    combine, finish : callable
        As for :class:`bigdist.execution.waves.BlockWork`.
    finish_args : callable
        ``finish_args(query_block)``: the finish's arguments after the partials.
    split_every, name, what, progress
        As for :func:`bigdist.execution.waves.run_blocks`.
    aligned : sequence of InputRows
        Inputs cut as the panels (block ``i`` holds the rows of panel ``i``); each task
        also gets its panel's block of each, as a source and ``[panel.start]``.
    """
    client = ambient_client()

    def blocks() -> Iterator[BlockWork]:
        for block in job.query_blocks:
            if skip[block.index]:
                continue
            query_source = queries.source([block.index], client)
            work = []
            for p in job.panels:
                train_args = (train.source(list(p.blocks), client), [train.starts[j] for j in p.blocks])
                extra = [value for rows in aligned for value in (rows.source([p.index], client), [p.start])]
                work.append((panel, (query_source, [block.start], *train_args, *extra)))
            yield BlockWork(block.index, work, combine=combine, finish=finish, finish_args=finish_args(block))

    run_blocks(
        blocks(),
        total=len(job.query_blocks),
        done=int(skip.sum()),
        split_every=split_every,
        name=name,
        what=what,
        progress=progress,
    )


__all__ = ["panel_job", "panel_summary", "run_panels"]
