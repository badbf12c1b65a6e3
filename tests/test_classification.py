import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.array.utils import assert_eq
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier as SkClassifier
from sklearn.neighbors import KNeighborsRegressor as SkRegressor

import bigdist as bd
from bigdist.errors import InputDtypeError, InputShapeError, NonFiniteError, ParameterError
from tests.estimator_checks import estimator_checks
from tests.oracle import knn_oracle

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture(scope="module")
def digits():
    # Jitter breaks the digits' exact distance ties, whose order scikit-learn does not specify.
    data, target = load_digits(return_X_y=True)
    return data + np.random.default_rng(0).random(data.shape) * 1e-3, target


def _split(digits):
    data, target = digits
    return data[1300:], data[:1300], target[:1300], target[1300:]


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize(
    ("metric", "p"), [("euclidean", None), ("cosine", None), ("manhattan", None), ("minkowski", 3), ("chebyshev", None)]
)
def test_classifier_matches_scikit_learn(digits, weights, metric, p):
    queries, train, labels, truth = _split(digits)
    ours = bd.KNeighborsClassifier(n_neighbors=9, weights=weights, metric=metric, p=p).fit(train, labels)
    theirs = SkClassifier(n_neighbors=9, weights=weights, metric=metric, p=p or 2, algorithm="brute")
    theirs.fit(train, labels)
    predicted = ours.predict(queries)
    assert isinstance(predicted, np.ndarray) and predicted.dtype == theirs.predict(queries).dtype
    np.testing.assert_array_equal(predicted, theirs.predict(queries))
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    # Uniform votes are exact counts; distance weights differ only by scikit-learn's rounded distances.
    np.testing.assert_allclose(ours.predict_proba(queries), theirs.predict_proba(queries), rtol=1e-9, atol=1e-12)
    assert ours.score(queries, truth) == theirs.score(queries, truth)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_p_is_ignored_by_metrics_other_than_minkowski_as_in_scikit_learn(digits, metric):
    queries, train, labels, _ = _split(digits)
    ours = bd.KNeighborsRegressor(n_neighbors=4, metric=metric, p=3).fit(train, labels)
    theirs = SkRegressor(n_neighbors=4, metric=metric, p=3, algorithm="brute").fit(train, labels)
    np.testing.assert_allclose(ours.predict(queries[:100]), theirs.predict(queries[:100]), rtol=1e-12)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regressor_matches_scikit_learn(digits, weights):
    queries, train, labels, truth = _split(digits)
    target = labels * 1.5 + train[:, 20]
    ours = bd.KNeighborsRegressor(n_neighbors=6, weights=weights).fit(train, target)
    theirs = SkRegressor(n_neighbors=6, weights=weights, algorithm="brute").fit(train, target)
    np.testing.assert_allclose(ours.predict(queries), theirs.predict(queries), rtol=1e-12)
    assert ours.score(queries, truth) == pytest.approx(theirs.score(queries, truth), rel=1e-12)


def test_predict_without_queries_excludes_each_train_row(digits):
    _, train, labels, _ = _split(digits)
    ours = bd.KNeighborsClassifier(n_neighbors=4, weights="distance").fit(train[:600], labels[:600])
    theirs = SkClassifier(n_neighbors=4, weights="distance", algorithm="brute").fit(train[:600], labels[:600])
    np.testing.assert_array_equal(ours.predict(), theirs.predict(None))
    np.testing.assert_allclose(ours.predict_proba(), theirs.predict_proba(None), rtol=1e-9)


def test_kneighbors_graph_matches_scikit_learn(digits):
    queries, train, labels, _ = _split(digits)
    ours = bd.KNeighborsRegressor(n_neighbors=3).fit(train, labels * 1.0)
    theirs = SkRegressor(n_neighbors=3, algorithm="brute").fit(train, labels * 1.0)
    np.testing.assert_array_equal(ours.kneighbors_graph(queries).toarray(), theirs.kneighbors_graph(queries).toarray())
    got = ours.kneighbors_graph(queries, mode="distance").toarray()
    np.testing.assert_allclose(got, theirs.kneighbors_graph(queries, mode="distance").toarray(), rtol=1e-9)


