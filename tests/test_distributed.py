"""kNN on real distributed clusters gives what the synchronous scheduler gives."""

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from distributed.utils_test import (  # noqa: F401  (pytest fixtures)
    cleanup,
    client,
    cluster_fixture,
    loop,
    loop_in_thread,
)

import bigdist as bd
from tests.oracle import knn_oracle


def _data():
    rng = np.random.default_rng(11)
    train = (rng.standard_normal((3000, 24)) + 1e4).astype(np.float32)
    queries = (rng.standard_normal((300, 24)) + 1e4).astype(np.float32)
    return queries, train


def test_distributed_client_equals_synchronous_and_oracle(client):  # noqa: F811
    queries, train = _data()
    config = {"bigdist.knn.query-block-rows": 64, "bigdist.knn.tile-train-rows": 256}
    with dask.config.set(config):
        result = bd.knn(da.from_array(queries, chunks=100), da.from_array(train, chunks=400), k=6, split_every=2)
        distances, indices = result.compute()
        with dask.config.set(scheduler="synchronous"):
            sync_distances, sync_indices = result.compute()
    np.testing.assert_array_equal(indices, sync_indices)
    np.testing.assert_array_equal(distances, sync_distances)
    expected_distances, expected_indices = knn_oracle(queries, train, 6)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-6)


def test_local_cluster_worker_count_does_not_matter():
    queries, train = _data()
    results = []
    for n_workers in (1, 3):
        with LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster:
            with Client(cluster):
                results.append(bd.knn(queries, da.from_array(train, chunks=250), k=4).compute())
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][0], results[1][0])
