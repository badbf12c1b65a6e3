"""kNN graphs fed to the real downstream packages: scikit-learn, scanpy / AnnData, umap-learn, HDBSCAN."""

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse
import sklearn.neighbors
import zarr
from click.testing import CliRunner
from sklearn.cluster import HDBSCAN

import bigdist as bd
from bigdist.cli.main import main
from bigdist.errors import InputShapeError, OutputExistsError, ParameterError
from tests.estimator_checks import estimator_checks
from tests.oracle import knn_oracle

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture
def blobs():
    rng = np.random.default_rng(8)
    centers = rng.uniform(-20, 20, size=(4, 6))
    rows = centers[rng.integers(0, 4, size=300)] + rng.standard_normal((300, 6))
    return rows.astype(np.float32)


def _oracle_graph(X, k, mode, include_self=False):
    """scikit-learn's kneighbors_graph of the float64 oracle's neighbours (independent of bigdist)."""
    if include_self:
        distances, indices = knn_oracle(X, X, k)
    else:
        distances, indices = knn_oracle(X, None, k)
    data = np.ones(indices.size) if mode == "connectivity" else distances.ravel()
    return scipy.sparse.csr_matrix((data, indices.ravel(), np.arange(0, indices.size + 1, k)), shape=(len(X), len(X)))


@pytest.mark.parametrize("mode", ["connectivity", "distance"])
@pytest.mark.parametrize("include_self", [False, True])
def test_kneighbors_graph_matches_scikit_learn(blobs, mode, include_self):
    ours = bd.kneighbors_graph(blobs, 7, mode=mode, include_self=include_self)
    theirs = sklearn.neighbors.kneighbors_graph(blobs.astype(np.float64), 7, mode=mode, include_self=include_self)
    assert ours.shape == theirs.shape and ours.nnz == theirs.nnz == 7 * len(blobs)
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)  # neighbour order too
    np.testing.assert_allclose(ours.data, theirs.data, rtol=1e-5, atol=1e-6)
    expected = _oracle_graph(blobs, 7, mode, include_self)
    np.testing.assert_array_equal(ours.indices, expected.indices)


def test_transformer_is_scikit_learns(blobs):
    for mode in ("distance", "connectivity"):
        ours = bd.KNeighborsTransformer(n_neighbors=6, mode=mode)
        theirs = sklearn.neighbors.KNeighborsTransformer(n_neighbors=6, mode=mode)
        fitted = ours.fit_transform(blobs)
        expected = theirs.fit_transform(blobs.astype(np.float64))
        assert fitted.shape == expected.shape and fitted.nnz == expected.nnz
        assert fitted.nnz == len(blobs) * (7 if mode == "distance" else 6)
        np.testing.assert_array_equal(fitted.indices, expected.indices)
        np.testing.assert_allclose(fitted.toarray(), expected.toarray(), rtol=1e-5, atol=1e-6)
        queries = blobs[:20] + 0.5
        np.testing.assert_allclose(
            ours.transform(queries).toarray(),
            theirs.transform(queries.astype(np.float64)).toarray(),
            rtol=1e-5,
            atol=1e-6,
        )
    assert bd.KNeighborsTransformer(n_neighbors=4).get_params()["n_neighbors"] == 4
    with pytest.raises(ParameterError, match="mode must be 'connectivity' or 'distance', got mode='dist'"):
        bd.KNeighborsTransformer(mode="dist").fit(blobs)


def test_transformer_puts_each_row_first_among_duplicates():
    rows = np.repeat(np.arange(10, dtype=np.float32)[:, None], 3, axis=0) * np.ones((1, 2), dtype=np.float32)
    graph = bd.KNeighborsTransformer(n_neighbors=3).fit_transform(rows)
    first = graph.indices[graph.indptr[:-1]]
    np.testing.assert_array_equal(first, np.arange(len(rows)))