def test_zero_distances_weigh_only_the_exact_matches():
    rng = np.random.default_rng(1)
    points = rng.random((150, 3))
    # Exact copies of the first 20 rows with other labels: two neighbours at distance 0, in different classes.
    train = np.vstack([points, points[:20]])
    labels = np.concatenate([rng.integers(0, 3, size=150), rng.integers(0, 3, size=20)])
    queries = np.vstack([train[:40], rng.random((20, 3))])
    ours = bd.KNeighborsClassifier(n_neighbors=6, weights="distance").fit(train, labels)
    # The k-d tree sums squares directly, so its zero distances are exactly 0 as bigdist's are.
    theirs = SkClassifier(n_neighbors=6, weights="distance", algorithm="kd_tree").fit(train, labels)
    distances, indices = ours.kneighbors(queries)
    probabilities = ours.predict_proba(queries)
    for row in range(40):
        exact = indices[row][distances[row] == 0]
        assert len(exact) == (2 if row < 20 else 1)
        counts = np.bincount(labels[exact], minlength=3)
        np.testing.assert_allclose(probabilities[row], counts / counts.sum())
    # Where the 6th and 7th neighbours tie (a copied pair at the boundary) the choice is unspecified,
    # except for queries with an exact match, which only their exact matches decide.
    expected_distances, _ = theirs.kneighbors(queries, n_neighbors=7)
    clear = (expected_distances[:, 5] < expected_distances[:, 6]) | (np.arange(60) < 40)
    assert clear.sum() >= 50
    # Ties between the classes of exact matches go to the lowest class index.
    np.testing.assert_array_equal(ours.predict(queries)[clear], theirs.predict(queries)[clear])
    np.testing.assert_allclose(probabilities[clear], theirs.predict_proba(queries)[clear], atol=1e-12)
    regressor = bd.KNeighborsRegressor(n_neighbors=6, weights="distance").fit(train, labels * 2.0)
    expected = SkRegressor(n_neighbors=6, weights="distance", algorithm="kd_tree").fit(train, labels * 2.0)
    np.testing.assert_allclose(regressor.predict(queries)[clear], expected.predict(queries)[clear], rtol=1e-12)


def test_float32_far_from_origin_votes_as_float64_brute_force():
    rng = np.random.default_rng(7)
    train = (rng.standard_normal((1500, 16)) + 1e4).astype(np.float32)
    queries = (rng.standard_normal((120, 16)) + 1e4).astype(np.float32)
    labels = rng.integers(0, 4, size=1500)
    distances, indices = knn_oracle(queries, train, 7)
    weights = 1.0 / distances
    expected = np.zeros((120, 4))
    for column in range(7):
        np.add.at(expected, (np.arange(120), labels[indices[:, column]]), weights[:, column])
    ours = bd.KNeighborsClassifier(n_neighbors=7, weights="distance").fit(train, labels)
    np.testing.assert_allclose(ours.predict_proba(queries), expected / expected.sum(axis=1)[:, None], rtol=1e-5)
    np.testing.assert_array_equal(ours.predict(queries), np.argmax(expected, axis=1))


