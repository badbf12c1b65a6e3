"""The metrics of scikit-learn's brute force, against scikit-learn's pairwise_distances and SciPy's cdist."""

import dask.array as da
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import DistanceMetric
from sklearn.metrics import pairwise_distances as sk_pairwise_distances
from sklearn.metrics.pairwise import haversine_distances, nan_euclidean_distances
from sklearn.neighbors import KNeighborsClassifier as SkKNeighborsClassifier

import bigdist as bd
from bigdist.errors import InputValueError, ParameterError

pytestmark = pytest.mark.usefixtures("synchronous")

RNG = np.random.default_rng(11)
D = 6
V = RNG.random(D) + 0.2
_A = RNG.standard_normal((D, D))
VI = _A @ _A.T + 0.5 * np.eye(D)
W = RNG.random(D)
W[2] = 0.0  # a feature without weight

# (metric, params, data kind); the oracle is SciPy's cdist with the same parameters unless noted.
CASES = [
    ("seuclidean", {"V": V}, "real"),
    ("mahalanobis", {"VI": VI}, "real"),
    ("minkowski", {"p": 3, "w": W}, "real"),
    ("minkowski", {"p": 1.5, "w": W}, "real"),
    ("minkowski", {"p": 1, "w": W}, "real"),
    ("minkowski", {"p": 2, "w": W}, "real"),
    ("minkowski", {"p": np.inf, "w": W}, "real"),
    ("haversine", {}, "radians"),
    ("nan_euclidean", {}, "missing"),
    ("dice", {}, "counts"),
    ("jaccard", {}, "counts"),
    ("rogerstanimoto", {}, "counts"),
    ("russellrao", {}, "counts"),
    ("sokalsneath", {}, "counts"),
    ("yule", {}, "counts"),
]


def _data(kind, n, rng, dtype=np.float64):
    if kind == "radians":
        return np.column_stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-3.1, 3.1, n)]).astype(dtype)
    if kind == "counts":  # non-boolean values, read as booleans (non-zero is True) as scikit-learn converts them
        return (rng.integers(0, 3, (n, 8)) * (rng.random((n, 8)) > 0.4)).astype(dtype)
    rows = rng.standard_normal((n, D)).astype(dtype)
    if kind == "missing":
        rows[rng.random(rows.shape) < 0.25] = np.nan
    return rows


def _oracle(queries, train, metric, params):
    """float64 distances from scikit-learn / SciPy, independent of bigdist."""
    q, x = np.asarray(queries, np.float64), np.asarray(train, np.float64)
    if metric == "haversine":
        return haversine_distances(q, x)
    if metric == "nan_euclidean":
        # scikit-learn's definition summed directly (its own nan_euclidean_distances uses the expansion trick,
        # which loses the small distances' digits to cancellation).
        diff = q[:, None, :] - x[None, :, :]
        present = (~np.isnan(diff)).sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.nansum(diff**2, axis=2) * q.shape[1] / present)
    if metric in ("dice", "jaccard", "rogerstanimoto", "russellrao", "sokalsneath", "yule"):
        with np.errstate(invalid="ignore", divide="ignore"):
            out = cdist(q != 0, x != 0, metric)
        out[np.isnan(out)] = 0.0  # two all-false rows (bigdist's documented value)
        return out
    if metric == "minkowski" and np.isinf(params["p"]):
        keep = params["w"] > 0  # SciPy: the largest difference over the features with weight
        return cdist(q[:, keep], x[:, keep], "chebyshev")
    return cdist(q, x, metric, **params)


