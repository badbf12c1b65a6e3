"""Radius neighbours with every metric of the registry, against SciPy cdist (tests/oracle.py) and scikit-learn."""

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import bigdist as bd
from bigdist.errors import InputValueError, ParameterError, TooManyNeighborsError
from bigdist.kernels.registry import metric_names
from tests.oracle import BOOLEAN_METRICS, OWN_DATA_METRICS
from tests.oracle import distances as oracle_distances

METRICS = [(name, {}) for name in metric_names(aliases=False) if name not in ("minkowski", *OWN_DATA_METRICS)]
METRICS += [("minkowski", {"p": 3}), ("minkowski", {"p": 1.5})]
# The metrics scikit-learn's brute radius search knows (chi2 is a kernel there, inner_product absent).
SKLEARN_METRICS = [(name, params) for name, params in METRICS if name not in ("chi2", "inner_product")]
SKLEARN_METRICS += [("cityblock", {}), ("l1", {})]


pytestmark = pytest.mark.usefixtures("synchronous")


def _data(metric, dtype, rng, n_queries=60, n_train=700, n_features=10):
    if metric in BOOLEAN_METRICS:
        return rng.random((n_queries, n_features)) > 0.5, rng.random((n_train, n_features)) > 0.5
    return rng.random((n_queries, n_features)).astype(dtype), rng.random((n_train, n_features)).astype(dtype)


def _inside(matrix, radius, metric):
    """The oracle's decision: distance <= radius (inner product >= radius)."""
    return matrix >= radius if metric == "inner_product" else matrix <= radius


def _radius(matrix, metric):
    """A radius that takes in about a tenth of the pairs."""
    return float(np.quantile(matrix, 0.9 if metric == "inner_product" else 0.1))


