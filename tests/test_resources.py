"""Computing on the ambient scheduler: no import of distributed where no Client can exist, the Client where one does."""

import json
import subprocess
import sys

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, get_task_stream

import bigdist as bd
from bigdist import resources
from tests.oracle import knn_oracle

# A fresh interpreter: the test process has distributed imported already.
_FRESH_PROCESS = """
import json, sys
import numpy as np
import bigdist as bd
rng = np.random.default_rng(5)
queries, train = rng.standard_normal((40, 6)), rng.standard_normal((300, 6))
distances, indices = bd.knn(queries, train, k=4).compute()
after_knn = "distributed" in sys.modules
model = bd.KMeans(3, random_state=0).fit(train)
labels = model.predict(queries)
print(json.dumps({"after_knn": after_knn, "after_kmeans": "distributed" in sys.modules, "labels": labels.tolist(),
                  "centers": model.cluster_centers_.tolist(), "indices": indices.tolist(),
                  "distances": distances.tolist()}))
"""


def test_results_compute_without_importing_distributed():
    child = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], capture_output=True, text=True, check=True)
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert (report["after_knn"], report["after_kmeans"]) == (False, False)
    rng = np.random.default_rng(5)
    queries, train = rng.standard_normal((40, 6)), rng.standard_normal((300, 6))
    expected_distances, expected_indices = knn_oracle(queries, train, 4)
    np.testing.assert_array_equal(report["indices"], expected_indices)
    np.testing.assert_allclose(report["distances"], expected_distances, rtol=1e-12)
    nearest = knn_oracle(queries, np.array(report["centers"]), 1)[1][:, 0]
    np.testing.assert_array_equal(report["labels"], nearest)


def test_a_client_computes_when_there_is_one():
    values = da.arange(12, chunks=3)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            with get_task_stream(client) as stream:
                (total,) = resources.compute(values.sum())
            rng = np.random.default_rng(6)
            queries, train = rng.standard_normal((30, 5)), rng.standard_normal((200, 5))
            distances, indices = bd.knn(queries, train, k=3).compute()
    assert total == 66
    assert stream.data  # its tasks ran on the cluster
    np.testing.assert_array_equal(indices, knn_oracle(queries, train, 3)[1])
