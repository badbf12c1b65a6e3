"""Faults a long run meets, and what bigdist does about them.

A CLI process killed mid-run and run again; a worker process killed in the
middle of a kNN and of a k-means run; every worker gone; an unreachable
scheduler; a memory-limited worker that spills; a TLS-only scheduler.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest
import yaml
import zarr
from click.testing import CliRunner
from distributed import Client, LocalCluster, wait
from distributed.security import Security

import bigdist as bd
from bigdist import runtime
from bigdist.cli.main import main
from bigdist.errors import ClusterError, ParameterError, SchedulerUnreachableError
from bigdist.io import make_random, read_group
from tests.oracle import knn_oracle

BIGDIST = [os.path.join(os.path.dirname(sys.executable), "bigdist")]


@pytest.fixture(scope="module")
def threaded_scheduler():
    # Over TCP, so that CLI processes can join it.
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def _chunk_bytes(path: str, name: str) -> dict[str, bytes]:
    root = pathlib.Path(path) / name
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _start(args: list[str]) -> subprocess.Popen:
    # A session of its own, so the kill reaches the CLI and nothing else.
    return subprocess.Popen(
        [*BIGDIST, *args], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _kill_when(process: subprocess.Popen, ready, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before it could be killed:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "the run never got far enough to be killed"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_cli_knn_killed_then_resumed_is_byte_identical(tmp_path, threaded_scheduler):
    train, out, clean = str(tmp_path / "train.zarr"), str(tmp_path / "nn.zarr"), str(tmp_path / "clean.zarr")
    make_random(train, 6000, 16, chunk_rows=1500, dtype="float32")
    run_file = tmp_path / "run.yaml"
    settings = {"bigdist.knn.query-block-rows": 50}
    run_file.write_text(yaml.safe_dump({"train": train, "k": 5, "out": out, "dask": settings}))
    args = ["knn", "--config", str(run_file), "--scheduler", threaded_scheduler]

    killed = _start(args)
    markers = pathlib.Path(out) / "bigdist_progress" / "distances" / "c"
    _kill_when(killed, lambda: len(glob.glob(f"{markers}/*")) >= 1)
    assert zarr.open_group(out, mode="r").attrs["bigdist"]["complete"] is False
    written = len(glob.glob(f"{markers}/*"))

    # Another run's arguments are refused; the unfinished output is kept for its own run.
    refused = CliRunner().invoke(main, [*args, "--k", "6"])
    assert refused.exit_code == 1 and "different run (knn.k: 5 -> 6; run.k: 5 -> 6)" in refused.output
    assert "Traceback" not in refused.output

    resumed = subprocess.run([*BIGDIST, *args], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    kept = int(resumed.stderr.split("resuming the unfinished output at")[1].split(":")[1].split()[0])
    assert 1 <= written <= kept < 120

    with dask.config.set({**settings, "scheduler": "synchronous"}):
        bd.knn(train, None, k=5).to_zarr(clean)
    for name in ("distances", "indices"):
        assert _chunk_bytes(out, name) == _chunk_bytes(clean, name)
    assert not (pathlib.Path(out) / "bigdist_progress").exists()
    # And right: the first rows against the oracle (each row's own match, at distance 0, comes first there).
    points = zarr.open_array(train, mode="r")[:]
    expected_indices = knn_oracle(points[:300], points, 6)[1][:, 1:]
    np.testing.assert_array_equal(read_group(out)["indices"][:300].compute(), expected_indices)


def test_cli_kmeans_killed_then_resumed_from_checkpoint(tmp_path, threaded_scheduler):
    data, out, checkpoint = str(tmp_path / "data.zarr"), str(tmp_path / "km.zarr"), str(tmp_path / "ck.zarr")
    make_random(data, 6000, 8, chunk_rows=1000, distribution="uniform", dtype="float64")
    args = ["kmeans", "--data", data, "--n-clusters", "12", "--init", "random", "--max-iter", "40", "--tol", "0",
            "--random-state", "3", "--checkpoint", checkpoint, "--out", out,
            "--scheduler", threaded_scheduler]  # fmt: skip

    def iterations() -> int:
        try:
            return json.loads((pathlib.Path(checkpoint) / "zarr.json").read_text())["attributes"]["bigdist_checkpoint"][
                "n_iter"
            ]
        except (OSError, KeyError, ValueError):
            return 0

    _kill_when(_start(args), lambda: iterations() >= 3)
    stopped_at = iterations()
    resumed = subprocess.run([*BIGDIST, *args], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {checkpoint} after {stopped_at} iterations" in resumed.stderr

    with dask.config.set(scheduler="synchronous"):
        clean = bd.kmeans(data, 12, init="random", max_iter=40, tol=0, random_state=3)
    result = read_group(out)
    np.testing.assert_array_equal(result["centroids"].compute(), clean.centroids)
    np.testing.assert_array_equal(result["labels"].compute(), clean.labels.compute())
    assert zarr.open_group(out, mode="r").attrs["kmeans"]["n_iter"] == clean.n_iter

    # A checkpoint is never taken up by a run with other arguments.
    with dask.config.set(scheduler="synchronous"), pytest.raises(ParameterError, match="belongs to another run"):
        bd.kmeans(data, 12, init="random", max_iter=40, tol=0, random_state=4, checkpoint=checkpoint)


@pytest.fixture
def process_cluster():
    """Two worker processes under nannies, which restart a killed worker (a fresh cluster per test)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            yield client


