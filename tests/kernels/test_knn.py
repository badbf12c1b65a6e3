import numpy as np
import pytest

from bigdist.kernels.knn import knn_agg, knn_chunk
from bigdist.kernels.metrics import GEMM_METRICS
from tests.oracle import knn_oracle


def _run(queries, train, k, metric, *, self_join=False, tile=(7, 300)):
    partial = knn_chunk(
        queries,
        queries if self_join else train,
        np.arange(len(queries)),
        np.arange(len(queries if self_join else train)),
        k=k,
        metric=metric,
        exclude_self=self_join,
        tile_query_rows=tile[0],
        tile_train_rows=tile[1],
    )
    out = knn_agg(partial, k=k, metric=metric)
    return out["distance"], out["index"]


def _assert_matches_oracle(queries, train, k, metric, tile):
    # The float64 oracle's neighbours (ties by index) and its distances to 1e-12.
    dist, idx = _run(queries, train, k, metric, tile=tile)
    expected_dist, expected_idx = knn_oracle(queries, train, k, metric)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", GEMM_METRICS)
@pytest.mark.parametrize("tile", [(7, 256), (64, 1000), (500, 5000)])
def test_tile_matches_oracle(metric, tile):
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((90, 12)).astype(np.float32)
    train = rng.standard_normal((1300, 12)).astype(np.float32)
    _assert_matches_oracle(queries, train, 6, metric, tile=tile)


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_far_from_origin_float32(offset):
    # float32 expansion without centring would lose every digit here.
    rng = np.random.default_rng(4)
    queries = (rng.standard_normal((60, 16)) + offset).astype(np.float32)
    train = (rng.standard_normal((900, 16)) + offset).astype(np.float32)
    dist, idx = _run(queries, train, 5, "euclidean")
    expected_dist, expected_idx = knn_oracle(queries, train, 5)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-12)


def test_near_duplicates_far_from_origin():
    rng = np.random.default_rng(5)
    base = (rng.standard_normal((50, 8)) + 1e4).astype(np.float32)
    # Neighbours one float32 ulp apart in one coordinate: distance ~1e-3.
    nudged = base.copy()
    nudged[:, 0] = np.nextafter(nudged[:, 0], np.float32(np.inf))
    train = np.concatenate([base + np.float32(0.5), nudged, base + np.float32(0.25)])
    dist, idx = _run(base, train, 3, "euclidean")
    expected_dist, expected_idx = knn_oracle(base, train, 3)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-12)
    assert (idx[:, 0] == np.arange(50, 100)).all()


def test_self_join_excludes_self_but_finds_duplicates():
    rng = np.random.default_rng(6)
    data = rng.integers(0, 3, size=(400, 4)).astype(np.float32)
    data[200:220] = data[0]
    dist, idx = _run(data, None, 8, "euclidean", self_join=True, tile=(33, 256))
    expected_dist, expected_idx = knn_oracle(data, None, 8)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(dist, expected_dist)
    assert (idx != np.arange(400)[:, None]).all()
    assert dist[0, 0] == 0.0


def test_high_dimension():
    rng = np.random.default_rng(7)
    queries = rng.standard_normal((40, 1024)).astype(np.float32)
    train = rng.standard_normal((700, 1024)).astype(np.float32)
    dist, idx = _run(queries, train, 4, "euclidean")
    expected_dist, expected_idx = knn_oracle(queries, train, 4)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-12)


def test_all_points_equal_returns_lowest_indices():
    data = np.ones((300, 3), dtype=np.float32)
    dist, idx = _run(data[:5], data, 4, "euclidean")
    np.testing.assert_array_equal(idx, np.tile(np.arange(4), (5, 1)))
    assert (dist == 0).all()


# The candidates of a row wait in a pool of 2k + 16 entries (bigdist.kernels.scan) and are re-checked at the
# end of the block: the tests below fill that pool past its size, with ties, duplicates and far offsets.


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "inner_product"])
def test_pool_overflows_with_ties(metric):
    # 600 exact duplicates at one query's nearest distance: far more ties than the pool holds. Integer
    # data, so that tied keys are tied in float64 too (the oracle's rounding cannot reorder them).
    rng = np.random.default_rng(8)
    points = rng.integers(-3, 4, size=(40, 6)).astype(np.float32)
    train = np.concatenate([rng.integers(-3, 4, size=(300, 6)), np.repeat(points[:1], 600, axis=0),
                            rng.integers(-3, 4, size=(300, 6))]).astype(np.float32)  # fmt: skip
    queries = np.concatenate([points[:1] + 1, points]).astype(np.float32)
    _assert_matches_oracle(queries, train, 12, metric, tile=(16, 128))