def _check_rows(distances, indices, matrix, inside, sort_results, metric, dtype):
    assert [set(row) for row in indices] == [set(np.flatnonzero(row)) for row in inside]
    for row, (got_d, got_i) in enumerate(zip(distances, indices, strict=True)):
        assert got_d.dtype == dtype and got_i.dtype == np.int64
        expected = matrix[row, got_i]
        if dtype == np.float32:
            np.testing.assert_allclose(got_d, expected.astype(np.float32), rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_allclose(got_d, expected, rtol=1e-13, atol=1e-14)
        if sort_results:
            keys = -expected if metric == "inner_product" else expected
            np.testing.assert_array_equal(got_i, got_i[np.lexsort((got_i, keys))])
        else:
            assert (np.diff(got_i) > 0).all()


@pytest.mark.parametrize(("metric", "params"), METRICS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_metric_gives_the_oracle_for_any_chunking(metric, params, dtype, small_tiles):
    rng = np.random.default_rng(0)
    queries, train = _data(metric, dtype, rng)
    # Zero rows: the documented values where cdist gives NaN (cosine, correlation 1; braycurtis, jaccard 0).
    queries[2] = 0
    train[[5, 6]] = 0
    matrix = oracle_distances(queries, train, metric, **params)
    assert not np.isnan(matrix).any()
    radius = _radius(matrix, metric)
    inside = _inside(matrix, radius, metric)
    out_dtype = np.float64 if queries.dtype == bool else dtype
    csr = []
    for sort_results in (False, True):
        distances, indices = bd.radius_neighbors(
            da.from_array(queries, chunks=((40, 1, 19), -1)),
            da.from_array(train, chunks=((300, 1, 250, 149), -1)),
            radius,
            metric,
            sort_results=sort_results,
            split_every=2,
            **params,
        ).compute()
        _check_rows(distances, indices, matrix, inside, sort_results, metric, out_dtype)
        csr.append(bd.radius_neighbors(queries, train, radius, metric, sort_results=sort_results, **params).to_csr())
    assert csr[0][0][-1] > 2000
    # Another chunking and fan-in, the same arrays to the bit.
    with dask.config.set({"bigdist.knn.query-block-rows": 7, "bigdist.knn.tile-train-rows": 100}):
        again = bd.radius_neighbors(
            queries, da.from_array(train, chunks=((13, 687), -1)), radius, metric, sort_results=True, split_every=3,
            **params,
        ).to_csr()  # fmt: skip
    for left, right in zip(again, csr[1], strict=True):
        np.testing.assert_array_equal(left, right)


def _most_common_inner_value(matrix):
    """The value most pairs have, apart from the smallest and the largest: many pairs exactly at the radius."""
    values, counts = np.unique(matrix, return_counts=True)
    inner = slice(1, -1)
    return float(values[inner][np.argmax(counts[inner])])


@pytest.mark.parametrize(("metric", "params"), METRICS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_boundary_on_integer_grids_is_decided_as_cdist(metric, params, dtype, small_tiles):
    # Small integers in 4 features: every value below is computed exactly, or rounded in the same order as the
    # oracle (cdist, or its formula summed left to right), so many pairs are at distance == radius exactly.
    rng = np.random.default_rng(7)
    if metric in BOOLEAN_METRICS:
        points = (rng.random((400, 4)) > 0.5).astype(dtype)
    else:
        points = rng.integers(0, 4, size=(400, 4)).astype(dtype)
    queries, train = points[:80], points[80:]
    matrix = oracle_distances(queries, train, metric, **params)
    radius = _most_common_inner_value(matrix)
    assert (matrix == radius).sum() > 50
    distances, indices = bd.radius_neighbors(queries, train, radius, metric, split_every=2, **params).compute()
    assert [set(row) for row in indices] == [set(np.flatnonzero(row)) for row in _inside(matrix, radius, metric)]
    # Self-join: each row excludes itself by index, and keeps its exact duplicates.
    within = oracle_distances(points, points, metric, **params)
    inside = _inside(within, radius, metric)
    np.fill_diagonal(inside, False)
    _, indices = bd.radius_neighbors(da.from_array(points, chunks=((150, 250), -1)), None, radius, metric,
                                     split_every=2, **params).compute()  # fmt: skip
    assert [set(row) for row in indices] == [set(np.flatnonzero(row)) for row in inside]


@pytest.mark.parametrize(("metric", "params"), SKLEARN_METRICS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nearest_neighbors_match_scikit_learn_brute(metric, params, dtype, small_tiles):
    rng = np.random.default_rng(2)
    queries, train = _data(metric, dtype, rng, n_queries=50, n_train=400)
    radius = _radius(oracle_distances(queries, train, metric, **params), metric)
    ours = bd.NearestNeighbors(radius=radius, metric=metric, split_every=2, **params).fit(
        da.from_array(train, chunks=((150, 1, 249), -1))
    )
    theirs = SkNearestNeighbors(radius=radius, metric=metric, algorithm="brute", **params).fit(train)
    distances, indices = dask.compute(*ours.radius_neighbors(queries, sort_results=True))
    expected_distances, expected_indices = theirs.radius_neighbors(queries, sort_results=True)
    assert sum(len(row) for row in indices) > 1000
    rtol = 1e-5 if dtype == np.float32 else 1e-9
    for got_d, got_i, want_d, want_i in zip(distances, indices, expected_distances, expected_indices, strict=True):
        np.testing.assert_array_equal(np.sort(got_i), np.sort(want_i))
        np.testing.assert_allclose(got_d[np.argsort(got_i)], want_d[np.argsort(want_i)], rtol=rtol, atol=rtol)
    graph = ours.radius_neighbors_graph(queries, mode="distance")
    expected_graph = theirs.radius_neighbors_graph(queries, mode="distance")
    np.testing.assert_array_equal(graph.indptr, expected_graph.indptr)
    np.testing.assert_allclose(graph.toarray(), expected_graph.toarray(), rtol=rtol, atol=rtol)
    # The self-join, each row without itself.
    indices = ours.radius_neighbors(return_distance=False).compute()
    expected_indices = theirs.radius_neighbors(return_distance=False)
    assert [set(row) for row in indices] == [set(row) for row in expected_indices]


def test_metric_params_reach_the_kernel():
    rng = np.random.default_rng(3)
    queries, train = rng.random((30, 5)), rng.random((200, 5))
    expected = oracle_distances(queries, train, "minkowski", p=3) <= 0.4
    assert (expected != (oracle_distances(queries, train, "euclidean") <= 0.4)).any()
    for model in (
        bd.NearestNeighbors(radius=0.4, metric="minkowski", p=3),
        bd.NearestNeighbors(radius=0.4, metric="minkowski", metric_params={"p": 3}),
    ):
        _, indices = model.fit(train).radius_neighbors(queries)
        assert [set(row) for row in indices] == [set(np.flatnonzero(row)) for row in expected]
    # p = 1 is manhattan: the same kernel and values.
    manhattan = bd.radius_neighbors(queries, train, 0.8, "manhattan").to_csr()
    minkowski_1 = bd.radius_neighbors(queries, train, 0.8, "minkowski", p=1).to_csr()
    for left, right in zip(manhattan, minkowski_1, strict=True):
        np.testing.assert_array_equal(left, right)


def test_cap_and_zarr_output_with_a_direct_metric(tmp_path, small_tiles):
    rng = np.random.default_rng(4)
    train = np.vstack([rng.random((200, 3)) * 100, rng.random((40, 3)) * 0.01])  # a dense corner
    queries = np.vstack([rng.random((50, 3)) * 100 + 1000, [[0.005, 0.005, 0.005]]])
    with pytest.raises(TooManyNeighborsError, match=r"query 50 has at least \d+ neighbours.*cap of 39"):
        bd.radius_neighbors(queries, train, 0.1, "chebyshev", max_neighbors=39, split_every=2).compute()
    result = bd.radius_neighbors(queries, train, 0.1, "minkowski", p=3, sort_results=True, max_neighbors=40)
    path = str(tmp_path / "radius.zarr")
    result.to_zarr(path)
    stored = {name: array.compute() for name, array in bd.io.read_group(path).items()}
    indptr = stored["indptr"]
    np.testing.assert_array_equal(np.diff(indptr), [0] * 50 + [40])
    np.testing.assert_array_equal(np.sort(stored["indices"]), np.arange(200, 240))
    np.testing.assert_allclose(stored["distances"], np.sort(oracle_distances(queries[50:], train[200:], "minkowski",
                                                                             p=3)[0]), rtol=1e-13)  # fmt: skip
    attrs = zarr.open_group(path, mode="r").attrs["radius_neighbors"]
    assert attrs["metric"] == "minkowski" and attrs["p"] == 3.0


def test_values_a_metric_is_not_defined_for():
    rng = np.random.default_rng(5)
    data = rng.random((20, 4))
    signed = data - 0.5
    with pytest.raises(InputValueError, match=r"'chi2' needs non-negative values.*queries holds -0\.\d+ at row"):
        bd.NearestNeighbors(radius=1.0, metric="chi2").fit(data).radius_neighbors(signed)
    with pytest.raises(ParameterError, match=r"minkowski needs a real p > 0.*got p=0"):
        bd.radius_neighbors(data, data, 1.0, "minkowski", p=0)
    with pytest.raises(ParameterError, match=r"'manhattan' takes no parameters; got the unknown parameter\(s\) p"):
        bd.radius_neighbors(data, data, 1.0, "manhattan", p=3)
    with pytest.raises(ParameterError, match=r"unknown metric 'mahalanobi'; valid metrics are euclidean.*jaccard"):
        bd.NearestNeighbors(metric="mahalanobi").fit(data)
    with pytest.raises(ParameterError, match=r"radius must be >= 0 for the distance metric 'canberra'"):
        bd.radius_neighbors(data, data, -0.5, "canberra")
