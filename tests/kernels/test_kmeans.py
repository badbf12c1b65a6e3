import numpy as np
import pytest
from scipy.spatial.distance import cdist

from bigdist.kernels import kmeans as kernels_kmeans
from bigdist.kernels.kmeans import (
    assign,
    bound_updates,
    fold_candidates_chunk,
    kmeans_accumulate_piece,
    kmeans_bounded_chunk,
    kmeans_chunk,
    kmeans_combine,
    kmeans_label_piece,
    update_centroids,
)


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


@pytest.mark.parametrize("order", ["random", "rising", "grid"])
def test_a_blocks_farthest_rows_are_the_farthest_ties_to_the_lower_row(order):
    rng = np.random.default_rng(3)
    # Rows on a coarse grid tie in distance to their centroid; rising rows end far out.
    data = rng.integers(0, 5, size=(4000, 2)).astype(np.float64)
    if order == "rising":
        data = data[np.argsort(np.hypot(*data.T), kind="stable")]
    elif order == "random":
        data += rng.standard_normal(data.shape)
    centroids = np.array([[0.0, 0.0], [40.0, 40.0], [41.0, 40.0]])
    state = kmeans_chunk(data, 1000, centroids, n_far=3)
    distances = cdist(data, centroids, "sqeuclidean").min(axis=1)
    # Oracle: every row sorted by distance, farthest first, then by row.
    expected = np.lexsort((np.arange(len(data)), -distances))[:3]
    np.testing.assert_array_equal(state["far"]["index"], 1000 + expected)
    np.testing.assert_allclose(state["far"]["distance"], distances[expected], rtol=1e-12)


def _oracle_labels(data, centroids):
    # Exact float64 distances; argmin takes the lower index on ties.
    return np.argmin(cdist(data.astype(np.float64), centroids, "sqeuclidean"), axis=1)


