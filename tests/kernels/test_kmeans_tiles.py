"""The k-means pass at any k: centroid tiles, the running best two, exact settling, bitwise sums."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from bigdist.kernels import kmeans as kernels_kmeans
from bigdist.kernels.kmeans import bound_updates, kmeans_bounded_chunk, kmeans_chunk


def _oracle(data, centroids):
    # Exact float64 distances; argmin takes the lower index on ties.
    distances = cdist(data.astype(np.float64), centroids, "sqeuclidean")
    labels = np.argmin(distances, axis=1)
    return labels, distances[np.arange(len(data)), labels]


def _oracle_sums(data, labels, k):
    sums = np.zeros((k, data.shape[1]))
    np.add.at(sums, labels, data.astype(np.float64))
    return sums


def _data(kind, n, d, k, dtype, offset, seed):
    rng = np.random.default_rng(seed)
    if kind == "random":
        data = rng.standard_normal((n, d))
        centroids = data[rng.choice(n, k, replace=False)] + rng.normal(scale=0.01, size=(k, d))
    elif kind == "blobs":
        centres = rng.standard_normal((k, d)) * 5
        data = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d)) * 0.3
        centroids = centres + rng.normal(scale=0.1, size=(k, d))
    else:  # a coarse integer grid: exact ties between centroids everywhere
        data = rng.integers(0, 4, size=(n, d)).astype(np.float64)
        centroids = rng.integers(0, 4, size=(k, d)).astype(np.float64)
        centroids[k - 1] = centroids[3]  # identical centroids in different tiles: the lower index wins
    return (data + offset).astype(dtype), centroids + offset


@pytest.mark.parametrize(
    ("kind", "n", "d", "k"),
    [("random", 3000, 16, 10), ("random", 3000, 5, 1000), ("blobs", 4000, 24, 1000), ("random", 6000, 3, 5000),
     ("blobs", 2500, 64, 5000), ("grid", 3000, 3, 1000)],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_labels_equal_a_float64_argmin_at_any_k(kind, n, d, k, dtype, offset):
    data, centroids = _data(kind, n, d, k, dtype, offset, seed=k + d)
    state = kmeans_chunk(data, 0, centroids, n_far=0)
    carried = np.empty(n, dtype=kernels_kmeans.BOUNDS_DTYPE)
    distances = np.empty(n)
    kernels_kmeans._run_block(data, centroids, carried, distances)
    labels, exact = _oracle(data, centroids)
    np.testing.assert_array_equal(carried["label"], labels)
    np.testing.assert_allclose(distances, exact, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(state["counts"], np.bincount(labels, minlength=k))
    np.testing.assert_allclose(state["sums"], _oracle_sums(data, labels, k), rtol=1e-12, atol=1e-6)


@pytest.mark.parametrize("tile_values", [2**17, 7 * 13, 1])
def test_tiles_of_centroids_change_nothing(tile_values, monkeypatch):
    # Tiles of 1, 7 or all centroids (13 rows a step): the same labels, and bitwise the same sums.
    rng = np.random.default_rng(7)
    data = (rng.integers(0, 5, size=(600, 4)) + 1e5).astype(np.float32)
    centroids = rng.integers(0, 5, size=(40, 4)).astype(np.float64) + 1e5
    centroids[33] = centroids[6]
    monkeypatch.setattr(kernels_kmeans, "STEP_ROWS", 13)
    reference = kmeans_chunk(data, 0, centroids, n_far=3, with_moments=True)
    monkeypatch.setattr(kernels_kmeans, "TILE_VALUES", tile_values)
    state = kmeans_chunk(data, 0, centroids, n_far=3, with_moments=True)
    labels, _ = _oracle(data, centroids)
    np.testing.assert_array_equal(state["counts"], np.bincount(labels, minlength=40))
    for key in ("sums", "counts", "moments"):
        np.testing.assert_array_equal(state[key], reference[key])
    assert state["inertia"] == reference["inertia"]
    np.testing.assert_array_equal(state["far"]["index"], reference["far"]["index"])


@pytest.mark.parametrize(("k", "tile_values"), [(50, 2**17), (1200, 2**17), (300, 64 * 37)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bounds_on_and_off_give_bitwise_the_same_passes(k, tile_values, dtype, monkeypatch):
    monkeypatch.setattr(kernels_kmeans, "STEP_ROWS", 64)
    monkeypatch.setattr(kernels_kmeans, "TILE_VALUES", tile_values)
    rng = np.random.default_rng(k)
    data = (rng.standard_normal((5000, 6)) + rng.integers(0, 3, size=(5000, 1)) * 4 + 1e3).astype(dtype)
    centroids = data[rng.choice(len(data), k, replace=False)].astype(np.float64)
    carried, previous, skipped = None, None, 0
    for _ in range(6):
        if carried is None:
            drift_other, half_gap = np.zeros(k), np.zeros(k)
        else:
            drift_other, half_gap = bound_updates(previous, centroids)
        state, carried = kmeans_bounded_chunk(data, 0, carried, centroids, drift_other, half_gap, n_far=2)
        reference = kmeans_chunk(data, 0, centroids, n_far=2)
        labels, _ = _oracle(data, centroids)
        np.testing.assert_array_equal(carried["label"], labels)
        np.testing.assert_array_equal(state["sums"], reference["sums"])
        np.testing.assert_array_equal(state["counts"], reference["counts"])
        assert state["inertia"] == reference["inertia"]
        skipped += len(data) - state["full_rows"]
        previous = centroids
        counts = np.maximum(state["counts"], 1)[:, None]
        centroids = np.where(state["counts"][:, None] > 0, state["sums"] / counts, centroids)
    assert skipped > 0, "the bounds never kept a row"


@pytest.mark.parametrize(("k", "weighted"), [(1, False), (40, True), (700, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_block_shared_among_threads_gives_bitwise_the_same_passes(k, weighted, dtype, monkeypatch):
    # Pieces of 3 steps of 64 rows (float64: 1 step; the last one short) on 3 threads: one thread's bits.
    monkeypatch.setattr(kernels_kmeans, "STEP_ROWS", 64)
    monkeypatch.setattr(kernels_kmeans, "PIECE_BYTES", 3 * 64 * 5 * 4)
    rng = np.random.default_rng(k + 1)
    data = (rng.standard_normal((4000, 5)) + rng.integers(0, 4, size=(4000, 1)) * 3 + 1e3).astype(dtype)
    weights = rng.uniform(0, 2, len(data)) if weighted else None
    centroids = data[rng.choice(len(data), k, replace=False)].astype(np.float64)
    carried, previous = None, None
    for _ in range(4):
        if carried is None:
            drift_other, half_gap = np.zeros(k), np.zeros(k)
        else:
            drift_other, half_gap = bound_updates(previous, centroids)
        moments = carried is None
        args = (data, 0, carried, centroids, drift_other, half_gap)
        state, carried = kmeans_bounded_chunk(*args, n_far=3, with_moments=moments, weights=weights, threads=3)
        reference, _ = kmeans_bounded_chunk(*args, n_far=3, with_moments=moments, weights=weights)
        labels, exact = _oracle(data, centroids)
        np.testing.assert_array_equal(carried["label"], labels)
        np.testing.assert_array_equal(state["counts"], np.bincount(labels, minlength=k))
        expected = exact @ weights if weighted else exact.sum()
        assert state["inertia"] == pytest.approx(expected, rel=1e-12)
        for key in ("sums", "counts", "moments") + (("weights",) if weighted else ()):
            np.testing.assert_array_equal(state[key], reference[key])
        assert state["inertia"] == reference["inertia"]
        assert state["full_rows"] == reference["full_rows"]
        np.testing.assert_array_equal(state["far"]["index"], reference["far"]["index"])
        previous = centroids
        counts = np.maximum(state["counts"], 1)[:, None]
        centroids = np.where(state["counts"][:, None] > 0, state["sums"] / counts, centroids)


def test_a_shared_block_beyond_float32_squares_falls_back_to_float64(monkeypatch):
    # Squares of 1e20 overflow float32: every piece's GEMM is redone in float64, labels exact.
    monkeypatch.setattr(kernels_kmeans, "STEP_ROWS", 32)
    monkeypatch.setattr(kernels_kmeans, "PIECE_BYTES", 2 * 32 * 3 * 4)
    rng = np.random.default_rng(3)
    data = (rng.standard_normal((500, 3)) * 1e20).astype(np.float32)
    centroids = data[:7].astype(np.float64) * 1.01
    state = kmeans_chunk(data, 0, centroids, n_far=0, threads=2)
    labels, _ = _oracle(data, centroids)
    np.testing.assert_array_equal(state["counts"], np.bincount(labels, minlength=7))
    np.testing.assert_array_equal(state["sums"], kmeans_chunk(data, 0, centroids, n_far=0)["sums"])
