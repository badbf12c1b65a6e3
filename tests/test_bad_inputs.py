"""Every bad input across the public API gets a clear error: its class and a fragment of its message.

Errors of lazy inputs (dask arrays, Zarr) are raised on compute, inside the
pass that reads the data; the table computes the result for those.
"""

from __future__ import annotations

import pathlib

import dask.array as da
import numpy as np
import pytest
import scipy.sparse
import yaml
import zarr
from click.testing import CliRunner
from sklearn.exceptions import NotFittedError

import bigdist as bd
import bigdist.io
from bigdist.cli.main import main
from bigdist.errors import (
    BigdistError,
    IncompleteOutputError,
    InputDtypeError,
    InputShapeError,
    MissingChunkError,
    NonFiniteError,
    OutputExistsError,
    ParameterError,
    StoreNotFoundError,
    ValueRangeError,
)

pytestmark = pytest.mark.usefixtures("synchronous")

X = np.random.default_rng(0).standard_normal((20, 3))


def _with(value: float, row: int, col: int) -> np.ndarray:
    data = X.copy()
    data[row, col] = value
    return data


def _compute(result):
    return result.compute()


def _zarr(tmp: pathlib.Path, name: str, data: np.ndarray, **options) -> str:
    path = str(tmp / name)
    zarr.create_array(path, data=data, **options)
    return path


def _deleted_chunk(tmp: pathlib.Path) -> str:
    path = _zarr(tmp, "holey.zarr", X, chunks=(5, 3))
    (pathlib.Path(path) / "c" / "2" / "0").unlink()
    return path


def _unfinished(tmp: pathlib.Path) -> str:
    path = str(tmp / "generated.zarr")
    bd.io.make_random(path, 10, 2)
    array = zarr.open_array(path, mode="r+")
    array.attrs["bigdist"] = {**array.attrs["bigdist"], "complete": False}  # as a killed generate leaves it
    return path


def _object_npy(tmp: pathlib.Path) -> str:
    path = tmp / "objects.npy"
    np.save(path, np.array([[1, "a"], [2, None]], dtype=object), allow_pickle=True)
    return str(path)


def _group(tmp: pathlib.Path) -> str:
    group = zarr.open_group(str(tmp / "group.zarr"), mode="w")
    group.create_array("points", data=X)
    return str(tmp / "group.zarr")


def _text_file(tmp: pathlib.Path) -> str:
    path = tmp / "data.csv"
    path.write_text("1,2,3\n")
    return str(path)