@pytest.mark.parametrize("offset", [0.0, 1e6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step_rows", [1024, 7])
def test_bounded_passes_keep_lloyds_labels_and_sums(offset, dtype, step_rows, monkeypatch):
    # 7 rows a step: many steps, most with a few rows left by the bounds, some with none.
    monkeypatch.setattr(kernels_kmeans, "STEP_ROWS", step_rows)
    # Integer points and centroids on a coarse grid make exact ties; the offset makes cancellation.
    rng = np.random.default_rng(2)
    data = (rng.integers(0, 6, size=(2000, 3)) + offset).astype(dtype)
    centroids = rng.integers(0, 6, size=(8, 3)).astype(np.float64) + offset
    centroids[5] = centroids[2]  # identical centroids: the lower index keeps every row
    carried, previous, skipped = None, None, 0
    for step in range(8):
        if carried is None:
            drift_other, half_gap = np.zeros(8), np.zeros(8)
        else:
            drift_other, half_gap = bound_updates(previous, centroids)
        state, carried = kmeans_bounded_chunk(data, 0, carried, centroids, drift_other, half_gap, n_far=2)
        reference = kmeans_chunk(data, 0, centroids, n_far=2)
        labels = _oracle_labels(data, centroids)
        np.testing.assert_array_equal(carried["label"], labels)
        # Bitwise: a run resumed without its bounds must reach the very same centroids.
        np.testing.assert_array_equal(state["counts"], reference["counts"])
        np.testing.assert_array_equal(state["sums"], reference["sums"])
        assert state["inertia"] == reference["inertia"]
        exact = cdist(data.astype(np.float64), centroids)
        others = np.where(np.arange(8) == labels[:, None], np.inf, exact).min(axis=1)
        assert (carried["lower"] <= others * (1 + 1e-12)).all(), "a lower bound exceeds the true distance"
        skipped += len(data) - state["full_rows"]
        previous = centroids
        # Small moves mostly; a centroid jumping far (as an empty cluster's relocation does) now and then.
        centroids = centroids + rng.normal(scale=0.05, size=centroids.shape)
        if step % 3 == 2:
            centroids[step % 8] = data[rng.integers(len(data))]
    assert skipped > 0, "the bounds never kept a row"


def test_bound_updates_against_direct_distances():
    rng = np.random.default_rng(3)
    before = rng.standard_normal((50, 7)) + 1e4
    after = before + rng.normal(scale=0.1, size=before.shape)
    drift_other, half_gap = bound_updates(before, after)
    drift = np.linalg.norm(after - before, axis=1)
    for c in range(50):
        assert drift_other[c] >= np.delete(drift, c).max()
    gaps = cdist(after, after)
    np.fill_diagonal(gaps, np.inf)
    assert (half_gap <= gaps.min(axis=1) / 2).all()
    np.testing.assert_allclose(half_gap, gaps.min(axis=1) / 2, rtol=1e-6)


@pytest.mark.parametrize("step_rows", [1024, 7])
def test_a_late_step_beyond_float32_range_reruns_the_block_in_float64(step_rows, monkeypatch):
    monkeypatch.setattr(kernels_kmeans, "STEP_ROWS", step_rows)
    rng = np.random.default_rng(4)
    data = ((rng.normal(size=(2000, 4)) + rng.integers(0, 5, size=(2000, 1)) * 3) * 1e17).astype(np.float32)
    data[1990] *= 100  # squares beyond float32's range, in the block's last step only
    centroids = data[rng.choice(1900, 6, replace=False)].astype(np.float64)
    carried, previous = None, None
    for _ in range(4):
        drift_other, half_gap = (np.zeros(6), np.zeros(6)) if carried is None else bound_updates(previous, centroids)
        state, carried = kmeans_bounded_chunk(data, 0, carried, centroids, drift_other, half_gap, n_far=2)
        labels = _oracle_labels(data, centroids)
        np.testing.assert_array_equal(carried["label"], labels)
        np.testing.assert_array_equal(state["counts"], np.bincount(labels, minlength=6))
        sums = np.zeros((6, 4))
        np.add.at(sums, labels, data.astype(np.float64))
        np.testing.assert_allclose(state["sums"], sums, rtol=1e-12)
        previous, centroids = centroids, update_centroids(state, centroids)[0]


def test_kmeans_parallel_fold_keeps_the_older_candidate_on_ties():
    rng = np.random.default_rng(5)
    block = rng.integers(0, 4, size=(300, 2)).astype(np.float64)
    old, new = block[:3], np.concatenate([block[:1], block[10:12]])  # new[0] ties with old[0]
    state, nearest = fold_candidates_chunk(block, 0, None, old, 0, 3)
    state, folded = fold_candidates_chunk(block, 0, nearest, new, 3, 6)
    everything = np.concatenate([old, new])
    distances = cdist(block, everything, "sqeuclidean")
    np.testing.assert_array_equal(folded["label"], np.argmin(distances, axis=1))
    np.testing.assert_array_equal(folded["cost"], distances.min(axis=1))
    np.testing.assert_array_equal(state["counts"], np.bincount(np.argmin(distances, axis=1), minlength=6))
    assert state["cost"] == pytest.approx(distances.min(axis=1).sum(), rel=1e-12)
    assert state["counts"][3] == 0  # a duplicate of candidate 0 never takes its rows


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pieces_labelled_apart_and_summed_in_order_are_bitwise_the_whole_block(weighted, dtype):
    rng = np.random.default_rng(12)
    block = (rng.standard_normal((5000, 6)) * 3 + 100).astype(dtype)
    weights = rng.uniform(0.5, 2, size=len(block)) if weighted else None
    before, after = block[:9].astype(np.float64), block[:9].astype(np.float64) + rng.normal(0, 0.3, size=(9, 6))
    # A first pass (no bounds, with moments), then one with the bounds it carried.
    whole, carried = kmeans_bounded_chunk(block, 40, None, before, None, None, n_far=9, with_moments=True,
                                          weights=weights)  # fmt: skip
    updates = bound_updates(before, after)
    whole_next, _ = kmeans_bounded_chunk(block, 40, carried, after, *updates, n_far=9, weights=weights)
    # Pieces start on step boundaries of the block: 2 and 3 steps, then the rest.
    step = kernels_kmeans.STEP_ROWS
    edges = [0, 2 * step, 5 * step, len(block)]
    for centroids, extra, state, expected in ((before, (), None, whole), (after, updates, carried, whole_next)):
        running, kept = None, []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            labelled, bounds = kmeans_label_piece(block[a:b], 40 + a, None if state is None else state[a:b],
                                                  centroids, *extra)  # fmt: skip
            running = kmeans_accumulate_piece(block[a:b], 40 + a, labelled, running, centroids, *extra, n_far=9,
                                              with_moments=state is None,
                                              weights=None if weights is None else weights[a:b])  # fmt: skip
            kept.append(bounds)
        assert running.keys() == expected.keys()
        for key in ("sums", "counts", "moments") + (("weights",) if weighted else ()):
            np.testing.assert_array_equal(running[key], expected[key])
        assert running["inertia"] == expected["inertia"] and running["full_rows"] == expected["full_rows"]
        for key in expected["far"]:
            np.testing.assert_array_equal(running["far"][key], expected["far"][key])
    np.testing.assert_array_equal(np.concatenate(kept)["label"], _oracle_labels(block, after))
