"""bd.KMeans as a scikit-learn drop-in: its parameters, warnings and dtypes against scikit-learn's KMeans."""

import logging
import re
import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

import bigdist as bd
from tests.estimator_checks import same_message

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(400, 5, centers=4, cluster_std=0.8, random_state=7)
    return X


def _first_rows(X, n_clusters, random_state):
    return np.asarray(X[:n_clusters], dtype=np.float64)


def _random_rows(X, n_clusters, random_state):
    return np.asarray(X[random_state.choice(len(X), n_clusters, replace=False)], dtype=np.float64)


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_given_init_matches_scikit_learn(blobs, algorithm, dtype):
    X = blobs.astype(dtype)
    init = X[[0, 100, 200, 300]]
    ours = bd.KMeans(4, init=init, algorithm=algorithm, tol=0).fit(X)
    theirs = SkKMeans(4, init=init, n_init=1, algorithm=algorithm, tol=0).fit(X)
    assert ours.cluster_centers_.dtype == theirs.cluster_centers_.dtype
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.transform(X[:5]).dtype == theirs.transform(X[:5]).dtype


def test_callable_init_as_scikit_learn(blobs):
    calls = []

    def first_rows(X, n_clusters, random_state):
        calls.append((X, n_clusters, random_state))
        return _first_rows(X, n_clusters, random_state)

    ours = bd.KMeans(4, init=first_rows, n_init=1).fit(blobs)
    # scikit-learn calls it on mean-centred data; the same centres given as an array are the oracle.
    theirs = SkKMeans(4, init=blobs[:4], n_init=1).fit(blobs)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-9)
    [(data, n_clusters, random_state)] = calls
    assert data is blobs and n_clusters == 4 and isinstance(random_state, np.random.RandomState)
    # One call per init, each with the estimator's RandomState; the best run is kept.
    best = bd.KMeans(4, init=_random_rows, n_init=3, random_state=0).fit(blobs)
    single = [bd.KMeans(4, init=_random_rows, n_init=1, random_state=seed).fit(blobs).inertia_ for seed in (0, 1)]
    assert best.inertia_ <= single[0] + 1e-9
    with pytest.raises(ValueError, match="does not match the number of clusters"):
        bd.KMeans(4, init=lambda X, k, random_state: X[:2]).fit(blobs)


@pytest.mark.parametrize("init", ["k-means++", "random", _first_rows, "array"])
def test_n_init_auto_as_scikit_learn(blobs, init):
    init = blobs[:4] if isinstance(init, str) and init == "array" else init
    ours = bd.KMeans(4, init=init, n_init="auto", random_state=0).fit(blobs)
    theirs = SkKMeans(4, init=init, n_init="auto", random_state=0).fit(blobs)
    assert ours._n_init == theirs._n_init


def test_feature_names_out_as_scikit_learn(blobs):
    ours = bd.KMeans(3, random_state=0).fit(blobs)
    theirs = SkKMeans(3, random_state=0, n_init=1).fit(blobs)
    np.testing.assert_array_equal(ours.get_feature_names_out(), theirs.get_feature_names_out())


@pytest.mark.parametrize(
    "params",
    [{"n_init": 0}, {"algorithm": "full"}, {"copy_x": "yes"}, {"verbose": -1}, {"n_clusters": 0}, {"tol": -1.0}],
)
def test_invalid_parameters_as_scikit_learn(blobs, params):
    with pytest.raises(InvalidParameterError) as theirs:
        SkKMeans(**params).fit(blobs)
    with pytest.raises(InvalidParameterError) as ours:
        bd.KMeans(**params).fit(blobs)
    assert isinstance(ours.value, bd.BigdistError)
    assert same_message(ours.value, theirs.value)


def test_warnings_as_scikit_learn(blobs):
    X = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    for estimator in (bd.KMeans(5, init=X), SkKMeans(5, init=X, n_init=1)):
        with pytest.warns(ConvergenceWarning, match=r"Number of distinct clusters \(4\) found smaller than"):
            estimator.fit(X)
    for estimator in (bd.KMeans(4, init=blobs[:4], n_init=5), SkKMeans(4, init=blobs[:4], n_init=5)):
        with pytest.warns(RuntimeWarning, match="Explicit initial center position passed: performing only one"):
            estimator.fit(blobs)
    for estimator in (bd.KMeans(1, algorithm="elkan"), SkKMeans(1, algorithm="elkan")):
        with pytest.warns(RuntimeWarning, match="algorithm='elkan' doesn't make sense for a single cluster"):
            estimator.fit(blobs)
    with pytest.raises(ValueError, match=r"n_samples=5 should be >= n_clusters=6"):
        bd.KMeans(6).fit(X)


def test_copy_x_leaves_the_data_unchanged(blobs):
    X = blobs.copy()
    for copy_x in (True, False):
        bd.KMeans(3, copy_x=copy_x, random_state=0).fit(X)
        np.testing.assert_array_equal(X, blobs)


def test_verbose_logs_progress_to_stdout(blobs, capsys):
    level = logging.getLogger("bigdist").level
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bd.KMeans(3, random_state=0, verbose=1).fit(blobs)
    printed = capsys.readouterr().out
    assert re.search(r"k-means iteration 1: inertia", printed)
    assert re.search(r"k-means run 1/1: inertia", printed)
    bd.KMeans(3, random_state=0).fit(blobs)
    assert capsys.readouterr().out == ""
    assert logging.getLogger("bigdist").level == level  # verbose's handler and level were removed after the fit
