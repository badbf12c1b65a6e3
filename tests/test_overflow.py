"""Values whose squares leave the float range: exact results or a clear error, never NaN."""

import dask
import numpy as np
import pytest

import bigdist as bd
from bigdist.errors import ValueRangeError
from bigdist.kernels.scaling import power_of_two_exponent
from tests.oracle import knn_oracle

pytestmark = pytest.mark.usefixtures("synchronous")

RNG = np.random.default_rng(3)
HUGE = (RNG.standard_normal((300, 6)) * 1e20).astype(np.float32)  # squares of 1e40 overflow float32
TINY = (RNG.standard_normal((300, 6)) * 1e-25).astype(np.float32)  # squares of 1e-50 underflow float32


def test_exponent_only_outside_the_safe_range():
    assert power_of_two_exponent(1e3, np.dtype(np.float32), 128) == 0
    assert power_of_two_exponent(0.0, np.dtype(np.float32), 128) == 0
    e = power_of_two_exponent(1e20, np.dtype(np.float32), 128)
    assert 0.5 <= 1e20 * 2.0**-e < 1


@pytest.mark.parametrize("data", [HUGE, TINY], ids=["1e20", "1e-25"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_of_float32_values_beyond_the_range_of_their_squares(data, metric):
    queries, train = data[:40], data[40:]
    with dask.config.set({"bigdist.knn.tile-train-rows": 64}):
        distances, indices = bd.knn(queries, train, k=5, metric=metric).compute()
    expected_distances, expected_indices = knn_oracle(queries, train, 5, metric)
    assert np.isfinite(distances).all()
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-6)


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_float32_results_that_cannot_be_float32_raise(metric):
    with pytest.raises(ValueRangeError, match=rf"metric=.{metric}.: .* up to [0-9.]+e\+4[01] do not fit.*float64"):
        bd.knn(HUGE[:10], HUGE, k=3, metric=metric).compute()
    # In float64 they are exact.
    distances, indices = bd.knn(HUGE[:10].astype(np.float64), HUGE.astype(np.float64), k=3, metric=metric).compute()
    expected_distances, expected_indices = knn_oracle(HUGE[:10], HUGE, 3, metric)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-12)


def test_float64_squares_beyond_float64_raise():
    data = HUGE.astype(np.float64) * 1e140
    with pytest.raises(ValueRangeError, match=r"exceed the float64 range.*X / 1e150"):
        bd.knn(data[:5], data, k=2).compute()
    with pytest.raises(ValueRangeError, match=r"k-means: values up to .*e\+160"):
        bd.kmeans(data, 3, init="random", random_state=0)


def test_kmeans_of_float32_values_whose_squares_overflow():
    from sklearn.cluster import KMeans

    init = HUGE[:4].astype(np.float64)
    ours = bd.kmeans(HUGE, 4, init=init, max_iter=20)
    theirs = KMeans(4, init=init, n_init=1, max_iter=20, algorithm="lloyd").fit(HUGE.astype(np.float64))
    assert np.isfinite(ours.inertia)
    np.testing.assert_array_equal(ours.labels.compute(), theirs.labels_)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-9)
