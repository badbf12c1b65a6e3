import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import MeanShift as SkMeanShift
from sklearn.datasets import make_blobs
from sklearn.utils._param_validation import InvalidParameterError

import bigdist as bd
from tests.estimator_checks import estimator_checks

pytestmark = pytest.mark.usefixtures("synchronous")


# The parameters scikit-learn's own test suite checks its MeanShift with.
@estimator_checks([bd.MeanShift(max_iter=5, bandwidth=1.0)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(600, 4, centers=4, cluster_std=1.2, random_state=3)
    return X


def test_estimator_matches_scikit_learn(blobs):
    ours = bd.MeanShift(bin_seeding=True).fit(blobs)
    theirs = SkMeanShift(bin_seeding=True).fit(blobs)
    assert isinstance(ours.labels_, np.ndarray)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, atol=1e-3 * ours.bandwidth_)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.n_iter_ == theirs.n_iter_
    queries = blobs[:50] + 0.5
    np.testing.assert_array_equal(ours.predict(queries), theirs.predict(queries))
    np.testing.assert_array_equal(
        bd.MeanShift(bandwidth=2.0).fit_predict(blobs), SkMeanShift(bandwidth=2.0).fit_predict(blobs)
    )


def test_dask_input_gives_lazy_labels(blobs):
    model = bd.MeanShift(bandwidth=2.0, kernel="gaussian", bin_seeding=True).fit(da.from_array(blobs, chunks=130))
    assert isinstance(model.labels_, da.Array)
    assert isinstance(model.predict(da.from_array(blobs, chunks=200)), da.Array)
    np.testing.assert_array_equal(model.labels_.compute(), model.predict(blobs))


@pytest.mark.parametrize("bin_seeding", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_estimated_bandwidth_of_zero_as_scikit_learn(bin_seeding, dtype):
    # Most rows repeat exactly: the estimate is 0 and the distinct rows are the modes.
    X = np.array([1, 1, 1, 2, 2, 2, 3, 3], dtype=dtype).reshape(-1, 1)
    ours = bd.MeanShift(bin_seeding=bin_seeding).fit(X)
    theirs = SkMeanShift(bin_seeding=bin_seeding).fit(X)
    assert ours.bandwidth_ == 0
    assert ours.cluster_centers_.dtype == theirs.cluster_centers_.dtype
    np.testing.assert_array_equal(ours.cluster_centers_, theirs.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    constant = bd.MeanShift().fit(np.ones((10, 2)))
    np.testing.assert_array_equal(constant.cluster_centers_, SkMeanShift().fit(np.ones((10, 2))).cluster_centers_)


def test_float32_centres_and_n_jobs_as_scikit_learn(blobs):
    X = blobs.astype(np.float32)
    theirs = SkMeanShift(bandwidth=2.0, n_jobs=2).fit(X)
    for n_jobs in (None, 2, -1):
        ours = bd.MeanShift(bandwidth=2.0, n_jobs=n_jobs).fit(X)
        assert ours.cluster_centers_.dtype == theirs.cluster_centers_.dtype == np.float32
        np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(ours.labels_, theirs.labels_)


def test_errors_as_scikit_learn(blobs):
    far = {"bandwidth": 0.1, "seeds": [[-90.0] * 4, [-100.0] * 4]}
    for estimator in (bd.MeanShift(**far), SkMeanShift(**far)):
        with pytest.raises(ValueError, match="No point was within bandwidth=0.1"):
            estimator.fit(blobs)
    with pytest.raises(InvalidParameterError) as theirs:
        SkMeanShift(bandwidth=-1.0).fit(blobs)
    with pytest.raises(InvalidParameterError) as ours:
        bd.MeanShift(bandwidth=-1.0).fit(blobs)
    assert str(ours.value) == str(theirs.value)