def test_lazy_inputs_irregular_chunks_and_split_every_2(digits):
    queries, train, labels, truth = _split(digits)
    expected = SkClassifier(n_neighbors=5, weights="distance", algorithm="brute").fit(train, labels)
    lazy_train = da.from_array(train, chunks=((200, 333, 17, 450, 300), -1))
    lazy_labels = da.from_array(labels, chunks=((101, 700, 99, 400),))
    lazy_queries = da.from_array(queries, chunks=((250, 3, 244), -1))
    with dask.config.set({"bigdist.knn.query-block-rows": 97}):
        ours = bd.KNeighborsClassifier(n_neighbors=5, weights="distance", split_every=2).fit(lazy_train, lazy_labels)
        predicted = ours.predict(lazy_queries)
        probabilities = ours.predict_proba(lazy_queries)
        assert isinstance(predicted, da.Array) and isinstance(probabilities, da.Array)
        assert len(predicted.chunks[0]) > 2
        # Every block matches its declared chunks and dtype.
        assert_eq(predicted, expected.predict(queries))
        assert_eq(probabilities, expected.predict_proba(queries), rtol=1e-9, atol=1e-12)
        assert ours.score(lazy_queries, da.from_array(truth, chunks=100)) == expected.score(queries, truth)
        regressor = bd.KNeighborsRegressor(n_neighbors=5, split_every=2).fit(lazy_train, lazy_labels * 1.0)
        target = SkRegressor(n_neighbors=5, algorithm="brute").fit(train, labels * 1.0)
        assert_eq(regressor.predict(lazy_queries), target.predict(queries))
        assert regressor.score(lazy_queries, truth * 1.0) == pytest.approx(target.score(queries, truth * 1.0))


def test_labels_from_a_zarr_array(digits, tmp_path):
    queries, train, labels, _ = _split(digits)
    path = str(tmp_path / "labels.zarr")
    stored = zarr.create_array(store=path, shape=labels.shape, chunks=(97,), dtype=labels.dtype)
    stored[:] = labels
    ours = bd.KNeighborsClassifier(n_neighbors=3).fit(train, path)
    theirs = SkClassifier(n_neighbors=3, algorithm="brute").fit(train, labels)
    # NumPy queries give NumPy predictions, however the estimator was fitted.
    predicted = ours.predict(queries)
    assert isinstance(predicted, np.ndarray)
    np.testing.assert_array_equal(predicted, theirs.predict(queries))
    np.testing.assert_array_equal(ours.classes_, np.arange(10))


