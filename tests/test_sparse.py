"""Sparse input (scipy.sparse, dask arrays of sparse blocks): the same neighbours as the dense float64 oracle."""

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import pairwise_distances as sk_pairwise_distances
from sklearn.neighbors import KNeighborsClassifier as SkKNeighborsClassifier
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import bigdist as bd
from bigdist.errors import NonFiniteError, ParameterError
from tests.oracle import BOOLEAN_METRICS, distances, knn_oracle

pytestmark = pytest.mark.usefixtures("synchronous")

SPARSE_KERNEL = [("euclidean", {}), ("sqeuclidean", {}), ("cosine", {}), ("inner_product", {}), ("manhattan", {})]
DENSE_TILES = [("chebyshev", {}), ("minkowski", {"p": 3}), ("canberra", {}), ("braycurtis", {}), ("correlation", {}),
               ("jaccard", {}), ("hamming", {})]  # fmt: skip


def _sparse(rng, n, d=30, density=0.15, dtype=np.float64, integer=True):
    matrix = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    if integer:  # small integers: exact ties that must go to the lower index
        matrix.data = np.ceil(matrix.data * 4)
    return matrix.astype(dtype)


def _near_duplicates(matrix):
    # Rows that differ from others in one coordinate by 1e-9: the expansion trick alone loses them to rounding.
    dense = matrix.toarray()
    dense[1::7] = dense[::7][: len(dense[1::7])]
    dense[1::7, 0] += 1e-9
    return sp.csr_matrix(dense)


def _forms(matrix):
    yield matrix
    yield matrix.tocsc()
    yield da.from_array(matrix, chunks=(41, -1), asarray=False)


@pytest.mark.parametrize(("metric", "params"), SPARSE_KERNEL + DENSE_TILES)
def test_knn_equals_the_dense_oracle(metric, params, small_tiles):
    rng = np.random.default_rng(0)
    # correlation centres rows in another order than the oracle: exact and near ties may round apart.
    queries, train = _sparse(rng, 45), _near_duplicates(_sparse(rng, 260))
    if metric == "correlation":
        queries, train = _sparse(rng, 45, integer=False), _sparse(rng, 260, integer=False)
    if metric in BOOLEAN_METRICS:
        queries.data[:], train.data[:] = 1.0, 1.0
    want_d, want_i = knn_oracle(queries.toarray(), train.toarray(), 5, metric, **params)
    for train_form in _forms(train):
        got_d, got_i = bd.knn(queries, train_form, k=5, metric=metric, split_every=2, **params).compute()
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-12, atol=1e-12)
    # Dense queries against sparse train rows, and the self-join.
    got_i = bd.knn(queries.toarray(), train, k=5, metric=metric, **params).compute()[1]
    np.testing.assert_array_equal(got_i, want_i)
    want_d, want_i = knn_oracle(train.toarray(), None, 4, metric, **params)
    got_d, got_i = bd.knn(da.from_array(train, chunks=(70, -1), asarray=False), None, k=4, metric=metric,
                          **params).compute()  # fmt: skip
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("metric", "params"), SPARSE_KERNEL + DENSE_TILES[:3])
def test_radius_and_pairwise_equal_the_dense_oracle(metric, params, small_tiles):
    rng = np.random.default_rng(1)
    queries, train = _sparse(rng, 40), _near_duplicates(_sparse(rng, 230))
    matrix = distances(queries.toarray(), train.toarray(), metric, **params)
    radius = float(np.quantile(matrix, 0.9 if metric == "inner_product" else 0.1))
    inside = matrix >= radius if metric == "inner_product" else matrix <= radius
    for train_form in _forms(train):
        got_d, got_i = bd.radius_neighbors(queries, train_form, radius, metric, split_every=2, **params).compute()
        assert [set(row) for row in got_i] == [set(np.flatnonzero(row)) for row in inside]
        for row, (values, indices) in enumerate(zip(got_d, got_i, strict=True)):
            np.testing.assert_allclose(values, matrix[row, indices], rtol=1e-12, atol=1e-12)
    got = bd.pairwise_distances(queries, train, metric, **params).compute()
    np.testing.assert_allclose(got, matrix, rtol=1e-12, atol=1e-12)
    within = bd.pairwise_distances(train, None, metric, **params).compute()
    if metric != "inner_product":
        np.testing.assert_array_equal(np.diag(within), 0.0)
    expected = distances(train.toarray(), train.toarray(), metric, **params)
    if metric != "inner_product":
        np.fill_diagonal(expected, 0.0)  # the documented self-join diagonal (zero rows included)
    np.testing.assert_allclose(within, expected, rtol=1e-12, atol=1e-12)


def test_float32_sparse_keeps_float32_output():
    rng = np.random.default_rng(2)
    queries, train = _sparse(rng, 20, dtype=np.float32), _sparse(rng, 90, dtype=np.float32)
    result = bd.knn(queries, train, k=3)
    got_d, got_i = result.compute()
    assert got_d.dtype == np.float32
    want_d, want_i = knn_oracle(queries.toarray(), train.toarray(), 3)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d.astype(np.float32), rtol=1e-6)