def _kill_a_worker_when_busy(client: Client, prefix: str, timeout: float = 60) -> threading.Thread:
    """SIGKILL one worker process once it is running a task whose key starts with ``prefix``."""
    pids = client.run(os.getpid)
    outcome: dict[str, object] = {}

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for address, keys in client.processing().items():
                if any(str(key).strip("('").startswith(prefix) for key in keys):
                    os.kill(pids[address], signal.SIGKILL)
                    outcome["killed"] = address
                    return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.outcome = outcome  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_worker_killed_mid_knn_gives_the_identical_result(process_cluster):
    client = process_cluster
    rng = np.random.default_rng(5)
    train = (rng.standard_normal((12000, 16)) + 100).astype(np.float32)
    queries = (rng.standard_normal((1000, 16)) + 100).astype(np.float32)
    with dask.config.set({"bigdist.knn.query-block-rows": 100}):
        result = bd.knn(da.from_array(queries, chunks=500), da.from_array(train, chunks=1500), k=7, split_every=2)
    with dask.config.set(scheduler="synchronous"):
        clean_distances, clean_indices = result.compute()
    watcher = _kill_a_worker_when_busy(client, "bigdist-knn-tile")
    futures = client.compute([result.distances, result.indices])
    wait(futures, timeout=120)
    distances, indices = client.gather(futures)
    watcher.join()
    assert "killed" in watcher.outcome
    np.testing.assert_array_equal(indices, clean_indices)
    np.testing.assert_array_equal(distances, clean_distances)
    expected_distances, expected_indices = knn_oracle(queries, train, 7)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-6)


# 20 blocks a pass; or one, labelled in pieces on both workers and summed along a chain of tasks.
@pytest.mark.parametrize("chunks", [1000, 20000])
def test_worker_killed_mid_kmeans_gives_the_identical_result(process_cluster, monkeypatch, chunks):
    monkeypatch.setattr(
        importlib.import_module("bigdist.kmeans"), "MIN_PIECE_WORK", 0
    )  # small data cut as big data would be
    client = process_cluster
    rng = np.random.default_rng(6)
    data = da.from_array(rng.uniform(size=(20000, 16)), chunks=chunks)
    options = {"init": "k-means||", "max_iter": 15, "tol": 0, "random_state": 1, "split_every": 2}
    with dask.config.set(scheduler="synchronous"):
        clean = bd.kmeans(data, 20, persist=False, **options)
    # Kept in worker memory, so the kill also loses persisted blocks that must be recomputed from lineage.
    watcher = _kill_a_worker_when_busy(client, "bigdist-kmeans-pass-")
    killed = bd.kmeans(data, 20, persist=True, **options)
    watcher.join()
    assert "killed" in watcher.outcome
    np.testing.assert_array_equal(killed.centroids, clean.centroids)
    np.testing.assert_array_equal(killed.labels.compute(), clean.labels.compute())
    assert killed.inertia == clean.inertia and killed.n_iter == clean.n_iter


def _worker_count(dask_scheduler):
    return len(dask_scheduler.workers)


