import pytest
from distributed import LocalCluster


@pytest.fixture(scope="module")
def scheduler():
    """A scheduler address the CLI runs connect to (a threaded LocalCluster per test module)."""
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address
