"""BLAS threads inside bigdist's tasks on every scheduler, and nothing left changed after a call."""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np
import pytest
from dask.system import CPU_COUNT
from distributed import Client, LocalCluster
from threadpoolctl import threadpool_info

import bigdist as bd
from bigdist import blas
from bigdist.reductions import map_row_blocks
from tests.oracle import knn_oracle


def blas_counts() -> list[int]:
    """Thread counts of the BLAS libraries loaded in this process, in a fixed order."""
    return [
        pool["num_threads"]
        for pool in sorted(threadpool_info(), key=lambda p: p["filepath"])
        if pool["user_api"] == "blas"
    ]


def probe_chunk(block: np.ndarray, first_row: int) -> np.ndarray:
    """A task kernel that reports the most BLAS threads any loaded library would use, once per row."""
    return np.full(len(block), max(blas_counts()), dtype=np.int64)


def _probed(n_blocks: int = 4) -> da.Array:
    X = da.zeros((8 * n_blocks, 3), chunks=(8, 3))
    return map_row_blocks(X, probe_chunk, dtype=np.int64, name="bigdist-test-blas-probe")


def _expected(threads: int, before: list[int]) -> int:
    return max(1, min(max(before), CPU_COUNT // threads))


@pytest.fixture
def unchanged():
    """The BLAS thread counts of this process are the same after the test as before it."""
    np.ones(2) @ np.ones(2)  # NumPy's BLAS loaded
    import scipy.linalg.cython_blas  # noqa: F401  (SciPy's, used by numba's np.dot)

    before = blas_counts()
    assert len(before) >= 1
    yield before
    assert blas_counts() == before


@pytest.mark.parametrize("num_workers", [1, 2, 4])
def test_threaded_scheduler(unchanged, num_workers):
    seen = _probed().compute(scheduler="threads", num_workers=num_workers)
    assert set(seen.tolist()) == {_expected(num_workers, unchanged)}


def test_threaded_scheduler_default_pool(unchanged):
    seen = _probed().compute(scheduler="threads")
    assert set(seen.tolist()) == {_expected(CPU_COUNT, unchanged)}


def test_synchronous_scheduler_keeps_every_core(unchanged):
    seen = _probed().compute(scheduler="sync")
    assert set(seen.tolist()) == {max(unchanged)}


def test_processes_scheduler():
    # Each process of the pool (one per core) runs one task at a time with one BLAS thread.
    seen = _probed(2).compute(scheduler="processes", num_workers=2)
    assert set(seen.tolist()) == {1}


def test_configured_threads_win(unchanged):
    with dask.config.set({"bigdist.runtime.blas-threads": 1}):
        seen = _probed().compute(scheduler="sync")
    assert set(seen.tolist()) == {1}


@pytest.mark.parametrize(("n_workers", "threads_per_worker"), [(1, 2), (2, 1), (1, 1)])
def test_user_client_in_process(unchanged, n_workers, threads_per_worker):
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        seen = _probed().compute()
        assert set(seen.tolist()) == {_expected(n_workers * threads_per_worker, unchanged)}
        # Between calls the workers' process (this one) has its BLAS as before.
        assert blas_counts() == unchanged


def test_user_client_worker_processes():
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        seen = _probed().compute()
    # distributed's nanny starts workers with OPENBLAS_NUM_THREADS=1; a task never raises it.
    assert set(seen.tolist()) == {1}


def _hold_until_alone(block: np.ndarray, first_row: int) -> np.ndarray:
    """The first block finishes at once; the others wait until they are the only task holding the limit."""
    if first_row:
        deadline = time.monotonic() + 10
        while blas._active > 1 and time.monotonic() < deadline:
            time.sleep(0.005)
    return probe_chunk(block, first_row)


def test_limit_held_until_the_last_task_ends(unchanged):
    X = da.zeros((16, 3), chunks=(8, 3))
    tasks = map_row_blocks(X, _hold_until_alone, dtype=np.int64, name="bigdist-test-blas-hold")
    seen = tasks.compute(scheduler="threads", num_workers=2)
    # The second task still ran limited after the first one had ended and left.
    assert set(seen.tolist()) == {_expected(2, unchanged)}


def test_knn_exact_under_threaded_scheduler(unchanged):
    rng = np.random.default_rng(12)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    Q = rng.standard_normal((50, 16)).astype(np.float32)
    with dask.config.set(scheduler="threads", num_workers=2):
        res = bd.knn(da.from_array(Q, chunks=20), da.from_array(X, chunks=70), k=5)
        distances, indices = dask.compute(res.distances, res.indices)
    want_d, want_i = knn_oracle(Q, X, 5)
    np.testing.assert_array_equal(indices, want_i)
    np.testing.assert_allclose(distances, want_d, rtol=1e-6)
