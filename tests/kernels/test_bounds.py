"""Bounds shared by the tiles of one run (bigdist.kernels.bounds): the result stays exact, and they do prune."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import bigdist.kernels.bounds as bounds_module
from bigdist.kernels.bounds import new_run, shared_bounds
from bigdist.kernels.knn import knn_agg, knn_chunk, knn_combine
from bigdist.kernels.topk import PAD_INDEX
from tests.oracle import knn_keys, knn_oracle

METRICS = ["euclidean", "sqeuclidean", "cosine", "inner_product", "correlation"]


def _tiles(queries, blocks, k, metric, *, run, self_join=False, threads=1):
    """Each train block's tile, in order (one thread) or concurrently, all under ``run``."""
    starts = np.cumsum([0] + [len(b) for b in blocks])

    def tile(j):
        return knn_chunk(
            queries,
            blocks[j],
            np.arange(len(queries)),
            np.arange(starts[j], starts[j + 1]),
            k=k,
            metric=metric,
            exclude_self=self_join,
            tile_query_rows=16,
            tile_train_rows=256,
            run=run,
        )

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(tile, range(len(blocks))))


def _merged(tiles, k, metric):
    out = knn_agg(knn_combine(np.concatenate(tiles, axis=1), k=k), k=k, metric=metric)
    return out["distance"], out["index"]


def _data(rng, n_queries, n_train, d, scale):
    queries = (rng.standard_normal((n_queries, d)) * scale).astype(np.float32)
    train = (rng.standard_normal((n_train, d)) * scale).astype(np.float32)
    # Exact duplicates across blocks: ties at the bound go to the lower index.
    train[2500:2520] = train[100:120]
    train[3100:3105] = queries[:5]
    train[700:1500] *= 16  # another power-of-two scale for that block when scaled
    return queries, train


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("threads", [1, 3])
# 1e30: squares beyond float32's range, so each block's keys are scaled by a power of two of its own.
@pytest.mark.parametrize("scale", [1.0, 1e30])
def test_shared_bounds_keep_the_exact_top_k(metric, threads, scale):
    rng = np.random.default_rng(21)
    queries, train = _data(rng, 40, 4000, 9, scale)
    blocks = np.array_split(train, [700, 1500, 2600, 3300])
    k = 12
    run = new_run()
    dist, idx = _merged(_tiles(queries, blocks, k, metric, run=run, threads=threads), k, metric)
    expected_dist, expected_idx = knn_oracle(queries, train, k, metric)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-12, atol=1e-12 * scale**2)
    # Every shared bound is a bound: at or above the row's true k-th key, and some were found.
    kth_key = np.sort(knn_keys(queries, train, metric), axis=1)[:, k - 1]
    bounds = shared_bounds(run, 0, len(queries))
    assert np.all(np.isfinite(bounds))
    assert np.all(bounds >= kth_key - 1e-12 * np.abs(kth_key) - 1e-300)


def test_self_join_with_shared_bounds():
    rng = np.random.default_rng(5)
    data = rng.standard_normal((1200, 6)).astype(np.float32)
    data[600:610] = data[:10]
    blocks = np.array_split(data, 4)
    starts = np.cumsum([0] + [len(b) for b in blocks])
    run = new_run()
    k = 7
    tiles = [
        knn_chunk(data, blocks[j], np.arange(len(data)), np.arange(starts[j], starts[j + 1]), k=k,
                  metric="euclidean", exclude_self=True, tile_query_rows=32, tile_train_rows=128, run=run)
        for j in range(len(blocks))
    ]  # fmt: skip
    dist, idx = _merged(tiles, k, "euclidean")
    expected_dist, expected_idx = knn_oracle(data, None, k)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-12, atol=1e-12)


def test_a_later_tile_skips_what_an_earlier_one_beat():
    # Block 0 holds every query's k nearest; block 1 is far away. Under one run, block 1's tile
    # pools nothing (all padding); without a run it must return k real entries per row.
    rng = np.random.default_rng(8)
    queries = rng.standard_normal((30, 5))
    near = queries.repeat(4, axis=0) + 0.01 * rng.standard_normal((120, 5))
    far = 100.0 + rng.standard_normal((500, 5))
    k = 4
    run = new_run()
    first, second = _tiles(queries, [near, far], k, "euclidean", run=run)
    assert np.all(second["index"] == PAD_INDEX)
    (alone,) = _tiles(queries, [far], k, "euclidean", run=None)
    assert not np.any(alone["index"] == PAD_INDEX)
    dist, idx = _merged([first, second], k, "euclidean")
    np.testing.assert_array_equal(idx, knn_oracle(queries, np.concatenate([near, far]), k)[1])


def test_kept_bounds_stay_within_their_byte_budget(monkeypatch):
    monkeypatch.setattr(bounds_module, "CAPACITY_BYTES", 10 * 8 * 100)
    run = new_run()
    held = [shared_bounds(run, 100 * i, 100) for i in range(25)]
    held[-1][:] = 2.0
    assert sum(b.nbytes for b in bounds_module._bounds.values()) <= 10 * 8 * 100
    assert np.all(shared_bounds(run, 2400, 100) == 2.0)  # the most recent is kept
    assert np.all(np.isinf(shared_bounds(run, 0, 100)))  # the oldest was dropped: a fresh one
    # One block larger than the budget is still shared while it is the latest.
    big = shared_bounds(run, 10**6, 5000)
    big[:] = 3.0
    assert np.all(shared_bounds(run, 10**6, 5000) == 3.0)


def test_runs_do_not_share():
    run, other = new_run(), new_run()
    shared_bounds(run, 0, 3)[:] = 1.0
    assert np.all(shared_bounds(run, 0, 3) == 1.0)
    assert np.all(np.isinf(shared_bounds(other, 0, 3)))
    assert np.all(np.isinf(shared_bounds(run, 3, 3)))
