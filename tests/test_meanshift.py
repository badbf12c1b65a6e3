import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import MeanShift as SkMeanShift
from sklearn.cluster import estimate_bandwidth as sk_estimate_bandwidth
from sklearn.datasets import make_blobs

import bigdist as bd
from bigdist.errors import InputShapeError, NonFiniteError, ParameterError

pytestmark = pytest.mark.usefixtures("synchronous")


def seed_004_data(random_state=123):
    """Seed 004: 7 Gaussian blobs of 250 points in 2-D, covariance 5·I, centres uniform in [-50, 50]²."""
    rng = np.random.default_rng(random_state)
    centres = rng.uniform(-50, 50, (7, 2))
    data = np.concatenate([rng.multivariate_normal(centre, 5 * np.eye(2), 250) for centre in centres])
    return data, centres


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(800, 3, centers=5, cluster_std=1.0, random_state=0)
    return X


def test_seed_004_gaussian_kernel_finds_the_seven_centres():
    data, centres = seed_004_data()
    result = bd.meanshift(data, bandwidth=2.5, kernel="gaussian")
    assert result.cluster_centers.shape == (7, 2)
    distances = cdist(result.cluster_centers, centres)
    rows, cols = linear_sum_assignment(distances)
    # Each true centre is estimated from 250 points of std sqrt(5): its mean is within ~0.14·3.
    assert distances[rows, cols].max() < 0.5
    labels = result.labels.compute()
    truth = np.repeat(np.arange(7), 250)
    # Every blob is one cluster (up to the tails that cross to a neighbour).
    mapping = dict(zip(rows, cols, strict=True))
    assert np.mean(np.array([mapping[label] for label in labels]) == truth) > 0.99
    assert result.intensities.sum() <= len(data)
    assert [s["iteration"] for s in result.stats] == list(range(1, len(result.stats) + 1))
    assert result.stats[0]["seeds_moving"] == len(data) and result.stats[-1]["still_moving"] == 0
    assert len(result.stats) == result.n_iter + 1


def _compare_with_scikit_learn(ours, theirs):
    assert ours.cluster_centers.shape == theirs.cluster_centers_.shape
    np.testing.assert_allclose(ours.cluster_centers, theirs.cluster_centers_, rtol=0, atol=1e-3 * ours.bandwidth)
    np.testing.assert_array_equal(ours.labels.compute(), theirs.labels_)
    assert ours.n_iter == theirs.n_iter_


@pytest.mark.parametrize("bin_seeding", [False, True])
@pytest.mark.parametrize("cluster_all", [True, False])
def test_flat_kernel_equals_scikit_learn(blobs, bin_seeding, cluster_all):
    kwargs = {"bandwidth": 1.1, "bin_seeding": bin_seeding, "cluster_all": cluster_all}
    ours = bd.meanshift(blobs, kernel="flat", **kwargs)
    theirs = SkMeanShift(**kwargs).fit(blobs)
    _compare_with_scikit_learn(ours, theirs)
    if not cluster_all:
        assert (theirs.labels_ == -1).any()


def test_flat_kernel_with_given_seeds_min_bin_freq_and_max_iter_equals_scikit_learn(blobs):
    seeds = blobs[::40] + 0.3
    for kwargs in ({"seeds": seeds}, {"bin_seeding": True, "min_bin_freq": 6}, {"max_iter": 2}):
        ours = bd.meanshift(blobs, 1.4, kernel="flat", **kwargs)
        theirs = SkMeanShift(bandwidth=1.4, **kwargs).fit(blobs)
        _compare_with_scikit_learn(ours, theirs)


def test_bandwidth_none_uses_scikit_learns_estimate(blobs):
    expected = sk_estimate_bandwidth(blobs)
    assert bd.estimate_bandwidth(blobs) == pytest.approx(expected, rel=1e-12)
    ours = bd.meanshift(blobs, kernel="flat", bin_seeding=True)
    assert ours.bandwidth == pytest.approx(expected, rel=1e-12)
    _compare_with_scikit_learn(ours, SkMeanShift(bin_seeding=True).fit(blobs))


