"""The job description's numbers against a count of what the waves run."""

import dask
import dask.array as da
import numpy as np
import pytest

import bigdist as bd
import bigdist.execution.knn as execution_knn
from bigdist.execution.jobs import group_panels, row_blocks


def test_panels_cover_the_train_blocks_in_order_within_the_work_target():
    blocks = row_blocks((30, 30, 30, 25, 10))
    panels = group_panels(blocks, query_rows=10, flops_per_pair=2.0, panel_flops=1000.0)
    assert [b for panel in panels for b in panel.blocks] == [0, 1, 2, 3, 4]
    assert [(p.start, p.stop) for p in panels] == [(0, 60), (60, 115), (115, 125)]
    # Every panel but the last reaches the target; none would without its last block.
    for panel in panels[:-1]:
        assert panel.rows * 10 * 2.0 >= 1000.0
        assert (panel.rows - blocks[panel.blocks[-1]].rows) * 10 * 2.0 < 1000.0


def test_panels_end_only_where_a_stored_chunk_ends():
    # Stored chunks of 60 rows cut into blocks of 20; a single block reaches the target.
    blocks = row_blocks((20,) * 7 + (10,))
    panels = group_panels(blocks, query_rows=10, flops_per_pair=2.0, panel_flops=100.0, unit_rows=60)
    assert [(p.start, p.stop) for p in panels] == [(0, 60), (60, 120), (120, 150)]
    assert [b for panel in panels for b in panel.blocks] == list(range(8))
    # Without a unit the same blocks make one panel each.
    assert len(group_panels(blocks, query_rows=10, flops_per_pair=2.0, panel_flops=100.0)) == 8


@pytest.mark.usefixtures("synchronous")
def test_job_counts_match_the_tasks_the_waves_run(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train = da.from_array(rng.standard_normal((500, 3)), chunks=70)
    queries = rng.standard_normal((130, 3))
    calls = []
    real = execution_knn.knn_panel

    def counted(queries, query_starts, train, train_starts, **kwargs):
        calls.append((query_starts[0], tuple(train_starts)))
        return real(queries, query_starts, train, train_starts, **kwargs)

    monkeypatch.setattr(execution_knn, "knn_panel", counted)
    with dask.config.set({"bigdist.knn.query-block-rows": 40, "bigdist.execution.panel-flops": 4000.0}):
        result = bd.knn(queries, train, k=2)
        job = result.job
        result.to_zarr(str(tmp_path / "nn.zarr"))
    assert job.n_tasks == len(calls) == len(set(calls)) == len(job.query_blocks) * len(job.panels)
    assert sorted(calls) == sorted(
        (block.start, tuple(job.train_blocks[j].start for j in panel.blocks))
        for block in job.query_blocks
        for panel in job.panels
    )
    assert sum(task.flops for task in job.tasks()) == job.flops == 130 * 500 * 2.0 * 3
    assert sum(task.bytes_read for task in job.tasks()) == job.bytes_read
    assert job.bytes_written == 130 * 2 * (8 + 8)
    assert job.n_waves(window=4) == -(-job.n_tasks // 4)
