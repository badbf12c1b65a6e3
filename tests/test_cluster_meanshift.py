import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import MeanShift as SkMeanShift
from sklearn.datasets import make_blobs

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
