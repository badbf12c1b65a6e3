import numpy as np
from scipy.spatial.distance import cdist

from bigdist.kernels.kmeans import assign, kmeans_chunk, kmeans_combine, update_centroids


def test_assign_matches_cdist_and_breaks_ties_low():
    rng = np.random.default_rng(0)
    block = rng.integers(0, 4, size=(300, 3)).astype(np.float64) + 1e5
    centroids = rng.integers(0, 4, size=(6, 3)).astype(np.float64) + 1e5
    centroids[4] = centroids[1]  # an exact tie: the lower index must win
    labels, distances = assign(block, centroids)
    expected = cdist(block, centroids, "sqeuclidean")
    np.testing.assert_array_equal(labels, np.argmin(expected, axis=1))
    np.testing.assert_allclose(distances, expected.min(axis=1), atol=1e-6)
    assert not (labels == 4).any()


def test_partial_states_merge_to_the_whole():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((500, 4))
    centroids = data[:5].copy()
    whole = kmeans_chunk(data, 0, centroids, n_far=3, with_moments=True)
    parts = [
        kmeans_chunk(data[a:b], a, centroids, n_far=3, with_moments=True) for a, b in ((0, 17), (17, 300), (300, 500))
    ]
    merged = kmeans_combine(parts, n_far=3)
    np.testing.assert_allclose(merged["sums"], whole["sums"])
    np.testing.assert_array_equal(merged["counts"], whole["counts"])
    assert np.isclose(merged["inertia"], whole["inertia"], rtol=1e-12)
    np.testing.assert_array_equal(merged["far"]["index"], whole["far"]["index"])
    np.testing.assert_allclose(merged["moments"], [data.sum(axis=0), (data**2).sum(axis=0)])
    labels = np.argmin(cdist(data, centroids, "sqeuclidean"), axis=1)
    for c in range(5):
        np.testing.assert_allclose(merged["sums"][c], data[labels == c].sum(axis=0))


def test_empty_cluster_takes_the_farthest_row():
    data = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    centroids = np.array([[0.5, 0.0], [100.0, 100.0]])
    state = kmeans_chunk(data, 0, centroids, n_far=2)
    new, relocated = update_centroids(state, centroids)
    assert relocated == 1
    np.testing.assert_array_equal(new[1], [10.0, 0.0])
    np.testing.assert_array_equal(new[0], [0.5, 0.0])
