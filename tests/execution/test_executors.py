"""The local executors of the waves: a bounded window refilled as tasks finish, inline when synchronous."""

from __future__ import annotations

import importlib
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
import pytest
from dask.system import CPU_COUNT

import bigdist as bd
from bigdist.blas import blas_threads, dask_threads
from bigdist.errors import CorruptChunkError
from bigdist.execution import executors, passes
from bigdist.execution.passes import PassColumn, run_pass
from bigdist.execution.sources import InputRows
from bigdist.execution.waves import BlockWork, run_blocks
from bigdist.kernels.meanshift import meanshift_chunk, meanshift_combine
from bigdist.reductions import block_tree_reduce
from tests.execution.test_kmeans_waves import _lloyd_oracle

meanshift = importlib.import_module("bigdist.meanshift")  # the module, which bigdist's meanshift function hides
ROWS = 4  # rows per block
# A task blocked on an event gives up after this long, so a broken runner fails the test instead of hanging it.
STUCK = 60.0


def _rows(n_blocks: int) -> tuple[np.ndarray, InputRows]:
    X = np.arange(n_blocks * ROWS * 3, dtype=np.int64).reshape(-1, 3)
    return X, InputRows(da.from_array(X, chunks=(ROWS, 3)))


def _sum_pass(n_blocks: int, hook, *, progress=None, window=None) -> None:
    """A pass summing the rows, ``hook(block_index)`` in each task; checks the sum against NumPy's."""
    X, rows = _rows(n_blocks)

    def chunk(block, first_row):
        hook(first_row // ROWS)
        return block.sum(axis=0)

    (total,), _ = run_pass(rows, [PassColumn(chunk, sum)], split_every=2, name="t", what="t", progress=progress,
                           window=window)  # fmt: skip
    np.testing.assert_array_equal(total, X.sum(axis=0))


def _blocks_job(n_blocks: int, hook) -> None:
    """run_blocks over blocks of two panels, ``hook(block_index)`` in the first panel; checks what each finish got."""
    X, _ = _rows(n_blocks)
    written: dict[int, int] = {}

    def panel(i, half):
        if half == 0:
            hook(i)
        return int(X[i * ROWS : (i + 1) * ROWS, half].sum())

    def finish(partials, i):
        written[i] = sum(partials)

    blocks = (BlockWork(i, [(panel, (i, 0)), (panel, (i, 1))], sum, finish, (i,)) for i in range(n_blocks))
    run_blocks(blocks, total=n_blocks, split_every=2, name="t", what="t")
    expected = X[:, :2].reshape(n_blocks, ROWS, 2).sum(axis=(1, 2))
    assert [written[i] for i in range(n_blocks)] == expected.tolist()


class _InFlight:
    """Calls submitted to an executor and not yet handed back by it: the most at once."""

    def __init__(self, monkeypatch, cls) -> None:
        self.now = self.most = self.submitted = 0
        submit, completed = cls.submit, cls.completed

        def counted_submit(executor, *args, **kwargs):
            self.now += 1
            self.submitted += 1
            self.most = max(self.most, self.now)
            return submit(executor, *args, **kwargs)

        def counted_completed(executor):
            for item in completed(executor):
                self.now -= 1
                yield item

        monkeypatch.setattr(cls, "submit", counted_submit)
        monkeypatch.setattr(cls, "completed", counted_completed)


@pytest.mark.parametrize("job", ["pass", "blocks", "labels"])
def test_threads_keep_at_most_the_window_in_flight_and_fill_it(monkeypatch, tmp_path, job):
    seen = _InFlight(monkeypatch, executors.ThreadExecutor)
    with dask.config.set({"scheduler": "threads", "num_workers": 3, "bigdist.execution.tasks-per-thread": 2}):
        if job == "pass":
            _sum_pass(20, lambda i: None)
        elif job == "blocks":
            _blocks_job(12, lambda i: None)
        else:
            X, _ = _rows(20)
            result = bd.kmeans(da.from_array(X.astype(np.float64), chunks=(ROWS, 3)), 3, max_iter=2, random_state=0)
            result.to_zarr(str(tmp_path / "km.zarr"))
    assert seen.most == 3 * 2  # the window (3 threads x 2), filled before anything came back
    assert seen.submitted > seen.most


@pytest.mark.parametrize("job", ["pass", "blocks"])
def test_a_slow_task_does_not_hold_back_the_others(job):
    # Block 0's task waits until the last block's task has run. A runner that waits for every task of a wave
    # before starting the next would never reach the last block while block 0 waits.
    n_blocks = 10
    last_ran = threading.Event()
    released: list[bool] = []

    def hook(i):
        if i == 0 and not released:
            released.append(last_ran.wait(STUCK))
        elif i == n_blocks - 1:
            last_ran.set()

    with dask.config.set({"scheduler": "threads", "num_workers": 2, "bigdist.execution.tasks-per-thread": 2}):
        _sum_pass(n_blocks, hook) if job == "pass" else _blocks_job(n_blocks, hook)
    assert released == [True]


@pytest.mark.parametrize("given_as", ["pool", "scheduler"])
def test_configured_thread_pool_runs_the_tasks_and_sets_the_blas_share(given_as):
    pool = ThreadPoolExecutor(3, thread_name_prefix="users-pool")
    seen: list[tuple[str, int, int]] = []

    def hook(i):
        seen.append((threading.current_thread().name, dask_threads(), blas_threads()))

    try:
        settings = {"scheduler": "threads", "pool": pool} if given_as == "pool" else {"scheduler": pool}
        with dask.config.set(settings):
            assert executors.local_threads() == 3
            _sum_pass(6, hook)
    finally:
        pool.shutdown()
    assert all(name.startswith("users-pool") for name, _, _ in seen)
    assert {(threads, share) for _, threads, share in seen} == {(3, max(1, CPU_COUNT // 3))}


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_own_pool_has_the_threads_of_the_config_and_blas_shares_the_cores(workers):
    seen: list[tuple[bool, int, int]] = []

    def hook(i):
        seen.append((threading.current_thread() is threading.main_thread(), dask_threads(), blas_threads()))

    with dask.config.set({"scheduler": "threads", "num_workers": workers}):
        _sum_pass(6, hook)
    assert {(main, threads, share) for main, threads, share in seen} == {(False, workers, max(1, CPU_COUNT // workers))}


def test_synchronous_runs_inline_in_order(synchronous):
    seen: list[tuple[int, bool, int]] = []

    def hook(i):
        seen.append((i, threading.current_thread() is threading.main_thread(), blas_threads()))

    _sum_pass(7, hook, window=3)
    assert seen == [(i, True, CPU_COUNT) for i in range(7)]


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_a_task_error_is_raised_as_itself_and_nothing_more_is_submitted(monkeypatch, scheduler):
    # Block 0 fails at once; the other tasks of the window wait until the run has raised.
    raised = threading.Event()
    started: list[int] = []

    def hook(i):
        started.append(i)
        if i == 0:
            raise CorruptChunkError("chunk c/0/0 of data.zarr fails its checksum")
        raised.wait(STUCK)

    cls = executors.InlineExecutor if scheduler == "synchronous" else executors.ThreadExecutor
    seen = _InFlight(monkeypatch, cls)
    with dask.config.set({"scheduler": scheduler, "num_workers": 2}):
        with pytest.raises(CorruptChunkError, match="c/0/0 of data.zarr"):
            _sum_pass(30, hook, window=4)
    raised.set()
    assert seen.submitted == 4  # the first window, and nothing after the error
    if scheduler == "synchronous":
        assert started == [0]
    else:
        # Block 3 was still queued behind the two threads when the error came back: cancelled, never run.
        assert 0 in started and set(started) <= {0, 1, 2}  # blocks 0 and 1 start together, in either order


def test_ctrl_c_stops_at_once_and_drops_the_queued_tasks():
    # Blocks 1 and 2 hold both threads; Ctrl-C comes with block 0's progress; blocks 3.. never run.
    gate = threading.Event()
    started: list[int] = []
    finished = threading.Semaphore(0)

    def hook(i):
        started.append(i)
        if i > 0:
            gate.wait(STUCK)
            finished.release()

    def progress(done, total, elapsed):
        raise KeyboardInterrupt

    with dask.config.set({"scheduler": "threads", "num_workers": 2}):
        with pytest.raises(KeyboardInterrupt):
            _sum_pass(20, hook, progress=progress, window=8)
    assert not finished.acquire(blocking=False)  # returned while its running tasks still waited
    gate.set()
    for _ in range(len(started) - 1):
        assert finished.acquire(timeout=STUCK)
    # Blocks 0 and 1 start together: which thread records its start first is a race, not part of the contract.
    assert 0 in started and set(started) <= {0, 1, 2}


def test_processes_scheduler_runs_per_window_compute_with_the_same_results(synchronous):
    rng = np.random.default_rng(0)
    X = da.from_array(rng.normal(size=(300, 4)), chunks=(40, 4))
    expected = bd.kmeans(X, 4, max_iter=5, random_state=0)
    with ProcessPoolExecutor(2) as pool, dask.config.set({"scheduler": "processes", "pool": pool}):
        got = bd.kmeans(X, 4, max_iter=5, random_state=0)
        labels = got.labels.compute()
    np.testing.assert_array_equal(got.centroids, expected.centroids)
    np.testing.assert_array_equal(labels, expected.labels.compute(scheduler="sync"))
    assert got.inertia == expected.inertia and got.n_iter == expected.n_iter


def test_other_pools_run_per_window_compute(monkeypatch):
    import multiprocessing.pool

    waves: list[int] = []
    compute = dask.compute

    def counted(*calls, **kwargs):
        waves.append(len(calls))
        return compute(*calls, **kwargs)

    monkeypatch.setattr(executors.dask, "compute", counted)
    with multiprocessing.pool.ThreadPool(2) as pool, dask.config.set({"scheduler": "threads", "pool": pool}):
        _sum_pass(9, lambda i: None, window=4)
    assert waves == [4, 4, 1]


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
@pytest.mark.parametrize("window", [1, 2, 7])
def test_meanshift_pass_is_bitwise_the_single_graph_for_any_window(monkeypatch, scheduler, window):
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(c, 0.5, size=(90, 3)) for c in (0, 3, 6)])
    A = da.from_array(X, chunks=((37, 100, 13, 90, 30), 3))
    seeds = X[::7]
    expected = []
    for start in range(0, len(seeds), 10):
        chunk = lambda block, first, s=seeds[start : start + 10]: meanshift_chunk(  # noqa: E731
            block, first, s, bandwidth=1.5, kernel="gaussian"
        )
        expected.append(
            block_tree_reduce(A, chunk, meanshift_combine, split_every=2, name="o").compute(scheduler="sync")
        )
    monkeypatch.setattr(passes, "window_size", lambda client=None: window)
    monkeypatch.setattr(meanshift, "threads", lambda: 2)  # seed blocks of 10 whatever the machine's cores
    with dask.config.set({"scheduler": scheduler, "num_workers": 2, "bigdist.meanshift.seed-block-rows": 10}):
        got = meanshift._pass(InputRows(A), seeds, 1.5, "gaussian", 2)
    for key in got:
        np.testing.assert_array_equal(got[key], np.concatenate([state[key] for state in expected]))


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
@pytest.mark.parametrize("window", [1, 2, 7])
def test_kmeans_is_bitwise_the_single_graph_for_any_window(monkeypatch, scheduler, window):
    rng = np.random.default_rng(3)
    centres = rng.uniform(-10, 10, size=(6, 5))
    X = (centres[rng.integers(6, size=700)] + rng.normal(size=(700, 5))).astype(np.float32)
    chunks = (37, 200, 13, 250, 100, 100)
    init = X[[0, 100, 200, 300, 400, 500, 600]]
    expected = _lloyd_oracle(X, chunks, init, 30, 1e-6, 2)
    monkeypatch.setattr(passes, "window_size", lambda client=None: window)
    with dask.config.set({"bigdist.kmeans.bounds": "always", "scheduler": scheduler, "num_workers": 2}):
        got = bd.kmeans(da.from_array(X, chunks=(chunks, 5)), 7, init=init, max_iter=30, tol=1e-6, split_every=2)
        labels = got.labels.compute()
    np.testing.assert_array_equal(got.centroids, expected[0])
    np.testing.assert_array_equal(labels, expected[1])
    assert got.inertia == expected[2] and got.n_iter == expected[3]
