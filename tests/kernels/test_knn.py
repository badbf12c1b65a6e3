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


@pytest.mark.parametrize("metric", GEMM_METRICS)
@pytest.mark.parametrize("tile", [(7, 256), (64, 1000), (500, 5000)])
def test_tile_matches_oracle(metric, tile):
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((90, 12)).astype(np.float32)
    train = rng.standard_normal((1300, 12)).astype(np.float32)
    dist, idx = _run(queries, train, 6, metric, tile=tile)
    expected_dist, expected_idx = knn_oracle(queries, train, 6, metric)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-12, atol=1e-12)


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
