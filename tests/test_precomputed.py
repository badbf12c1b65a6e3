"""metric="precomputed": neighbours from a distance matrix in memory or in Zarr, against scikit-learn and argsort."""

import dask.array as da
import numpy as np
import pytest
import zarr
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import bigdist as bd
from bigdist.errors import InputShapeError, InputValueError, ParameterError

pytestmark = pytest.mark.usefixtures("synchronous")


def _matrices(rng, integer=False):
    train = rng.integers(0, 3, (160, 3)).astype(float) if integer else rng.random((160, 4))
    queries = rng.integers(0, 3, (37, 3)).astype(float) if integer else rng.random((37, 4))
    metric = "cityblock" if integer else "euclidean"  # integer grids: many exact ties
    return cdist(queries, train, metric), cdist(train, train, metric)


def _ranked(matrix, k, self_join=False):
    keys = matrix.copy()
    if self_join:
        np.fill_diagonal(keys, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(matrix, order, axis=1), order


@pytest.mark.parametrize("integer", [False, True])
def test_knn_self_join_and_cross_for_any_chunking(integer, small_tiles):
    rng = np.random.default_rng(0)
    cross, square = _matrices(rng, integer)
    want_d, want_i = _ranked(square, 6, self_join=True)
    for matrix in (square, da.from_array(square, chunks=((60, 1, 99), (50, 110))), square.astype(np.float32)):
        for split_every in (2, 16):
            got_d, got_i = bd.knn(matrix, None, k=6, metric="precomputed", split_every=split_every).compute()
            np.testing.assert_array_equal(got_i, want_i)
            assert got_d.dtype == matrix.dtype
            np.testing.assert_allclose(got_d, want_d.astype(matrix.dtype))
    want_d, want_i = _ranked(cross, 6)
    got_d, got_i = bd.knn(da.from_array(cross, chunks=(10, 40)), square, k=6, metric="precomputed").compute()
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_d, want_d)
    if not integer:  # scikit-learn's own answer (its tie order is not defined on ties)
        sk_d, sk_i = SkNearestNeighbors(n_neighbors=6, metric="precomputed").fit(square).kneighbors(cross)
        np.testing.assert_array_equal(got_i, sk_i)
        np.testing.assert_allclose(got_d, sk_d)


def test_matrix_in_zarr_read_in_row_blocks(tmp_path):
    rng = np.random.default_rng(1)
    _, square = _matrices(rng)
    path = str(tmp_path / "d.zarr")
    zarr.create_array(path, shape=square.shape, chunks=(32, 64), dtype="float64")[:] = square
    result = bd.knn(path, None, k=3, metric="precomputed")
    assert result.distances.numblocks[0] >= 1
    got_d, got_i = result.compute()
    want_d, want_i = _ranked(square, 3, self_join=True)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_d, want_d)


