"""Distance matrices written through the waves: the bytes of write_group's single graph, resumable."""

import logging

import dask
import numpy as np
import pytest
import zarr

import bigdist as bd
import bigdist.execution.blocks as blocks
from bigdist.execution.blocks import write_blocks
from bigdist.io import make_random, read_group, write_group
from tests.execution.helpers import chunk_digests
from tests.oracle import distances as oracle_distances

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture
def inputs(tmp_path):
    queries, train = str(tmp_path / "q.zarr"), str(tmp_path / "t.zarr")
    make_random(queries, 230, 5, chunk_rows=50, random_state=1)
    make_random(train, 410, 5, chunk_rows=50, random_state=2)
    return queries, train


@pytest.mark.parametrize(("chunk_bytes", "panel_flops"), [(40 * 40 * 4, 1.0), (60 * 60 * 4, 1e5), (10**6, 1e12)])
@pytest.mark.parametrize("metric", ["euclidean", "chebyshev"])
def test_matrix_bytes_equal_write_group(tmp_path, inputs, chunk_bytes, panel_flops, metric):
    settings = {"bigdist.chunk-bytes": chunk_bytes, "bigdist.execution.panel-flops": panel_flops}
    with dask.config.set(settings):
        matrix = bd.pairwise_distances(*inputs, metric=metric)
        write_blocks(str(tmp_path / "waves.zarr"), {"distances": matrix}, flops_per_element=10.0)
        write_group(str(tmp_path / "graph.zarr"), {"distances": matrix})
    waves = chunk_digests(str(tmp_path / "waves.zarr"))
    assert len(waves) == np.prod(matrix.numblocks) and waves == chunk_digests(str(tmp_path / "graph.zarr"))
    queries, train = (zarr.open_array(path, mode="r")[:] for path in inputs)
    np.testing.assert_allclose(
        read_group(str(tmp_path / "waves.zarr"))["distances"].compute(),
        oracle_distances(queries.astype(np.float64), train.astype(np.float64), metric),
        rtol=1e-5,
        atol=1e-5,
    )


def test_interrupted_matrix_resumes_keeping_written_blocks(tmp_path, inputs, monkeypatch, caplog):
    out, clean = str(tmp_path / "d.zarr"), str(tmp_path / "clean.zarr")
    settings = {"bigdist.chunk-bytes": 40 * 40 * 4}
    real = blocks.compute_and_store
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(blocks, "compute_and_store", failing)
    with dask.config.set(settings), pytest.raises(KeyboardInterrupt):
        write_blocks(out, {"distances": bd.pairwise_distances(*inputs)})
    monkeypatch.setattr(blocks, "compute_and_store", real)
    with dask.config.set(settings), caplog.at_level(logging.WARNING, logger="bigdist"):
        write_blocks(out, {"distances": bd.pairwise_distances(*inputs)})
        write_blocks(clean, {"distances": bd.pairwise_distances(*inputs)})
    assert "8 of 66 blocks already written are kept" in caplog.text
    assert chunk_digests(out) == chunk_digests(clean)