@pytest.mark.parametrize("k", [1, 7, 60])
@pytest.mark.parametrize(("metric", "offset"), [("euclidean", 0.0), ("euclidean", 1e6), ("cosine", 0.0),
                                                ("correlation", 3.0), ("inner_product", 0.0)])  # fmt: skip
def test_pool_many_rounds_far_from_origin(metric, k, offset):
    # Random order over 6,000 rows: the pool fills, drops and settles many times per row.
    rng = np.random.default_rng(9)
    queries = (rng.standard_normal((30, 24)) + offset).astype(np.float32)
    train = (rng.standard_normal((6000, 24)) + offset).astype(np.float32)
    _assert_matches_oracle(queries, train, k, metric, tile=(13, 256))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_k_above_the_block_rows_pads(metric):
    rng = np.random.default_rng(10)
    queries = rng.standard_normal((9, 5)).astype(np.float32)
    train = rng.standard_normal((23, 5)).astype(np.float32)
    partial = knn_chunk(queries, train, np.arange(9), np.arange(23), k=40, metric=metric, exclude_self=False,
                        tile_query_rows=4, tile_train_rows=8)  # fmt: skip
    _, expected_idx = knn_oracle(queries, train, 23, metric)
    np.testing.assert_array_equal(partial["index"][:, :23], expected_idx)
    assert np.isinf(partial["key"][:, 23:]).all()
    assert (partial["index"][:, 23:] == np.iinfo(np.int64).max).all()


def test_self_join_duplicates_beyond_the_pool():
    # Each row has 80 exact copies (itself excluded by index): the k nearest are the copies of lowest index.
    rng = np.random.default_rng(11)
    data = np.repeat(rng.standard_normal((5, 3)), 80, axis=0).astype(np.float32)
    data = data[rng.permutation(len(data))]
    dist, idx = _run(data, None, 10, "euclidean", self_join=True, tile=(32, 64))
    expected_dist, expected_idx = knn_oracle(data, None, 10)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(dist, expected_dist)
    assert (dist == 0).all()


@pytest.mark.parametrize("metric", ["euclidean", "correlation"])
def test_pools_in_groups_of_query_rows(monkeypatch, metric):
    # Pools held for one group of query rows at a time (POOL_BYTES): several groups give the same result.
    import bigdist.kernels.knn as knn_module

    rng = np.random.default_rng(12)
    queries = rng.standard_normal((70, 10)).astype(np.float32)
    train = rng.standard_normal((2500, 10)).astype(np.float32)
    monkeypatch.setattr(knn_module, "POOL_BYTES", 1)
    _assert_matches_oracle(queries, train, 9, metric, tile=(16, 200))


@pytest.mark.parametrize("metric", ["euclidean", "inner_product", "cosine"])
def test_first_sub_tile_bound_with_ties_at_its_kth(metric):
    # The first sub-tile's k-th best score bounds each row from the start: here ties straddle that k-th
    # score, and later sub-tiles hold better rows and more copies of the tied one (higher indices lose).
    rng = np.random.default_rng(13)
    tied = rng.integers(-3, 4, size=(1, 8))
    first = np.concatenate([np.repeat(tied, 20, axis=0), rng.integers(-6, 7, size=(44, 8))])
    later = np.concatenate([rng.integers(-6, 7, size=(200, 8)), np.repeat(tied, 30, axis=0)])
    train = np.concatenate([first, later[rng.permutation(len(later))]]).astype(np.float32)
    queries = np.concatenate([tied, tied + 1, rng.integers(-3, 4, size=(10, 8))]).astype(np.float32)
    for k in (5, 25, 32):
        _assert_matches_oracle(queries, train, k, metric, tile=(4, 64))


@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
def test_first_sub_tile_holds_the_nearest(metric):
    # The k nearest all in the first sub-tile, at distinct distances, the rest far: the bound taken from
    # that sub-tile must keep its k-th best (a bound from the (k-1)-th would lose it).
    rng = np.random.default_rng(14)
    near = rng.standard_normal((64, 6))
    far = rng.standard_normal((500, 6)) * 0.1 + (3.0 if metric == "euclidean" else -3.0)
    train = np.concatenate([near, far]).astype(np.float32)
    queries = (rng.standard_normal((8, 6)) * 0.1 + (0.0 if metric == "euclidean" else 1.0)).astype(np.float32)
    for k in (1, 10, 32):
        _assert_matches_oracle(queries, train, k, metric, tile=(4, 64))