@pytest.mark.parametrize("sort_results", [False, True])
def test_radius_self_join_and_cross(sort_results):
    rng = np.random.default_rng(2)
    cross, square = _matrices(rng)
    radius = float(np.quantile(cross, 0.1))
    lazy = da.from_array(square, chunks=((70, 90), (80, 80)))
    distances, indices = bd.radius_neighbors(lazy, None, radius, "precomputed", sort_results=sort_results).compute()
    inside = square <= radius
    np.fill_diagonal(inside, False)
    assert [set(row) for row in indices] == [set(np.flatnonzero(row)) for row in inside]
    for row, (got_d, got_i) in enumerate(zip(distances, indices, strict=True)):
        np.testing.assert_array_equal(got_d, square[row, got_i])
        if sort_results:
            np.testing.assert_array_equal(got_i, got_i[np.lexsort((got_i, got_d))])
    sk = SkNearestNeighbors(radius=radius, metric="precomputed").fit(square)
    sk_d, sk_i = sk.radius_neighbors(cross, sort_results=True)
    got_d, got_i = bd.radius_neighbors(cross, square, radius, "precomputed", sort_results=True).compute()
    for mine, theirs in zip(got_i, sk_i, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(got_d, sk_d, strict=True):
        np.testing.assert_allclose(mine, theirs)


def test_estimator_fit_on_a_square_matrix():
    rng = np.random.default_rng(3)
    cross, square = _matrices(rng)
    ours = bd.NearestNeighbors(n_neighbors=4, metric="precomputed").fit(square)
    theirs = SkNearestNeighbors(n_neighbors=4, metric="precomputed").fit(square)
    for mine, sk in zip(ours.kneighbors(cross), theirs.kneighbors(cross), strict=True):
        np.testing.assert_allclose(mine, sk)
    np.testing.assert_array_equal(ours.kneighbors()[1], _ranked(square, 4, self_join=True)[1])


def test_pairwise_distances_of_a_precomputed_matrix_is_the_matrix():
    rng = np.random.default_rng(4)
    cross, _ = _matrices(rng)
    np.testing.assert_array_equal(bd.pairwise_distances(cross, metric="precomputed").compute(), cross)


def test_bad_precomputed_input():
    rng = np.random.default_rng(5)
    cross, square = _matrices(rng)
    with pytest.raises(InputShapeError, match=r"square matrix.*shape \(37, 160\)"):
        bd.knn(cross, None, k=2, metric="precomputed")
    with pytest.raises(InputShapeError, match=r"160 columns but there are 37 train rows"):
        bd.knn(cross, cross, k=2, metric="precomputed")
    negative = square.copy()
    negative[100, 7] = -0.5
    with pytest.raises(InputValueError, match=r"distances >= 0.*-0\.5 at row 100, column 7.*not similarities"):
        bd.knn(da.from_array(negative, chunks=40), None, k=2, metric="precomputed").compute()
    with pytest.raises(InputValueError, match=r"-0\.5 at row 100, column 7"):
        bd.radius_neighbors(negative, None, 0.5, "precomputed").compute()
    with pytest.raises(InputValueError, match=r"-0\.5 at row 100, column 7"):
        bd.pairwise_distances(negative, metric="precomputed").compute()
    with pytest.raises(ParameterError, match=r"k=160 exceeds the 159 neighbours"):
        bd.knn(square, None, k=160, metric="precomputed")
    with pytest.raises(ParameterError, match=r"'precomputed' takes no parameters.*p"):
        bd.knn(square, None, k=2, metric="precomputed", p=3)
    nan = square.copy()
    nan[3, 3] = np.nan
    with pytest.raises(Exception, match="NaN"):
        bd.knn(nan, None, k=2, metric="precomputed").compute()


def test_a_precomputed_knn_has_no_wave_job():
    from bigdist.errors import PlanError

    result = bd.knn(np.abs(np.subtract.outer(np.arange(6.0), np.arange(6.0))), None, k=2, metric="precomputed")
    with pytest.raises(PlanError, match="precomputed distances is written from one graph"):
        getattr(result, "job")  # noqa: B009  (a property: reading it is what raises)


def _graphs(rng, k=6, radius=None):
    # scikit-learn's graphs of train and queries, distances as stored entries (self-distance 0 stored explicitly).
    train, queries = rng.random((120, 3)), rng.random((25, 3))
    nn = SkNearestNeighbors(n_neighbors=k, radius=radius or 1.0).fit(train)
    if radius is None:
        return nn.kneighbors_graph(train, mode="distance"), nn.kneighbors_graph(queries, mode="distance")
    return nn.radius_neighbors_graph(train, mode="distance"), nn.radius_neighbors_graph(queries, mode="distance")


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil"])
def test_sparse_graphs_as_scikit_learn(fmt):
    train_graph, query_graph = _graphs(np.random.default_rng(0))
    train_graph, query_graph = train_graph.asformat(fmt), query_graph.asformat(fmt)
    ours = bd.NearestNeighbors(n_neighbors=4, metric="precomputed").fit(train_graph)
    theirs = SkNearestNeighbors(n_neighbors=4, metric="precomputed").fit(train_graph)
    for queries in (query_graph, None):
        distances, indices = ours.kneighbors(queries)
        expected_distances, expected_indices = theirs.kneighbors(queries)
        np.testing.assert_array_equal(indices, expected_indices)
        np.testing.assert_allclose(distances, expected_distances, rtol=1e-12)
    got = ours.kneighbors_graph(query_graph, mode="distance").toarray()
    np.testing.assert_allclose(got, theirs.kneighbors_graph(query_graph, mode="distance").toarray(), rtol=1e-12)


def test_sparse_radius_graphs_as_scikit_learn():
    train_graph, query_graph = _graphs(np.random.default_rng(1), radius=0.3)
    ours = bd.NearestNeighbors(radius=0.2, metric="precomputed").fit(train_graph)
    theirs = SkNearestNeighbors(radius=0.2, metric="precomputed").fit(train_graph)
    for queries in (query_graph, None):
        distances, indices = ours.radius_neighbors(queries, sort_results=True)
        expected_distances, expected_indices = theirs.radius_neighbors(queries, sort_results=True)
        for got, expected in zip(indices, expected_indices, strict=True):
            np.testing.assert_array_equal(got, expected)
        for got, expected in zip(distances, expected_distances, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_sparse_graph_knn_function_on_a_dask_graph():
    train_graph, _ = _graphs(np.random.default_rng(2))
    expected = SkNearestNeighbors(n_neighbors=3, metric="precomputed").fit(train_graph).kneighbors()
    lazy = da.from_array(train_graph.tocsr(), chunks=(50, 120), asarray=False)
    result = bd.knn(lazy, None, k=3, metric="precomputed", split_every=2)
    np.testing.assert_array_equal(result.indices.compute(), expected[1])
    np.testing.assert_allclose(result.distances.compute(), expected[0], rtol=1e-12)


def test_sparse_graphs_too_short_or_ambiguous_are_refused():
    train_graph, _ = _graphs(np.random.default_rng(3), k=3)
    nn = bd.NearestNeighbors(metric="precomputed").fit(train_graph)
    with pytest.raises(InputValueError, match="4 neighbors per samples are required, but some samples have only 3"):
        nn.kneighbors(train_graph, n_neighbors=4)
    with pytest.raises(TypeError, match="'dok' format is not supported due to its handling of explicit zeros"):
        nn.kneighbors(train_graph.todok())
    negative = train_graph.tocsr(copy=True)
    negative.data[5] = -1.0
    with pytest.raises(InputValueError, match="Negative values in data passed to precomputed distance matrix"):
        nn.kneighbors(negative)
