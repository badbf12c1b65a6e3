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
from bigdist.kernels.direct import DIRECT_METRICS
from bigdist.kernels.metrics import GEMM_METRICS

# The modules, which the package's functions of the same names hide.
knn_module, kmeans_module = sys.modules["bigdist.knn"], sys.modules["bigdist.kmeans"]


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


@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float64, np.float64), (np.float32, np.float64)])
@pytest.mark.parametrize("self_join", [False, True])
def test_the_knn_loader_runs_for_every_kernel_metric(dtypes, self_join):
    # The loader's failures are swallowed on its thread: here they would fail.
    for metric in (*GEMM_METRICS, "correlation", *DIRECT_METRICS):
        n_features = 2 if metric == "haversine" else 5
        for k in (1, 3, 200):
            knn_module._load_tile_kernels(*dtypes, n_features, k, metric, 3.0, self_join)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kmeans_loader_runs(dtype):
    kmeans_module._load_pass_kernels(np.dtype(dtype), 7)


def test_knn_and_kmeans_start_the_loader_of_their_kernels(monkeypatch):
    started = []
    monkeypatch.setattr(knn_module, "warm_up", lambda key, kernel, *args: started.append((key, kernel, args)))
    monkeypatch.setattr(kmeans_module, "warm_up", lambda key, kernel, *args: started.append((key, kernel, args)))
    rng = np.random.default_rng(3)
    train = rng.standard_normal((200, 6)).astype(np.float32)
    queries = rng.standard_normal((20, 6))
    bd.knn(queries, train, k=4, metric="cosine")
    bd.knn(queries, train, k=4, metric=lambda u, v: float(np.abs(u - v).sum()))  # a user's function: nothing
    bd.kmeans(train, 3, init="random", max_iter=2, random_state=0)
    assert [(key, kernel) for key, kernel, _ in started] == [
        (("knn", "cosine", np.dtype(np.float64), np.dtype(np.float32), False), knn_module._load_tile_kernels),
        (("kmeans-pass", np.dtype(np.float32)), kmeans_module._load_pass_kernels),
    ]
    for _, kernel, args in started:
        kernel(*args)