def _ranked(matrix, k, self_join=False):
    keys = matrix.copy()
    keys[np.isnan(keys)] = np.inf
    if self_join:
        np.fill_diagonal(keys, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(matrix, order, axis=1), order


@pytest.mark.parametrize(("metric", "params", "kind"), CASES)
def test_pairwise_equals_the_oracle(metric, params, kind):
    rng = np.random.default_rng(0)
    queries, train = _data(kind, 23, rng), _data(kind, 157, rng)
    result = bd.pairwise_distances(queries, da.from_array(train, chunks=((50, 7, 100), -1)), metric, **params)
    got = result.compute()
    expected = _oracle(queries, train, metric, params)
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    # scikit-learn's nan_euclidean is an expansion trick: its small distances carry cancellation errors.
    tolerance = {"rtol": 1e-7, "atol": 1e-7} if kind == "missing" else {"rtol": 1e-12, "atol": 1e-14}
    np.testing.assert_allclose(got, sk_pairwise_distances(queries, train, metric=metric, **params), **tolerance)


@pytest.mark.parametrize(("metric", "params", "kind"), CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_knn_and_radius_equal_the_oracle_for_any_chunking(metric, params, kind, dtype, small_tiles):
    rng = np.random.default_rng(1)
    queries, train = _data(kind, 41, rng, dtype), _data(kind, 300, rng, dtype)
    expected = _oracle(queries, train, metric, params)
    want_d, want_i = _ranked(expected, 5)
    train_chunks = da.from_array(train, chunks=((90, 10, 200), -1))
    for split_every in (2, 8):
        got_d, got_i = bd.knn(queries, train_chunks, k=5, metric=metric, split_every=split_every, **params).compute()
        if kind == "counts":
            # Few distinct values: ties are everywhere, and ties go to the lower index.
            np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-12)
    radius = float(np.nanquantile(expected, 0.1))
    distances, indices = bd.radius_neighbors(queries, train_chunks, radius, metric, split_every=2, **params).compute()
    inside = expected <= radius
    # Pairs this close to the radius may be decided on a value a few ulps from SciPy's (transformed rows).
    unsure = np.abs(expected - radius) <= 1e-12 * max(radius, 1e-300)
    for row in range(len(queries)):
        got = set(indices[row].tolist())
        assert set(np.flatnonzero(inside[row] & ~unsure[row])) <= got <= set(np.flatnonzero(inside[row] | unsure[row]))
        np.testing.assert_allclose(distances[row], expected[row, indices[row]], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(("metric", "params", "kind"), CASES[:3] + CASES[7:10])
def test_self_join_excludes_each_row(metric, params, kind):
    rng = np.random.default_rng(2)
    points = _data(kind, 120, rng)
    points[7] = points[3]  # an exact duplicate is still found, at distance 0
    within = _oracle(points, points, metric, params)
    want_d, want_i = _ranked(within, 4, self_join=True)
    got_d, got_i = bd.knn(da.from_array(points, chunks=((50, 70), -1)), None, k=4, metric=metric, **params).compute()
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-12, atol=1e-12)
    assert got_i[3, 0] == 7 and got_d[3, 0] == 0
    matrix = bd.pairwise_distances(points, None, metric, **params).compute()
    np.testing.assert_array_equal(np.diag(matrix), 0.0)


@pytest.mark.parametrize(
    ("metric", "estimate"),
    [
        ("seuclidean", lambda x: {"V": np.var(x, axis=0, ddof=1)}),
        ("mahalanobis", lambda x: {"VI": np.linalg.inv(np.cov(x.T)).T}),
    ],
)
def test_self_join_estimates_the_parameter_as_scikit_learn(metric, estimate):
    rng = np.random.default_rng(3)
    points = rng.standard_normal((90, 4)) * [1.0, 3.0, 0.2, 10.0]
    lazy = da.from_array(points, chunks=((40, 50), -1))
    # scikit-learn's pairwise_distances(X) estimates V / VI from X (with its zero diagonal).
    np.testing.assert_allclose(bd.pairwise_distances(lazy, None, metric).compute(),
                               sk_pairwise_distances(points, metric=metric), rtol=1e-10, atol=1e-12)  # fmt: skip
    want_d, want_i = _ranked(cdist(points, points, metric, **estimate(points)), 3, self_join=True)
    got_d, got_i = bd.knn(lazy, None, k=3, metric=metric).compute()
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-10)
    key = "V" if metric == "seuclidean" else "VI"
    with pytest.raises(ParameterError, match=rf"{metric}.*needs {key} when train rows are given.*pass {key}"):
        bd.knn(points[:5], points, k=3, metric=metric)


