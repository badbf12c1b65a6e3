import tracemalloc

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from bigdist.errors import TooManyNeighborsError, ValueRangeError
from bigdist.kernels.direct import direct_code, direct_within
from bigdist.kernels.radius import radius_chunk, radius_combine, radius_finish
from tests.oracle import distances as oracle_distances


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


def test_direct_within_reports_full_buffers_then_every_pair():
    rng = np.random.default_rng(1)
    queries, train = rng.random((5, 3)), rng.random((300, 3))
    expected = cdist(queries, train, "cityblock")
    small = (np.empty(10, np.int64), np.empty(10, np.int64), np.empty(10))
    assert direct_within(queries, train, direct_code("manhattan"), 2.0, 10.0, -(2**62), *small) == -1
    buffers = (np.empty(1500, np.int64), np.empty(1500, np.int64), np.empty(1500))
    # Skip the pairs with column - row == 2.
    count = direct_within(queries, train, direct_code("manhattan"), 2.0, 0.9, 2, *buffers)
    rows, columns, distances = (buffer[:count] for buffer in buffers)
    inside = expected <= 0.9
    for row in range(5):
        inside[row, row + 2] = False
    assert count == inside.sum()
    np.testing.assert_array_equal(sorted(zip(rows, columns, strict=True)), np.argwhere(inside))
    np.testing.assert_array_equal(distances, expected[rows, columns])


@pytest.mark.parametrize(
    ("metric", "scipy_metric", "p"), [("chebyshev", "chebyshev", 2.0), ("minkowski", "minkowski", 3.0)]
)
def test_direct_chunk_grows_its_buffers_and_excludes_self(metric, scipy_metric, p):
    rng = np.random.default_rng(2)
    points = rng.random((60, 4))
    out = radius_chunk(
        points[:40], points, 0, 0, radius=10.0, metric=metric, p=p, exclude_self=True, max_neighbors=100,
        tile_query_rows=40, tile_train_rows=60,
    )  # fmt: skip
    # Every pair but the row with itself, far beyond the first buffers (4 * 40 + 1024 pairs).
    np.testing.assert_array_equal(out["counts"], np.full(40, 59))
    expected = cdist(points[:40], points, scipy_metric, **({"p": p} if metric == "minkowski" else {}))
    columns = np.array([[j for j in range(60) if j != i] for i in range(40)])
    np.testing.assert_array_equal(out["indices"], columns.ravel())
    np.testing.assert_allclose(out["keys"], np.take_along_axis(expected, columns, axis=1).ravel(), rtol=1e-15)


def test_correlation_is_cosine_of_centred_rows_and_rejects_no_pair():
    rng = np.random.default_rng(3)
    queries, train = rng.random((30, 6)), rng.random((200, 6)) + 100.0
    expected = cdist(queries, train, "correlation")
    radius = float(np.quantile(expected, 0.2))
    out = radius_chunk(
        queries.astype(np.float32), train.astype(np.float32), 0, 0, radius=radius, metric="correlation",
        exclude_self=False, max_neighbors=1000, tile_query_rows=7, tile_train_rows=50,
    )  # fmt: skip
    expected = cdist(queries.astype(np.float32).astype(np.float64), train.astype(np.float32).astype(np.float64),
                     "correlation")  # fmt: skip
    rows = np.repeat(np.arange(30), out["counts"])
    np.testing.assert_array_equal(np.argwhere(expected <= radius), np.column_stack([rows, out["indices"]]))
    np.testing.assert_allclose(out["keys"], expected[rows, out["indices"]], rtol=1e-12)


def test_minkowski_integer_orders_are_decided_on_cdist_values():
    # p = 3 multiplies instead of pow: within an ulp or two of cdist, so a radius equal to a cdist value
    # would often exclude its own pair without the exact re-check near the radius.
    rng = np.random.default_rng(4)
    queries, train = rng.random((4, 9)), rng.random((100, 9))
    expected = cdist(queries, train, "minkowski", p=3.0)
    buffers = (np.empty(500, np.int64), np.empty(500, np.int64), np.empty(500))
    for radius in expected.ravel():
        count = direct_within(queries, train, direct_code("minkowski"), 3.0, radius, -(2**62), *buffers)
        rows, columns = buffers[0][:count], buffers[1][:count]
        np.testing.assert_array_equal(sorted(zip(rows, columns, strict=True)), np.argwhere(expected <= radius))
        at_radius = buffers[2][:count][expected[rows, columns] == radius]
        np.testing.assert_array_equal(at_radius, radius)


@pytest.mark.parametrize("scale", [1e20, 1e-25], ids=["1e20", "1e-25"])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "correlation", "inner_product"])
def test_float32_values_beyond_the_range_of_their_squares(scale, metric):
    # Squares of 1e40 overflow float32 and of 1e-50 underflow it: the GEMM must run on scaled rows.
    rng = np.random.default_rng(5)
    data = (rng.standard_normal((150, 6)) * scale).astype(np.float32)
    queries, train = data[:30], data[30:]
    values = oracle_distances(queries, train, metric)
    radius = float(np.quantile(values, 0.9 if metric == "inner_product" else 0.1))
    inside = values >= radius if metric == "inner_product" else values <= radius
    out = radius_chunk(
        queries, train, 0, 0, radius=radius, metric=metric, exclude_self=False, max_neighbors=1000,
        tile_query_rows=7, tile_train_rows=50,
    )  # fmt: skip
    rows = np.repeat(np.arange(30), out["counts"])
    np.testing.assert_array_equal(np.argwhere(inside), np.column_stack([rows, out["indices"]]))
    finished = radius_finish(out, metric=metric, sort_results=False, dtype=np.dtype(np.float64))
    np.testing.assert_allclose(finished["distances"], values[rows, out["indices"]], rtol=1e-12)


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_float32_output_that_cannot_hold_the_values_raises(metric):
    data = (np.random.default_rng(7).standard_normal((40, 6)) * 1e20).astype(np.float32)
    radius = -1e30 if metric == "inner_product" else 1e60
    out = radius_chunk(
        data[:5], data, 0, 0, radius=radius, metric=metric, exclude_self=False, max_neighbors=100,
        tile_query_rows=5, tile_train_rows=40,
    )  # fmt: skip
    with pytest.raises(ValueRangeError, match=rf"metric=.{metric}.: .* up to [0-9.]+e\+4[01] do not fit.*float64"):
        radius_finish(out, metric=metric, sort_results=False, dtype=np.dtype(np.float32))
    finished = radius_finish(out, metric=metric, sort_results=False, dtype=np.dtype(np.float64))
    rows = np.repeat(np.arange(5), out["counts"])
    np.testing.assert_allclose(finished["distances"], oracle_distances(data[:5], data, metric)[rows, out["indices"]],
                               rtol=1e-12)  # fmt: skip


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_a_dense_tile_raises_at_the_cap_before_holding_its_pairs(metric):
    # Every one of the 2,000 x 20,000 pairs is within the radius: 40 million pairs (~1 GB) if all were kept.
    queries, train = np.zeros((2000, 4)), np.zeros((20_000, 4))
    tracemalloc.start()
    with pytest.raises(TooManyNeighborsError, match="query 7 has at least"):
        radius_chunk(
            queries, train, 7, 0, radius=1.0, metric=metric, exclude_self=False, max_neighbors=10,
            tile_query_rows=256, tile_train_rows=512,
        )  # fmt: skip
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"the tile peaked at {peak / 2**20:.0f} MiB before raising"
