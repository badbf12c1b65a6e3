"""Radius neighbours written through the waves: the bytes of the single-graph write, resumable in both phases."""

import logging
import os
import pathlib
import sys

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from scipy.spatial.distance import cdist

import bigdist as bd
import bigdist.execution.radius as execution_radius
from bigdist.execution.waves import window_size
from bigdist.io import read_group
from tests.execution.helpers import SchedulerWatch, chunk_digests, counting


def _csr(path):
    out = read_group(path)
    return tuple(out[name].compute() for name in ("indptr", "indices", "distances"))


def _oracle(queries, train, radius, metric, self_join):
    """float64 SciPy brute force: each row's neighbours in increasing train index."""
    full = cdist(queries.astype(np.float64), train.astype(np.float64), metric=metric)
    if self_join:
        np.fill_diagonal(full, np.inf)
    rows = [np.flatnonzero(row <= radius) for row in full]
    return rows, [full[i, found] for i, found in enumerate(rows)]


def _check_oracle(path, queries, train, radius, metric, self_join, rtol):
    indptr, indices, distances = _csr(path)
    rows, values = _oracle(queries, train, radius, metric, self_join)
    assert indptr[0] == 0 and len(indptr) == len(queries) + 1 and indptr[-1] == len(indices) > 0
    for i, (expected, expected_values) in enumerate(zip(rows, values, strict=True)):
        np.testing.assert_array_equal(indices[indptr[i] : indptr[i + 1]], expected)
        np.testing.assert_allclose(distances[indptr[i] : indptr[i + 1]], expected_values, rtol=rtol)


SETTINGS = [
    # (chunk-bytes in rows of 6 float32, query-block-rows, panel-flops, split_every)
    (100, 97, 1.0, 2),  # irregular query blocks (97 and 96 rows), one train block per panel, three merge levels
    (200, 130, 4e5, 3),  # panels of several blocks
    (300, 1000, 1e12, 8),  # one panel holds the whole train set
]


@pytest.mark.usefixtures("synchronous")
@pytest.mark.parametrize(("block_rows", "query_rows", "panel_flops", "split_every"), SETTINGS)
@pytest.mark.parametrize(("metric", "radius", "sort_results"), [("euclidean", 0.9, False), ("cityblock", 1.6, True)])
def test_self_join_bytes_equal_single_graph_and_oracle(tmp_path, train_store, block_rows, query_rows, panel_flops,
                                                       split_every, metric, radius, sort_results):  # fmt: skip
    settings = {
        "bigdist.chunk-bytes": block_rows * 6 * 4,
        "bigdist.knn.query-block-rows": query_rows,
        "bigdist.execution.panel-flops": panel_flops,
    }
    waves, graph = str(tmp_path / "waves.zarr"), str(tmp_path / "graph.zarr")
    with dask.config.set(settings):
        result = bd.radius_neighbors(train_store, None, radius, metric, sort_results=sort_results,
                                     split_every=split_every)  # fmt: skip
        job = result.job
        result.to_zarr(waves)
        result._write_single_graph(graph, attrs={}, overwrite=False)
    if query_rows == 97:
        assert len(set(job.query_blocks[i].rows for i in range(len(job.query_blocks)))) == 2
    assert len(job.panels) >= (4 if panel_flops < 1e12 else 1)
    digests = chunk_digests(waves)
    assert len(digests) >= 3 and digests == chunk_digests(graph)
    assert sorted(os.listdir(waves)) == ["distances", "indices", "indptr", "zarr.json"]
    points = zarr.open_array(train_store, mode="r")[:]
    if sort_results:
        indptr, indices, distances = _csr(waves)
        assert all(np.all(np.diff(distances[a:b]) >= 0) for a, b in zip(indptr, indptr[1:], strict=False))
    else:
        _check_oracle(waves, points, points, radius, metric, True, rtol=1e-6)