def test_nan_euclidean_pairs_without_common_coordinates():
    queries = np.array([[np.nan, 1.0, 2.0], [1.0, np.nan, np.nan]])
    train = np.array([[0.0, np.nan, np.nan], [np.nan, 2.0, 2.0], [5.0, 5.0, 5.0]])
    matrix = bd.pairwise_distances(queries, train, "nan_euclidean").compute()
    np.testing.assert_array_equal(np.isnan(matrix), np.isnan(nan_euclidean_distances(queries, train)))
    np.testing.assert_allclose(matrix, nan_euclidean_distances(queries, train), rtol=1e-12)
    # NaN ranks last, reported as infinity.
    distances, indices = bd.knn(queries, train, k=3, metric="nan_euclidean").compute()
    np.testing.assert_array_equal(indices[0], [1, 2, 0])
    assert np.isinf(distances[0, 2])
    with pytest.raises(Exception, match="NaN"):
        bd.knn(queries, train, k=1, metric="euclidean").compute()


def _euclidean(u, v):
    total = 0.0
    for f in range(u.shape[0]):
        total += (u[f] - v[f]) ** 2
    return np.sqrt(total)


class _Unjittable:
    """A callable object numba cannot compile: called pair by pair."""

    def __init__(self, scale):
        self.scale = scale

    def __call__(self, u, v):
        return self.scale * float(np.abs(np.asarray(u) - np.asarray(v)).sum())


def test_callables_compiled_or_pair_by_pair(small_tiles, caplog):
    rng = np.random.default_rng(4)
    queries, train = rng.random((30, 5)), rng.random((200, 5))
    chunked = da.from_array(train, chunks=((60, 140), -1))
    want_d, want_i = _ranked(cdist(queries, train), 4)
    got_d, got_i = bd.knn(queries.astype(np.float32), chunked, k=4, metric=_euclidean).compute()
    np.testing.assert_array_equal(got_i, _ranked(cdist(queries.astype(np.float32), train), 4)[1])
    assert got_d.dtype == np.float64
    got_d, got_i = bd.knn(queries, chunked, k=4, metric=_euclidean).compute()
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-13)
    with caplog.at_level("WARNING"):
        matrix = bd.pairwise_distances(queries, chunked, _Unjittable(2.0)).compute()
    np.testing.assert_allclose(matrix, 2.0 * cdist(queries, train, "cityblock"), rtol=1e-13)
    assert "numba cannot compile it" in caplog.text
    # metric_params go to the callable as keywords, as in scikit-learn.
    scaled = bd.pairwise_distances(queries, train, lambda u, v, scale: scale * np.abs(u - v).max(), scale=3.0)
    np.testing.assert_allclose(scaled.compute(), 3.0 * cdist(queries, train, "chebyshev"), rtol=1e-13)
    radius = float(np.quantile(cdist(queries, train), 0.1))
    _, indices = bd.radius_neighbors(queries, chunked, radius, _euclidean, split_every=2).compute()
    assert [set(row) for row in indices] == [set(np.flatnonzero(row)) for row in cdist(queries, train) <= radius]
    _, self_indices = bd.knn(train, None, k=2, metric=_euclidean).compute()
    np.testing.assert_array_equal(self_indices, _ranked(cdist(train, train), 2, self_join=True)[1])


def test_callable_returning_no_number():
    data = np.random.default_rng(5).random((4, 2))
    with pytest.raises(InputValueError, match=r"returned 'far'.*must return one number"):
        bd.pairwise_distances(data, data, lambda u, v, tag: "far", tag=1).compute()


