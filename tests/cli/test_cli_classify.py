import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier as SkClassifier

from bigdist.cli.main import main
from bigdist.io import read_group
from tests.oracle import distances as oracle_distances


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def _store(path, values, chunk_rows):
    array = zarr.create_array(
        store=str(path), shape=values.shape, chunks=(chunk_rows, *values.shape[1:]), dtype=values.dtype
    )
    array[:] = values
    return path


@pytest.fixture(scope="module")
def digits_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    data, target = load_digits(return_X_y=True)
    data = data + np.random.default_rng(0).random(data.shape) * 1e-3  # no exact distance ties
    return {
        "train": _store(root / "train.zarr", data[300:], 250),
        "labels": _store(root / "labels.zarr", target[300:], 333),
        "queries": _store(root / "queries.zarr", data[:300], 70),
        "arrays": (data[300:], target[300:], data[:300]),
    }


@pytest.mark.parametrize(
    ("weights", "metric"), [("uniform", {}), ("distance", {}), ("distance", {"metric": "minkowski", "p": 3})]
)
def test_classify_writes_predictions_and_probabilities(tmp_path, scheduler, digits_stores, weights, metric):
    out = tmp_path / "pred.zarr"
    stores = digits_stores
    code, output = _run(
        "classify", "--train", stores["train"], "--labels", stores["labels"], "--queries", stores["queries"],
        "--k", 7, "--weights", weights, "--split-every", 2, "--out", out, "--scheduler", scheduler,
        *(item for key, value in metric.items() for item in (f"--{key}", value)),
    )  # fmt: skip
    assert code == 0, output
    assert "classify: 300 queries x 1,497 train rows" in output
    train, labels, queries = stores["arrays"]
    expected = SkClassifier(n_neighbors=7, weights=weights, algorithm="brute", **metric).fit(train, labels)
    stored = read_group(out)
    np.testing.assert_array_equal(stored["predictions"].compute(), expected.predict(queries))
    np.testing.assert_allclose(stored["probabilities"].compute(), expected.predict_proba(queries), rtol=1e-9)
    np.testing.assert_array_equal(stored["classes"].compute(), np.arange(10))
    attrs = zarr.open_group(str(out), mode="r").attrs
    assert attrs["bigdist"]["complete"] is True and attrs["classify"]["weights"] == weights


def test_classify_refuses_mismatched_labels(tmp_path, scheduler, digits_stores):
    short = _store(tmp_path / "short.zarr", np.zeros(10, dtype=np.int64), 10)
    code, output = _run(
        "classify", "--train", digits_stores["train"], "--labels", short, "--out", tmp_path / "x.zarr",
        "--scheduler", scheduler,
    )  # fmt: skip
    assert code == 1
    assert f"{short} has 10 labels but the train set has 1497 rows" in output  # refused before any cluster
    code, output = _run("classify", "--train", digits_stores["train"], "--out", tmp_path / "x.zarr")
    assert code == 1 and "missing --labels" in output


def test_classify_refuses_continuous_labels_without_a_traceback(tmp_path, scheduler, digits_stores):
    continuous = _store(tmp_path / "continuous.zarr", np.linspace(0.0, 1.0, 1497), 500)
    code, output = _run(
        "classify", "--train", digits_stores["train"], "--labels", continuous, "--out", tmp_path / "x.zarr",
        "--scheduler", scheduler,
    )  # fmt: skip
    assert code == 1
    assert "Unknown label type: continuous" in output and "KNeighborsRegressor" in output


def test_radius_writes_csr_equal_to_the_oracle(tmp_path, scheduler, digits_stores):
    out = tmp_path / "radius.zarr"
    stores = digits_stores
    code, output = _run(
        "radius", "--train", stores["train"], "--queries", stores["queries"], "--radius", 21.0, "--sort-results",
        "--split-every", 2, "--out", out, "--scheduler", scheduler,
    )  # fmt: skip
    assert code == 0, output
    train, _, queries = stores["arrays"]
    distances = np.sqrt(((queries[:, None, :] - train[None, :, :]) ** 2).sum(axis=2))
    stored = {name: array.compute() for name, array in read_group(out).items()}
    indptr = stored["indptr"]
    assert indptr[-1] == (distances <= 21.0).sum() > 300
    for row in range(len(queries)):
        found = stored["indices"][indptr[row] : indptr[row + 1]]
        np.testing.assert_array_equal(np.sort(found), np.flatnonzero(distances[row] <= 21.0))
        assert (np.diff(stored["distances"][indptr[row] : indptr[row + 1]]) >= 0).all()
    code, output = _run(
        "radius", "--train", stores["train"], "--queries", stores["queries"], "--radius", 21.0, "--max-neighbors", 1,
        "--out", tmp_path / "capped.zarr", "--scheduler", scheduler,
    )  # fmt: skip
    assert code == 1 and "more than the cap of 1 per query" in output


def test_radius_takes_every_metric_and_p(tmp_path, scheduler, digits_stores):
    train, _, queries = digits_stores["arrays"]
    expected = oracle_distances(queries, train, "minkowski", p=3) <= 14.0
    out = tmp_path / "minkowski.zarr"
    code, output = _run(
        "radius", "--train", digits_stores["train"], "--queries", digits_stores["queries"], "--radius", 14.0,
        "--metric", "minkowski", "--p", 3, "--split-every", 2, "--out", out, "--scheduler", scheduler,
    )  # fmt: skip
    assert code == 0, output
    assert "minkowski" in output
    stored = {name: array.compute() for name, array in read_group(out).items()}
    indptr = stored["indptr"]
    assert indptr[-1] == expected.sum() > 300
    for row in range(len(queries)):
        np.testing.assert_array_equal(
            np.sort(stored["indices"][indptr[row] : indptr[row + 1]]), np.flatnonzero(expected[row])
        )
    assert zarr.open_group(str(out), mode="r").attrs["radius_neighbors"]["p"] == 3.0
    code, output = _run(
        "radius", "--train", digits_stores["train"], "--radius", 1.0, "--metric", "minkowski", "--p", 0,
        "--out", tmp_path / "bad.zarr",
    )  # fmt: skip
    assert code == 1 and "minkowski needs a real p > 0" in output