# k = 80, 100 and 50 use bd.knn; k = 240 and 800 the partition reduction.
@pytest.mark.parametrize(
    ("quantile", "n_samples", "random_state"),
    [(0.1, None, 0), (0.5, 200, 4), (1.0, 50, 0), (0.3, None, 0), (1.0, None, 0)],
)
def test_estimate_bandwidth_equals_scikit_learn_out_of_core(blobs, quantile, n_samples, random_state):
    expected = sk_estimate_bandwidth(blobs, quantile=quantile, n_samples=n_samples, random_state=random_state)
    chunked = da.from_array(blobs, chunks=((300, 1, 499), 3))
    with dask.config.set({"bigdist.chunk-bytes": 14_000_000}):  # several query blocks for the partition reduction
        got = bd.estimate_bandwidth(
            chunked, quantile=quantile, n_samples=n_samples, random_state=random_state, split_every=2
        )
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kernel", ["gaussian", "flat"])
def test_chunking_split_every_and_seed_blocks_do_not_matter(blobs, kernel):
    reference = bd.meanshift(blobs, 1.2, kernel=kernel, bin_seeding=True)
    chunked = da.from_array(blobs, chunks=((100, 1, 299, 250, 150), 3))
    with dask.config.set({"bigdist.meanshift.seed-block-rows": 7}):
        other = bd.meanshift(chunked, 1.2, kernel=kernel, bin_seeding=True, split_every=2)
    assert other.n_iter == reference.n_iter
    np.testing.assert_allclose(other.cluster_centers, reference.cluster_centers, rtol=1e-12)
    np.testing.assert_array_equal(other.intensities, reference.intensities)
    np.testing.assert_array_equal(other.labels.compute(), reference.labels.compute())


def test_sampled_seeds_for_big_data(blobs):
    with dask.config.set({"bigdist.meanshift.max-seeds": 100}):
        result = bd.meanshift(blobs, 1.5, random_state=0)
        again = bd.meanshift(blobs, 1.5, random_state=0)
    assert result.n_seeds == 100
    assert bd.meanshift(blobs, 1.5, n_seeds=40, random_state=1).n_seeds == 40
    np.testing.assert_array_equal(result.cluster_centers, again.cluster_centers)
    full = bd.meanshift(blobs, 1.5)
    assert full.n_seeds == len(blobs)
    # Every mode found from the sample is one of the modes found from all rows.
    assert cdist(result.cluster_centers, full.cluster_centers).min(axis=1).max() < 1e-2


def test_float32_zarr_input_gives_the_float64_modes(tmp_path, blobs):
    path = str(tmp_path / "x.zarr")
    data32 = blobs.astype(np.float32)
    zarr.create_array(path, shape=data32.shape, dtype=np.float32, chunks=(300, 3))[:] = data32
    ours = bd.meanshift(path, 1.2, kernel="flat", bin_seeding=True)
    theirs = SkMeanShift(bandwidth=1.2, bin_seeding=True).fit(data32.astype(np.float64))
    _compare_with_scikit_learn(ours, theirs)


def test_to_zarr_writes_modes_labels_and_stats(tmp_path, blobs):
    result = bd.meanshift(blobs, 1.2, bin_seeding=True)
    path = str(tmp_path / "ms.zarr")
    result.to_zarr(path)
    group = zarr.open_group(path, mode="r")
    np.testing.assert_array_equal(group["cluster_centers"][:], result.cluster_centers)
    np.testing.assert_array_equal(group["labels"][:], result.labels.compute())
    np.testing.assert_array_equal(group["intensities"][:], result.intensities)
    attrs = group.attrs["meanshift"]
    assert attrs["kernel"] == "gaussian" and attrs["n_clusters"] == len(result.cluster_centers)
    assert len(attrs["stats"]) == len(result.stats)