@pytest.mark.parametrize(
    ("name", "params"),
    [("minkowski", {"p": 3, "w": W}), ("seuclidean", {"V": V}), ("mahalanobis", {"VI": VI}), ("euclidean", {}),
     ("manhattan", {}), ("chebyshev", {})],
)  # fmt: skip
def test_distance_metric_objects(name, params):
    rng = np.random.default_rng(6)
    queries, train = rng.standard_normal((25, D)), rng.standard_normal((140, D))
    metric = DistanceMetric.get_metric(name, **params)
    expected = metric.pairwise(queries, train)
    np.testing.assert_allclose(bd.pairwise_distances(queries, train, metric).compute(), expected, rtol=1e-12)
    got_d, got_i = bd.knn(queries, da.from_array(train, chunks=50), k=3, metric=metric).compute()
    want_d, want_i = _ranked(expected, 3)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-12)
    with pytest.raises(ParameterError, match="DistanceMetric object carries its own parameters.*p"):
        bd.knn(queries, train, k=3, metric=metric, p=3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: bd.knn(x, k=2, metric="seuclidean", V=[1.0, 0.0, 1.0]), r"V must be finite and > 0.*V\[1\]=0\.0"),
        (lambda x: bd.knn(x, k=2, metric="seuclidean", V=[1.0, 2.0]), r"V has 2 entries.*n_features=3"),
        (lambda x: bd.knn(x, k=2, metric="minkowski", p=3, w=[1, -1, 0]), r"w must be finite and >= 0.*w\[1\]=-1"),
        (lambda x: bd.knn(x, k=2, metric="minkowski", p=3, w=[0, 0, 0]), r"weights w are all 0"),
        (lambda x: bd.knn(x, k=2, metric="minkowski", p=2, w=[[1, 2, 3]]), r"w must be a non-empty 1-D array"),
        (lambda x: bd.knn(x, k=2, metric="mahalanobis", VI=np.eye(2)), r"VI has shape \(2, 2\).*\(3, 3\)"),
        (lambda x: bd.knn(x, k=2, metric="mahalanobis", VI=[[1, 2, 0], [0, 1, 0], [0, 0, 1]]), r"VI must be symmetric"),
        (lambda x: bd.knn(x, k=2, metric="mahalanobis", VI=-np.eye(3)), r"positive semi-definite.*eigenvalue -1"),
        (lambda x: bd.knn(x, k=2, metric="haversine"), r"'haversine' needs 2 features.*n_features=3"),
        (lambda x: bd.knn(x, k=2, metric="dice", p=2), r"'dice' takes no parameters"),
        (lambda x: bd.knn(x, k=2, metric="seuclidean", VI=np.eye(3)), r"'seuclidean' takes only V.*VI"),
    ],
)
def test_bad_parameters_name_value_and_fix(call, message):
    data = np.random.default_rng(7).random((10, 3))
    with pytest.raises(ParameterError, match=message):
        call(data)


def test_estimated_parameters_of_degenerate_data():
    data = np.random.default_rng(8).random((10, 3))
    data[:, 1] = 4.0
    with pytest.raises(InputValueError, match=r"seuclidean.*feature 1 has variance 0\.0.*pass V"):
        bd.knn(data, k=2, metric="seuclidean").compute()
    with pytest.raises(InputValueError, match=r"mahalanobis.*covariance.*singular.*pass VI"):
        bd.knn(data, k=2, metric="mahalanobis").compute()


@pytest.mark.parametrize(
    ("metric", "metric_params", "kind"),
    [("seuclidean", {"V": V}, "real"), ("mahalanobis", {"VI": VI}, "real"), ("minkowski", {"w": W}, "real"),
     ("nan_euclidean", None, "missing"), ("haversine", None, "radians"), ("yule", None, "counts"),
     (_euclidean, None, "real")],
)  # fmt: skip
def test_estimators_with_these_metrics_equal_scikit_learn(metric, metric_params, kind):
    rng = np.random.default_rng(9)
    train, queries = _data(kind, 150, rng), _data(kind, 20, rng)
    labels = rng.integers(0, 3, 150)
    options = {"metric": metric, "metric_params": metric_params}
    ours = bd.NearestNeighbors(n_neighbors=4, p=3, **options).fit(train)
    got_d, got_i = ours.kneighbors(queries)
    oracle_metric = metric if isinstance(metric, str) else "euclidean"
    oracle_params = {"p": 3, **metric_params} if metric == "minkowski" else metric_params or {}
    want_d, want_i = _ranked(_oracle(queries, train, oracle_metric, oracle_params), 4)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-12)
    if kind != "counts":  # scikit-learn's ties among equal boolean distances are not by index
        sk = SkKNeighborsClassifier(5, algorithm="brute", p=3, **options).fit(train, labels)
        np.testing.assert_array_equal(bd.KNeighborsClassifier(5, p=3, **options).fit(train, labels).predict(queries),
                                      sk.predict(queries))  # fmt: skip
