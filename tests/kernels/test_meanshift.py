import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.cluster import get_bin_seeds

from bigdist.kernels.meanshift import (
    DIRECT_MAX_FEATURES,
    bin_chunk,
    bin_combine,
    kth_agg,
    kth_chunk,
    kth_combine,
    meanshift_agg,
    meanshift_chunk,
    meanshift_combine,
    merge_modes,
    shift_sums,
)


def _oracle(block, seeds, bandwidth, kernel):
    d2 = cdist(seeds, block.astype(np.float64), "sqeuclidean")
    weights = np.exp(-d2 / (2 * bandwidth**2)) if kernel == "gaussian" else (d2 <= bandwidth**2).astype(float)
    return weights @ block.astype(np.float64), weights.sum(axis=1), (d2 <= bandwidth**2).sum(axis=1)


@pytest.mark.parametrize("n_features", [3, DIRECT_MAX_FEATURES + 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["gaussian", "flat"])
@pytest.mark.parametrize("bandwidth", [25.0, 250.0])  # few rows within the bandwidth, or most
def test_sums_equal_float64_brute_force_far_from_the_origin(n_features, dtype, kernel, bandwidth):
    rng = np.random.default_rng(n_features)
    # Offset 1e4 and a spread of 30 per feature: the expansion trick's cancellation is large.
    block = (rng.standard_normal((5000, n_features)) * 30 + 1e4).astype(dtype)
    seeds = block[rng.choice(5000, 600, replace=False)].astype(np.float64) + rng.standard_normal((600, n_features))
    sums, weights, counts = _oracle(block, seeds, bandwidth, kernel)
    if kernel == "flat" and bandwidth > 100:
        assert counts.mean() > 5000 / 4
    got = shift_sums(block, seeds, bandwidth, kernel)
    np.testing.assert_array_equal(got["counts"], counts)
    np.testing.assert_allclose(got["weights"], weights, rtol=1e-12)
    np.testing.assert_allclose(got["sums"], sums, rtol=1e-12)


@pytest.mark.parametrize("n_features", [2, DIRECT_MAX_FEATURES + 2])
def test_rows_exactly_one_bandwidth_away_are_inside(n_features):
    # Integer points at distance exactly 1 from the seeds: scikit-learn's radius rule is d <= bandwidth.
    grid = np.stack(np.meshgrid(*[np.arange(3.0)] * 2), axis=-1).reshape(-1, 2) + 1e3
    block = np.hstack([grid, np.zeros((len(grid), n_features - 2))])
    seeds = block[[0, 4]]
    got = shift_sums(block, seeds, 1.0, "flat")
    np.testing.assert_array_equal(got["counts"], [3, 5])
    np.testing.assert_array_equal(got["weights"], [3.0, 5.0])


def test_combine_of_blocks_equals_the_whole():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((3001, 4))
    seeds = data[:50]
    whole = meanshift_chunk(data, 0, seeds, bandwidth=0.7, kernel="gaussian")
    parts = [
        meanshift_chunk(data[a:b], a, seeds, bandwidth=0.7, kernel="gaussian")
        for a, b in [(0, 1), (1, 1500), (1500, 3001)]
    ]
    merged = meanshift_combine([meanshift_combine(parts[:2]), parts[2]])
    for key in ("sums", "weights"):
        np.testing.assert_allclose(merged[key], whole[key], rtol=1e-12)
    np.testing.assert_array_equal(merged["counts"], whole["counts"])
    means = meanshift_agg(merged, seeds)["means"]
    sums, weights, _ = _oracle(data, seeds, 0.7, "gaussian")
    np.testing.assert_allclose(means, sums / weights[:, None], rtol=1e-12)


def test_agg_keeps_seeds_without_weight_in_place():
    state = {"sums": np.array([[2.0, 4.0], [0.0, 0.0]]), "weights": np.array([2.0, 0.0]), "counts": np.array([2, 0])}
    means = meanshift_agg(state, np.array([[9.0, 9.0], [5.0, 6.0]]))["means"]
    np.testing.assert_array_equal(means, [[1.0, 2.0], [5.0, 6.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bandwidth", [1.3, np.float64(1.3)])  # a NumPy float makes float32 rows float64
def test_bins_equal_scikit_learns_in_order(dtype, bandwidth):
    rng = np.random.default_rng(2)
    data = (rng.standard_normal((2000, 2)) * 3).astype(dtype)
    data[5] = [-0.2, 0.1]  # rounds to -0.0: the same bin as 0.0
    parts = [bin_chunk(data[a:b], a, bin_size=bandwidth) for a, b in [(0, 700), (700, 701), (701, 2000)]]
    state = bin_combine([bin_combine(parts[:2]), parts[2]])
    for min_bin_freq in (1, 5):
        keep = state["counts"] >= min_bin_freq
        order = np.argsort(state["first"][keep], kind="stable")
        seeds = state["bins"][keep][order].astype(np.float32) * bandwidth
        np.testing.assert_array_equal(seeds, get_bin_seeds(data, bandwidth, min_bin_freq))
    assert state["counts"].sum() == 2000


def test_merge_modes_suppresses_weaker_modes_within_one_bandwidth():
    positions = np.array([[0.0, 0.0], [0.5, 0.0], [3.0, 0.0], [0.0, 0.0], [1.0, 0.0], [9.0, 9.0]])
    intensities = np.array([10, 20, 5, 10, 3, 0])
    modes, ranks = merge_modes(positions, intensities, 1.0)
    # [0.5, 0] (20) suppresses [0, 0] (10) and [1, 0] (3, at exactly one bandwidth); [9, 9] has no rows.
    np.testing.assert_array_equal(modes, [[0.5, 0.0], [3.0, 0.0]])
    np.testing.assert_array_equal(ranks, [20, 5])


def test_kth_distance_triplet_equals_sorted_brute_force():
    rng = np.random.default_rng(3)
    train = rng.standard_normal((900, 5)) * 2 + 1e3
    queries = train[:40]
    k = 120
    parts = [kth_chunk(queries, train[a:b], k=k, tile_rows=64) for a, b in [(0, 100), (100, 101), (101, 900)]]
    assert [p.shape[1] for p in parts] == [100, 1, 120]
    merged = kth_agg(np.concatenate([kth_combine(np.concatenate(parts[:2], axis=1), k=k), parts[2]], axis=1), k=k)
    expected = np.sort(cdist(queries, train), axis=1)[:, k - 1]
    np.testing.assert_allclose(merged[:, 0], expected, rtol=1e-10)


@pytest.mark.parametrize("scale", [1e20, 1e-25], ids=["1e20", "1e-25"])
def test_flat_float32_gemm_of_values_beyond_the_range_of_their_squares(scale):
    # Squares of 1e40 overflow float32 and of 1e-50 underflow it.
    rng = np.random.default_rng(8)
    block = (rng.standard_normal((300, DIRECT_MAX_FEATURES + 4)) * scale).astype(np.float32)
    seeds = block[:12].astype(np.float64)
    distances = np.sort(cdist(seeds, block.astype(np.float64)).ravel())
    bandwidth = float(distances[1000] + distances[1001]) / 2  # halfway between two pairs: no pair at the boundary
    out = shift_sums(block, seeds, bandwidth, "flat")
    sums, weights, counts = _oracle(block, seeds, bandwidth, "flat")
    np.testing.assert_array_equal(out["counts"], counts)
    np.testing.assert_array_equal(out["weights"], weights)
    np.testing.assert_allclose(out["sums"], sums, rtol=1e-12, atol=1e-12 * scale)