def test_all_workers_gone_fails_within_the_timeout():
    with dask.config.set({"bigdist.runtime.no-workers-timeout": "1s"}):
        with runtime.start(n_workers=1, dashboard_address="127.0.0.1:0") as client:
            client.cluster.scale(0)
            deadline = time.monotonic() + 30
            while client.run_on_scheduler(_worker_count) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.run_on_scheduler(_worker_count) == 0
            began = time.monotonic()
            with pytest.raises(ClusterError, match=r"no Dask worker was running for 1 s.*no-workers-timeout"):
                with runtime.cluster_errors():
                    bd.knn(np.ones((20, 3)), np.ones((30, 3)), k=2).compute()
            assert time.monotonic() - began < 15


def test_unreachable_scheduler_exits_fast_naming_it_without_traceback(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({"dask": {"bigdist.runtime.connect-timeout": 2}}))
    # A readable input: inputs are checked before the scheduler is reached.
    train = tmp_path / "t.zarr"
    zarr.create_array(store=str(train), data=np.ones((4, 2)))
    began = time.monotonic()
    result = CliRunner().invoke(
        main,
        ["knn", "--train", str(train), "--out", str(tmp_path / "o.zarr"), "--scheduler", "tcp://127.0.0.1:1",
         "--config", str(run_file)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "could not reach the Dask scheduler at 'tcp://127.0.0.1:1' within 2 s" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert time.monotonic() - began < 15


def test_memory_limited_worker_that_spills_gives_the_same_answer():
    rng = np.random.default_rng(7)
    data = da.from_array(rng.standard_normal((60000, 16)), chunks=5000)  # 7.7 MB
    queries = rng.standard_normal((500, 16))
    with dask.config.set(scheduler="synchronous"):
        clean = bd.kmeans(data, 10, init="k-means++", max_iter=5, tol=0, random_state=0, persist=False)
        clean_knn = bd.knn(queries, data, k=5).compute()
    # Managed memory above 1 MB goes to disk; the process-memory thresholds are off (the test process is big).
    memory = {"target": 0.001, "spill": False, "pause": False, "terminate": False}
    with dask.config.set({f"distributed.worker.memory.{key}": value for key, value in memory.items()}):
        with LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, memory_limit="1GiB", dashboard_address=None
        ) as cluster, Client(cluster) as client:  # fmt: skip
            spilled = bd.kmeans(data, 10, init="k-means++", max_iter=5, tol=0, random_state=0, persist=True)
            spilled_labels = spilled.labels.compute()
            on_disk = client.run(lambda dask_worker: len(dask_worker.data.slow))
            knn_spilled = bd.knn(queries, data.persist(), k=5).compute()
    assert sum(on_disk.values()) > 0
    np.testing.assert_array_equal(spilled.centroids, clean.centroids)
    np.testing.assert_array_equal(spilled_labels, clean.labels.compute())
    np.testing.assert_array_equal(knn_spilled[1], clean_knn[1])
    np.testing.assert_array_equal(knn_spilled[0], clean_knn[0])


def _certificates(directory: pathlib.Path) -> dict[str, str]:
    """A certificate authority and a key + certificate it signed, made with the openssl command."""
    ca_key, ca_cert = directory / "ca-key.pem", directory / "ca-cert.pem"
    key, request, cert = directory / "key.pem", directory / "req.pem", directory / "cert.pem"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bigdist-test-ca",
            "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out",
            str(request))  # fmt: skip
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-out", str(cert))  # fmt: skip
    return {"ca": str(ca_cert), "cert": str(cert), "key": str(key)}