def test_stored_graph_reads_as_csr_block_by_block(tmp_path, blobs):
    path = str(tmp_path / "nn.zarr")
    with dask.config.set({"bigdist.knn.query-block-rows": 70}):
        result = bd.knn(da.from_array(blobs, chunks=70), None, k=5)
        result.to_zarr(path)
    stored_rows = zarr.open_group(path, mode="r")["indices"].chunks[0]
    assert stored_rows < 300
    expected = _oracle_graph(blobs, 5, "distance")
    whole = bd.read_knn_graph(path)
    np.testing.assert_array_equal(whole.indices, expected.indices)
    np.testing.assert_allclose(whole.toarray(), expected.toarray(), rtol=1e-6)
    part = bd.read_knn_graph(path, rows=slice(65, 150), mode="connectivity", include_self=True)
    assert part.shape == (85, 300)
    np.testing.assert_array_equal(part.indices[part.indptr[:-1]], np.arange(65, 150))
    blocks = list(bd.iter_knn_graph(path))
    assert [start for start, _ in blocks] == list(range(0, 300, stored_rows))
    stacked = scipy.sparse.vstack([block for _, block in blocks]).tocsr()
    np.testing.assert_array_equal(stacked.toarray(), whole.toarray())
    sized = [block.shape[0] for _, block in bd.iter_knn_graph(result, block_rows=128)]
    assert sized == [128, 128, 44]
    # A search of queries in a separate train set: as many columns as train rows, recorded in the group.
    bd.knn(blobs[:40], blobs[:250], k=3).to_zarr(str(tmp_path / "q.zarr"))
    assert bd.read_knn_graph(str(tmp_path / "q.zarr")).shape == (40, 250)
    with pytest.raises(ParameterError, match=r"separate train set; compute the self-join"):
        bd.umap_knn(str(tmp_path / "q.zarr"))


def test_hdbscan_on_the_sparse_graph():
    # Blobs close enough for the kNN graph to be connected, as HDBSCAN requires.
    rng = np.random.default_rng(9)
    centers = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 3.2]])
    blobs = (centers[np.repeat(np.arange(3), 100)] + rng.standard_normal((300, 2)) * 0.8).astype(np.float32)
    k = 15
    ours = bd.kneighbors_graph(blobs, k, mode="distance", symmetric=True)
    theirs = sklearn.neighbors.kneighbors_graph(blobs.astype(np.float64), k, mode="distance")
    theirs = theirs.maximum(theirs.T)
    assert ours.nnz == theirs.nnz
    np.testing.assert_allclose(ours.toarray(), theirs.toarray(), rtol=1e-5, atol=1e-6)
    labels = HDBSCAN(metric="precomputed", min_samples=5, copy=True).fit_predict(ours)
    expected = HDBSCAN(metric="precomputed", min_samples=5, copy=True).fit_predict(theirs)
    np.testing.assert_array_equal(labels, expected)
    assert len(set(labels) - {-1}) >= 2


def test_umap_takes_the_precomputed_knn(blobs):
    umap = pytest.importorskip("umap")
    result = bd.knn(blobs, None, k=9)
    indices, distances = bd.umap_knn(result)
    expected_distances, expected_indices = knn_oracle(blobs, blobs, 10)
    np.testing.assert_array_equal(indices[:, 0], np.arange(len(blobs)))
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = umap.UMAP(n_neighbors=10, precomputed_knn=(indices, distances), n_epochs=20, random_state=0)
        embedding = model.fit_transform(blobs)
    assert embedding.shape == (len(blobs), 2) and np.isfinite(embedding).all()
    np.testing.assert_array_equal(model._knn_indices, indices)
    # umap-learn's own fuzzy simplicial set of our kNN equals ours, except where its fit zeroed the
    # memberships below 1 / n_epochs (edges never sampled in 20 epochs).
    ours = bd.umap_connectivities(indices, distances)
    theirs = model.graph_.tocsr()
    assert ours.nnz == theirs.nnz
    kept = theirs.data > 0
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_allclose(ours.data[kept], theirs.data[kept], rtol=1e-5)
    assert (ours.data[~kept] < 1 / 20).all()


