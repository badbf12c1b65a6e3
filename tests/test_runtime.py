import time

import dask
import pytest

from bigdist import runtime
from bigdist.errors import SchedulerUnreachableError


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_local_cluster_on_loopback_with_blas_limit():
    with dask.config.set({"bigdist.runtime.blas-threads": 1}):
        with runtime.start(n_workers=1, dashboard_address="127.0.0.1:0") as client:
            assert "127.0.0.1" in client.dashboard_link
            assert client.scheduler.address.startswith("tcp://127.0.0.1")
            threads = client.run(_blas_threads)
    assert all(count == [1] * len(count) for count in threads.values())


def test_unreachable_scheduler_fails_fast_and_names_it():
    start = time.perf_counter()
    with dask.config.set({"bigdist.runtime.connect-timeout": 2}):
        with pytest.raises(SchedulerUnreachableError, match="tcp://127.0.0.1:1"):
            with runtime.start(scheduler="tcp://127.0.0.1:1"):
                pass
    assert time.perf_counter() - start < 15


def test_missing_scheduler_file(tmp_path):
    with pytest.raises(SchedulerUnreachableError, match="nope.json"):
        with runtime.start(scheduler_file=str(tmp_path / "nope.json")):
            pass
