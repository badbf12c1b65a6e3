"""Fixtures of the tests of the waves: a train store on disk, a process cluster of their own."""

import pytest
from distributed import Client, LocalCluster

from bigdist.io import make_random


@pytest.fixture
def train_store(tmp_path):
    path = str(tmp_path / "train.zarr")
    make_random(path, 1300, 6, chunk_rows=100, random_state=4)
    return path


@pytest.fixture(scope="module")
def cluster_client():
    # A cluster of its own (not distributed.utils_test's client fixture, whose thread-leak check trips over
    # the I/O threads zarr starts on demand in this process).
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client
