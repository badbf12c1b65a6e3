import dask.array as da
import numpy as np
import pytest
import zarr

import bigdist as bd
from bigdist.errors import InputShapeError, ParameterError
from tests.oracle import knn_oracle

pytestmark = pytest.mark.usefixtures("synchronous")


def _check(result, expected, *, rtol=1e-6):
    distances, indices = result.compute()
    expected_distances, expected_indices = expected
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=rtol, atol=1e-6)
    return distances, indices


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "inner_product"])
def test_irregular_chunks_and_split_every_give_oracle(metric, small_tiles):
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((130, 10)).astype(np.float32)
    train = rng.standard_normal((2100, 10)).astype(np.float32)
    train_dask = da.from_array(train, chunks=((300, 1, 700, 99, 500, 500), (4, 6)))
    expected = knn_oracle(queries, train, 7, metric)
    results = []
    for split_every in (2, 3, 16):
        result = bd.knn(queries, train_dask, k=7, metric=metric, split_every=split_every)
        results.append(_check(result, expected))
    for distances, indices in results[1:]:
        np.testing.assert_array_equal(indices, results[0][1])
        np.testing.assert_array_equal(distances, results[0][0])


def test_split_every_two_builds_three_levels(small_tiles):
    rng = np.random.default_rng(1)
    train = da.from_array(rng.standard_normal((800, 4)), chunks=100)
    result = bd.knn(rng.standard_normal((20, 4)), train, k=3, split_every=2)
    merge_layers = [name for name in result.indices.dask.layers if name.startswith("bigdist-topk-merge")]
    assert len(merge_layers) >= 3
    assert any(name.startswith("bigdist-knn-tile") for name in result.indices.dask.layers)


def test_integer_data_with_many_ties(small_tiles):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 3, size=(1500, 3))
    queries = rng.integers(0, 3, size=(60, 3))
    result = bd.knn(queries, da.from_array(train, chunks=170), k=9)
    _check(result, knn_oracle(queries, train, 9), rtol=0)


def test_self_join_excludes_self_and_finds_duplicates(small_tiles):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((700, 5)).astype(np.float32)
    data[350] = data[10]
    result = bd.knn(da.from_array(data, chunks=97), None, k=4)
    distances, indices = _check(result, knn_oracle(data, None, 4))
    assert indices[10, 0] == 350 and indices[350, 0] == 10
    assert distances[10, 0] == 0


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_float32_far_from_origin(offset, small_tiles):
    rng = np.random.default_rng(4)
    train = (rng.standard_normal((1200, 32)) + offset).astype(np.float32)
    queries = (rng.standard_normal((40, 32)) + offset).astype(np.float32)
    result = bd.knn(queries, da.from_array(train, chunks=250), k=5)
    distances, _ = _check(result, knn_oracle(queries, train, 5))
    assert distances.dtype == np.float32


def test_d1024(small_tiles):
    rng = np.random.default_rng(5)
    train = rng.standard_normal((600, 1024)).astype(np.float32)
    queries = rng.standard_normal((30, 1024)).astype(np.float32)
    _check(bd.knn(queries, da.from_array(train, chunks=128), k=3), knn_oracle(queries, train, 3))


def test_zarr_in_and_out(tmp_path, small_tiles):
    rng = np.random.default_rng(6)
    train = rng.standard_normal((900, 6)).astype(np.float32)
    queries = rng.standard_normal((45, 6)).astype(np.float32)
    zarr.create_array(str(tmp_path / "train.zarr"), data=train, chunks=(128, 6))
    zarr.create_array(str(tmp_path / "queries.zarr"), data=queries, chunks=(10, 6))
    result = bd.knn(str(tmp_path / "queries.zarr"), str(tmp_path / "train.zarr"), k=4)
    result.to_zarr(str(tmp_path / "nn.zarr"))
    group = zarr.open_group(str(tmp_path / "nn.zarr"), mode="r")
    expected_distances, expected_indices = knn_oracle(queries, train, 4)
    np.testing.assert_array_equal(group["indices"][:], expected_indices)
    np.testing.assert_allclose(group["distances"][:], expected_distances, rtol=1e-6)
    assert group.attrs["knn"]["k"] == 4


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda q, x: bd.knn(q, x, k=0), ParameterError, "k=0"),
        (lambda q, x: bd.knn(q, x, k=101), ParameterError, "k=101"),
        (lambda q, x: bd.knn(x, None, k=100), ParameterError, "k <= 99"),
        (lambda q, x: bd.knn(q, x, k=2, metric="manhatan"), ParameterError, "manhatan"),
        (lambda q, x: bd.knn(q[:, :2], x, k=2), InputShapeError, "features"),
        (lambda q, x: bd.knn(q, x, k=2, split_every=1), ParameterError, "split_every=1"),
    ],
)
def test_bad_input(call, error, match):
    rng = np.random.default_rng(7)
    with pytest.raises(error, match=match):
        call(rng.standard_normal((5, 3)), rng.standard_normal((100, 3)))


def test_nan_is_reported_with_its_array():
    train = np.ones((50, 2))
    train[7, 1] = np.nan
    with pytest.raises(ValueError, match="train"):
        bd.knn(np.zeros((3, 2)), train, k=2).compute()


def test_blocks_match_their_declared_chunks_and_dtypes(small_tiles):
    from dask.array.utils import assert_eq

    rng = np.random.default_rng(8)
    train = rng.standard_normal((700, 3)).astype(np.float32)
    queries = rng.standard_normal((120, 3)).astype(np.float32)
    result = bd.knn(
        da.from_array(queries, chunks=33), da.from_array(train, chunks=((50, 250, 1, 399), 3)), k=5, split_every=2
    )
    expected_distances, expected_indices = knn_oracle(queries, train, 5)
    assert_eq(result.indices, expected_indices)
    assert_eq(result.distances, expected_distances.astype(np.float32), rtol=1e-6)
