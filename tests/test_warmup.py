"""Kernels loaded ahead on a thread of their own: only where the tasks run, once per kind, failures left to the call."""

from __future__ import annotations

import logging
import sys
import threading

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


def test_nothing_is_loaded_where_tasks_run_elsewhere():
    calls = []
    with dask.config.set(scheduler="processes"):
        assert not warmup.kernels_run_here()
        warmup.warm_up("kind", calls.append, "processes")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster):
            assert not warmup.kernels_run_here()
            warmup.warm_up("kind", calls.append, "client")
            with dask.config.set(scheduler="synchronous"):  # named: it runs here, Client or not
                assert warmup.kernels_run_here()
    _join_warm_ups()
    assert calls == []
    # Not loaded then, so loaded by the next call that runs its tasks here.
    assert warmup.kernels_run_here()
    warmup.warm_up("kind", calls.append, "threads")
    _join_warm_ups()
    assert calls == ["threads"]


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
