import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import DistanceMetric, pairwise_distances
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import (
    BallTree,
    KDTree,
    KNeighborsClassifier,
    KNeighborsRegressor,
    kneighbors_graph,
    radius_neighbors_graph,
)
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors
from sklearn.utils._param_validation import InvalidParameterError

import bigdist as bd
from tests.estimator_checks import same_message

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture(scope="module")
def digits():
    # Jitter breaks the digits' exact ties, whose order scikit-learn does not specify.
    data = load_digits().data
    return data + np.random.default_rng(0).random(data.shape) * 1e-3


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kneighbors_matches_scikit_learn(digits, metric):
    queries, train = digits[:200], digits[200:]
    ours = bd.NearestNeighbors(n_neighbors=6, metric=metric).fit(train)
    theirs = SkNearestNeighbors(n_neighbors=6, metric=metric, algorithm="brute").fit(train)
    distances, indices = ours.kneighbors(queries)
    expected_distances, expected_indices = theirs.kneighbors(queries)
    assert isinstance(indices, np.ndarray)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-7, atol=1e-7)


def test_kneighbors_without_queries_excludes_self(digits):
    ours = bd.NearestNeighbors(n_neighbors=3).fit(digits[:500])
    theirs = SkNearestNeighbors(n_neighbors=3, algorithm="brute").fit(digits[:500])
    distances, indices = ours.kneighbors()
    expected_distances, _ = theirs.kneighbors()
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-9)
    assert (indices != np.arange(500)[:, None]).all()


def test_kneighbors_without_queries_on_several_query_blocks(digits):
    # Each block's own rows are the ones dropped: the row numbers follow the query blocks, not the k columns.
    theirs = SkNearestNeighbors(n_neighbors=3, algorithm="brute").fit(digits[:500])
    with dask.config.set({"bigdist.knn.query-block-rows": 70}):
        distances, indices = bd.NearestNeighbors(n_neighbors=3).fit(da.from_array(digits[:500], chunks=90)).kneighbors()
        assert indices.numblocks[0] >= 7
        distances, indices = dask.compute(distances, indices, scheduler="synchronous")
    expected_distances, expected_indices = theirs.kneighbors()
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-9)


def test_kneighbors_graph_matches_scikit_learn(digits):
    train = digits[:400]
    ours = bd.NearestNeighbors(n_neighbors=4).fit(train)
    theirs = SkNearestNeighbors(n_neighbors=4, algorithm="brute").fit(train)
    for mode in ("connectivity", "distance"):
        got = ours.kneighbors_graph(train[:50], mode=mode)
        expected = theirs.kneighbors_graph(train[:50], mode=mode)
        # scikit-learn's float64 expansion trick leaves ~1e-6 where the exact distance is 0.
        np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-9, atol=1e-5)
    assert (ours.kneighbors_graph(train[:50], mode="distance").diagonal() == 0).all()
    np.testing.assert_allclose(ours.kneighbors_graph().toarray(), theirs.kneighbors_graph().toarray())


def test_dask_input_stays_lazy(digits):
    ours = bd.NearestNeighbors(n_neighbors=2).fit(da.from_array(digits, chunks=500))
    distances, indices = ours.kneighbors(da.from_array(digits[:10], chunks=5))
    assert isinstance(indices, da.Array)
    assert indices.compute().shape == (10, 2)


@pytest.mark.parametrize(
    "params",
    [{"p": 1}, {"p": np.inf}, {"p": 3}, {"metric_params": {"p": 1}, "p": None}, {"metric": "manhattan", "p": 3}],
)
def test_minkowski_p_as_scikit_learn(digits, params):
    # The default metric is minkowski with p=2, so p alone changes the distances (it used to be ignored).
    queries, train = digits[:50], digits[50:400]
    ours = bd.NearestNeighbors(n_neighbors=4, **params).fit(train)
    theirs = SkNearestNeighbors(n_neighbors=4, algorithm="brute", **params).fit(train)
    distances, indices = ours.kneighbors(queries)
    expected_distances, expected_indices = theirs.kneighbors(queries)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-9)
    assert ours.effective_metric_ == theirs.effective_metric_


def test_p_in_metric_params_wins_with_scikit_learn_warning(digits):
    with pytest.warns(SyntaxWarning, match="Parameter p is found in metric_params"):
        ours = bd.NearestNeighbors(n_neighbors=3, p=2, metric_params={"p": 1}).fit(digits[:300])
    theirs = SkNearestNeighbors(n_neighbors=3, metric="manhattan").fit(digits[:300])
    np.testing.assert_array_equal(ours.kneighbors(digits[:20])[1], theirs.kneighbors(digits[:20])[1])


