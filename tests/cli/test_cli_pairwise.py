import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from bigdist.cli.main import main
from tests.oracle import distances, knn_oracle


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    train, queries = tmp_path / "train.npy", tmp_path / "queries.npy"
    np.save(train, rng.random((700, 6)).astype(np.float32))
    np.save(queries, rng.random((90, 6)).astype(np.float32))
    return queries, train


def test_pairwise_writes_the_matrix_in_blocks(tmp_path, scheduler, inputs):
    queries, train = inputs
    out = tmp_path / "d.zarr"
    run_file = tmp_path / "run.yaml"
    # Small blocks through the run file's dask section: the matrix is written in many chunks.
    run_file.write_text("dask:\n  bigdist.chunk-bytes: 16384\n")
    args = ["pairwise", "--queries", queries, "--train", train, "--metric", "minkowski", "--p", 3, "--out", out]
    code, output = _run(*args, "--config", run_file, "--scheduler", scheduler)
    assert code == 0, output
    assert "GB/s" in output and str(out) in output
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["bigdist"]["complete"] is True
    assert group.attrs["pairwise"] == {"metric": "minkowski", "p": 3.0, "self_join": False}
    stored = group["distances"]
    assert stored.shape == (90, 700) and stored.dtype == np.float32 and stored.chunks[0] < 90
    expected = distances(np.load(queries), np.load(train), "minkowski", p=3)
    np.testing.assert_allclose(stored[:], expected, rtol=1e-6)

    code, output = _run(*args, "--scheduler", scheduler)
    assert code == 1 and "already holds a finished result" in output
    code, output = _run(
        "pairwise", "--train", train, "--metric", "cosine", "--out", out, "--overwrite", "--scheduler", scheduler
    )
    assert code == 0, output
    assert zarr.open_group(str(out), mode="r").attrs["pairwise"]["self_join"] is True
    self_matrix = zarr.open_array(str(out / "distances"))[:]
    assert self_matrix.shape == (700, 700)
    np.testing.assert_array_equal(np.diag(self_matrix), 0.0)


def test_pairwise_bad_metric_and_parameter(tmp_path, inputs):
    _, train = inputs
    code, output = _run("pairwise", "--train", train, "--metric", "mahalanobi", "--out", tmp_path / "x.zarr")
    assert code == 2 and "mahalanobi" in output and "euclidean" in output
    code, output = _run("pairwise", "--train", train, "--metric", "euclidean", "--p", 3, "--out", tmp_path / "x.zarr")
    assert code == 1 and "takes no parameters" in output
    code, output = _run("pairwise", "--train", train, "--metric", "minkowski", "--p", 0, "--out", tmp_path / "x.zarr")
    assert code == 1 and "p=0" in output


def test_knn_takes_every_registry_metric(tmp_path, scheduler, inputs):
    queries, train = inputs
    out = tmp_path / "nn.zarr"
    code, output = _run(
        "knn", "--queries", queries, "--train", train, "--k", 3, "--metric", "cityblock", "--out", out,
        "--scheduler", scheduler,
    )  # fmt: skip
    assert code == 0, output
    assert "million pairs/s" in output and "GFLOP/s" not in output  # no GEMM in a direct metric
    group = zarr.open_group(str(out), mode="r")
    assert "gflops" not in group.attrs["timings"]
    expected_distances, expected_indices = knn_oracle(np.load(queries), np.load(train), 3, "manhattan")
    np.testing.assert_array_equal(group["indices"][:], expected_indices)
    np.testing.assert_allclose(group["distances"][:], expected_distances, rtol=1e-6)
