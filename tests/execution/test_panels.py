"""The shared (query block, panel) runner against NumPy slicing of the same inputs."""

import dask
import dask.array as da
import numpy as np
import pytest

from bigdist.execution.jobs import OutputArray
from bigdist.execution.panels import panel_job, panel_summary, run_panels
from bigdist.execution.sources import InputRows, rows_of


def _rows_panel(queries, query_starts, train, train_starts, labels, label_starts):
    """What the task was given: its query rows, its train blocks' rows and its aligned rows, with their starts."""
    ((query_start, query_rows),) = list(rows_of(queries, query_starts))
    blocks = list(rows_of(train, train_starts))
    ((label_start, label_rows),) = list(rows_of(labels, label_starts))
    return [(query_start, query_rows, [start for start, _ in blocks], np.concatenate([r for _, r in blocks]),
             label_start, label_rows)]  # fmt: skip


def _concat(partials):
    return [part for group in partials for part in group]


@pytest.mark.usefixtures("synchronous")
@pytest.mark.parametrize("split_every", [2, 3])
def test_every_unskipped_query_block_gets_each_panel_with_its_aligned_rows(split_every):
    rng = np.random.default_rng(3)
    queries_np, train_np = rng.standard_normal((50, 2)), rng.standard_normal((97, 2))
    labels_np = rng.standard_normal((97, 1))
    query_array = da.from_array(queries_np, chunks=(10, -1))
    train_array = da.from_array(train_np, chunks=((20, 20, 20, 20, 17), (2,)))
    with dask.config.set({"bigdist.execution.panel-flops": 10 * 40 * 4.0}):
        job = panel_job("test", query_array, train_array, flops_per_pair=4.0, outputs=(), params={})
    assert [p.blocks for p in job.panels] == [(0, 1), (2, 3), (4,)]
    labels = InputRows(da.from_array(labels_np, chunks=((40, 40, 17), (1,))))
    skip = np.array([False, True, False, False, True])
    finished = {}

    def finish(partials, block):
        finished[block] = _concat(partials)
        return 1

    queries, train = InputRows(query_array), InputRows(train_array)
    assert panel_summary(job, train).startswith("5 query blocks x 3 panels of 5 train blocks = 15 tasks")
    run_panels(job, queries, train, _rows_panel, skip=skip, combine=_concat, finish=finish,
               finish_args=lambda block: (block.index,), split_every=split_every, name="bigdist-test-panel",
               what="test", aligned=(labels,))  # fmt: skip
    assert sorted(finished) == [0, 2, 3]
    for block, parts in finished.items():
        assert len(parts) == len(job.panels)
        for panel, (query_start, query_rows, starts, train_rows, label_start, label_rows) in zip(
            job.panels, sorted(parts, key=lambda part: part[2][0]), strict=True
        ):
            assert query_start == 10 * block
            np.testing.assert_array_equal(query_rows, queries_np[10 * block : 10 * block + 10])
            assert starts == [job.train_blocks[j].start for j in panel.blocks]
            np.testing.assert_array_equal(train_rows, train_np[panel.start : panel.stop])
            assert label_start == panel.start
            np.testing.assert_array_equal(label_rows, labels_np[panel.start : panel.stop])


def test_panel_job_counts_tasks_from_the_chunks():
    query_array = da.zeros((25, 3), chunks=(10, -1), dtype=np.float32)
    train_array = da.zeros((60, 3), chunks=(15, -1))
    out = OutputArray("x", (25,), np.dtype(np.int64), ((10, 10, 5),))
    with dask.config.set({"bigdist.execution.panel-flops": 1e9}):
        job = panel_job("test", query_array, train_array, flops_per_pair=6.0, outputs=(out,), params={"a": 1})
    assert (job.kind, job.n_queries, job.n_train, job.n_features) == ("test", 25, 60, 3)
    assert (job.query_itemsize, job.train_itemsize) == (4, 8)
    assert [(b.start, b.stop) for b in job.query_blocks] == [(0, 10), (10, 20), (20, 25)]
    assert [p.blocks for p in job.panels] == [(0, 1, 2, 3)]
    assert job.outputs == (out,) and job.params == {"a": 1}
    assert job.flops == 25 * 60 * 6.0
