import numpy as np
import pytest

from bigdist.errors import TooManyNeighborsError
from bigdist.kernels.radius import radius_chunk, radius_combine, radius_finish


def _chunk(queries, train, first_train, **kwargs):
    options = dict(radius=1.5, metric="euclidean", exclude_self=False, max_neighbors=100, tile_query_rows=2)
    return radius_chunk(queries, train, 0, first_train, tile_train_rows=3, **{**options, **kwargs})


def test_partials_merge_in_train_order_and_finish_sorted():
    queries = np.array([[0.0], [10.0]])
    train = np.array([[1.0], [0.5], [9.0], [30.0], [-1.0], [11.0], [0.0]])
    parts = [_chunk(queries, train[:4], 0), _chunk(queries, train[4:], 4)]
    merged = radius_combine(parts, max_neighbors=100)
    np.testing.assert_array_equal(merged["counts"], [4, 2])
    np.testing.assert_array_equal(merged["indices"], [0, 1, 4, 6, 2, 5])
    finished = radius_finish(merged, metric="euclidean", sort_results=True, dtype=np.dtype(np.float64))
    np.testing.assert_array_equal(finished["indices"], [6, 1, 0, 4, 2, 5])
    np.testing.assert_array_equal(finished["distances"], [0.0, 0.5, 1.0, 1.0, 1.0, 1.0])


def test_self_pairs_are_excluded_by_global_row():
    points = np.array([[0.0], [0.0], [5.0]])
    out = radius_chunk(
        points, points, 0, 0, radius=1.0, metric="euclidean", exclude_self=True, max_neighbors=5,
        tile_query_rows=2, tile_train_rows=2,
    )  # fmt: skip
    np.testing.assert_array_equal(out["counts"], [1, 1, 0])
    np.testing.assert_array_equal(out["indices"], [1, 0])


def test_cap_counts_across_merges():
    queries = np.zeros((1, 1))
    parts = [_chunk(queries, np.zeros((3, 1)), 0), _chunk(queries, np.zeros((3, 1)), 3)]
    with pytest.raises(TooManyNeighborsError, match="query 0 has at least 6 neighbours"):
        radius_combine(parts, max_neighbors=5)


def test_many_pairs_per_sub_tile_grow_the_buffers():
    rng = np.random.default_rng(0)
    queries, train = rng.random((50, 4)), rng.random((3000, 4))
    out = radius_chunk(
        queries, train, 0, 0, radius=10.0, metric="euclidean", exclude_self=False, max_neighbors=5000,
        tile_query_rows=50, tile_train_rows=3000,
    )  # fmt: skip
    np.testing.assert_array_equal(out["counts"], np.full(50, 3000))
    np.testing.assert_array_equal(out["indices"], np.tile(np.arange(3000), 50))
    expected = ((queries[:, None, :] - train[None, :, :]) ** 2).sum(axis=2).ravel()
    np.testing.assert_allclose(out["keys"], expected, rtol=1e-12)
