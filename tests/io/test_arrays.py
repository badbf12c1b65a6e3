import pickle
import re
import uuid

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.array.utils import assert_eq

from bigdist.errors import InputDtypeError, InputShapeError, NonFiniteError, StoreNotFoundError
from bigdist.io import as_array, check_features, open_array

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture
def data():
    return np.random.default_rng(0).standard_normal((500, 7)).astype(np.float32)


def test_every_input_kind_gives_the_same_rows(tmp_path, data):
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(64, 7))
    zarr.create_array(str(tmp_path / "sharded.zarr"), data=data, chunks=(16, 7), shards=(64, 7))
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("points", data=data, chunks=(50, 7))
    url = f"memory://{uuid.uuid4().hex}/x.zarr"
    zarr.create_array(url, data=data, chunks=(64, 7))
    np.save(tmp_path / "x.npy", data)
    inputs = {
        "numpy": data,
        "dask, irregular rows and chunked features": da.from_array(data, chunks=((100, 3, 397), (3, 4))),
        "zarr.Array": zarr.open_array(str(tmp_path / "x.zarr"), mode="r"),
        "zarr path": str(tmp_path / "x.zarr"),
        "zarr PathLike": tmp_path / "x.zarr",
        "sharded zarr": str(tmp_path / "sharded.zarr"),
        "array in a group": str(tmp_path / "g.zarr" / "points"),
        "file:// URL": f"file://{tmp_path / 'x.zarr'}",
        "memory:// URL": url,
        ".npy": tmp_path / "x.npy",
    }
    for kind, item in inputs.items():
        array = as_array(item)
        assert array.numblocks[1] == 1, kind
        assert array.dtype == np.float32, kind
        # assert_eq also checks every block against its declared chunks and dtype.
        assert_eq(array, data)


def test_npy_tasks_carry_the_path_not_the_data(tmp_path):
    data = np.ones((20_000, 10))
    np.save(tmp_path / "x.npy", data)
    array = as_array(tmp_path / "x.npy")
    graph_bytes = len(pickle.dumps(dict(array.__dask_graph__())))
    assert graph_bytes < data.nbytes / 100


def test_zarr_blocks_hold_whole_stored_chunks(tmp_path, data):
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(64, 7))
    zarr.create_array(str(tmp_path / "s.zarr"), data=data, chunks=(8, 7), shards=(32, 7))
    with dask.config.set({"bigdist.chunk-bytes": 100 * 7 * 4}):
        array = open_array(str(tmp_path / "x.zarr"))
        sharded = open_array(str(tmp_path / "s.zarr"))
    assert array.chunks[0][:-1] == (64,) * 7
    assert sharded.chunks[0][:-1] == (96,) * 5  # whole shards of 32 rows


def test_huge_stored_chunks_are_split_to_the_block_size(tmp_path, data):
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(500, 7))
    with dask.config.set({"bigdist.chunk-bytes": 100 * 7 * 4}):
        array = open_array(str(tmp_path / "x.zarr"))
    assert max(array.chunks[0]) == 100
    np.testing.assert_array_equal(array.compute(), data)


def test_numpy_blocks_follow_chunk_bytes(data):
    with dask.config.set({"bigdist.chunk-bytes": "2800 B"}):  # 100 rows of 7 float32
        assert as_array(data).chunks[0] == (100,) * 5