@pytest.mark.usefixtures("synchronous")
@pytest.mark.parametrize("train_chunks", [97, 400])
def test_in_memory_queries_and_train_give_the_oracle_and_the_single_graph(tmp_path, train_chunks):
    rng = np.random.default_rng(2)
    train = rng.standard_normal((900, 4))
    queries = rng.standard_normal((250, 4))
    waves, graph = str(tmp_path / "waves.zarr"), str(tmp_path / "graph.zarr")
    with dask.config.set({"bigdist.knn.query-block-rows": 60, "bigdist.execution.panel-flops": 1e5}):
        result = bd.radius_neighbors(queries, da.from_array(train, chunks=train_chunks), 1.1)
        result.to_zarr(waves)
        result._write_single_graph(graph, attrs={}, overwrite=False)
    assert chunk_digests(waves) == chunk_digests(graph)
    _check_oracle(waves, queries, train, 1.1, "euclidean", False, rtol=1e-12)


@pytest.mark.usefixtures("synchronous")
def test_no_pair_at_all_writes_empty_arrays(tmp_path, train_store):
    with dask.config.set({"bigdist.chunk-bytes": 100 * 6 * 4}):
        result = bd.radius_neighbors(train_store, None, 1e-6)
        result.to_zarr(str(tmp_path / "waves.zarr"))
        result._write_single_graph(str(tmp_path / "graph.zarr"), attrs={}, overwrite=False)
    indptr, indices, distances = _csr(str(tmp_path / "waves.zarr"))
    assert indices.shape == distances.shape == (0,) and np.array_equal(indptr, np.zeros(1301, dtype=np.int64))
    assert chunk_digests(str(tmp_path / "waves.zarr")) == chunk_digests(str(tmp_path / "graph.zarr"))


