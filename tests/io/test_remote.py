"""Outputs on an S3 server (moto's, on 127.0.0.1) reached only through ``storage_options``, and its faults.

No AWS environment variable is set: credentials and endpoint travel in
``storage_options``. The server answers through a fault filter that can
refuse chosen requests with S3's ``503 SlowDown`` (what a busy store
answers), so retries and persistent failures are those of the real s3fs
client.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter

import dask
import numpy as np
import pytest
import zarr

import bigdist as bd
from bigdist.errors import StoreError
from bigdist.execution.blocks import write_blocks

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

BUCKET = "bigdist-remote"
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultyMotoServer(moto_server.ThreadedMotoServer):
    """moto's S3 server behind a filter that answers 503 SlowDown to the requests ``faults`` picks.

    ``faults`` maps a regular expression of ``METHOD /bucket/key`` to how
    many more times it fails (``None``: always). ``requests`` counts every
    request that reached the filter, by the same ``METHOD /bucket/key``.
    """

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.faults: dict[str, int | None] = {}
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _fails(self, request: str) -> bool:
        with self.lock:
            self.requests[request] += 1
            for pattern, left in self.faults.items():
                if re.fullmatch(pattern, request) and (left is None or left > 0):
                    if left is not None:
                        self.faults[pattern] = left - 1
                    return True
        return False

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from moto.server import MotoRequestHandler
        from werkzeug.serving import make_server

        backend = DomainDispatcherApplication(create_backend_app)

        def app(environ, start_response):
            if self._fails(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}"):
                start_response("503 Slow Down", [("Content-Type", "application/xml")])
                return [SLOW_DOWN]
            return backend(environ, start_response)

        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


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
    """storage_options of the server: no botocore retries (its back-off takes seconds); s3fs retries a SlowDown."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "FSSPEC_S3")):
            monkeypatch.delenv(key)
    host, port = server.get_host_and_port()
    opts = {
        "key": "remote-test",
        "secret": "remote-test",
        "client_kwargs": {"endpoint_url": f"http://{host}:{port}"},
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    fs = s3fs.S3FileSystem(**opts)
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    server.faults.clear()
    server.requests.clear()
    try:
        yield opts
    finally:
        server.faults.clear()
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(autouse=True)
def small_blocks():
    """Blocks of 30 rows of 6 float32 features: a few blocks (Zarr chunks) per output."""
    with dask.config.set({"bigdist.chunk-bytes": 30 * 6 * 4}):
        yield


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((90, 6)).astype(np.float32)


def _url(name: str) -> str:
    return f"s3://{BUCKET}/{name}-{os.urandom(4).hex()}.zarr"


def _read(path: str, storage_options=None) -> dict[str, np.ndarray]:
    return {name: np.asarray(array) for name, array in bd.io.read_group(path, storage_options).items()}


def _assert_same(remote: dict[str, np.ndarray], local: dict[str, np.ndarray]) -> None:
    assert sorted(remote) == sorted(local)
    for name in local:
        np.testing.assert_array_equal(remote[name], local[name], err_msg=name)


def _outputs(data: np.ndarray):
    """Each output kind, as ``write(path, **storage_options_kwarg)``."""
    X = dask.array.from_array(data, chunks=30)
    labels = (data[:, 0] > 0).astype(np.int64)
    classifier = bd.KNeighborsClassifier(n_neighbors=3).fit(X, labels)
    km = bd.kmeans(X, n_clusters=3, random_state=0, max_iter=5)
    ms = bd.meanshift(X, bandwidth=3.0)
    return {
        "knn": lambda path, **kw: bd.knn(X, None, k=4).to_zarr(path, **kw),
        "radius": lambda path, **kw: bd.radius_neighbors(X, None, radius=2.5).to_zarr(path, **kw),
        "kmeans": lambda path, **kw: km.to_zarr(path, **kw),
        "meanshift": lambda path, **kw: ms.to_zarr(path, **kw),
        "classify": lambda path, **kw: classifier.write_predictions(path, X[:60], **kw),
        "pairwise": lambda path, **kw: write_blocks(path, {"distances": bd.pairwise_distances(X, X[:40])}, **kw),
    }


@pytest.mark.usefixtures("synchronous")
def test_every_output_on_s3_equals_the_local_one(options, data, tmp_path):
    for kind, write in _outputs(data).items():
        url = _url(kind)
        write(str(tmp_path / f"{kind}.zarr"))
        assert write(url, storage_options=options) == url, kind
        _assert_same(_read(url, options), _read(str(tmp_path / f"{kind}.zarr")))
        assert bd.io.describe(url, options)["complete"] is True


@pytest.mark.usefixtures("synchronous")
def test_without_storage_options_the_store_is_not_reached(options, data):
    # No credentials or endpoint in the environment: the options are what made the test above work.
    with pytest.raises(Exception):  # noqa: B017, PT011  (botocore's own error, whatever it is)
        bd.knn(data, None, k=3).to_zarr(_url("anonymous"), storage_options={"retries": 1})


def _chunk_puts(server: FaultyMotoServer, url: str, array: str) -> Counter[str]:
    prefix = f"PUT /{url.removeprefix('s3://')}/{array}/c/"
    return Counter({key: n for key, n in server.requests.items() if key.startswith(prefix)})


@pytest.mark.usefixtures("synchronous")
def test_transient_errors_are_retried_by_s3fs(server, options, data, tmp_path):
    local = bd.knn(data, None, k=4).to_zarr(str(tmp_path / "local.zarr"))
    url = _url("flaky")
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
    url = _url("broken")
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
