import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from bigdist.errors import InputDtypeError, InputShapeError, NonFiniteError, StoreNotFoundError
from bigdist.io import as_array, check_features, open_array

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture
def data():
    return np.random.default_rng(0).standard_normal((500, 7)).astype(np.float32)


def test_every_input_kind_gives_the_same_rows(tmp_path, data):
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(64, 7))
    np.save(tmp_path / "x.npy", data)
    inputs = [
        data,
        da.from_array(data, chunks=((100, 3, 397), (3, 4))),
        zarr.open_array(str(tmp_path / "x.zarr"), mode="r"),
        str(tmp_path / "x.zarr"),
        f"file://{tmp_path / 'x.zarr'}",
        tmp_path / "x.npy",
    ]
    for item in inputs:
        array = as_array(item)
        assert array.numblocks[1] == 1
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array.compute(), data)


def test_zarr_blocks_hold_whole_stored_chunks(tmp_path, data):
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(64, 7))
    with dask.config.set({"bigdist.chunk-bytes": 100 * 7 * 4}):
        array = open_array(str(tmp_path / "x.zarr"))
    assert all(size % 64 == 0 for size in array.chunks[0][:-1])


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float32", "float32"),
        ("float64", "float64"),
        ("float16", "float32"),
        ("int8", "float64"),
        ("uint32", "float64"),
        ("bool", "float64"),
    ],
)
def test_dtypes_are_cast(dtype, expected):
    assert as_array(np.ones((3, 2), dtype=dtype)).dtype == np.dtype(expected)


@pytest.mark.parametrize("dtype", ["complex64", "U3", "datetime64[s]"])
def test_unusable_dtypes_are_rejected(dtype):
    with pytest.raises(InputDtypeError, match="queries has dtype"):
        as_array(np.zeros((3, 2), dtype=dtype), name="queries")


def test_object_arrays_of_numbers_are_cast_and_others_rejected():
    assert as_array(np.array([[1, 2.5]], dtype=object)).dtype == np.float64
    with pytest.raises(InputDtypeError, match="not numbers"):
        as_array(np.array([["a", "b"]], dtype=object))


def test_sparse_input_is_refused():
    import scipy.sparse

    with pytest.raises(InputDtypeError, match="sparse input is not supported"):
        as_array(scipy.sparse.csr_matrix(np.eye(3)))


@pytest.mark.parametrize(
    ("shape", "match"), [((5,), "reshape"), ((2, 3, 4), "2-D"), ((0, 3), "empty"), ((3, 0), "empty")]
)
def test_bad_shapes(shape, match):
    with pytest.raises(InputShapeError, match=match):
        as_array(np.zeros(shape))


def test_missing_path_and_group_path(tmp_path):
    with pytest.raises(StoreNotFoundError, match="nope.zarr"):
        open_array(str(tmp_path / "nope.zarr"))
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("points", shape=(3, 2), dtype="f4")
    with pytest.raises(InputShapeError, match="g.zarr/points"):
        open_array(str(tmp_path / "g.zarr"))


def test_nan_in_memory_raises_at_once():
    data = np.ones((10, 2))
    data[4, 1] = np.inf
    with pytest.raises(NonFiniteError, match="row 4"):
        as_array(data, name="train")


def test_nan_in_a_stored_block_raises_with_its_rows(tmp_path):
    data = np.ones((300, 2), dtype=np.float32)
    data[250, 0] = np.nan
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(100, 2))
    with dask.config.set({"bigdist.chunk-bytes": 100 * 2 * 4}):
        array = as_array(str(tmp_path / "x.zarr"), name="train")
    array[:200].compute()  # the clean blocks read fine
    with pytest.raises(NonFiniteError, match=r"train holds NaN or infinity at row 250 .*rows 200-299"):
        array.compute()


def test_check_features():
    with pytest.raises(InputShapeError, match="queries have 3 features but train has 4"):
        check_features(da.zeros((2, 3)), da.zeros((2, 4)))


def test_huge_stored_chunks_are_split_to_the_block_size(tmp_path, data):
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(500, 7))
    with dask.config.set({"bigdist.chunk-bytes": 100 * 7 * 4}):
        array = open_array(str(tmp_path / "x.zarr"))
    assert max(array.chunks[0]) == 100
    np.testing.assert_array_equal(array.compute(), data)


def test_open_array_takes_arrays_too(data):
    np.testing.assert_array_equal(open_array(data).compute(), data)