def test_very_wide_rows_are_never_densified():
    # 2,000,000 features: one dense row is 16 MB, the dense matrices 5 GB; the sparse rows hold a few values each.
    rng = np.random.default_rng(3)
    train = sp.random(400, 2_000_000, density=5e-6, format="csr", random_state=rng)
    queries = sp.random(30, 2_000_000, density=5e-6, format="csr", random_state=rng)
    shared = sp.csr_matrix((np.ones(30), (np.arange(30), np.arange(30))), shape=(30, 2_000_000))
    queries = (queries + shared + train[:30]).tocsr()  # every query shares coordinates with a train row
    got_d, got_i = bd.knn(queries, train, k=3, metric="euclidean").compute()
    # Oracle: dense only over the columns either side uses (the other columns are zero on both sides).
    used = np.union1d(np.unique(queries.indices), np.unique(train.indices))
    want_d, want_i = knn_oracle(queries[:, used].toarray(), train[:, used].toarray(), 3)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-12)
    got_i = bd.knn(queries, train, k=3, metric="cosine").compute()[1]
    np.testing.assert_array_equal(
        got_i, knn_oracle(queries[:, used].toarray(), train[:, used].toarray(), 3, "cosine")[1]
    )


def test_estimators_take_sparse_input():
    rng = np.random.default_rng(4)
    train = sp.random(200, 25, density=0.3, format="csr", random_state=rng)
    train = train + sp.eye(200, 25, format="csr")  # no zero rows
    queries = sp.random(30, 25, density=0.3, format="csr", random_state=rng)
    labels = rng.integers(0, 3, 200)
    for metric in ("euclidean", "manhattan", "cosine"):
        ours = bd.NearestNeighbors(n_neighbors=4, metric=metric).fit(train)
        theirs = SkNearestNeighbors(n_neighbors=4, metric=metric, algorithm="brute").fit(train)
        got_d, got_i = ours.kneighbors(queries)
        want_d, want_i = theirs.kneighbors(queries)
        assert isinstance(got_i, np.ndarray)  # scipy.sparse in, NumPy out
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-10, atol=1e-12)
        predicted = bd.KNeighborsClassifier(5, metric=metric).fit(train, labels).predict(queries)
        np.testing.assert_array_equal(
            predicted, SkKNeighborsClassifier(5, metric=metric).fit(train, labels).predict(queries)
        )


def test_sparse_errors():
    rng = np.random.default_rng(5)
    data = _sparse(rng, 20)
    with pytest.raises(ParameterError, match=r"'seuclidean' does not take sparse input.*toarray"):
        bd.knn(data, None, k=2, metric="seuclidean")
    bad = data.copy()
    bad.data[3] = np.nan
    row = int(np.searchsorted(bad.indptr, 3, side="right") - 1)
    with pytest.raises(NonFiniteError, match=rf"holds NaN at row {row}, column {bad.indices[3]}"):
        bd.knn(bad, None, k=2).compute()
    np.testing.assert_allclose(cdist(data.toarray(), data.toarray())[0, 0], 0.0)


def test_kmeans_on_sparse_rows_equals_scikit_learn():
    rng = np.random.default_rng(6)
    centres = np.eye(4, 40) * 10
    dense = np.repeat(centres, 60, axis=0) * (rng.random((240, 40)) > 0.3)
    dense[:, 10:] = (rng.random((240, 30)) > 0.9) * rng.random((240, 30))
    data = sp.csr_matrix(dense)
    init = dense[[0, 60, 120, 180]]
    with dask.config.set({"bigdist.chunk-bytes": 40 * 8 * 25}):  # blocks of 25 dense rows
        ours = bd.KMeans(4, init=init, n_init=1, max_iter=50, tol=0).fit(data)
    theirs = SkKMeans(4, init=init, n_init=1, max_iter=50, tol=0, algorithm="lloyd").fit(data)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(data[:50]), theirs.predict(data[:50]))
    lazy = bd.kmeans(da.from_array(data, chunks=(70, -1), asarray=False), 4, init=init, max_iter=50, tol=0)
    np.testing.assert_allclose(lazy.centroids, theirs.cluster_centers_, rtol=1e-10, atol=1e-12)


def test_user_functions_take_sparse_rows_as_in_scikit_learn():
    # scikit-learn hands a callable metric 1-row sparse matrices when the input is sparse.
    def overlap(u, v):
        assert sp.issparse(u) and sp.issparse(v)
        return float(u.shape[1] - u.dot(v.T).toarray().item())

    rng = np.random.default_rng(6)
    train, queries = _sparse(rng, 40, integer=False), _sparse(rng, 7, integer=False)
    expected = SkNearestNeighbors(n_neighbors=3, metric=overlap, algorithm="brute").fit(train).kneighbors(queries)
    distances, indices = bd.NearestNeighbors(n_neighbors=3, metric=overlap).fit(train).kneighbors(queries)
    np.testing.assert_array_equal(indices, expected[1])
    np.testing.assert_allclose(distances, expected[0])
    matrix = bd.pairwise_distances(queries, train, metric=overlap).compute()
    np.testing.assert_allclose(matrix, sk_pairwise_distances(queries, train, metric=overlap))