@pytest.mark.usefixtures("synchronous")
def test_to_zarr_never_builds_the_single_graph(tmp_path, train_store, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("to_zarr built the (query blocks x train blocks) graph")

    monkeypatch.setattr(sys.modules["bigdist.radius"], "radius_pairs", refuse)
    with dask.config.set({"bigdist.chunk-bytes": 100 * 6 * 4}):
        result = bd.radius_neighbors(train_store, None, 0.9)
        repr(result)
        result.to_zarr(str(tmp_path / "r.zarr"))
    assert read_group(str(tmp_path / "r.zarr"))["indptr"].shape == (1301,)


@pytest.mark.usefixtures("synchronous")
@pytest.mark.parametrize("killed_in", ["stage_block", "concat_pairs"])
def test_interrupted_write_resumes_without_recomputing(tmp_path, train_store, monkeypatch, caplog, killed_in):
    settings = {"bigdist.chunk-bytes": 100 * 6 * 4, "bigdist.execution.panel-flops": 1e6}
    out, clean = str(tmp_path / "r.zarr"), str(tmp_path / "clean.zarr")
    calls: dict[str, int] = {}
    real = counting(monkeypatch, execution_radius, killed_in, calls, fail_at=6 if killed_in == "stage_block" else 2)
    with dask.config.set(settings), pytest.raises(KeyboardInterrupt):
        bd.radius_neighbors(train_store, None, 1.0).to_zarr(out)
    assert zarr.open_group(out, mode="r").attrs["bigdist"]["complete"] is False
    with pytest.raises(bd.errors.IncompleteOutputError):
        read_group(out)
    monkeypatch.setattr(execution_radius, killed_in, real)
    calls.clear()
    for name in ("radius_panel", "stage_block", "concat_pairs"):
        counting(monkeypatch, execution_radius, name, calls)
    with dask.config.set(settings), caplog.at_level(logging.INFO, logger="bigdist"):
        result = bd.radius_neighbors(train_store, None, 1.0)
        panels = len(result.job.panels)
        result.to_zarr(out)
    assert panels >= 2
    if killed_in == "stage_block":
        # Only the 13 - 5 unstaged query blocks were scored again.
        assert calls["radius_panel"] == (13 - 5) * panels and calls["stage_block"] == 13 - 5
        assert "5 blocks staged before" in caplog.text
    else:
        # Every block was staged: nothing scored again, and only the pairs' chunks not yet written are copied.
        assert "radius_panel" not in calls and "stage_block" not in calls
        assert 1 <= calls["concat_pairs"] < 2 * read_group(out)["indices"].numblocks[0]
    with dask.config.set(settings):
        bd.radius_neighbors(train_store, None, 1.0).to_zarr(clean)
    assert chunk_digests(out) == chunk_digests(clean)
    assert not (pathlib.Path(out) / "bigdist_progress").exists()


@pytest.mark.usefixtures("synchronous")
def test_progress_callback_plan_and_log_lines(tmp_path, train_store, caplog, monkeypatch):
    seen = []
    calls: dict[str, int] = {}
    counting(monkeypatch, execution_radius, "radius_panel", calls)
    settings = {"bigdist.chunk-bytes": 100 * 6 * 4, "bigdist.execution.progress-interval": 0,
                "bigdist.execution.panel-flops": 1e6}  # fmt: skip
    with dask.config.set(settings), caplog.at_level(logging.INFO, logger="bigdist.execution"):
        plan = bd.plan("radius", train_store, radius=0.8, calibrate_kernel=False)
        result = bd.radius_neighbors(train_store, None, 0.8)
        result.to_zarr(str(tmp_path / "r.zarr"), progress=lambda *a: seen.append(a))
    assert [done for done, _, _ in seen] == list(range(1, 14)) and {total for _, total, _ in seen} == {13}
    assert "13 of 13 blocks written (100.0%)" in caplog.text and "ETA" in caplog.text
    assert plan.query_blocks == 13 and plan.tasks == calls["radius_panel"] == 13 * plan.panels and plan.panels >= 2
    assert plan.bytes_written == 1301 * 8


def test_sparse_rows_are_written_from_the_single_graph(tmp_path, caplog):
    sparse = pytest.importorskip("scipy.sparse")
    rows = sparse.random(300, 8, density=0.3, format="csr", random_state=3)
    with dask.config.set(scheduler="synchronous"), caplog.at_level(logging.INFO, logger="bigdist"):
        bd.radius_neighbors(rows, None, 0.8).to_zarr(str(tmp_path / "r.zarr"))
    assert "written from one graph" in caplog.text
    _check_oracle(str(tmp_path / "r.zarr"), rows.toarray(), rows.toarray(), 0.8, "euclidean", True, rtol=1e-12)


def test_cluster_write_equals_the_synchronous_one(tmp_path, train_store, cluster_client):
    client = cluster_client
    client.register_plugin(SchedulerWatch())
    settings = {"bigdist.chunk-bytes": 100 * 6 * 4, "bigdist.execution.panel-flops": 2e5}
    with dask.config.set(settings):
        result = bd.radius_neighbors(train_store, None, 0.9, sort_results=True)
        assert len(result.job.panels) >= 4
        result.to_zarr(str(tmp_path / "cluster.zarr"))
        with dask.config.set(scheduler="synchronous"):
            result.to_zarr(str(tmp_path / "sync.zarr"))
    most, keys = client.run_on_scheduler(
        lambda dask_scheduler: (
            dask_scheduler.plugins["bigdist-test-watch"].most,
            dask_scheduler.plugins["bigdist-test-watch"].keys,
        )
    )
    assert 1 <= most <= window_size(client)
    # Only fused tasks (panels, stagings, copies): no key of a train block ever reached the scheduler.
    assert keys and all(str(key).startswith(("bigdist-radius-panel-", "bigdist-radius-concat-")) for key in keys)
    assert chunk_digests(str(tmp_path / "cluster.zarr")) == chunk_digests(str(tmp_path / "sync.zarr"))
    rng = np.random.default_rng(5)
    train = rng.standard_normal((500, 3))
    with dask.config.set({"bigdist.knn.query-block-rows": 100, "bigdist.execution.panel-flops": 1e5}):
        bd.radius_neighbors(train, da.from_array(train, chunks=120), 0.7).to_zarr(str(tmp_path / "memory.zarr"))
    _check_oracle(str(tmp_path / "memory.zarr"), train, train, 0.7, "euclidean", False, rtol=1e-12)
