"""kNN written through the waves: the bytes of the single-graph write, resumable, bounded, reading its own rows."""

import logging
import pathlib
import sys

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

import bigdist as bd
import bigdist.execution.knn as execution_knn
from bigdist.errors import CorruptChunkError
from bigdist.execution.waves import window_size
from bigdist.io import make_random, read_group, write_group
from tests.execution.helpers import SchedulerWatch, chunk_digests
from tests.oracle import knn_oracle


def _single_graph(result, path):
    """Today's single-graph write of the lazy arrays: the reference the waves must match byte for byte."""
    write_group(path, {"distances": result.distances, "indices": result.indices}, attrs={"knn": result.params})


SETTINGS = [
    # (chunk-bytes in rows of 6 float32, query-block-rows, panel-flops, split_every)
    (200, 256, 1.0, 2),  # one train block per panel, three levels of merges
    (200, 130, 2e6, 3),  # panels of several blocks
    (300, 1000, 1e12, 8),  # one panel holds the whole train set
]


@pytest.mark.usefixtures("synchronous")
@pytest.mark.parametrize(("block_rows", "query_rows", "panel_flops", "split_every"), SETTINGS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
def test_self_join_bytes_equal_single_graph(tmp_path, train_store, block_rows, query_rows, panel_flops, split_every,
                                            metric):  # fmt: skip
    settings = {
        "bigdist.chunk-bytes": block_rows * 6 * 4,
        "bigdist.knn.query-block-rows": query_rows,
        "bigdist.execution.panel-flops": panel_flops,
    }
    with dask.config.set(settings):
        result = bd.knn(train_store, None, k=4, metric=metric, split_every=split_every)
        assert len(result.job.panels) >= 1
        result.to_zarr(str(tmp_path / "waves.zarr"))
        _single_graph(result, str(tmp_path / "graph.zarr"))
    waves, graph = chunk_digests(str(tmp_path / "waves.zarr")), chunk_digests(str(tmp_path / "graph.zarr"))
    assert len(waves) >= 2 * -(-1300 // min(query_rows, block_rows)) and waves == graph
    points = zarr.open_array(train_store, mode="r")[:]
    expected = knn_oracle(points, None, 4, metric=metric)[1]
    np.testing.assert_array_equal(read_group(str(tmp_path / "waves.zarr"))["indices"].compute(), expected)


@pytest.mark.usefixtures("synchronous")
@pytest.mark.parametrize("train_chunks", [97, 400])
def test_in_memory_queries_and_train_equal_single_graph(tmp_path, train_chunks):
    rng = np.random.default_rng(2)
    train = rng.standard_normal((900, 5))
    queries = rng.standard_normal((250, 5))
    with dask.config.set({"bigdist.knn.query-block-rows": 60, "bigdist.execution.panel-flops": 1e5}):
        result = bd.knn(queries, da.from_array(train, chunks=train_chunks), k=3)
        result.to_zarr(str(tmp_path / "waves.zarr"))
        _single_graph(result, str(tmp_path / "graph.zarr"))
    assert chunk_digests(str(tmp_path / "waves.zarr")) == chunk_digests(str(tmp_path / "graph.zarr"))
    expected_distances, expected_indices = knn_oracle(queries, train, 3)
    out = read_group(str(tmp_path / "waves.zarr"))
    np.testing.assert_array_equal(out["indices"].compute(), expected_indices)
    np.testing.assert_allclose(out["distances"].compute(), expected_distances, rtol=1e-12)


@pytest.mark.usefixtures("synchronous")
def test_to_zarr_never_builds_the_single_graph(tmp_path, train_store, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("to_zarr built the (query blocks x train blocks) graph")

    monkeypatch.setattr(sys.modules["bigdist.knn"], "knn_topk", refuse)
    with dask.config.set({"bigdist.chunk-bytes": 100 * 6 * 4}):
        bd.knn(train_store, None, k=2).to_zarr(str(tmp_path / "nn.zarr"))
    assert read_group(str(tmp_path / "nn.zarr"))["indices"].shape == (1300, 2)


@pytest.mark.usefixtures("synchronous")
def test_interrupted_write_resumes_without_recomputing_finished_blocks(tmp_path, train_store, monkeypatch, caplog):
    settings = {"bigdist.chunk-bytes": 100 * 6 * 4, "bigdist.execution.panel-flops": 1e6}
    out, clean = str(tmp_path / "nn.zarr"), str(tmp_path / "clean.zarr")
    real_finish = execution_knn.knn_finish
    calls = {"finish": 0, "panel": 0}

    def failing_finish(*args, **kwargs):
        calls["finish"] += 1
        if calls["finish"] == 6:
            raise KeyboardInterrupt  # as if the run were killed while writing the sixth block
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(execution_knn, "knn_finish", failing_finish)
    with dask.config.set(settings), pytest.raises(KeyboardInterrupt):
        bd.knn(train_store, None, k=3).to_zarr(out)
    assert zarr.open_group(out, mode="r").attrs["bigdist"]["complete"] is False
    monkeypatch.setattr(execution_knn, "knn_finish", real_finish)

    real_panel = execution_knn.knn_panel

    def counted_panel(*args, **kwargs):
        calls["panel"] += 1
        return real_panel(*args, **kwargs)

    monkeypatch.setattr(execution_knn, "knn_panel", counted_panel)
    with dask.config.set(settings), caplog.at_level(logging.WARNING, logger="bigdist"):
        result = bd.knn(train_store, None, k=3)
        panels = len(result.job.panels)
        result.to_zarr(out)
    assert panels >= 2
    assert "10 of 26 blocks already written are kept" in caplog.text
    # Only the 13 - 5 unfinished query blocks were scored again.
    assert calls["panel"] == (13 - 5) * panels
    with dask.config.set(settings):
        bd.knn(train_store, None, k=3).to_zarr(clean)
    assert chunk_digests(out) == chunk_digests(clean)
    assert not (pathlib.Path(out) / "bigdist_progress").exists()


@pytest.mark.usefixtures("synchronous")
def test_progress_callback_and_log_lines(tmp_path, train_store, caplog):
    seen = []
    with (
        dask.config.set({"bigdist.chunk-bytes": 100 * 6 * 4, "bigdist.execution.progress-interval": 0}),
        caplog.at_level(logging.INFO, logger="bigdist.execution"),
    ):
        bd.knn(train_store, None, k=2).to_zarr(str(tmp_path / "nn.zarr"), progress=lambda *a: seen.append(a))
    assert [done for done, _, _ in seen] == list(range(1, 14)) and {total for _, total, _ in seen} == {13}
    assert all(b[2] >= a[2] for a, b in zip(seen, seen[1:], strict=False))
    assert "13 of 13 blocks written (100.0%)" in caplog.text and "ETA" in caplog.text


@pytest.mark.usefixtures("synchronous")
def test_corrupt_train_chunk_inside_a_panel_names_the_chunk(tmp_path, train_store):
    queries = str(tmp_path / "queries.zarr")
    make_random(queries, 50, 6, chunk_rows=50, random_state=1)
    chunk = pathlib.Path(train_store) / "c" / "7" / "0"
    data = bytearray(chunk.read_bytes())
    data[9] ^= 0x01
    chunk.write_bytes(bytes(data))
    with (
        dask.config.set({"bigdist.chunk-bytes": 100 * 6 * 4, "bigdist.execution.panel-flops": 1e12}),
        pytest.raises(CorruptChunkError, match=r"chunk 'c/7/0' \(rows 700-799\)"),
    ):
        bd.knn(queries, train_store, k=2).to_zarr(str(tmp_path / "nn.zarr"))
    assert zarr.open_group(str(tmp_path / "nn.zarr"), mode="r").attrs["bigdist"]["complete"] is False


def test_cluster_tasks_stay_within_the_window_and_panels_read_train_rows(tmp_path, train_store, cluster_client):
    client = cluster_client
    client.register_plugin(SchedulerWatch())
    settings = {"bigdist.chunk-bytes": 100 * 6 * 4, "bigdist.execution.panel-flops": 2e5}
    with dask.config.set(settings):
        result = bd.knn(train_store, None, k=3)
        assert len(result.job.panels) >= 4 and len(result.job.query_blocks) == 13
        result.to_zarr(str(tmp_path / "nn.zarr"))
        with dask.config.set(scheduler="synchronous"):
            result.to_zarr(str(tmp_path / "sync.zarr"))
    most, keys, at_most = client.run_on_scheduler(
        lambda dask_scheduler: (
            dask_scheduler.plugins["bigdist-test-watch"].most,
            dask_scheduler.plugins["bigdist-test-watch"].keys,
            dask_scheduler.plugins["bigdist-test-watch"].at_most,
        )
    )
    assert 1 <= most <= window_size(client), at_most
    # Only fused tasks: no key of a train (or query) block ever reached the scheduler.
    assert keys and all(str(key).startswith("bigdist-knn-panel-") for key in keys)
    assert chunk_digests(str(tmp_path / "nn.zarr")) == chunk_digests(str(tmp_path / "sync.zarr"))


def test_cluster_in_memory_inputs_give_the_oracle(tmp_path, cluster_client):
    rng = np.random.default_rng(5)
    train = rng.standard_normal((700, 4)).astype(np.float32)
    with dask.config.set({"bigdist.knn.query-block-rows": 100, "bigdist.execution.panel-flops": 1e5}):
        result = bd.knn(train, da.from_array(train, chunks=150), k=3)
        result.to_zarr(str(tmp_path / "nn.zarr"))
    expected = knn_oracle(train, train, 3)[1]
    np.testing.assert_array_equal(read_group(str(tmp_path / "nn.zarr"))["indices"].compute(), expected)
