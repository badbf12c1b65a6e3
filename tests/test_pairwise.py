import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.datasets import load_digits
from sklearn.metrics import pairwise_distances_argmin_min as sk_argmin_min

import bigdist as bd
from bigdist.errors import InputShapeError, InputValueError, ParameterError
from bigdist.io import read_group, write_group
from bigdist.kernels.registry import metric_names
from tests.oracle import BOOLEAN_METRICS, OWN_DATA_METRICS, distances

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture
def small_blocks():
    # Many output blocks even for small matrices.
    with dask.config.set({"bigdist.chunk-bytes": 4096}):
        yield


METRICS = [(name, {}) for name in metric_names(aliases=False) if name not in ("minkowski", *OWN_DATA_METRICS)] + [
    ("minkowski", {"p": 3})
]
BOOLEAN = BOOLEAN_METRICS


def _data(metric, dtype, kind, rng, n_queries=41, n_train=333, n_features=9):
    if metric in BOOLEAN:
        return rng.random((n_queries, n_features)) > 0.5, rng.random((n_train, n_features)) > 0.5
    if kind == "integer":
        queries = rng.integers(0, 5, (n_queries, n_features))
        train = rng.integers(0, 5, (n_train, n_features))
    else:
        queries = rng.random((n_queries, n_features)).astype(dtype)
        train = rng.random((n_train, n_features)).astype(dtype)
    queries[3] = 0  # zero rows: cosine/correlation distance 1, braycurtis 0 between two of them
    train[10] = 0
    return queries, train


def _tolerance(metric, dtype):
    # float32 GEMM family: a float32 GEMM on centred rows (see bigdist.kernels.pairwise).
    if np.dtype(dtype) == np.float32:
        return {"rtol": 2e-6, "atol": 2e-6}
    return {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize(("metric", "params"), METRICS)
@pytest.mark.parametrize(("dtype", "kind"), [(np.float64, "random"), (np.float32, "random"), (np.int64, "integer")])
def test_every_metric_equals_cdist(metric, params, dtype, kind, small_blocks):
    rng = np.random.default_rng(0)
    queries, train = _data(metric, dtype, kind, rng)
    train_dask = da.from_array(train, chunks=((100, 1, 150, 82), (4, 5)))  # irregular, feature axis split
    matrix = bd.pairwise_distances(queries, train_dask, metric=metric, **params)
    assert matrix.shape == (41, 333)
    assert len(matrix.chunks[0]) > 1 and len(matrix.chunks[1]) > 1
    # Regular chunks (all but the last equal), as Zarr needs.
    for sizes in matrix.chunks:
        assert len(set(sizes[:-1])) <= 1 and sizes[-1] <= sizes[0]
    result = matrix.compute()
    expected_dtype = np.float32 if np.dtype(dtype) == np.float32 and metric not in BOOLEAN else np.float64
    assert result.dtype == matrix.dtype == expected_dtype
    assert not np.isnan(result).any()
    np.testing.assert_allclose(result, distances(queries, train, metric, **params), **_tolerance(metric, result.dtype))


@pytest.mark.parametrize("metric", ["cosine", "correlation"])
def test_zero_and_constant_rows_have_cosine_distance_one(metric):
    queries = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])
    matrix = bd.pairwise_distances(queries, metric=metric).compute()
    zero_rows = [0] if metric == "cosine" else [0, 1]  # a constant row is a zero row once centred
    for row in zero_rows:
        others = [j for j in range(3) if j != row]
        np.testing.assert_array_equal(matrix[row, others], 1.0)
        np.testing.assert_array_equal(matrix[others, row], 1.0)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)


