"""Group bounds (Yinyang): the same labels, sums and inertia as a plain Lloyd pass, bitwise, on any data."""

import numpy as np
import pytest

from bigdist.kernels import kmeans as kernels_kmeans
from bigdist.kernels.kmeans import (
    centroid_groups,
    group_bound_updates,
    kmeans_chunk,
    kmeans_combine,
    kmeans_grouped_chunk,
    update_centroids,
)


def _oracle_pass(blocks, weights, centroids):
    """A float64 NumPy Lloyd step: exact labels (lower index on ties), sums added in row order per block."""
    labels, sums = [], []
    for rows, w in zip(blocks, weights, strict=True):
        rows = rows.astype(np.float64)
        distances = ((rows[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        block_labels = np.argmin(distances, axis=1)
        block_sums = np.zeros_like(centroids)
        np.add.at(block_sums, block_labels, rows if w is None else w[:, None] * rows)
        labels.append(block_labels)
        sums.append(block_sums)
    return np.concatenate(labels), sum(sums)


def _oracle_update(sums, labels, distances, data, weights, centroids):
    """New centroids: means, and each empty cluster takes the farthest row (ties: lower row) from its cluster."""
    sums = sums.copy()
    counts = np.bincount(labels, weights=weights, minlength=len(centroids)).astype(np.float64)
    order = np.lexsort((np.arange(len(data)), -distances))
    weights = np.ones(len(data)) if weights is None else weights
    for cluster, row in zip(np.flatnonzero(counts == 0), order, strict=False):
        value = data[row].astype(np.float64)
        sums[labels[row]] -= value * weights[row]
        counts[labels[row]] -= weights[row]
        sums[cluster] = value * weights[row]
        counts[cluster] = weights[row]
    return np.where(counts[:, None] > 0, sums / np.where(counts > 0, counts, 1)[:, None], centroids)


def _data(kind, n, d, k, rng):
    if kind == "random":
        data = rng.standard_normal((n, d))
    elif kind == "blobs":
        centres = rng.standard_normal((k, d)) * 4
        data = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    else:  # a coarse integer grid with duplicate rows: exact ties between centroids everywhere
        data = rng.integers(0, 3, size=(n, d)).astype(np.float64)
    data[n // 2 : n // 2 + 50] = data[0]  # duplicate rows
    return data


@pytest.mark.parametrize(
    ("kind", "n", "d", "k", "dtype", "weighted"),
    [("random", 1500, 8, 2, np.float64, False), ("random", 2000, 16, 40, np.float32, False),
     ("blobs", 2000, 12, 120, np.float32, True), ("grid", 1500, 3, 30, np.float64, False),
     ("random", 1200, 5, 300, np.float64, True), ("blobs", 1800, 24, 64, np.float64, False)],
)  # fmt: skip
@pytest.mark.parametrize("local_share", [0.0, 0.25, 1.0])
def test_grouped_passes_equal_a_numpy_lloyd_bitwise(kind, n, d, k, dtype, weighted, local_share, monkeypatch):
    # 0: every row the filters fail goes through the GEMM; 1: none does. Small steps and GEMM tiles: many of each.
    monkeypatch.setattr(kernels_kmeans, "LOCAL_SHARE", local_share)
    monkeypatch.setattr(kernels_kmeans, "STEP_ROWS", 97)
    monkeypatch.setattr(kernels_kmeans, "TILE_VALUES", 97 * 16)
    rng = np.random.default_rng(k + d)
    data = _data(kind, n, d, k, rng).astype(dtype)
    weights = rng.uniform(0, 3, n) if weighted else None
    if weighted:
        weights[:20] = 0
    bounds = np.cumsum([0, 1, 333, 250, 700])  # irregular blocks
    bounds = np.append(bounds[bounds < n], n)
    cuts = list(zip(bounds[:-1], bounds[1:], strict=True))
    blocks = [data[a:b] for a, b in cuts]
    block_weights = [None if weights is None else weights[a:b] for a, b in cuts]
    centroids = data[rng.choice(n, k, replace=False)].astype(np.float64)
    centroids[-1] = 1e3  # far from every row: empty, relocated
    if k > 3:
        centroids[1] = centroids[2]  # identical centroids: the lower index takes the rows
    groups = centroid_groups(centroids, max(2, k // 10))
    n_groups = groups.max() + 1
    carried, previous, skipped = [None] * len(blocks), None, 0
    for _ in range(8):
        if previous is None:
            updates = (np.zeros(k), np.zeros(n_groups), np.zeros(k))
        else:
            updates = group_bound_updates(previous, centroids, groups)
        outputs = [
            kmeans_grouped_chunk(block, a, carry, centroids, groups, *updates, n_far=k, weights=w)
            for block, (a, _), carry, w in zip(blocks, cuts, carried, block_weights, strict=True)
        ]
        state = kmeans_combine([out[0] for out in outputs], n_far=k)
        carried = [out[1] for out in outputs]
        plain = kmeans_combine(
            [
                kmeans_chunk(block, a, centroids, n_far=k, weights=w)
                for block, (a, _), w in zip(blocks, cuts, block_weights, strict=True)
            ],
            n_far=k,
        )
        labels, sums = _oracle_pass(blocks, block_weights, centroids)
        np.testing.assert_array_equal(np.concatenate([c["label"] for c in carried]), labels)
        np.testing.assert_array_equal(state["sums"], sums)
        np.testing.assert_array_equal(state["counts"], np.bincount(labels, minlength=k))
        # Bitwise what a plain pass gives, inertia and the rows kept for empty clusters included.
        assert state["inertia"] == plain["inertia"]
        for key in plain["far"]:
            np.testing.assert_array_equal(state["far"][key], plain["far"][key])
        exact = np.sqrt(((data.astype(np.float64)[:, None, :] - centroids[None]) ** 2).sum(axis=2))
        lower = np.concatenate([c["lower"] for c in carried])
        for g in range(n_groups):
            others = np.where((groups == g)[None, :] & (np.arange(k) != labels[:, None]), exact, np.inf).min(axis=1)
            assert (lower[:, g] <= others * (1 + 1e-12)).all(), "a group bound exceeds a true distance"
        skipped += n - state["full_rows"]
        new, _ = update_centroids(state, centroids)
        expected = _oracle_update(sums, labels, exact[np.arange(n), labels] ** 2, data, weights, centroids)
        np.testing.assert_allclose(new, expected, rtol=1e-12, atol=1e-12)
        previous, centroids = centroids, new
    if local_share > 0:
        assert skipped > 0, "the group bounds never spared a row the GEMM"


def test_centroid_groups_cover_every_group():
    rng = np.random.default_rng(0)
    centroids = np.concatenate([rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 50])
    groups = centroid_groups(centroids, 6)
    assert groups.dtype == np.int64 and groups.shape == (60,)
    np.testing.assert_array_equal(np.unique(groups), np.arange(groups.max() + 1))
    # Far-apart clusters of centroids never share a group.
    assert not set(groups[:30]) & set(groups[30:])


def test_group_bound_updates_against_direct_distances():
    rng = np.random.default_rng(1)
    before = rng.standard_normal((40, 5)) + 1e4
    after = before + rng.normal(scale=0.1, size=before.shape)
    groups = np.arange(40) % 3
    drift, group_drift, half_gap = group_bound_updates(before, after, groups)
    moves = np.linalg.norm(after - before, axis=1)
    assert (drift >= moves).all()
    np.testing.assert_allclose(drift, moves, rtol=1e-9)
    for g in range(3):
        assert group_drift[g] >= moves[groups == g].max()
    gaps = np.linalg.norm(after[:, None] - after[None], axis=2)
    np.fill_diagonal(gaps, np.inf)
    assert (half_gap <= gaps.min(axis=1) / 2).all()


def test_bound_groups_by_k_and_memory():
    assert kernels_kmeans.bound_groups(10, 1000) == 0  # Hamerly
    assert kernels_kmeans.bound_groups(kernels_kmeans.MIN_GROUPED_CLUSTERS - 1, 1000) == 0
    assert kernels_kmeans.bound_groups(100, 1000) == 10
    assert kernels_kmeans.bound_groups(65536, 1000) == kernels_kmeans.MAX_GROUPS
    assert kernels_kmeans.bound_groups(1000, 5) == 5
    assert kernels_kmeans.bound_groups(1000, 1) == 0