def test_tls_scheduler_needs_the_security_section(tmp_path):
    files = _certificates(tmp_path)
    server = Security(
        tls_ca_file=files["ca"],
        tls_scheduler_cert=files["cert"],
        tls_scheduler_key=files["key"],
        tls_worker_cert=files["cert"],
        tls_worker_key=files["key"],
        tls_client_cert=files["cert"],
        tls_client_key=files["key"],
        require_encryption=True,
    )
    with LocalCluster(
        n_workers=1, processes=False, protocol="tls://", host="127.0.0.1", security=server, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        with dask.config.set({"bigdist.runtime.connect-timeout": 3}):
            with pytest.raises(SchedulerUnreachableError, match=r"tls://.*'security:' section"):
                with runtime.start(scheduler=address):
                    pass
        settings = {
            "tls-ca-file": files["ca"],
            "tls-client-cert": files["cert"],
            "tls-client-key": files["key"],
            "require-encryption": True,
        }
        run_file = tmp_path / "run.yaml"
        out = tmp_path / "nn.zarr"
        train = tmp_path / "train.npy"
        points = np.arange(60, dtype=np.float64).reshape(20, 3)
        np.save(train, points)
        run_file.write_text(yaml.safe_dump({"security": settings, "train": str(train), "k": 2, "out": str(out)}))
        result = CliRunner().invoke(main, ["knn", "--config", str(run_file), "--scheduler", address])
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(read_group(out)["indices"].compute(), knn_oracle(points, None, 2)[1])
        # Unknown keys and missing files are named.
        run_file.write_text(yaml.safe_dump({"security": {"tls-ca": files["ca"]}, "train": str(train), "out": "x"}))
        result = CliRunner().invoke(main, ["knn", "--config", str(run_file), "--scheduler", address])
        assert result.exit_code == 1 and "bigdist.runtime.security.tls-ca" in result.output
        run_file.write_text(yaml.safe_dump({"security": {"tls-ca-file": "/nope.pem"}, "train": str(train), "out": "x"}))
        result = CliRunner().invoke(main, ["knn", "--config", str(run_file), "--scheduler", address])
        assert result.exit_code == 1 and "'/nope.pem' is not an existing file" in result.output


def test_input_left_unfinished_by_a_killed_generate_is_made_again(tmp_path, threaded_scheduler):
    train, out = str(tmp_path / "train.zarr"), str(tmp_path / "nn.zarr")
    make_random(train, 60, 3, chunk_rows=20, random_state=9)
    expected = zarr.open_array(train, mode="r")[:]
    # What a killed generate leaves: the flag still false, a chunk never written.
    array = zarr.open_array(train, mode="r+")
    array.attrs["bigdist"] = {**array.attrs["bigdist"], "complete": False}
    (pathlib.Path(train) / "c" / "2" / "0").unlink()
    spec = {"kind": "random", "n-samples": 60, "n-features": 3, "chunk-rows": 20, "random-state": 9}
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({"train": train, "k": 2, "out": out, "generate": {"train": spec}}))
    result = CliRunner().invoke(main, ["knn", "--config", str(run_file), "--scheduler", threaded_scheduler])
    assert result.exit_code == 0, result.output
    assert "generated train" in result.output
    np.testing.assert_array_equal(zarr.open_array(train, mode="r")[:], expected)
    np.testing.assert_array_equal(read_group(out)["indices"].compute(), knn_oracle(expected, None, 2)[1])


def test_cli_on_a_scheduler_without_workers_stops_with_a_clear_error(tmp_path):
    train, out = tmp_path / "train.npy", tmp_path / "nn.zarr"
    np.save(train, np.arange(30.0).reshape(10, 3))
    with dask.config.set({"distributed.scheduler.no-workers-timeout": "1s"}):
        with LocalCluster(
            n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address=None
        ) as cluster:
            began = time.monotonic()
            result = CliRunner().invoke(
                main,
                ["knn", "--train", str(train), "--k", "2", "--out", str(out), "--scheduler", cluster.scheduler_address],
            )
    assert result.exit_code == 1
    assert "error: no Dask worker was running for 1 s" in result.output and "Traceback" not in result.output
    assert time.monotonic() - began < 20
    # Nothing is taken for finished: the output says it is not.
    assert zarr.open_group(str(out), mode="r").attrs["bigdist"]["complete"] is False


def _die(block):
    if block.size:  # dask calls the function on an empty block to learn its output type
        os._exit(1)  # what the kernel's OOM killer does to a worker whose task needs too much memory
    return block


def test_task_that_keeps_killing_its_worker_becomes_a_cluster_error():
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with Client(cluster):
                data = da.ones((10, 2), chunks=5).map_blocks(
                    _die, dtype=float, meta=np.empty((0, 0)), name="bigdist-test-crash"
                )
                with pytest.raises(ClusterError, match=r"bigdist-test-crash.*died 1 time \(last: tcp://127.0.0.1"):
                    with runtime.cluster_errors():
                        data.compute()