@pytest.mark.parametrize(("metric", "params"), METRICS)
def test_self_join_is_symmetric_with_zero_diagonal(metric, params, small_blocks):
    rng = np.random.default_rng(1)
    data, _ = _data(metric, np.float64, "random", rng, n_queries=70)
    matrix = bd.pairwise_distances(data, metric=metric, **params).compute()
    expected = distances(data, data, metric, **params)
    if metric != "inner_product":
        np.testing.assert_array_equal(np.diag(matrix), 0.0)
        np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(matrix, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_far_from_origin_and_near_duplicates_stay_accurate(dtype, small_blocks):
    rng = np.random.default_rng(2)
    train = (rng.standard_normal((200, 16)) + 1e4).astype(dtype)
    queries = train[:30].copy()
    queries[:10] += np.asarray(1e-2, dtype=dtype)  # near-duplicates of train rows 0-9
    result = bd.euclidean_distances(queries, train).compute()
    expected = distances(queries, train, "euclidean")
    # Without centring and the exact re-check, float32 would give distances of 0 or ~1 here.
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(np.diag(result[:30]), np.diag(expected[:30]), rtol=rtol)
    np.testing.assert_allclose(result, expected, rtol=rtol)
    squared = bd.euclidean_distances(queries, train, squared=True).compute()
    np.testing.assert_allclose(squared, expected**2, rtol=2 * rtol)


def test_cosine_similarity_is_the_normalised_matmul(small_blocks):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((90, 30)).astype(np.float32)
    data[7] = 0
    eps = 1e-8
    similarity = bd.cosine_similarity(data, eps=eps).compute()
    normalised = data.astype(np.float64) / np.maximum(np.linalg.norm(data.astype(np.float64), axis=1), eps)[:, None]
    assert similarity.dtype == np.float32
    np.testing.assert_allclose(similarity, normalised @ normalised.T, atol=2e-6)
    np.testing.assert_array_equal(similarity[7], 0.0)
    other = rng.standard_normal((20, 30))
    np.testing.assert_allclose(
        bd.cosine_similarity(other, data).compute(),
        1.0 - distances(other, data, "cosine"),
        atol=1e-12,
    )


def test_tiny_norms_are_guarded_by_eps():
    data = np.array([[1e-12, 0.0], [1.0, 0.0]])
    # The row of norm 1e-12 < eps is divided by eps, as the one-matmul recipe does.
    np.testing.assert_allclose(bd.cosine_similarity(data, eps=1e-8).compute()[0, 1], 1e-4)
    np.testing.assert_allclose(bd.cosine_similarity(data, eps=1e-20).compute()[0, 1], 1.0)


def test_digits_matrix_written_to_zarr_and_read_back(tmp_path):
    digits = load_digits().data
    with dask.config.set({"bigdist.chunk-bytes": 1 << 20}):
        matrix = bd.pairwise_distances(digits, metric="manhattan")
        assert matrix.shape == (1797, 1797) and matrix.numblocks[0] > 1
        write_group(tmp_path / "d.zarr", {"distances": matrix})
    stored = read_group(tmp_path / "d.zarr")["distances"]
    assert zarr.open_array(str(tmp_path / "d.zarr" / "distances")).chunks == tuple(c[0] for c in matrix.chunks)
    np.testing.assert_array_equal(stored.compute(), distances(digits, digits, "manhattan"))
    euclid = tmp_path / "e.zarr"
    with dask.config.set({"bigdist.chunk-bytes": 1 << 20}):
        bd.pairwise_distances(digits.astype(np.float32)).to_zarr(str(euclid))
    back = zarr.open_array(str(euclid))[:]
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, distances(digits, digits, "euclidean"), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("metric", "params"), [("euclidean", {}), ("cosine", {}), ("chebyshev", {}), ("minkowski", {"p": 3})]
)
def test_argmin_min_matches_scikit_learn(metric, params):
    digits = load_digits().data + np.random.default_rng(4).random((1797, 64)) * 1e-3
    queries, train = digits[:300], digits[300:]
    train_dask = da.from_array(train, chunks=((500, 1, 600, 396), (64,)))
    expected_argmin, expected_min = sk_argmin_min(queries, train, metric=metric, metric_kwargs=params)
    # NumPy queries give NumPy results against a lazy train set, as scikit-learn's; dask queries stay lazy.
    argmin, closest = bd.pairwise_distances_argmin_min(queries, train_dask, metric=metric, split_every=2, **params)
    assert isinstance(argmin, np.ndarray) and isinstance(closest, np.ndarray)
    np.testing.assert_array_equal(argmin, expected_argmin)
    np.testing.assert_allclose(closest, expected_min, rtol=1e-10)
    lazy = bd.pairwise_distances_argmin_min(da.from_array(queries, chunks=128), train_dask, metric=metric, **params)
    assert all(isinstance(part, da.Array) for part in lazy)
    np.testing.assert_array_equal(lazy[0].compute(), expected_argmin)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(5)
    data = rng.random((10, 3))
    with pytest.raises(ParameterError, match="unknown metric 'eucldean'.*euclidean"):
        bd.pairwise_distances(data, metric="eucldean")
    with pytest.raises(ParameterError, match="p=0"):
        bd.pairwise_distances(data, metric="minkowski", p=0)
    with pytest.raises(ParameterError, match="takes no parameters.*p=3"):
        bd.pairwise_distances(data, metric="cosine", p=3)
    with pytest.raises(InputShapeError, match="features"):
        bd.pairwise_distances(data, rng.random((4, 5)))
    with pytest.raises(InputValueError, match=r"chi2.*-1\.0 at row 4, column 2"):
        negative = data.copy()
        negative[4, 2] = -1.0
        bd.pairwise_distances(negative, metric="chi2").compute()
    with pytest.raises(ParameterError, match="eps=0"):
        bd.cosine_similarity(data, eps=0)
    with pytest.raises(ParameterError, match="needs train rows"):
        bd.pairwise_distances_argmin_min(data, None)


