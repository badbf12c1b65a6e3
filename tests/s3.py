"""An S3 server on 127.0.0.1 (moto's) that can refuse chosen requests, and the storage_options that reach it.

No AWS environment variable is needed: credentials and endpoint travel in
``storage_options``. The server answers through a fault filter that can
refuse chosen requests with S3's ``503 SlowDown`` (what a busy store
answers), so retries and persistent failures are those of the real s3fs
client.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

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


@contextlib.contextmanager
def s3_options(server: FaultyMotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Options of ``server`` with its bucket made; no AWS variable in the environment; faults cleared after."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "FSSPEC_S3")):
            monkeypatch.delenv(key)
    host, port = server.get_host_and_port()
    # No botocore retries (its back-off takes seconds): s3fs retries a SlowDown itself, 5 attempts.
    options = {
        "key": "remote-test",
        "secret": "remote-test-secret",
        "client_kwargs": {"endpoint_url": f"http://{host}:{port}"},
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    fs = s3fs.S3FileSystem(**options)
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    server.faults.clear()
    server.requests.clear()
    try:
        yield options
    finally:
        server.faults.clear()
        s3fs.S3FileSystem.clear_instance_cache()


def new_url(name: str) -> str:
    """A fresh key prefix in the bucket."""
    return f"s3://{BUCKET}/{name}-{os.urandom(4).hex()}.zarr"