def test_dask_row_chunks_are_kept_unless_absurd(data):
    irregular = da.from_array(data, chunks=((100, 1, 399), 7))
    assert as_array(irregular).chunks[0] == (100, 1, 399)
    # Joining the feature chunks keeps the row chunks while blocks stay under chunk-bytes ...
    assert as_array(da.from_array(data, chunks=((100, 1, 399), (3, 4)))).chunks == ((100, 1, 399), (7,))
    with dask.config.set({"bigdist.chunk-bytes": 100 * 7 * 4}):
        # ... and re-chunks rows when they would not.
        assert as_array(da.from_array(data, chunks=(500, (3, 4)))).chunks == ((100,) * 5, (7,))
        # 500 blocks of 1 row, far below 100 rows: joined in whole blocks.
        tiny = as_array(da.from_array(data, chunks=(1, 7)))
    assert tiny.chunks[0] == (100,) * 5
    assert_eq(tiny, data)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float32", "float32"),
        ("float64", "float64"),
        ("float16", "float32"),
        ("int8", "float64"),
        ("int64", "float64"),
        ("uint32", "float64"),
        ("bool", "float64"),
    ],
)
def test_dtypes_are_cast(tmp_path, dtype, expected):
    values = (np.arange(12).reshape(6, 2) % 3).astype(dtype)
    zarr.create_array(str(tmp_path / "x.zarr"), data=values, chunks=(4, 2))
    for item in (values, da.from_array(values, chunks=3), str(tmp_path / "x.zarr")):
        array = as_array(item)
        assert array.dtype == np.dtype(expected)
        assert_eq(array, values.astype(expected))


@pytest.mark.parametrize(
    ("dtype", "fix"),
    [
        ("complex64", "Complex data not supported; use np.abs"),
        ("U3", "parse the strings"),
        ("S3", "parse the bytes"),
        ("datetime64[s]", "convert the datetimes"),
        ("timedelta64[s]", "convert the durations"),
        ([("a", "f4"), ("b", "f4")], "structured_to_unstructured"),
    ],
)
def test_unusable_dtypes_are_rejected_with_the_fix(dtype, fix):
    values = np.zeros((3, 2), dtype=dtype)
    shown = str(np.dtype(dtype))
    for item in (values, da.from_array(values)):
        with pytest.raises(InputDtypeError, match="queries has dtype") as raised:
            as_array(item, name="queries")
        assert shown in str(raised.value) and fix in str(raised.value)
    assert issubclass(InputDtypeError, TypeError) and issubclass(InputDtypeError, ValueError)


def test_object_arrays_of_numbers_are_cast_and_others_rejected():
    assert as_array(np.array([[1, 2.5]], dtype=object)).dtype == np.float64
    assert as_array([[1, 2], [3, 4]]).dtype == np.float64
    with pytest.raises(InputDtypeError, match="not numbers.*astype"):
        as_array(np.array([["a", "b"]], dtype=object))


def test_sparse_input_is_refused():
    import scipy.sparse

    with pytest.raises(InputDtypeError, match=r"sparse input is not supported.*toarray\(\)"):
        as_array(scipy.sparse.csr_matrix(np.eye(3)))


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((5,), r"1-D with shape \(5,\).*X.reshape\(-1, 1\).*X.reshape\(1, -1\)"),
        ((), "0 dimensions"),
        ((2, 3, 4), r"3 dimensions, shape \(2, 3, 4\).*2-D"),
        ((0, 3), r"Found array with 0 sample\(s\) \(shape=\(0, 3\)\).*X is empty"),
        ((3, 0), r"Found array with 0 feature\(s\) \(shape=\(3, 0\)\) while a minimum of 1 is required"),
    ],
)
def test_bad_shapes(tmp_path, shape, match):
    with pytest.raises(InputShapeError, match=match):
        as_array(np.zeros(shape))
    if len(shape) >= 1:
        # Lazy inputs are refused at once too, from their metadata.
        zarr.create_array(str(tmp_path / "x.zarr"), shape=shape, dtype="f4")
        with pytest.raises(InputShapeError):
            as_array(str(tmp_path / "x.zarr"))


