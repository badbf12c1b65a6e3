"""Labelled and radius neighbours on a real distributed cluster give what the synchronous scheduler gives."""

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from sklearn.neighbors import KNeighborsClassifier as SkClassifier

import bigdist as bd


def _data():
    rng = np.random.default_rng(12)
    train = rng.standard_normal((2000, 6))
    labels = (train[:, 0] > 0).astype(np.int64) + (train[:, 1] > 0.5)
    return rng.standard_normal((250, 6)), train, labels


def test_classifier_and_radius_on_a_cluster(tmp_path):
    queries, train, labels = _data()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, Client(cluster), dask.config.set({"bigdist.knn.query-block-rows": 60}):
        model = bd.KNeighborsClassifier(6, weights="distance", split_every=2).fit(
            da.from_array(train, chunks=(450, 6)), da.from_array(labels, chunks=700)
        )
        probabilities = model.predict_proba(da.from_array(queries, chunks=(100, 6)))
        on_cluster = probabilities.compute()
        result = bd.radius_neighbors(queries, da.from_array(train, chunks=(300, 6)), 1.2, split_every=2)
        result.to_zarr(str(tmp_path / "radius.zarr"))
        stored = bd.io.read_group(str(tmp_path / "radius.zarr"))
        with dask.config.set(scheduler="synchronous"):
            np.testing.assert_array_equal(on_cluster, probabilities.compute())
            indptr, indices, distances = result.to_csr()
    expected = SkClassifier(6, weights="distance", algorithm="brute").fit(train, labels).predict_proba(queries)
    np.testing.assert_allclose(on_cluster, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(stored["indptr"].compute(), indptr)
    np.testing.assert_array_equal(stored["indices"].compute(), indices)
    np.testing.assert_array_equal(stored["distances"].compute(), distances)
    assert indptr[-1] > 1000


def test_radius_with_a_direct_metric_on_a_cluster():
    # The compiled direct tiles release the GIL: two worker threads run them at once.
    queries, train, _ = _data()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, Client(cluster), dask.config.set({"bigdist.knn.query-block-rows": 60}):
        result = bd.radius_neighbors(
            queries, da.from_array(train, chunks=(300, 6)), 2.0, "minkowski", p=3, sort_results=True, split_every=2
        )
        on_cluster = result.to_csr()
    with dask.config.set(scheduler="synchronous"):
        expected = bd.radius_neighbors(queries, train, 2.0, "minkowski", p=3, sort_results=True).to_csr()
    for left, right in zip(on_cluster, expected, strict=True):
        np.testing.assert_array_equal(left, right)
    assert on_cluster[0][-1] > 1000
