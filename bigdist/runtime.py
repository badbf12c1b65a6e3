"""The Dask cluster a run uses: a LocalCluster by default, or an existing scheduler.

Only this module and the CLI create clients; library functions run on the
ambient one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from bigdist import config
from bigdist.errors import SchedulerUnreachableError

logger = logging.getLogger(__name__)


class BlasThreadLimit(WorkerPlugin):
    """Limit BLAS threads in every worker, so worker threads do not oversubscribe the cores."""

    name = "bigdist-blas-thread-limit"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        from threadpoolctl import threadpool_limits

        # Kept on the plugin: the limit lasts as long as the object is alive.
        self._limits = threadpool_limits(limits=self.threads, user_api="blas")


def _free_dashboard_address(address: str | None) -> str | None:
    if not address:
        return None
    host, _, port = address.rpartition(":")
    with socket.socket() as probe:
        try:
            probe.bind((host or "127.0.0.1", int(port or 0)))
        except OSError:
            logger.info("dashboard port %s is taken; using a free one", port)
            return f"{host or '127.0.0.1'}:0"
    return address


def _connect(address: str | None, scheduler_file: str | None) -> distributed.Client:
    timeout = config.get("runtime.connect-timeout")
    target = address or scheduler_file
    try:
        if scheduler_file is not None:
            if not os.path.exists(os.path.expanduser(scheduler_file)):
                raise OSError(f"no such scheduler file {scheduler_file!r}")
            return distributed.Client(scheduler_file=os.path.expanduser(scheduler_file), timeout=timeout)
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise SchedulerUnreachableError(
            f"could not reach the Dask scheduler at {target!r} within {timeout} s ({error}); "
            f"check the address and that the scheduler is running"
        ) from None


@contextlib.contextmanager
def start(
    *,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    dashboard_address: str | None = None,
    performance_report: str | None = None,
) -> Iterator[distributed.Client]:
    """Start or join the cluster of a run and yield its client.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler, e.g. ``tcp://host:8786``.
    scheduler_file : str, optional
        Scheduler file written by ``dask scheduler --scheduler-file`` or dask-jobqueue.
    n_workers, threads_per_worker, memory_limit, dashboard_address : optional
        LocalCluster settings when no scheduler is given; defaults from the
        ``bigdist.runtime`` config (one single-threaded worker per core, the
        dashboard on 127.0.0.1).
    performance_report : str, optional
        Write Dask's HTML performance report of the run to this path.
    """
    with contextlib.ExitStack() as stack:
        if scheduler or scheduler_file:
            client = stack.enter_context(_connect(scheduler, scheduler_file))
        else:
            n_workers = n_workers or config.get("runtime.n-workers") or os.cpu_count() or 1
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker or config.get("runtime.threads-per-worker"),
                    memory_limit=memory_limit or config.get("runtime.memory-limit"),
                    dashboard_address=_free_dashboard_address(
                        dashboard_address or config.get("runtime.dashboard-address")
                    ),
                    host="127.0.0.1",
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        client.register_plugin(BlasThreadLimit(config.get("runtime.blas-threads")))
        if client.dashboard_link:
            logger.info("Dask dashboard: %s", client.dashboard_link)
        if performance_report:
            stack.enter_context(distributed.performance_report(filename=performance_report))
        yield client
