"""The command line reads Parquet, HDF5, AnnData and .npy shards, and exports what it wrote."""

import numpy as np
import pytest
import scipy.sparse
from click.testing import CliRunner

from bigdist.cli.main import main
from tests.oracle import knn_oracle

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
h5py = pytest.importorskip("h5py")


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def data():
    return np.random.default_rng(4).standard_normal((400, 5)).astype(np.float32)


def test_knn_from_parquet_and_hdf5_then_export(tmp_path, scheduler, data):
    table = pa.table({"id": np.arange(400), "emb": pa.array(list(data), type=pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=64)
    with h5py.File(tmp_path / "ann.hdf5", "w") as f:
        f["train"] = data
        f["test"] = data[:30] + 0.1
    expected_distances, expected_indices = knn_oracle(data, None, 4)
    out = tmp_path / "nn.zarr"
    code, output = _run(
        "knn", "--train", f"{tmp_path / 'train.parquet'}#emb", "--k", 4, "--out", out, "--scheduler", scheduler
    )
    assert code == 0, output
    code, output = _run("export", out, "--format", "csr", "--out", tmp_path / "g.npz")
    assert code == 0, output
    graph = scipy.sparse.load_npz(tmp_path / "g.npz")
    np.testing.assert_array_equal(graph.indices.reshape(400, 4), expected_indices)
    np.testing.assert_allclose(graph.data.reshape(400, 4), expected_distances, rtol=1e-6)

    code, output = _run(
        "knn",
        "--queries",
        f"{tmp_path / 'ann.hdf5'}#test",
        "--train",
        f"{tmp_path / 'ann.hdf5'}#train",
        "--k",
        3,
        "--out",
        tmp_path / "q.zarr",
        "--scheduler",
        scheduler,
    )
    assert code == 0, output
    code, output = _run("export", tmp_path / "q.zarr", "--format", "csr", "--out", tmp_path / "q.npz")
    assert code == 0, output
    queries = scipy.sparse.load_npz(tmp_path / "q.npz")
    assert queries.shape == (30, 400)
    np.testing.assert_array_equal(queries.indices.reshape(30, 3), knn_oracle(data[:30] + 0.1, data, 3)[1])


def test_refusals_before_any_work(tmp_path, scheduler, data):
    with h5py.File(tmp_path / "ann.hdf5", "w") as f:
        f["train"] = data
        f["test"] = data[:30]
    code, output = _run(
        "knn", "--train", tmp_path / "ann.hdf5", "--k", 3, "--out", tmp_path / "nn.zarr", "--scheduler", scheduler
    )
    assert code == 1
    assert "name the one to read, e.g. " in output and "ann.hdf5#train" in output
    code, output = _run("export", tmp_path / "missing.zarr", "--format", "csr", "--out", tmp_path / "g.npz")
    assert code == 1 and "error: no Zarr group at" in output