@pytest.mark.parametrize("algorithm", ["auto", "brute", "kd_tree", "ball_tree"])
def test_every_algorithm_gives_scikit_learn_neighbours(digits, algorithm):
    queries, train = digits[:40], digits[40:500]
    ours = bd.NearestNeighbors(n_neighbors=5, algorithm=algorithm, leaf_size=3, n_jobs=-1).fit(train)
    theirs = SkNearestNeighbors(n_neighbors=5, algorithm=algorithm).fit(train)
    np.testing.assert_array_equal(ours.kneighbors(queries)[1], theirs.kneighbors(queries)[1])


@pytest.mark.parametrize(
    "params", [{"leaf_size": 0}, {"algorithm": "fast"}, {"n_neighbors": 0}, {"n_jobs": 1.5}, {"p": -1}]
)
def test_invalid_parameters_as_scikit_learn(digits, params):
    with pytest.raises(InvalidParameterError) as theirs:
        SkNearestNeighbors(**params).fit(digits[:20])
    with pytest.raises(InvalidParameterError) as ours:
        bd.NearestNeighbors(**params).fit(digits[:20])
    assert isinstance(ours.value, bd.BigdistError)
    assert same_message(ours.value, theirs.value)


@pytest.mark.parametrize("algorithm, metric", [("kd_tree", "cosine"), ("ball_tree", "cosine")])
def test_trees_refuse_the_metrics_scikit_learn_refuses(digits, algorithm, metric):
    with pytest.raises(ValueError, match="not valid"):
        SkNearestNeighbors(algorithm=algorithm, metric=metric).fit(digits[:20])
    with pytest.raises(ValueError, match=f"Metric '{metric}' not valid"):
        bd.NearestNeighbors(algorithm=algorithm, metric=metric).fit(digits[:20])


def test_float32_input_gives_scikit_learn_dtypes(digits):
    data = digits[:300].astype(np.float32)
    ours = bd.NearestNeighbors(n_neighbors=3, radius=20.0).fit(data)
    theirs = SkNearestNeighbors(n_neighbors=3, radius=20.0).fit(data)
    assert ours.kneighbors(data[:5])[0].dtype == theirs.kneighbors(data[:5])[0].dtype
    assert ours.radius_neighbors(data[:5])[0][0].dtype == theirs.radius_neighbors(data[:5])[0][0].dtype


@pytest.mark.parametrize(
    "X",
    [
        # scikit-learn's test_k_and_radius_neighbors_duplicates: more duplicates than neighbours asked.
        np.zeros((3, 1)),
        # Twins find each other whatever the order of their tie with themselves.
        np.array([[0.0], [0.0], [3.0], [3.0], [7.5], [10.0]]),
    ],
)
def test_kneighbors_without_queries_on_exact_duplicates_as_scikit_learn(X):
    ours = bd.NearestNeighbors(n_neighbors=1).fit(X)
    # Brute force breaks these ties by index, as bigdist does; the trees order them their own way.
    theirs = SkNearestNeighbors(n_neighbors=1, algorithm="brute").fit(X)
    distances, indices = ours.kneighbors()
    expected_distances, expected_indices = theirs.kneighbors()
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(distances, expected_distances)
    lazy = bd.NearestNeighbors(n_neighbors=1).fit(da.from_array(X, chunks=2)).kneighbors()[1]
    np.testing.assert_array_equal(lazy.compute(), expected_indices)
    np.testing.assert_array_equal(ours.kneighbors_graph().toarray(), theirs.kneighbors_graph().toarray())


def test_numpy_queries_give_numpy_results_after_a_lazy_fit(digits):
    train, queries = digits[100:600], digits[:30]
    ours = bd.NearestNeighbors(n_neighbors=3, radius=15.0).fit(da.from_array(train, chunks=128))
    theirs = SkNearestNeighbors(n_neighbors=3, radius=15.0).fit(train)
    distances, indices = ours.kneighbors(queries)
    assert isinstance(distances, np.ndarray) and isinstance(indices, np.ndarray)
    np.testing.assert_array_equal(indices, theirs.kneighbors(queries)[1])
    radius_distances, radius_indices = ours.radius_neighbors(queries, sort_results=True)
    expected_distances, expected_indices = theirs.radius_neighbors(queries, sort_results=True)
    assert isinstance(radius_indices, np.ndarray) and radius_indices.dtype == object
    for got, expected in zip(radius_indices, expected_indices, strict=True):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(radius_distances, expected_distances, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)


def test_infinite_radius_finds_every_row_as_scikit_learn(digits):
    train = digits[:60]
    ours = bd.NearestNeighbors(radius=np.inf).fit(train).radius_neighbors(digits[60:65], sort_results=True)
    theirs = SkNearestNeighbors(radius=np.inf).fit(train).radius_neighbors(digits[60:65], sort_results=True)
    for got, expected in zip(ours[1], theirs[1], strict=True):
        np.testing.assert_array_equal(got, expected)