def test_blocks_follow_chunk_bytes():
    data = np.random.default_rng(6).random((1500, 4)).astype(np.float32)
    with dask.config.set({"bigdist.chunk-bytes": "1MiB"}):
        matrix = bd.pairwise_distances(data)
    rows, cols = matrix.chunks[0][0], matrix.chunks[1][0]
    assert rows * cols * 4 <= 1 << 20 and rows * cols * 4 > (1 << 20) * 0.9
    assert any(name.startswith("bigdist-pairwise-euclidean") for name in matrix.dask.layers)
    # Every block matches its declared chunks and dtype.
    da.utils.assert_eq(matrix, distances(data, data, "euclidean").astype(np.float32), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_float32_gemm_keys_within_the_documented_bound(metric, small_blocks):
    # Tight clusters far from the origin and from each other: many pairs are far
    # closer than the rows' spread, where a plain float32 expansion loses every digit.
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((6, 24)) * 100 + 1000
    data = (centres[rng.integers(0, 6, 400)] + rng.standard_normal((400, 24)) * 1e-3).astype(np.float32)
    result = bd.pairwise_distances(data[:150], data, metric=metric).compute().astype(np.float64)
    expected = distances(data[:150], data, metric)
    # Each key is exact (re-checked) or within 1/16 of itself, plus the float32 rounding of the output.
    np.testing.assert_array_less(np.abs(result - expected), expected / 16 + 1e-6 * np.maximum(expected, 1e-30) + 1e-12)
    close = expected < np.median(expected) / 1e6  # within-cluster pairs: re-checked, so float32-accurate
    assert close.sum() > 1000
    np.testing.assert_allclose(result[close], expected[close], rtol=1e-6, atol=0 if metric == "sqeuclidean" else 1e-7)


def test_input_blocks_stay_within_chunk_bytes_against_a_short_side():
    # 4 columns: the output block alone would allow 2,048 query rows of 256 float64 values (4 MiB) per task.
    rng = np.random.default_rng(8)
    queries, train = rng.normal(size=(3000, 256)), rng.normal(size=(4, 256))
    with dask.config.set({"bigdist.chunk-bytes": 65536}):
        matrix = bd.pairwise_distances(queries, train)
    assert max(matrix.chunks[0]) * 256 * 8 <= 65536
    np.testing.assert_allclose(matrix.compute(), distances(queries, train, "euclidean"), rtol=1e-12)
