"""What the workers of the LocalCluster a command starts do differently: they share its terminal."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class TerminalWorker(WorkerPlugin):
    """Worker plugin of the LocalCluster a command starts: the workers share the command's terminal.

    The terminal's Ctrl-C reaches every process of the group; the workers ignore it, so that only the
    command stops (and closes them) instead of each printing a KeyboardInterrupt traceback. Without -v a
    failed task's "Compute Failed" dump is not logged: the command's error line says what failed.
    (Set here, in the worker: a worker process sets up its logging before it receives Dask's config.)
    """

    name = "bigdist-terminal-worker"

    def __init__(self, verbose: int) -> None:
        self.verbose = verbose

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.verbose == 0:
            logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)
            logging.getLogger("distributed.worker.memory").setLevel(logging.WARNING)
