"""Kernels loaded ahead on a thread of their own: where the tasks run (here or in each worker), once per kind and
process, failures left to the call."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster

import bigdist as bd
from bigdist import warmup

# The module, which the package's function of the same name hides.
kmeans_module = sys.modules["bigdist.kmeans"]


@pytest.fixture(autouse=True)
def no_keys_started(monkeypatch):
    monkeypatch.setattr(warmup, "_started", set())


def _join_warm_ups() -> None:
    for thread in threading.enumerate():
        if thread.name == "bigdist-warm-up":
            thread.join(timeout=60)


def test_a_kind_is_loaded_once_on_a_daemon_thread():
    calls = []

    def kernel(value, *, scale):
        calls.append((value * scale, threading.current_thread().name, threading.current_thread().daemon))

    warmup.warm_up("kind", kernel, 2, scale=3)
    warmup.warm_up("kind", kernel, 5, scale=7)
    warmup.warm_up("other kind", kernel, 1, scale=1)
    _join_warm_ups()
    assert sorted(calls) == [(1, "bigdist-warm-up", True), (6, "bigdist-warm-up", True)]


def test_a_failing_load_is_only_logged(caplog, monkeypatch):
    raised = []
    monkeypatch.setattr(threading, "excepthook", raised.append)

    def kernel():
        raise ValueError("tiny inputs refused")

    with caplog.at_level(logging.DEBUG, logger="bigdist.warmup"):
        warmup.warm_up("failing", kernel)
        _join_warm_ups()
    assert not raised
    assert any("tiny inputs refused" in (record.exc_text or "") for record in caplog.records)


def test_nothing_is_loaded_under_the_processes_scheduler():
    calls = []
    with dask.config.set(scheduler="processes"):
        assert not warmup.kernels_run_here()
        warmup.warm_up("kind", calls.append, "processes")
    _join_warm_ups()
    assert calls == []
    # Not marked loaded, so loaded by the next call that runs its tasks here.
    assert warmup.kernels_run_here()
    warmup.warm_up("kind", calls.append, "threads")
    _join_warm_ups()
    assert calls == ["threads"]


def _record_process(folder: str) -> None:
    # One file per process that ran the loader, one line per run (the arguments reach a worker pickled).
    with open(os.path.join(folder, str(os.getpid())), "a") as log:
        log.write("loaded\n")


def _wait_for_files(folder, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # time for a second load, were there one


def test_on_a_client_each_worker_process_loads_once_and_the_client_never(tmp_path):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            assert not warmup.kernels_run_here()
            warmup.warm_up("kind", _record_process, str(tmp_path))
            warmup.warm_up("kind", _record_process, str(tmp_path))  # the same kind: not again
            worker_pids = set(client.run(os.getpid).values())
            _wait_for_files(tmp_path, 2)
    assert {int(name) for name in os.listdir(tmp_path)} == worker_pids
    assert os.getpid() not in worker_pids
    assert all((tmp_path / name).read_text() == "loaded\n" for name in os.listdir(tmp_path))


def test_with_workers_in_this_process_it_loads_here_once(tmp_path):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster):
            assert not warmup.kernels_run_here()
            warmup.warm_up("kind", _record_process, str(tmp_path))
            _wait_for_files(tmp_path, 1)
            with dask.config.set(scheduler="synchronous"):  # named: it runs here, Client or not
                assert warmup.kernels_run_here()
                warmup.warm_up("kind", _record_process, str(tmp_path))  # this process has it already
            _join_warm_ups()
    assert os.listdir(tmp_path) == [str(os.getpid())]
    assert (tmp_path / str(os.getpid())).read_text() == "loaded\n"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kmeans_loader_runs(dtype):
    # Its failures are swallowed on its thread: here one would fail.
    kmeans_module._load_pass_kernels(np.dtype(dtype), 7)


def test_kmeans_starts_the_loader_of_its_pass_kernels(monkeypatch):
    started = []
    monkeypatch.setattr(kmeans_module, "warm_up", lambda key, kernel, *args: started.append((key, kernel, args)))
    train = np.random.default_rng(3).standard_normal((200, 6)).astype(np.float32)
    bd.kmeans(train, 3, init="random", max_iter=2, random_state=0)
    assert [(key, kernel) for key, kernel, _ in started] == [
        (("kmeans-pass", np.dtype(np.float32)), kmeans_module._load_pass_kernels)
    ]
