"""Every output on an S3 server reached only through ``storage_options``; transient and persistent store faults."""

from __future__ import annotations

import os
import re
from collections import Counter

import dask
import numpy as np
import pytest
import zarr

import bigdist as bd
from bigdist.errors import PlanError, StoreError
from bigdist.execution.blocks import write_blocks
from tests.s3 import BUCKET, FaultyMotoServer, new_url, s3_options


@pytest.fixture(scope="module")
def server():
    started = FaultyMotoServer()
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def options(server, monkeypatch):
    with s3_options(server, monkeypatch) as opts:
        yield opts


@pytest.fixture(autouse=True)
def small_blocks():
    """Blocks of 30 rows of 6 float32 features: a few blocks (Zarr chunks) per output."""
    with dask.config.set({"bigdist.chunk-bytes": 30 * 6 * 4}):
        yield


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((90, 6)).astype(np.float32)


def _read(path: str, storage_options=None) -> dict[str, np.ndarray]:
    return {name: np.asarray(array) for name, array in bd.io.read_group(path, storage_options).items()}


def _assert_same(remote: dict[str, np.ndarray], local: dict[str, np.ndarray]) -> None:
    assert sorted(remote) == sorted(local)
    for name in local:
        np.testing.assert_array_equal(remote[name], local[name], err_msg=name)


def _classify(X, path, **kw):
    labels = (np.asarray(X[:, 0]) > 0).astype(np.int64)
    return bd.KNeighborsClassifier(n_neighbors=3).fit(X, labels).write_predictions(path, X[:60], **kw)


# Each output kind, as write(X, path, **storage_options_kwarg); the fits are deterministic.
WRITERS = {
    "knn": lambda X, path, **kw: bd.knn(X, None, k=4).to_zarr(path, **kw),
    "radius": lambda X, path, **kw: bd.radius_neighbors(X, None, radius=2.5).to_zarr(path, **kw),
    "kmeans": lambda X, path, **kw: bd.kmeans(X, n_clusters=3, random_state=0, max_iter=5).to_zarr(path, **kw),
    "meanshift": lambda X, path, **kw: bd.meanshift(X, bandwidth=3.0).to_zarr(path, **kw),
    "classify": _classify,
    "pairwise": lambda X, path, **kw: write_blocks(path, {"distances": bd.pairwise_distances(X, X[:40])}, **kw),
    "write_group": lambda X, path, **kw: bd.io.write_group(path, {"doubled": X * 2, "sums": X.sum(axis=1)}, **kw),
}


@pytest.mark.usefixtures("synchronous")
@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_output_on_s3_equals_the_local_one(options, data, tmp_path, kind):
    X = dask.array.from_array(data, chunks=30)
    out = new_url(kind)
    local = WRITERS[kind](X, str(tmp_path / "local.zarr"))
    assert WRITERS[kind](X, out, storage_options=options) == out
    assert bd.io.describe(out, options)["complete"] is True
    _assert_same(_read(out, options), _read(local))


def _chunk_puts(server: FaultyMotoServer, url: str, array: str) -> Counter[str]:
    prefix = f"PUT /{url.removeprefix('s3://')}/{array}/c/"
    return Counter({key: n for key, n in server.requests.items() if key.startswith(prefix)})


@pytest.mark.usefixtures("synchronous")
def test_transient_errors_are_retried_by_s3fs(server, options, data, tmp_path):
    local = bd.knn(data, None, k=4).to_zarr(str(tmp_path / "local.zarr"))
    url = new_url("flaky")
    # Twice the write of query block 1's distances, twice its marker: within s3fs's 5 attempts each.
    server.faults[f"PUT /{url.removeprefix('s3://')}/distances/c/1/0"] = 2
    server.faults[f"PUT /{url.removeprefix('s3://')}/bigdist_progress/indices/c/2/0"] = 2
    bd.knn(dask.array.from_array(data, chunks=30), None, k=4).to_zarr(url, storage_options=options)
    assert all(left == 0 for left in server.faults.values())
    _assert_same(_read(url, options), _read(local))


@pytest.mark.usefixtures("synchronous")
def test_a_store_that_keeps_failing_names_the_key_and_the_rerun_resumes(server, options, data, tmp_path):
    X = dask.array.from_array(data, chunks=30)
    local = bd.knn(X, None, k=4).to_zarr(str(tmp_path / "local.zarr"))
    url = new_url("broken")
    bucket_path = url.removeprefix("s3://")
    server.faults[f"PUT /{bucket_path}/distances/c/2/0"] = None
    with pytest.raises(StoreError, match=rf"'distances/c/2/0'.*{re.escape(bucket_path)}.*resume"):
        bd.knn(X, None, k=4).to_zarr(url, storage_options=options)
    described = bd.io.describe(url, options)
    assert described["complete"] is False
    assert described["progress"]["distances"] == "2 of 3 blocks written"
    before = _chunk_puts(server, url, "distances")

    server.faults.clear()
    bd.knn(X, None, k=4).to_zarr(url, storage_options=options)
    rewritten = _chunk_puts(server, url, "distances") - before
    # Only the failed block is written again: blocks 0 and 1 were kept.
    assert sorted(rewritten) == [f"PUT /{bucket_path}/distances/c/2/0"]
    _assert_same(_read(url, options), _read(local))


@pytest.mark.usefixtures("synchronous")
def test_an_input_chunk_that_keeps_failing_is_named(server, options, data):
    url = f"s3://{BUCKET}/input-{os.urandom(4).hex()}.zarr"
    zarr.create_array(url, storage_options=options, data=data, chunks=(30, 6))
    server.faults[f"GET /{url.removeprefix('s3://')}/c/1/0"] = None
    X = bd.open_array(url, storage_options=options)
    with pytest.raises(StoreError, match=r"'c/1/0'.*rows 30-59"):
        bd.knn(X, None, k=3).compute()


def test_workers_in_other_processes_write_with_the_options_they_are_given(options, data, tmp_path):
    # The environment has no credentials: the workers reach the store only through the pickled options.
    from distributed import Client, LocalCluster

    X = dask.array.from_array(data, chunks=30)
    local = bd.knn(X, None, k=4).to_zarr(str(tmp_path / "local.zarr"))
    out = new_url("cluster")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            bd.knn(X, None, k=4).to_zarr(out, storage_options=options)
            worker_env = client.run(lambda: sorted(key for key in os.environ if key.startswith("AWS_")))
    assert all(keys == [] for keys in worker_env.values())
    _assert_same(_read(out, options), _read(local))


@pytest.mark.parametrize("where", ["input", "output"])
def test_a_plan_with_an_unreachable_store_says_which(options, data, tmp_path, where):
    unreachable = {**options, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}
    dead = new_url(where)
    np.save(tmp_path / "x.npy", data)
    inputs, out = (dead, str(tmp_path / "out.zarr")) if where == "input" else (str(tmp_path / "x.npy"), dead)
    with pytest.raises(PlanError, match=rf"cannot plan: the (queries|output) store {re.escape(repr(dead))}"):
        bd.plan("knn", inputs, out=out, k=3, storage_options=unreachable, calibrate_kernel=False)


def test_a_url_output_has_unknown_free_space(options):
    plan = bd.plan("knn", np.zeros((10, 2)), k=3, out=new_url("out.zarr"), storage_options=options,
                   calibrate_kernel=False)  # fmt: skip
    assert plan.free_bytes is None and plan.fits is None
    assert any("s3://" in note and "unknown" in note for note in plan.notes)
    plan.check_space()
