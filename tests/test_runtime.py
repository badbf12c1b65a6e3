import time

import dask
import pytest
from dask.system import CPU_COUNT
from distributed import LocalCluster
from distributed.scheduler import KilledWorker, NoValidWorkerError, NoWorkerError

from bigdist import runtime
from bigdist.errors import ClusterError, SchedulerUnreachableError


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


@pytest.mark.parametrize("n_workers", [1, 2])
def test_local_cluster_shares_the_cores_with_blas(n_workers):
    with runtime.start(n_workers=n_workers, dashboard_address="127.0.0.1:0") as client:
        threads = client.run(_blas_threads)
    share = max(1, CPU_COUNT // n_workers)
    assert all(count == [share] * len(count) for count in threads.values())


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


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (
            lambda: KilledWorker(("bigdist-knn-tile-x", 3, 0), "tcp://127.0.0.1:40000", 3),
            r"'bigdist-knn-tile-x', 3, 0\) was running on Dask workers that died 4 times.*runtime.memory-limit",
        ),
        (
            lambda: NoWorkerError(("x", 0), 60.0),
            r"no Dask worker was running for 60.0 s.*runtime.no-workers-timeout",
        ),
        (
            lambda: NoValidWorkerError(("x", 0), {"gpu-host"}, set(), {}, 5),
            r"no Dask worker could run task \('x', 0\) within 5 s.*gpu-host",
        ),
    ],
    ids=["killed-worker", "no-workers", "no-valid-worker"],
)
def test_cluster_failures_become_clear_errors(raised, message):
    with pytest.raises(ClusterError, match=message):
        with runtime.cluster_errors():
            raise raised()


def test_no_workers_timeout_reaches_the_local_scheduler():
    with dask.config.set({"bigdist.runtime.no-workers-timeout": "7s"}):
        with runtime.start(n_workers=1, dashboard_address="127.0.0.1:0") as client:
            timeout = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.no_workers_timeout)
    assert timeout == 7


def test_remote_scheduler_without_no_workers_timeout_is_reported(caplog):
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with runtime.start(scheduler=cluster.scheduler_address):
            pass
        assert "has no distributed.scheduler.no-workers-timeout" in caplog.text
        caplog.clear()
        cluster.scheduler.no_workers_timeout = 30.0
        with runtime.start(scheduler=cluster.scheduler_address):
            pass
        assert "no-workers-timeout" not in caplog.text