def test_scikit_learn_graph_functions_take_a_fitted_estimator(digits):
    # sklearn.neighbors.kneighbors_graph / radius_neighbors_graph use a fitted KNeighborsMixin / RadiusNeighborsMixin.
    train = digits[:150]
    ours = bd.NearestNeighbors(n_neighbors=4, radius=18.0).fit(train)
    theirs = SkNearestNeighbors(n_neighbors=4, radius=18.0).fit(train)
    for function, argument in ((kneighbors_graph, 4), (radius_neighbors_graph, 18.0)):
        got = function(ours, argument, mode="distance")
        expected = function(theirs, argument, mode="distance")
        np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-9, atol=1e-9)


def test_fit_on_a_fitted_estimator_or_a_tree_as_scikit_learn(digits):
    train, queries = digits[:200], digits[200:230]
    expected = SkNearestNeighbors(n_neighbors=3).fit(train).kneighbors(queries)[1]
    sources = (bd.NearestNeighbors().fit(train), SkNearestNeighbors().fit(train), BallTree(train), KDTree(train))
    for source in sources:
        got = bd.KNeighborsClassifier(n_neighbors=3).fit(source, np.arange(200) % 3).kneighbors(queries)[1]
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, expected)


def test_distance_metric_objects_as_metric(digits):
    train, queries = digits[:200], digits[200:220]
    metric = DistanceMetric.get_metric("manhattan")
    got = bd.KNeighborsRegressor(n_neighbors=4, metric=metric).fit(train, np.arange(200.0)).predict(queries)
    expected = KNeighborsRegressor(n_neighbors=4, metric=metric).fit(train, np.arange(200.0)).predict(queries)
    np.testing.assert_allclose(got, expected)


def test_precomputed_matrix_cross_validates_as_scikit_learn():
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 3)), rng.integers(3, size=40)
    D = pairwise_distances(X)
    got = cross_val_score(bd.KNeighborsClassifier(metric="precomputed"), D, y)
    np.testing.assert_array_equal(got, cross_val_score(KNeighborsClassifier(metric="precomputed"), D, y))


def test_trees_refuse_what_scikit_learn_trees_refuse():
    X = np.random.default_rng(0).random((10, 3))
    with pytest.raises(ValueError, match=r"does not support 0 < p < 1 for the Minkowski metric\. To resolve"):
        bd.NearestNeighbors(algorithm="kd_tree", p=0.5).fit(X)
    with pytest.raises(ValueError, match="weighted minkowski"):
        bd.NearestNeighbors(algorithm="kd_tree", metric="minkowski", p=3, metric_params={"w": np.ones(3)}).fit(X)
    bd.NearestNeighbors(algorithm="ball_tree", metric="minkowski", p=3, metric_params={"w": np.ones(3)}).fit(X)


def test_a_radius_per_query_as_scikit_learn_trees(digits):
    train, queries = digits[:300], digits[300:340]
    radii = np.random.default_rng(1).uniform(10.0, 25.0, size=len(queries))
    theirs = SkNearestNeighbors(algorithm="ball_tree").fit(train)
    expected_distances, expected_indices = theirs.radius_neighbors(queries, radius=radii, sort_results=True)
    expected_graph = theirs.radius_neighbors_graph(queries, radius=radii, mode="distance").toarray()
    ours = bd.NearestNeighbors()
    for fitted, query_rows in ((ours.fit(train), queries), (ours.fit(da.from_array(train, chunks=100)), None)):
        rows = queries if query_rows is not None else da.from_array(queries, chunks=15)
        distances, indices = fitted.radius_neighbors(rows, radius=radii, sort_results=True)
        if query_rows is None:
            distances, indices = distances.compute(), indices.compute()
        for got, expected in zip(indices, expected_indices, strict=True):
            np.testing.assert_array_equal(got, expected)
        for got, expected in zip(distances, expected_distances, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-9)
        graph = fitted.radius_neighbors_graph(rows, radius=radii, mode="distance").toarray()
        np.testing.assert_allclose(graph, expected_graph, rtol=1e-9)
    with pytest.raises(ValueError, match=r"one radius >= 0 per query: expected shape \(40,\), got \(3,\)"):
        ours.radius_neighbors(queries, radius=radii[:3])


@pytest.mark.parametrize(
    ("fit_rows", "query_rows", "sentence"),
    [
        (np.ones((0, 2)), None, r"Found array with 0 sample\(s\)"),
        (np.ones((10, 2, 1)), None, "Found array with dim 3"),
        (np.ones((10, 2)), [[]], r"Found array with 0 feature\(s\)"),
        (np.random.default_rng(0).random((10, 3)), np.ones((2, 3)), "Haversine distance only valid in 2 dimensions"),
    ],
)
def test_bad_rows_are_refused_in_scikit_learn_words(fit_rows, query_rows, sentence):
    metric = "haversine" if "Haversine" in sentence else "minkowski"
    for estimator in (bd.KNeighborsRegressor(2, metric=metric), KNeighborsRegressor(2, metric=metric)):
        with pytest.raises(ValueError, match=sentence):
            estimator.fit(fit_rows, np.arange(len(fit_rows), dtype=float))
            estimator.predict(query_rows)