def test_missing_and_unreadable_paths(tmp_path):
    with pytest.raises(StoreNotFoundError, match="nope.zarr"):
        open_array(str(tmp_path / "nope.zarr"))
    with pytest.raises(StoreNotFoundError, match="nothing-here"):
        open_array(f"memory://{uuid.uuid4().hex}/nothing-here.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(StoreNotFoundError, match="no Zarr array at"):
        open_array(tmp_path / "empty.zarr")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(StoreNotFoundError, match="x.csv.*is a file bigdist cannot read.*.npy"):
        open_array(tmp_path / "x.csv")
    assert issubclass(StoreNotFoundError, FileNotFoundError)


def test_group_path_lists_its_arrays(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("points", shape=(3, 2), dtype="f4")
    group.create_group("sub").create_array("labels", shape=(3,), dtype="i8")
    with pytest.raises(InputShapeError) as raised:
        open_array(str(tmp_path / "g.zarr"))
    message = str(raised.value)
    assert "is a Zarr group" in message and "path/to/group/arrayname" in message
    assert f"{tmp_path / 'g.zarr'}/points" in message and "points, sub/labels" in message


def test_nan_and_inf_in_memory_raise_at_once():
    data = np.ones((10, 2))
    data[4, 1] = np.inf
    with pytest.raises(NonFiniteError, match="train holds infinity at row 4, column 1.*impute"):
        as_array(data, name="train")
    data[4, 1] = np.nan
    with pytest.raises(NonFiniteError, match="train holds NaN at row 4"):
        as_array(data, name="train")
    assert np.isnan(as_array(data, check_finite=False).compute()).any()


def test_large_finite_values_are_not_taken_for_infinity():
    # Their sum overflows float32; the exact check must clear them.
    data = np.full((4, 2), np.finfo(np.float32).max, dtype=np.float32)
    assert_eq(as_array(da.from_array(data, chunks=2)), data)


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_non_finite_in_a_stored_block_raises_with_its_rows(tmp_path, bad):
    data = np.ones((300, 2), dtype=np.float32)
    data[250, 1] = bad
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(100, 2))
    with dask.config.set({"bigdist.chunk-bytes": 100 * 2 * 4}):
        array = as_array(str(tmp_path / "x.zarr"), name="train")
    array[:200].compute()  # the clean blocks read fine
    with pytest.raises(NonFiniteError, match=r"train holds (NaN|-infinity) at row 250, column 1 .*rows 200-299"):
        array.compute()


def test_finite_check_is_a_named_layer_of_the_reading_pass(tmp_path):
    data = np.ones((300, 2))
    data[5, 0] = np.nan
    np.save(tmp_path / "train.npy", data)
    array = open_array(tmp_path / "train.npy")
    graph = array.__dask_graph__()
    check = array.name
    assert check.startswith("bigdist-check-finite-train-")
    # The check is applied to the blocks as they are read: one task per block on top of the reading ones.
    (read,) = graph.dependencies[check]
    assert read.startswith("array-") and len(graph.layers[check]) == len(graph.layers[read]) == array.numblocks[0]
    assert dask.utils.key_split(array.__dask_keys__()[0][0]) == "bigdist-check-finite-train"
    with pytest.raises(NonFiniteError, match=r"train.npy holds NaN at row 5, column 0 \(in the block of rows 0-299\)"):
        array.compute()
    lazy = da.from_array(data, chunks=100)
    with pytest.raises(NonFiniteError, match="rows 0-99"):
        as_array(lazy, name="queries").sum().compute()
    assert as_array(lazy, check_finite=False).shape == (300, 2)


def test_check_features():
    with pytest.raises(InputShapeError, match="queries have 3 features, train has 4"):
        check_features(da.zeros((2, 3)), da.zeros((2, 4)))
    check_features(np.zeros((2, 3)), np.zeros((5, 3)))


def test_open_array_takes_arrays_too(data):
    np.testing.assert_array_equal(open_array(data).compute(), data)


@pytest.mark.parametrize(
    ("value", "options", "message"),
    [
        (0.0, {"minimum": 0, "open_minimum": True}, "bandwidth must be > 0, got bandwidth=0.0"),
        (1.5, {"minimum": 0, "maximum": 1}, "bandwidth must be <= 1, got bandwidth=1.5"),
        ("2", {}, "bandwidth must be a finite number, got bandwidth='2'"),
        (float("inf"), {}, "must be a finite number"),
        (True, {}, "got bandwidth=True"),
    ],
)
def test_check_number_names_the_value(value, options, message):
    from bigdist.errors import ParameterError
    from bigdist.io import check_number

    with pytest.raises(ParameterError, match=re.escape(message)):
        check_number("bandwidth", value, **options)
    assert check_number("bandwidth", 0.5, minimum=0, maximum=1) == 0.5


def test_large_numpy_inputs_under_a_client_are_scattered_not_sent_in_graphs():
    """No "Sending large graph" warning from bigdist's own handling of a NumPy input, and exact results."""
    import warnings

    from distributed import Client

    import bigdist as bd
    from tests.oracle import knn_oracle

    rng = np.random.default_rng(0)
    X = rng.random((3000, 600))  # 14 MB, above distributed's 10 MB warning threshold
    Q = X[:7] + 0.01
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            distances, indices = bd.knn(Q, X, k=3).compute()
            array = as_array(X)
    assert not [w for w in caught if "large graph" in str(w.message)], [str(w.message)[:80] for w in caught]
    oracle_distances, oracle_indices = knn_oracle(Q, X, 3)
    np.testing.assert_array_equal(indices, oracle_indices)
    np.testing.assert_allclose(distances, oracle_distances, rtol=1e-12)
    assert array.chunks == as_array(X).chunks  # the same blocks as without a client


def test_stored_chunks_larger_than_a_block_are_read_once(tmp_path, data):
    # A compressed chunk is decompressed whole for any rows of it: read once, then cut into blocks.
    from zarr.storage import LocalStore, WrapperStore

    reads: list[str] = []

    class CountingStore(WrapperStore):
        async def get(self, key, prototype, byte_range=None):
            if key.startswith("c/"):
                reads.append(key)
            return await self._store.get(key, prototype, byte_range)

    zarr.create_array(str(tmp_path / "big.zarr"), data=data, chunks=(200, 7))
    stored = zarr.open_array(store=CountingStore(LocalStore(str(tmp_path / "big.zarr"))), mode="r")
    with dask.config.set({"bigdist.chunk-bytes": 60 * 7 * 4}):
        array = as_array(stored)
    assert max(array.chunks[0]) <= 60
    assert_eq(array, data)
    assert sorted(reads) == ["c/0/0", "c/1/0", "c/2/0"]


def test_local_chunks_are_mapped_once_and_their_blocks_share_the_read(tmp_path, data, monkeypatch):
    from bigdist.io import integrity

    mapped: list[str] = []
    original = integrity._mapped

    def counting(path):
        mapped.append(path.removeprefix(str(tmp_path / "big.zarr")))
        return original(path)

    monkeypatch.setattr(integrity, "_mapped", counting)
    zarr.create_array(str(tmp_path / "big.zarr"), data=data, chunks=(200, 7))
    with dask.config.set({"bigdist.chunk-bytes": 60 * 7 * 4}):
        array = as_array(str(tmp_path / "big.zarr"))
    # The tasks' own outputs: the blocks cut from one chunk are views of its read (rechunk would copy each).
    blocks = dask.get(dict(array.__dask_graph__()), [key for (key,) in array.__dask_keys__()])
    np.testing.assert_array_equal(np.concatenate(blocks), data)
    assert sorted(mapped) == ["/c/0/0", "/c/1/0", "/c/2/0"]
    assert len(blocks) > 3 and blocks[0].base is not None and blocks[0].base is blocks[1].base


@pytest.mark.parametrize("chunks", [30, (30, 30, 30, 10), (20, 40, 40), (40, 40, 20)])
def test_non_finite_rows_are_named_for_regular_and_irregular_blocks(chunks):
    values = np.ones((100, 2))
    values[55, 1], values[95, 0] = np.nan, np.inf
    array = as_array(da.from_array(values, chunks=(chunks, 2)), name="q")
    bounds = np.concatenate([[0], np.cumsum(array.chunks[0])])
    for row, col in np.argwhere(~np.isfinite(values)):
        j = int(np.searchsorted(bounds, row, side="right")) - 1
        with pytest.raises(NonFiniteError, match=rf"at row {row}, column {col} \(in the block of rows "
                           rf"{bounds[j]}-{bounds[j + 1] - 1}\)"):  # fmt: skip
            array.blocks[j].compute(scheduler="synchronous")
