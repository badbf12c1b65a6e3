"""kNN on a real multi-process cluster, reading from and writing to S3; workers and the client killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import dask
import numpy as np
import pytest
import zarr
from distributed import get_task_stream

import bigdist as bd
from bigdist.io import read_group
from bigdist.io.store import PROGRESS_GROUP
from tests.cluster.conftest import BUCKET
from tests.oracle import knn_keys

pytestmark = pytest.mark.cluster

K = 5
# Small query blocks: many blocks, so that a kill lands while some are written and others are not.
QUERY_BLOCK_ROWS = 1000
BIGDIST = os.path.join(os.path.dirname(sys.executable), "bigdist")


def _url(name: str) -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex}/{name}"


def _store_input(rows: int, features: int, chunk_rows: int) -> tuple[str, np.ndarray]:
    values = np.random.default_rng(rows).random((rows, features)).astype(np.float32)
    url = _url("x.zarr")
    array = zarr.create_array(store=url, shape=values.shape, chunks=(chunk_rows, features), dtype="float32")
    array[:] = values
    return url, values


def _check_against_oracle(values: np.ndarray, distances: np.ndarray, indices: np.ndarray, n_rows: int = 300) -> None:
    """The self-join's neighbours of a sample of rows equal a float64 brute force (self excluded, ties by index)."""
    rows = np.random.default_rng(1).choice(len(values), n_rows, replace=False)
    keys = knn_keys(values[rows], values, "euclidean")
    keys[np.arange(n_rows), rows] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")[:, :K]
    np.testing.assert_array_equal(indices[rows], order)
    np.testing.assert_allclose(distances[rows], np.sqrt(np.take_along_axis(keys, order, axis=1)), rtol=1e-5)


def _blocks_done(url: str) -> tuple[int, int]:
    """(blocks marked written, blocks) of an output being written, (0, 0) before its markers exist."""
    try:
        markers = zarr.open_group(store=url, mode="r")[f"{PROGRESS_GROUP}/distances"]
    except (FileNotFoundError, KeyError):
        return 0, 0
    return int(np.asarray(markers[...]).astype(bool).sum()), markers.size


def _wait_for_blocks(url: str, until: float, check) -> int:
    while time.monotonic() < until:
        done, total = _blocks_done(url)
        if 0 < done < total:
            return done
        check()
        time.sleep(0.05)
    raise AssertionError(f"no block of {url} was written within the time allowed")


def _stored(url: str) -> tuple[np.ndarray, np.ndarray]:
    group = read_group(url)
    return group["distances"].compute(), group["indices"].compute()


def test_cli_knn_reads_and_writes_s3_on_a_cluster_from_the_command_line(cluster):
    url, values = _store_input(4000, 8, 500)
    out = _url("nn.zarr")
    run = subprocess.run(
        [BIGDIST, "knn", "--train", url, "--k", str(K), "--out", out, "--scheduler-file", cluster.scheduler_file],
        env=cluster.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "plan of self-join" in run.stderr and "free space of s3:// storage is unknown" in run.stderr
    assert zarr.open_group(store=out, mode="r").attrs["bigdist"]["complete"] is True
    _check_against_oracle(values, *_stored(out))
    planned = subprocess.run(
        [BIGDIST, "knn", "--train", url, "--k", str(K), "--out", _url("never.zarr"), "--plan",
         "--scheduler-file", cluster.scheduler_file],
        env=cluster.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert "tasks:" in planned.stdout and cluster.address in planned.stdout


def _write_in_background(url: str, out: str) -> tuple[threading.Thread, list[BaseException]]:
    """``bd.knn(url).to_zarr(out)`` through the waves on the default client, in a thread; its error, if any."""
    errors: list[BaseException] = []

    def write() -> None:
        try:
            bd.knn(url, None, k=K).to_zarr(out)
        except BaseException as error:  # noqa: BLE001  (reported by the test)
            errors.append(error)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread, errors


def test_a_worker_killed_mid_run_changes_nothing(cluster):
    url, values = _store_input(16000, 16, 1000)
    with dask.config.set({"bigdist.knn.query-block-rows": QUERY_BLOCK_ROWS}), cluster.client() as client:
        reference = _url("reference.zarr")
        bd.knn(url, None, k=K).to_zarr(reference)
        out = _url("nn.zarr")
        thread, errors = _write_in_background(url, out)

        def still_running() -> None:
            assert thread.is_alive(), f"the run finished before a worker could be killed ({errors})"

        _wait_for_blocks(out, time.monotonic() + 300, still_running)
        victim = next(iter(client.scheduler_info()["workers"]))
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)  # its nanny starts a new worker process
        thread.join(300)
        assert not thread.is_alive() and not errors, errors
    assert zarr.open_group(store=out, mode="r").attrs["bigdist"]["complete"] is True
    got, expected = _stored(out), _stored(reference)
    for array, reference_array in zip(got, expected, strict=True):
        assert array.tobytes() == reference_array.tobytes()
    _check_against_oracle(values, *got)


def _chunk_times(url: str, blocks: np.ndarray) -> dict[str, object]:
    """When the distances chunk of each written block was last stored (S3's LastModified)."""
    import s3fs

    fs = s3fs.S3FileSystem()
    return {str(i): fs.info(f"{url}/distances/c/{i}/0")["LastModified"] for i in np.flatnonzero(blocks)}


def test_the_client_killed_mid_run_resumes_without_recomputing_finished_blocks(cluster):
    url, values = _store_input(16000, 16, 1000)
    out = _url("nn.zarr")
    env = {**cluster.env, "DASK_BIGDIST__KNN__QUERY_BLOCK_ROWS": str(QUERY_BLOCK_ROWS)}
    command = [BIGDIST, "knn", "--train", url, "--k", str(K), "--out", out, "--scheduler-file", cluster.scheduler_file]
    client_process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:

        def still_running() -> None:
            assert client_process.poll() is None, "the run finished before it could be interrupted"

        _wait_for_blocks(out, time.monotonic() + 300, still_running)
    finally:
        os.killpg(client_process.pid, signal.SIGKILL)
        client_process.wait(10)
    # The scheduler drops the dead client's tasks; one already running may still store its block.
    time.sleep(5)
    assert zarr.open_group(store=out, mode="r").attrs["bigdist"]["complete"] is False
    markers = np.asarray(zarr.open_group(store=out, mode="r")[f"{PROGRESS_GROUP}/distances"][...]).astype(bool)
    kept, total = int(markers.sum()), markers.size
    assert 0 < kept < total
    written_before = _chunk_times(out, markers)
    with dask.config.set({"bigdist.knn.query-block-rows": QUERY_BLOCK_ROWS}), cluster.client() as client:
        panels_per_block = bd.plan("knn", url, k=K, calibrate_kernel=False).panels
        with get_task_stream(client) as stream:
            # The command line's own call (the URL, not an opened array), so its run is resumed.
            bd.knn(url, None, k=K).to_zarr(out)
        executed = [task for task in stream.data if str(task["key"]).startswith("bigdist-knn-panel")]
        reference = _url("reference.zarr")
        bd.knn(url, None, k=K).to_zarr(reference)
    # Only the blocks not yet written were computed (their panels, then one merge-and-write each) ...
    assert len({task["key"] for task in executed}) == (total - kept) * (panels_per_block + 1)
    # ... and no block written before was stored again.
    assert _chunk_times(out, markers) == written_before
    got, expected = _stored(out), _stored(reference)
    for array, reference_array in zip(got, expected, strict=True):
        assert array.tobytes() == reference_array.tobytes()
    _check_against_oracle(values, *got)
