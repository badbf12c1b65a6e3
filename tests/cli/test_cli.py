import numpy as np
import pytest
import yaml
import zarr
from click.testing import CliRunner

from bigdist.cli.main import main
from tests.oracle import knn_oracle


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_generate_knn_info_end_to_end(tmp_path, scheduler):
    train, queries, out = tmp_path / "train.zarr", tmp_path / "queries.zarr", tmp_path / "nn.zarr"
    code, output = _run(
        "generate",
        "blobs",
        "--n-samples",
        3000,
        "--n-features",
        8,
        "--centers",
        5,
        "--chunk-rows",
        700,
        "--out",
        train,
        "--scheduler",
        scheduler,
    )
    assert code == 0, output
    code, output = _run(
        "generate",
        "random",
        "--n-samples",
        100,
        "--n-features",
        8,
        "--random-state",
        3,
        "--out",
        queries,
        "--scheduler",
        scheduler,
    )
    assert code == 0, output
    code, output = _run(
        "knn",
        "--queries",
        queries,
        "--train",
        train,
        "--k",
        4,
        "--out",
        out,
        "--split-every",
        2,
        "--scheduler",
        scheduler,
    )
    assert code == 0, output
    assert "GFLOP/s" in output and str(out) in output
    group = zarr.open_group(str(out), mode="r")
    expected_distances, expected_indices = knn_oracle(
        zarr.open_array(str(queries), mode="r")[:], zarr.open_array(str(train), mode="r")[:], 4
    )
    np.testing.assert_array_equal(group["indices"][:], expected_indices)
    np.testing.assert_allclose(group["distances"][:], expected_distances, rtol=1e-6)
    assert group.attrs["bigdist"]["complete"] is True
    assert group.attrs["timings"]["seconds"] > 0 and group.attrs["timings"]["gflops"] > 0

    code, output = _run("info", out)
    assert code == 0 and "complete: true" in output and "indices" in output

    # A finished output is kept unless --overwrite is given.
    code, output = _run("knn", "--queries", queries, "--train", train, "--k", 4, "--out", out, "--scheduler", scheduler)
    assert code == 1 and "--overwrite" in output


def test_run_file_with_generate_section_and_flag_winning(tmp_path, scheduler):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        yaml.safe_dump(
            {
                "train": str(tmp_path / "train.zarr"),
                "k": 5,
                "metric": "cosine",
                "out": str(tmp_path / "self.zarr"),
                "scheduler": scheduler,
                "generate": {"train": {"kind": "random", "n-samples": 400, "n-features": 3, "random-state": 2}},
                "dask": {"bigdist.knn.query-block-rows": 64},
            }
        )
    )
    code, output = _run("knn", "--config", run_file, "--k", 3)
    assert code == 0, output
    group = zarr.open_group(str(tmp_path / "self.zarr"), mode="r")
    assert group["indices"].shape == (400, 3)
    assert group.attrs["knn"] == {"k": 3, "metric": "cosine", "self_join": True, "split_every": 8, "n_train": 400}
    data = zarr.open_array(str(tmp_path / "train.zarr"), mode="r")[:]
    expected_distances, expected_indices = knn_oracle(data, None, 3, "cosine")
    np.testing.assert_array_equal(group["indices"][:], expected_indices)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"trian": "x.zarr"}, "unknown key 'trian'"),
        ({"config-file": "other.yaml", "train": "x", "out": "y"}, "unknown key 'config-file'"),
        ({"k": "many"}, "'k'"),
        ({"dask": {"bigdist.knn.nope": 1}, "train": "x", "out": "y"}, "bigdist.knn.nope"),
        ({"out": "y.zarr"}, "missing --train"),
    ],
)
def test_bad_run_files_fail_clearly(tmp_path, content, message):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(content))
    code, output = _run("knn", "--config", run_file)
    assert code == 1
    assert message in output and "Traceback" not in output


