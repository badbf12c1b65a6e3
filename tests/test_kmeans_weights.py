"""K-means with sample weights, against scikit-learn from the same initial centroids."""

import dask
import dask.array as da
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs

import bigdist as bd
from bigdist.errors import InputShapeError, ParameterError

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(3000, 5, centers=7, cluster_std=2.0, random_state=0)
    weights = np.random.default_rng(0).gamma(0.5, 2.0, size=len(X))
    weights[::17] = 0.0  # rows that count for nothing
    return X, weights


def _sklearn(X, init, weights, **kwargs):
    return SkKMeans(len(init), init=init, n_init=1, algorithm="lloyd", **kwargs).fit(X, sample_weight=weights)


@pytest.mark.parametrize("bounds", ["always", "never"])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_weighted_run_equals_scikit_learns_from_the_same_init(data, bounds, offset):
    X, weights = data
    X = X + offset
    init = X[np.random.default_rng(1).choice(len(X), 7, replace=False)]
    with dask.config.set({"bigdist.kmeans.bounds": bounds}):
        ours = bd.kmeans(da.from_array(X, chunks=700), 7, init=init, sample_weight=weights, tol=0, max_iter=30)
    theirs = _sklearn(X, init, weights, tol=0, max_iter=30)
    assert ours.n_iter == theirs.n_iter_
    np.testing.assert_array_equal(ours.labels.compute(), theirs.labels_)
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, rtol=1e-12, atol=1e-9)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-10)
    # The oracle of the weighted inertia itself: float64 distances to the final centroids.
    exact = cdist(X, ours.centroids, "sqeuclidean").min(axis=1) @ weights
    assert ours.inertia == pytest.approx(exact, rel=1e-10)


def test_float32_weighted_run_equals_scikit_learns(data):
    X, weights = data
    X = X.astype(np.float32)
    init = X[np.random.default_rng(2).choice(len(X), 7, replace=False)].astype(np.float64)
    ours = bd.kmeans(X, 7, init=init, sample_weight=weights, tol=0, max_iter=10)
    theirs = _sklearn(X.astype(np.float64), init, weights, tol=0, max_iter=10)
    np.testing.assert_array_equal(ours.labels.compute(), theirs.labels_)
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, rtol=1e-10)


def test_integer_weights_equal_repeated_rows(data):
    X, _ = data
    counts = np.random.default_rng(3).integers(0, 4, size=len(X))
    init = X[:7].copy()
    weighted = bd.kmeans(X, 7, init=init, sample_weight=counts.astype(np.float64), tol=0, max_iter=15)
    repeated = bd.kmeans(np.repeat(X, counts, axis=0), 7, init=init, tol=0, max_iter=15)
    np.testing.assert_allclose(weighted.centroids, repeated.centroids, rtol=1e-10)
    assert weighted.inertia == pytest.approx(repeated.inertia, rel=1e-10)


def test_a_cluster_left_without_weight_is_relocated_like_scikit_learn(data):
    X, weights = data
    init = X[:7].copy()
    init[3] = 1e3  # attracts nothing
    ours = bd.kmeans(X, 7, init=init, sample_weight=weights, max_iter=1)
    theirs = _sklearn(X, init, weights, max_iter=1)
    assert ours.stats[0]["relocated"] == 1
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, rtol=1e-10)


def test_rows_without_weight_do_not_count():
    # The far row has weight 0: it never moves a centroid, and scikit-learn agrees.
    X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0], [11.0, 10.0], [100.0, 100.0]])
    weights = np.array([1.0, 3.0, 2.0, 2.0, 0.0])
    init = np.array([[0.0, 1.0], [10.0, 11.0]])
    ours = bd.kmeans(X, 2, init=init, sample_weight=weights)
    theirs = _sklearn(X, init, weights)
    np.testing.assert_allclose(ours.centroids, [[0.75, 0.0], [10.5, 10.0]])
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_)
    assert ours.inertia == pytest.approx(theirs.inertia_)


@pytest.mark.parametrize("init", ["random", "k-means++", "k-means||"])
def test_inits_draw_rows_by_weight(init):
    # Two far groups; all weight on one of them: every initial centroid must come from it.
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(size=(500, 3)), rng.normal(size=(500, 3)) + 1e3])
    weights = np.concatenate([np.zeros(500), np.ones(500)])
    result = bd.kmeans(X, 4, init=init, sample_weight=weights, max_iter=1, random_state=0)
    assert (result.centroids > 900).all(), result.centroids


def test_estimator_fit_and_score_take_sample_weight(data):
    X, weights = data
    init = X[:7].copy()
    ours = bd.KMeans(7, init=init, n_init=1).fit(X, sample_weight=weights)
    theirs = SkKMeans(7, init=init, n_init=1).fit(X, sample_weight=weights)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-10)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-10)
    assert ours.score(X, sample_weight=weights) == pytest.approx(theirs.score(X, sample_weight=weights), rel=1e-10)
    assert ours.score(X) == pytest.approx(theirs.score(X), rel=1e-10)
    np.testing.assert_array_equal(
        bd.KMeans(7, init=init, n_init=1).fit_predict(X, sample_weight=weights), theirs.labels_
    )


def test_dask_weights_chunked_otherwise_than_the_rows(data):
    X, weights = data
    init = X[:7].copy()
    reference = bd.kmeans(X, 7, init=init, sample_weight=weights)
    ours = bd.kmeans(da.from_array(X, chunks=500), 7, init=init, sample_weight=da.from_array(weights, chunks=333))
    np.testing.assert_array_equal(ours.labels.compute(), reference.labels.compute())
    np.testing.assert_allclose(ours.centroids, reference.centroids, rtol=1e-12)


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        (np.ones(10), InputShapeError, r"shape \(10,\).*\(3000,\)"),
        (np.where(np.arange(3000) == 5, -1.0, 1.0), ParameterError, "1 negative, NaN or infinite"),
        (np.where(np.arange(3000) == 5, np.nan, 1.0), ParameterError, "1 negative, NaN or infinite"),
        (np.where(np.arange(3000) < 3, 1.0, 0.0), ParameterError, "only 3 rows a weight > 0.*n_clusters=7"),
    ],
)
def test_bad_weights_are_refused_naming_the_fix(data, weights, error, match):
    with pytest.raises(error, match=match):
        bd.kmeans(data[0], 7, sample_weight=weights)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_equal_weights_give_the_unweighted_run(data, init):
    # scikit-learn's invariant (its test_unit_weights_vs_no_weights): unit weights are no weights, whatever the seed.
    X = data[0][:600]
    for seed in range(4):
        plain = bd.kmeans(X, 5, init=init, n_init=1, random_state=seed)
        for scale in (1.0, 3.0):
            weighted = bd.kmeans(X, 5, init=init, n_init=1, random_state=seed, sample_weight=np.full(len(X), scale))
            np.testing.assert_array_equal(weighted.labels.compute(), plain.labels.compute())
            np.testing.assert_allclose(weighted.centroids, plain.centroids, rtol=1e-12)
            # The inertia is the weighted sum of squared distances to the centroids (SciPy's distances as oracle).
            expected = scale * (cdist(X, weighted.centroids).min(axis=1) ** 2).sum()
            assert weighted.inertia == pytest.approx(expected, rel=1e-9)