def test_meanshift_on_a_distributed_cluster_equals_synchronous(blobs):
    from distributed import Client, LocalCluster

    expected = bd.meanshift(blobs, 1.2, kernel="flat", bin_seeding=True, cluster_all=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster), dask.config.set(scheduler=None):
            got = bd.meanshift(
                da.from_array(blobs, chunks=150), 1.2, kernel="flat", bin_seeding=True, cluster_all=False, split_every=2
            )
            labels = got.labels.compute()
            bandwidth = bd.estimate_bandwidth(da.from_array(blobs, chunks=200), n_samples=300)
    np.testing.assert_allclose(got.cluster_centers, expected.cluster_centers, rtol=1e-12)
    np.testing.assert_array_equal(labels, expected.labels.compute())
    assert bandwidth == pytest.approx(sk_estimate_bandwidth(blobs, n_samples=300), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bandwidth": 0}, ParameterError, "bandwidth=0"),
        ({"bandwidth": -1.0}, ParameterError, "bandwidth=-1.0"),
        ({"bandwidth": float("nan")}, ParameterError, "bandwidth=nan"),
        ({"bandwidth": 1.0, "kernel": "epanechnikov"}, ParameterError, "unknown kernel"),
        ({"bandwidth": 1.0, "seeds": np.zeros((3, 2))}, InputShapeError, r"shape \(n_seeds, 4\)"),
        ({"bandwidth": 1.0, "max_iter": 0}, ParameterError, "max_iter=0"),
        ({"bandwidth": 1.0, "tol": -1}, ParameterError, "tol=-1"),
        ({"bandwidth": 1.0, "min_bin_freq": 0}, ParameterError, "min_bin_freq=0"),
        ({"bandwidth": 1.0, "split_every": 0}, ParameterError, "split_every=0"),
        ({"bandwidth": None, "split_every": 0}, ParameterError, "split_every=0"),
        ({"bandwidth": 0.5, "bin_seeding": True, "min_bin_freq": 50}, ParameterError, r"min_bin_freq <= \d"),
        ({"bandwidth": 1.0, "seeds": np.full((1, 4), 100.0), "kernel": "flat"}, ParameterError, "No point was within"),
    ],
)
def test_bad_input(kwargs, error, match):
    X = np.random.default_rng(0).standard_normal((100, 4))
    with pytest.raises(error, match=match):
        bd.meanshift(X, **kwargs)


def test_bad_data_is_refused():
    X = np.ones((10, 2))
    X[3, 1] = np.nan
    with pytest.raises(NonFiniteError, match="row 3"):
        bd.meanshift(X, 1.0)
    with pytest.raises(NonFiniteError, match="infinity at row 2"):
        bd.meanshift(da.from_array(np.where(np.arange(10)[:, None] == 2, np.inf, 1.0) * np.ones((10, 2))), 1.0)
    with pytest.raises(InputShapeError, match="0 sample"):
        bd.meanshift(np.empty((0, 2)), 1.0)
    with pytest.raises(ParameterError, match="quantile=0"):
        bd.estimate_bandwidth(np.ones((5, 2)), quantile=0)
    with pytest.raises(ParameterError, match="estimated bandwidth is 0"):
        bd.meanshift(np.ones((5, 2)), kernel="gaussian")


def test_bin_seeding_refuses_a_grid_finer_than_ten_times_the_seeds():
    X = np.random.default_rng(10).normal(size=(3000, 2))
    with dask.config.set({"bigdist.meanshift.max-seeds": 100}):
        with pytest.raises(ParameterError, match="more than 1000 distinct grid cells at bandwidth 0.01"):
            bd.meanshift(X, bandwidth=0.01, bin_seeding=True)
        assert len(bd.meanshift(X, bandwidth=1.0, bin_seeding=True).cluster_centers) >= 1