def test_generate_takes_its_options_and_dask_and_security_sections_from_a_run_file(tmp_path, scheduler):
    out = tmp_path / "data.zarr"
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({"n-samples": 50, "out": str(out), "scheduler": scheduler}))
    code, output = _run("generate", "random", "--config", run_file)
    assert code == 1 and "missing --n-features (give it as a flag or as 'n-features:' in the run file)" in output
    run_file.write_text(yaml.safe_dump({"n-features": 2, "out": str(out), "generate": {"data": {"kind": "random"}}}))
    code, output = _run("generate", "random", "--config", run_file)
    assert code == 1 and "unknown key 'generate'" in output and "dask, security" in output
    sections = {"dask": {"bigdist.chunk-bytes": "1KiB"}, "security": {}}
    run_file.write_text(
        yaml.safe_dump({"n-samples": 300, "n-features": 2, "out": str(out), "scheduler": scheduler, **sections})
    )
    code, output = _run("generate", "random", "--config", run_file)
    assert code == 0, output
    assert zarr.open_array(str(out), mode="r").chunks == (1024 // (2 * 4), 2)


def test_unreachable_scheduler_exits_non_zero(tmp_path):
    # A readable input: inputs are checked before the scheduler is reached.
    zarr.create_array(store=str(tmp_path / "x.zarr"), data=np.ones((4, 2)))
    code, output = _run(
        "knn",
        "--train",
        tmp_path / "x.zarr",
        "--out",
        tmp_path / "o.zarr",
        "--scheduler",
        "tcp://127.0.0.1:1",
        "--config",
        _fast_timeout(tmp_path),
    )
    assert code == 1 and "tcp://127.0.0.1:1" in output


def _fast_timeout(tmp_path):
    path = tmp_path / "timeout.yaml"
    path.write_text(yaml.safe_dump({"dask": {"bigdist.runtime.connect-timeout": 2}}))
    return path


def test_missing_input_names_the_path(tmp_path, scheduler):
    code, output = _run(
        "knn", "--train", tmp_path / "missing.zarr", "--out", tmp_path / "o.zarr", "--scheduler", scheduler
    )
    assert code == 1 and "missing.zarr" in output


def test_kmeans_end_to_end(tmp_path, scheduler, monkeypatch):
    from sklearn.cluster import KMeans as SkKMeans

    data, out = tmp_path / "data.zarr", tmp_path / "km.zarr"
    code, output = _run("generate", "blobs", "--n-samples", 2000, "--n-features", 3, "--centers", 4,
                        "--chunk-rows", 300, "--out", data, "--scheduler", scheduler)  # fmt: skip
    assert code == 0, output
    code, output = _run("kmeans", "--data", data, "--n-clusters", 4, "--random-state", 0, "--out", out,
                        "--scheduler", scheduler)  # fmt: skip
    assert code == 0, output
    assert "inertia" in output
    group = zarr.open_group(str(out), mode="r")
    points = zarr.open_array(str(data), mode="r")[:]
    best = SkKMeans(4, n_init=10, random_state=0).fit(points).inertia_
    assert group.attrs["kmeans"]["inertia"] <= 1.01 * best
    assert group["labels"].shape == (2000,) and group["centroids"].shape == (4, 3)
    assert group.attrs["kmeans"]["stats"][0]["iteration"] == 1
    _assert_refused_before_fitting(monkeypatch, "kmeans", "--data", data, "--out", out, "--scheduler", scheduler)


def test_meanshift_end_to_end_equals_scikit_learn(tmp_path, scheduler, monkeypatch):
    from sklearn.cluster import MeanShift as SkMeanShift

    data, out, run_file = tmp_path / "data.zarr", tmp_path / "ms.zarr", tmp_path / "ms.yaml"
    run_file.write_text(
        yaml.safe_dump(
            {
                "data": str(data),
                "bandwidth": 1.5,
                "kernel": "flat",
                "bin-seeding": True,
                "cluster-all": False,
                "out": str(out),
                "scheduler": scheduler,
                "generate": {
                    "data": {"n-samples": 1500, "n-features": 2, "centers": 4, "center-box": [-20, 20],
                             "chunk-rows": 400, "dtype": "float64"}
                },
            }
        )
    )  # fmt: skip
    code, output = _run("meanshift", "--config", run_file, "--split-every", 2)
    assert code == 0, output
    assert "modes" in output and str(out) in output
    points = zarr.open_array(str(data), mode="r")[:]
    assert np.ptp(points, axis=0).min() > 20  # the centre box reached the generator
    theirs = SkMeanShift(bandwidth=1.5, bin_seeding=True, cluster_all=False).fit(points)
    group = zarr.open_group(str(out), mode="r")
    np.testing.assert_allclose(group["cluster_centers"][:], theirs.cluster_centers_, atol=1.5e-3)
    np.testing.assert_array_equal(group["labels"][:], theirs.labels_)
    stats = group.attrs["meanshift"]["stats"]
    assert stats[0]["iteration"] == 1 and stats[-1]["still_moving"] == 0
    # The summary counts iterations as scikit-learn (and bigdist's log) do; the last pass only confirms.
    assert f"{theirs.n_iter_} iterations ({len(stats)} passes over the data)" in output
    assert group.attrs["bigdist"]["complete"] is True
    _assert_refused_before_fitting(monkeypatch, "meanshift", "--config", run_file)


def _assert_refused_before_fitting(monkeypatch, command, *args):
    """A finished output is refused before the fit's iterations run, not when writing after them."""
    import bigdist

    def fit(*_, **__):
        raise AssertionError(f"{command} ran before refusing its finished output")

    monkeypatch.setattr(bigdist, command, fit)
    code, output = _run(command, *args)
    assert code == 1 and "already holds a finished result" in output