def test_scanpy_neighbors_with_the_transformer(blobs):
    sc = pytest.importorskip("scanpy")
    anndata = pytest.importorskip("anndata")
    ours = anndata.AnnData(X=blobs.copy())
    sc.pp.neighbors(ours, transformer=bd.KNeighborsTransformer(n_neighbors=15), use_rep="X")
    theirs = anndata.AnnData(X=blobs.copy())
    sc.pp.neighbors(theirs, transformer=sklearn.neighbors.KNeighborsTransformer(n_neighbors=15), use_rep="X")
    for key in ("distances", "connectivities"):
        difference = abs(ours.obsp[key] - theirs.obsp[key])
        assert difference.max() < 1e-5, key
    assert ours.uns["neighbors"]["params"]["n_neighbors"] == 15


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_written_neighbours_are_what_scanpy_computes(tmp_path, blobs, suffix):
    sc = pytest.importorskip("scanpy")
    anndata = pytest.importorskip("anndata")
    store = str(tmp_path / f"cells{suffix}")
    adata = anndata.AnnData(X=blobs.copy(), obsm={"X_pca": blobs[:, :4].copy()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's notice about the zarr format version
        adata.write_h5ad(store) if suffix == ".h5ad" else adata.write_zarr(store)
    result = bd.knn(f"{store}#obsm/X_pca", None, k=14)
    bd.write_anndata_neighbors(store, result, use_rep="X_pca")
    written = anndata.read_h5ad(store) if suffix == ".h5ad" else anndata.read_zarr(store)
    expected = anndata.AnnData(X=blobs.copy(), obsm={"X_pca": blobs[:, :4].copy()})
    # scanpy's own brute-force path and its own connectivities: the oracle.
    sc.pp.neighbors(expected, n_neighbors=15, use_rep="X_pca", transformer="sklearn")
    for key in ("distances", "connectivities"):
        assert written.obsp[key].shape == (300, 300)
        assert abs(written.obsp[key] - expected.obsp[key]).max() < 1e-5, key
        np.testing.assert_array_equal(written.obsp[key].indptr, expected.obsp[key].indptr)
    assert written.uns["neighbors"]["params"]["n_neighbors"] == 15
    assert written.uns["neighbors"]["params"]["use_rep"] == "X_pca"
    np.testing.assert_array_equal(written.X, blobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.umap(written, maxiter=10)
    assert written.obsm["X_umap"].shape == (300, 2)
    with pytest.raises(OutputExistsError, match=r"already holds obsp/distances.*overwrite=True.*key_added="):
        bd.write_anndata_neighbors(store, result)
    bd.write_anndata_neighbors(store, result, key_added="pca")
    again = anndata.read_h5ad(store) if suffix == ".h5ad" else anndata.read_zarr(store)
    assert again.uns["pca"]["distances_key"] == "pca_distances" and "pca_connectivities" in again.obsp
    with pytest.raises(InputShapeError, match=r"has 300 observations and the kNN graph 50 rows"):
        bd.write_anndata_neighbors(store, bd.knn(blobs[:50], None, k=3), overwrite=True)


def test_inner_products_are_refused_where_distances_are_needed(blobs):
    result = bd.knn(blobs, None, k=3, metric="inner_product")
    with pytest.raises(ParameterError, match=r"holds inner products; use metric='cosine'"):
        bd.umap_knn(result)


def test_export_command(tmp_path, blobs):
    anndata = pytest.importorskip("anndata")
    graph = str(tmp_path / "nn.zarr")
    bd.knn(blobs, None, k=5).to_zarr(graph)
    runner = CliRunner()

    def run(*args):
        outcome = runner.invoke(main, ["export", graph, *map(str, args)], catch_exceptions=False)
        return outcome.exit_code, outcome.output

    code, output = run("--format", "csr", "--out", tmp_path / "g.npz")
    assert code == 0, output
    np.testing.assert_allclose(
        scipy.sparse.load_npz(tmp_path / "g.npz").toarray(), _oracle_graph(blobs, 5, "distance").toarray(), rtol=1e-6
    )
    code, output = run("--format", "csr", "--out", tmp_path / "g.npz")
    assert code == 1 and "exists; pass --overwrite" in output
    code, output = run("--format", "umap", "--out", tmp_path / "knn")
    assert code == 1 and "give a path ending in .npz" in output
    code, output = run("--format", "umap", "--out", tmp_path / "knn.npz")
    assert code == 0, output
    with np.load(tmp_path / "knn.npz") as stored:
        np.testing.assert_array_equal(stored["knn_indices"], knn_oracle(blobs, blobs, 6)[1])
    anndata.AnnData(X=blobs).write_h5ad(tmp_path / "cells.h5ad")
    code, output = run("--format", "anndata", "--out", tmp_path / "cells.h5ad")
    assert code == 0, output
    assert anndata.read_h5ad(tmp_path / "cells.h5ad").obsp["distances"].nnz == 5 * len(blobs)
    assert list(tmp_path.glob(".bigdist-export-*")) == []


@estimator_checks([bd.KNeighborsTransformer()])
def test_transformer_estimator_checks(estimator, check):
    check(estimator)