# (id, call taking a tmp directory, error class, message fragment)
CASES = [
    # knn: shapes
    ("knn-1d", lambda t: bd.knn(X[:, 0], X, k=2), InputShapeError, "is 1-D with shape (20,)"),
    ("knn-3d", lambda t: bd.knn(X.reshape(20, 3, 1), X, k=2), InputShapeError, "has 3 dimensions"),
    ("knn-no-rows", lambda t: bd.knn(X[:0], X, k=2), InputShapeError, "0 sample(s)"),
    ("knn-no-features", lambda t: bd.knn(X[:, :0], X[:, :0], k=2), InputShapeError, "0 feature(s)"),
    ("knn-feature-mismatch", lambda t: bd.knn(X[:, :2], X, k=2), InputShapeError,
     "queries have 2 features, train has 3"),
    ("knn-ragged-list", lambda t: bd.knn([[1.0, 2.0], [3.0]], X, k=1), InputShapeError, "rows of equal length"),
    # knn: dtypes
    ("knn-complex", lambda t: bd.knn(X + 1j, X, k=2), InputDtypeError, "Complex data not supported"),
    ("knn-strings", lambda t: bd.knn(X.astype(str), X, k=2), InputDtypeError, "parse the strings into numbers"),
    ("knn-object", lambda t: bd.knn(np.array([["a", 1]], dtype=object), X[:, :2], k=1), InputDtypeError,
     "has dtype object and values that are not numbers"),
    ("knn-datetime", lambda t: bd.knn(np.zeros((3, 3), "datetime64[s]"), X, k=1), InputDtypeError,
     "convert the datetimes to numbers"),
    ("knn-sparse", lambda t: bd.knn(scipy.sparse.csr_matrix(X), X, k=1), InputDtypeError, "toarray()"),
    # knn: values
    ("knn-nan", lambda t: bd.knn(X, _with(np.nan, 7, 2), k=2), NonFiniteError, "train holds NaN at row 7, column 2"),
    ("knn-inf-lazy", lambda t: _compute(bd.knn(da.from_array(_with(np.inf, 13, 1), chunks=7), X, k=2).distances),
     NonFiniteError, "queries holds infinity at row 13, column 1 (in the block of rows 7-13)"),
    ("knn-overflow-float32", lambda t: _compute(
        bd.knn(np.full((3, 2), 3e19, np.float32), np.full((4, 2), -3e19, np.float32), 1, "sqeuclidean")
        .distances), ValueRangeError, "do not fit the float32 output"),
    # knn: parameters
    ("knn-k-zero", lambda t: bd.knn(X, X, k=0), ParameterError, "k must be an integer >= 1, got k=0"),
    ("knn-k-float", lambda t: bd.knn(X, X, k=2.5), ParameterError, "got k=2.5"),
    ("knn-k-bool", lambda t: bd.knn(X, X, k=True), ParameterError, "got k=True"),
    ("knn-k-too-big", lambda t: bd.knn(X[:3], X[:5], k=6), ParameterError, "k=6 exceeds the 5 neighbours"),
    ("knn-self-join-k", lambda t: bd.knn(X[:5], None, k=5), ParameterError, "each row's own match is excluded"),
    ("knn-metric", lambda t: bd.knn(X, X, k=1, metric="manhatan"), ParameterError, "unknown metric 'manhatan'"),
    ("knn-split-every", lambda t: bd.knn(X, X, k=1, split_every=1), ParameterError, "got split_every=1"),
    # NearestNeighbors
    ("nn-metric", lambda t: bd.NearestNeighbors(metric="l3").fit(X), ParameterError, "unknown metric 'l3'"),
    ("nn-not-fitted", lambda t: bd.NearestNeighbors().kneighbors(X), NotFittedError, "not fitted yet"),
    ("nn-n-neighbors", lambda t: bd.NearestNeighbors(n_neighbors=0).fit(X).kneighbors(X), ParameterError,
     "The 'n_neighbors' parameter of NearestNeighbors must be an int in the range [1, inf) or None. Got 0"),
    ("nn-features", lambda t: bd.NearestNeighbors().fit(X).kneighbors(X[:, :2]), InputShapeError,
     "queries have 2 features, train has 3"),
    ("nn-graph-mode", lambda t: bd.NearestNeighbors(n_neighbors=2).fit(X).kneighbors_graph(mode="weights"),
     ParameterError, 'Unsupported mode, must be one of "connectivity", or "distance" but got "weights"'),
    # kmeans
    ("kmeans-n-clusters-zero", lambda t: bd.kmeans(X, 0), ParameterError, "got n_clusters=0"),
    ("kmeans-n-clusters-too-many", lambda t: bd.kmeans(X, 21), ParameterError, "n_clusters=21 exceeds the 20 samples"),
    ("kmeans-init-name", lambda t: bd.kmeans(X, 2, init="kmeans++"), ParameterError, "unknown init 'kmeans++'"),
    ("kmeans-init-shape", lambda t: bd.kmeans(X, 2, init=X[:3]), InputShapeError, "give an array of shape (2, 3)"),
    ("kmeans-init-nan", lambda t: bd.kmeans(X, 2, init=np.full((2, 3), np.nan)), ParameterError,
     "init holds NaN or infinity"),
    ("kmeans-tol", lambda t: bd.kmeans(X, 2, tol=-1.0), ParameterError, "tol must be >= 0, got tol=-1.0"),
    ("kmeans-tol-nan", lambda t: bd.kmeans(X, 2, tol=float("nan")), ParameterError, "tol must be a finite number"),
    ("kmeans-max-iter", lambda t: bd.kmeans(X, 2, max_iter=0), ParameterError, "got max_iter=0"),
    ("kmeans-random-state", lambda t: bd.kmeans(X, 2, random_state="seed"), ParameterError,
     "random_state must be None or an integer"),
    ("kmeans-checkpoint-n-init", lambda t: bd.kmeans(X, 2, n_init=2, checkpoint=str(t / "ck.zarr")), ParameterError,
     "checkpoint needs n_init=1"),
    ("kmeans-nan", lambda t: bd.kmeans(da.from_array(_with(np.nan, 3, 0), chunks=8), 2), NonFiniteError,
     "X holds NaN at row 3, column 0"),
    ("kmeans-overflow-float64", lambda t: bd.kmeans(X * 1e160, 2, init="random", random_state=0), ValueRangeError,
     "beyond the float64 range"),
    # KMeans
    ("KMeans-n-clusters", lambda t: bd.KMeans(n_clusters=-1).fit(X), ParameterError,
     "The 'n_clusters' parameter of KMeans must be an int in the range [1, inf). Got -1 instead"),
    ("KMeans-predict-features", lambda t: bd.KMeans(2, random_state=0).fit(X).predict(X[:, :2]), InputShapeError,
     "X has 2 features, but KMeans is expecting 3"),
    # open_array and stores
    ("open-missing", lambda t: bd.open_array(t / "nope.zarr"), StoreNotFoundError, "no such file or Zarr store"),
    ("open-group", lambda t: bd.open_array(_group(t)), InputShapeError, "is a Zarr group, not an array"),
    ("open-text-file", lambda t: bd.open_array(_text_file(t)), StoreNotFoundError, "is a file bigdist cannot read"),
    ("open-object-npy", lambda t: bd.open_array(_object_npy(t)), InputDtypeError, "holds Python objects"),
    ("open-1d-zarr", lambda t: bd.open_array(_zarr(t, "v.zarr", X[:, 0])), InputShapeError, "is 1-D"),
    ("open-protocol", lambda t: bd.open_array("nope://bucket/x.zarr"), StoreNotFoundError, "protocol fsspec knows"),
    ("open-deleted-chunk", lambda t: bd.open_array(_deleted_chunk(t)).compute(), MissingChunkError,
     "chunk 'c/2/0' (rows 10-14) is missing"),
    ("open-unfinished", lambda t: bd.open_array(_unfinished(t)), IncompleteOutputError,
     "stopped before its last block"),
    ("write-over-input", lambda t: bd.knn(X, X, k=1).to_zarr(_zarr(t, "train.zarr", X)), OutputExistsError,
     "Zarr data that bigdist did not write"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "fragment"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(tmp_path, call, error, fragment):
    with pytest.raises(error) as raised:
        call(tmp_path)
    assert fragment in str(raised.value)
    if error is not NotFittedError:
        assert isinstance(raised.value, BigdistError)
        # Catchable as the builtin users already catch.
        assert isinstance(raised.value, (ValueError, TypeError, OSError))


# Command line: (id, arguments, run file content or None, message fragment)
CLI_CASES = [
    ("cli-unknown-key", ["knn"], {"trian": "x.zarr"}, "unknown key 'trian' in the run file"),
    ("cli-bad-type", ["knn"], {"k": "many", "train": "x", "out": "y"}, "run file key 'k'"),
    ("cli-unknown-bigdist-key", ["knn"], {"dask": {"bigdist.knn.nope": 1}, "train": "x", "out": "y"},
     "unknown bigdist config key 'bigdist.knn.nope'"),
    ("cli-bad-bigdist-value", ["knn"], {"dask": {"bigdist.split-every": 1}, "train": "x", "out": "y"},
     "'bigdist.split-every' = 1 must be at least 2"),
    ("cli-unknown-dask-key", ["knn"], {"dask": {"distributed": {"scheduler": {"no-worker-timeout": "1s"}}},
     "train": "x", "out": "y"}, "unknown dask config key 'distributed.scheduler.no-worker-timeout'"),
    ("cli-unknown-security-key", ["knn"], {"security": {"tls-cert": "c.pem"}, "train": "x", "out": "y"},
     "unknown bigdist config key 'bigdist.runtime.security.tls-cert'"),
    ("cli-missing-train", ["knn"], {"out": "y.zarr"}, "missing --train"),
    ("cli-not-a-mapping", ["knn"], ["train", "x"], "must hold a mapping"),
    ("cli-missing-data", ["kmeans"], {"out": "y.zarr"}, "missing --data"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "content", "fragment"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_input_exits_1_with_a_message(tmp_path, args, content, fragment):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(content))
    result = CliRunner().invoke(main, [*args, "--config", str(run_file)])
    assert result.exit_code == 1, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_run_file_that_is_not_yaml(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text("k: [1, 2\n")
    result = CliRunner().invoke(main, ["knn", "--config", str(run_file)])
    assert result.exit_code == 1 and "is not valid YAML" in result.output


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path):
    # safe_load: a run file cannot make the CLI construct arbitrary Python objects.
    run_file = tmp_path / "run.yaml"
    # A call whose effect the test can see: the output of os.system would bypass CliRunner's capture.
    made = tmp_path / "made-by-the-run-file"
    run_file.write_text(f"k: !!python/object/apply:os.mkdir ['{made}']\n")
    result = CliRunner().invoke(main, ["knn", "--config", str(run_file)])
    assert result.exit_code == 1 and "is not valid YAML" in result.output
    assert not made.exists()
