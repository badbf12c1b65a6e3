"""A real multi-process cluster (``dask scheduler`` / ``dask worker`` command lines) and an S3 server on 127.0.0.1.

The S3 server is moto's, in this process; the scheduler and workers are
subprocesses that reach it over HTTP, configured as users configure s3fs:
AWS credentials and ``FSSPEC_S3_ENDPOINT_URL`` in the environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.cluster

BUCKET = "bigdist-test"
START_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def s3_server():
    """An S3 server on a free port of 127.0.0.1 with one bucket, and the environment that points s3fs at it."""
    import fsspec.config
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {key: os.environ.get(key) for key in env}
    saved_conf = {key: dict(value) for key, value in fsspec.config.conf.items()}
    os.environ.update(env)
    fsspec.config.set_conf_env(fsspec.config.conf)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(BUCKET)
    try:
        yield env
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        fsspec.config.conf.clear()
        fsspec.config.conf.update(saved_conf)
        s3fs.S3FileSystem.clear_instance_cache()


# Per module: the environment it sets points every s3fs of the process at this server, which must not
# outlive the cluster tests (other tests give their own endpoint in storage_options).
@pytest.fixture(scope="module")
def s3_env():
    with s3_server() as env:
        yield env


def subprocess_env(s3_env: dict[str, str]) -> dict[str, str]:
    """The environment of the cluster's processes and of CLI runs: this checkout on PYTHONPATH, S3 settings."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        **s3_env,
        "PYTHONPATH": root + (os.pathsep + path if path else ""),
        # One BLAS thread per worker thread, as bigdist's own LocalCluster has.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": "60s",
    }


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class Cluster:
    """A scheduler and workers started by the real command lines; every process is stopped on close."""

    def __init__(self, directory, env: dict[str, str], n_workers: int = 2) -> None:
        self.scheduler_file = str(directory / "scheduler.json")
        self.env = env
        self.processes: list[subprocess.Popen] = []
        self.logs = directory
        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        self._start([dask, "scheduler", "--scheduler-file", self.scheduler_file, "--port", "0",
                     "--host", "127.0.0.1", "--no-dashboard"], "scheduler")  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.scheduler_file):
            self._check_alive(deadline)
            time.sleep(0.1)
        for i in range(n_workers):
            self._start([dask, "worker", "--scheduler-file", self.scheduler_file, "--nthreads", "1",
                         "--name", f"worker-{i}", "--host", "127.0.0.1", "--no-dashboard",
                         "--memory-limit", "0"], f"worker-{i}")  # fmt: skip
        self.n_workers = n_workers

    def _start(self, command: list[str], name: str) -> None:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115  (kept open for the process's lifetime)
        self.processes.append(
            subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def _check_alive(self, deadline: float) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a cluster process exited early: {process.args}; see the logs in {self.logs}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster did not start within {START_TIMEOUT} s; see the logs in {self.logs}")

    @property
    def address(self) -> str:
        with open(self.scheduler_file) as f:
            return json.load(f)["address"]

    def client(self):
        from distributed import Client

        client = Client(scheduler_file=self.scheduler_file, timeout=START_TIMEOUT)
        client.wait_for_workers(self.n_workers, timeout=START_TIMEOUT)
        return client

    def close(self) -> None:
        for process in reversed(self.processes):
            _stop(process)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_env):
    """One cluster per module: its workers compile the kernels once (a killed worker's successor again)."""
    started = Cluster(tmp_path_factory.mktemp("cluster"), subprocess_env(s3_env))
    try:
        yield started
    finally:
        started.close()