def test_several_outputs_match_scikit_learn(digits):
    queries, train, labels, _ = _split(digits)
    multi = np.stack([labels, labels % 3, (train[:, 30] > 8).astype(int)], axis=1)
    for weights in ("uniform", "distance"):
        ours = bd.KNeighborsClassifier(n_neighbors=5, weights=weights).fit(train, multi)
        theirs = SkClassifier(n_neighbors=5, weights=weights, algorithm="brute").fit(train, multi)
        np.testing.assert_array_equal(ours.predict(queries), theirs.predict(queries))
        for got, expected in zip(ours.predict_proba(queries), theirs.predict_proba(queries), strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
        regressor = bd.KNeighborsRegressor(n_neighbors=5, weights=weights).fit(train, multi * 0.5)
        target = SkRegressor(n_neighbors=5, weights=weights, algorithm="brute").fit(train, multi * 0.5)
        np.testing.assert_allclose(regressor.predict(queries), target.predict(queries), rtol=1e-12)
    # Lazy labels with several outputs, scored blockwise (subset accuracy; R² averaged over outputs).
    lazy = bd.KNeighborsClassifier(n_neighbors=5, weights="distance").fit(train, da.from_array(multi, chunks=(400, 3)))
    truth = theirs.predict(queries)
    truth[::7, 1] = 99
    assert_eq(lazy.predict(queries), theirs.predict(queries))
    # scikit-learn's accuracy_score refuses several outputs; subset accuracy is the natural extension.
    expected_accuracy = np.mean((theirs.predict(queries) == truth).all(axis=1))
    assert lazy.score(queries, truth) == pytest.approx(expected_accuracy, rel=1e-12)
    assert ours.score(queries, truth) == pytest.approx(expected_accuracy, rel=1e-12)
    lazy_regressor = bd.KNeighborsRegressor(n_neighbors=5, weights="distance").fit(
        train, da.from_array(multi * 0.5, chunks=(300, 3))
    )
    noisy = multi[:497] * 0.5 + np.random.default_rng(2).random((497, 3))
    weight = np.random.default_rng(3).random(497)
    assert lazy_regressor.score(queries, noisy, sample_weight=weight) == pytest.approx(
        target.score(queries, noisy, sample_weight=weight), rel=1e-12
    )


def test_string_classes_and_callable_weights(digits):
    queries, train, labels, _ = _split(digits)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[labels]

    def weights(distances):
        return np.exp(-distances / 10)

    ours = bd.KNeighborsClassifier(n_neighbors=7, weights=weights).fit(train, names)
    theirs = SkClassifier(n_neighbors=7, weights=weights, algorithm="brute").fit(train, names)
    np.testing.assert_array_equal(ours.predict(queries), theirs.predict(queries))
    np.testing.assert_allclose(ours.predict_proba(queries), theirs.predict_proba(queries), rtol=1e-9)


def test_bad_inputs_name_the_value_and_the_fix(digits, tmp_path):
    _, train, labels, _ = _split(digits)
    with pytest.raises(InputShapeError, match=r"y has 1299 labels but the train set has 1300 rows"):
        bd.KNeighborsClassifier().fit(train, labels[:-1])
    with pytest.raises(NonFiniteError, match=r"y holds NaN at row 7"):
        bd.KNeighborsRegressor().fit(train, np.where(np.arange(1300) == 7, np.nan, 1.0))
    with pytest.raises(NonFiniteError, match=r"y holds NaN at row 5"):
        bd.KNeighborsClassifier().fit(train, np.where(np.arange(1300) == 5, np.nan, labels))
    lazy_nan = da.from_array(np.where(np.arange(1300) == 1200, np.nan, 1.0), chunks=500)
    regressor = bd.KNeighborsRegressor().fit(train, lazy_nan)
    with pytest.raises(NonFiniteError, match=r"y holds NaN at row 1200"):
        regressor.predict(train[:5]).compute()
    with pytest.raises(NonFiniteError, match=r"y holds NaN at row 1200"):
        bd.KNeighborsClassifier().fit(train, lazy_nan)
    with pytest.raises(
        ParameterError, match=r"Expected n_neighbors <= n_samples_fit, but n_neighbors = 1301, n_samples_fit = 1300"
    ):
        bd.KNeighborsClassifier(n_neighbors=1301).fit(train, labels).predict(train[:3])
    with pytest.raises(ParameterError, match=r"Expected n_neighbors < n_samples_fit, but n_neighbors = 1300"):
        bd.KNeighborsClassifier(n_neighbors=1300).fit(train, labels).predict()
    with pytest.raises(ParameterError, match=r"'weights' parameter .* a callable or None. Got 'inverse' instead"):
        bd.KNeighborsClassifier(weights="inverse").fit(train, labels)
    with pytest.raises(ParameterError, match=r"unknown metric 'nope'"):
        bd.KNeighborsRegressor(metric="nope").fit(train, labels)
    with pytest.raises(ParameterError, match=r"'p' parameter .* in the range \(0.0, inf\] or None. Got -1 instead"):
        bd.KNeighborsClassifier(metric="minkowski", p=-1).fit(train, labels)
    with pytest.raises(ValueError, match=r"Unknown label type: continuous"):
        bd.KNeighborsClassifier().fit(train, labels + 0.5)
    with pytest.raises(ValueError, match=r"Unknown label type: continuous.*0.5"):
        bd.KNeighborsClassifier().fit(train, da.from_array(labels + 0.5, chunks=400))
    with pytest.raises(InputDtypeError, match=r"regression targets must be numeric"):
        bd.KNeighborsRegressor().fit(train, labels.astype(str))
    with pytest.raises(InputShapeError, match=r"X has 3 features, but KNeighborsClassifier is expecting 64"):
        bd.KNeighborsClassifier().fit(train, labels).predict(train[:, :3])
    with pytest.raises(ParameterError, match=r"getting zero weights.*\(1 queries, the first: query 0"):
        bd.KNeighborsClassifier(weights=np.zeros_like).fit(train, labels).predict(train[:1])


@estimator_checks([bd.KNeighborsClassifier(), bd.KNeighborsRegressor()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
