"""kNN with every metric of the registry, against the float64 cdist + stable argsort oracle."""

import dask.array as da
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import bigdist as bd
from bigdist.errors import InputValueError, ParameterError
from bigdist.kernels.registry import metric_names
from tests.oracle import BOOLEAN_METRICS, OWN_DATA_METRICS, knn_oracle

METRICS = [(name, {}) for name in metric_names(aliases=False) if name not in ("minkowski", *OWN_DATA_METRICS)]
METRICS += [("minkowski", {"p": 3}), ("minkowski", {"p": 1.5})]
# Values computed in a different order than the oracle's (centred rows, quotients summed):
# integer data's exact ties may round apart, so those get tie-free data.
ROUNDING_ORDER_DEPENDENT = ("correlation", "chi2")


pytestmark = pytest.mark.usefixtures("synchronous")


def _data(metric, dtype, rng, kind="random"):
    if metric in BOOLEAN_METRICS:
        return rng.random((70, 12)) > 0.5, rng.random((900, 12)) > 0.5
    if kind == "integer":  # many exact ties
        return rng.integers(0, 3, (70, 12)).astype(dtype), rng.integers(0, 3, (900, 12)).astype(dtype)
    return rng.random((70, 12)).astype(dtype), rng.random((900, 12)).astype(dtype)


@pytest.mark.parametrize(("metric", "params"), METRICS)
@pytest.mark.parametrize(("dtype", "kind"), [(np.float64, "random"), (np.float32, "random"), (np.float64, "integer")])
def test_every_metric_gives_the_oracle_for_any_chunking(metric, params, dtype, kind, small_tiles):
    if metric in ROUNDING_ORDER_DEPENDENT:
        kind = "random"
    rng = np.random.default_rng(0)
    queries, train = _data(metric, dtype, rng, kind)
    queries[2] = 0
    train[5] = 0
    expected_distances, expected_indices = knn_oracle(queries, train, 6, metric, **params)
    results = []
    for chunks in (((300, 1, 450, 149), (5, 7)), ((900,), (12,))):
        for split_every in (2, 5):
            train_dask = da.from_array(train, chunks=chunks)
            result = bd.knn(queries, train_dask, k=6, metric=metric, split_every=split_every, **params)
            distances, indices = result.compute()
            np.testing.assert_array_equal(indices, expected_indices)
            rtol = 1e-6 if distances.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(distances, expected_distances, rtol=rtol, atol=rtol)
            results.append((distances, indices))
    for distances, indices in results[1:]:
        np.testing.assert_array_equal(distances, results[0][0])
        np.testing.assert_array_equal(indices, results[0][1])


@pytest.mark.parametrize(("metric", "params"), METRICS)
def test_self_join_with_every_metric(metric, params, small_tiles):
    rng = np.random.default_rng(1)
    _, data = _data(metric, np.float64, rng, "random" if metric in ROUNDING_ORDER_DEPENDENT else "integer")
    data_dask = da.from_array(data, chunks=((200, 300, 1, 399), (12,)))
    distances, indices = bd.knn(data_dask, None, k=4, metric=metric, split_every=2, **params).compute()
    expected_distances, expected_indices = knn_oracle(data, None, 4, metric, **params)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-12, atol=1e-12)


def test_correlation_far_from_origin_float32(small_tiles):
    # Rows with large offsets: correlation centres each row in float64 before the float32 GEMM.
    rng = np.random.default_rng(2)
    train = (rng.standard_normal((600, 20)) + 1e4).astype(np.float32)
    queries = train[:40] + rng.standard_normal((40, 20)).astype(np.float32) * 0.01
    expected = knn_oracle(queries, train, 5, "correlation")
    distances, indices = bd.knn(queries, train, k=5, metric="correlation").compute()
    np.testing.assert_array_equal(indices, expected[1])
    np.testing.assert_allclose(distances, expected[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("metric", "p"), [("manhattan", 2), ("chebyshev", 2), ("minkowski", 3), ("canberra", 2)])
def test_nearest_neighbors_matches_scikit_learn(metric, p):
    digits = load_digits().data + np.random.default_rng(3).random((1797, 64)) * 1e-3
    queries, train = digits[:150], digits[150:]
    ours = bd.NearestNeighbors(n_neighbors=5, metric=metric, p=p).fit(train)
    theirs = SkNearestNeighbors(n_neighbors=5, metric=metric, p=p, algorithm="brute").fit(train)
    distances, indices = ours.kneighbors(queries)
    expected_distances, expected_indices = theirs.kneighbors(queries)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-10)


def test_bad_metric_inputs():
    data = np.random.default_rng(4).random((20, 3))
    with pytest.raises(ParameterError, match="unknown metric 'manhatan'.*manhattan"):
        bd.knn(data, k=2, metric="manhatan")
    with pytest.raises(ParameterError, match="p=-1"):
        bd.knn(data, k=2, metric="minkowski", p=-1)
    with pytest.raises(ParameterError, match="takes no parameters"):
        bd.knn(data, k=2, metric="chi2", p=3)
    with pytest.raises(ParameterError, match=r"'p' parameter .* in the range \(0.0, inf\] or None. Got 0 instead"):
        bd.NearestNeighbors(metric="minkowski", p=0).fit(data)
    negative = data - 0.5
    with pytest.raises(InputValueError, match="chi2"):
        bd.knn(negative, k=2, metric="chi2").compute()
    # Non-boolean data for jaccard is read as booleans (non-zero is True), as scikit-learn converts it.
    np.testing.assert_array_equal(
        bd.knn(data - 0.5, k=2, metric="jaccard").compute()[1], bd.knn(data != 0.5, k=2, metric="jaccard").compute()[1]
    )
