"""Distance matrices and kNN with direct metrics on a real distributed cluster (worker processes)."""

import dask
import dask.array as da
import numpy as np
from distributed.utils_test import (  # noqa: F401  (pytest fixtures)
    cleanup,
    client,
    cluster_fixture,
    loop,
    loop_in_thread,
)

import bigdist as bd
from tests.oracle import distances, knn_oracle


def test_pairwise_and_direct_knn_on_worker_processes_equal_synchronous(client):  # noqa: F811
    rng = np.random.default_rng(12)
    train = rng.random((900, 10)).astype(np.float32)
    queries = rng.random((120, 10)).astype(np.float32)
    train_dask = da.from_array(train, chunks=((250, 1, 400, 249), (10,)))
    with dask.config.set({"bigdist.chunk-bytes": 16384, "bigdist.knn.query-block-rows": 40}):
        matrices = [bd.pairwise_distances(queries, train_dask, metric) for metric in ("manhattan", "correlation")]
        neighbours = bd.knn(queries, train_dask, k=5, metric="chi2", split_every=2)
        computed = dask.compute(*matrices, neighbours.distances, neighbours.indices)
        with dask.config.set(scheduler="synchronous"):
            synchronous = dask.compute(*matrices, neighbours.distances, neighbours.indices)
    for ours, sync in zip(computed, synchronous, strict=True):
        np.testing.assert_array_equal(ours, sync)
    np.testing.assert_allclose(computed[0], distances(queries, train, "manhattan"), rtol=1e-6)
    np.testing.assert_allclose(computed[1], distances(queries, train, "correlation"), rtol=1e-5, atol=1e-6)
    expected_distances, expected_indices = knn_oracle(queries, train, 5, "chi2")
    np.testing.assert_array_equal(computed[3], expected_indices)
    np.testing.assert_allclose(computed[2], expected_distances, rtol=1e-6)
