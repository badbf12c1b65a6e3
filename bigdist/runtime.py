"""The Dask cluster a run uses: a LocalCluster by default, or an existing scheduler.

Only this module and the CLI create clients; library functions run on the
ambient one.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import dask
import distributed
from dask.system import CPU_COUNT
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.security import Security

from bigdist import config
from bigdist.errors import ClusterError, ConfigError, SchedulerUnreachableError

logger = logging.getLogger(__name__)


class BlasThreadLimit(WorkerPlugin):
    """Limit BLAS threads in every worker, so worker threads do not oversubscribe the cores.

    ``threads``: that many BLAS threads (the share bigdist's own LocalCluster gives each worker thread);
    None: lowered to each worker's share of its machine's cores (``bigdist.blas.share_of_cores``), for a
    cluster bigdist joins. bigdist's tasks limit BLAS themselves on any cluster; this covers the rest.
    """

    name = "bigdist-blas-thread-limit"

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        from bigdist import blas

        if self.threads:
            blas.set_blas_threads(self.threads, only_lower=False)
        else:
            blas.set_blas_threads(blas.share_of_cores(worker.state.nthreads), only_lower=True)


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


def security() -> Any:
    """A ``distributed.security.Security`` from the ``bigdist.runtime.security`` config, or None when unset."""
    settings = config.get("runtime.security")
    files = {key: settings[key] for key in ("tls-ca-file", "tls-client-cert", "tls-client-key") if settings[key]}
    if not files and not settings["require-encryption"]:
        return None
    if files and "tls-ca-file" not in files:
        raise ConfigError(
            "security: tls-client-cert/tls-client-key are set but tls-ca-file is not; give the certificate "
            "authority's PEM file as tls-ca-file, so the scheduler's certificate can be verified"
        )
    if "tls-client-key" in files and "tls-client-cert" not in files:
        raise ConfigError("security: tls-client-key is set without tls-client-cert; give both")
    return Security(
        tls_ca_file=files.get("tls-ca-file"),
        tls_client_cert=files.get("tls-client-cert"),
        tls_client_key=files.get("tls-client-key"),
        require_encryption=settings["require-encryption"],
    )


def _connect(address: str | None, scheduler_file: str | None) -> distributed.Client:
    timeout = config.get("runtime.connect-timeout")
    target = address or scheduler_file
    tls = security()
    try:
        if scheduler_file is not None:
            if not os.path.exists(os.path.expanduser(scheduler_file)):
                raise OSError(f"no such scheduler file {scheduler_file!r}")
            return distributed.Client(scheduler_file=os.path.expanduser(scheduler_file), timeout=timeout, security=tls)
        return distributed.Client(address, timeout=timeout, security=tls)
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        # distributed raises TypeError/ValueError when a tls:// address meets a client without TLS settings.
        hint = (
            "; a tls:// scheduler needs the run file's 'security:' section (tls-ca-file, tls-client-cert, "
            "tls-client-key)"
            if str(target).startswith("tls://") or tls is not None
            else ""
        )
        failure = SchedulerUnreachableError(
            f"could not reach the Dask scheduler at {target!r} within {timeout} s ({error}); "
            f"check the address and that the scheduler is running{hint}"
        )
    # The Client that failed is collected now: collected later, inside the start of another Client, its
    # __del__ closes its event loop runner while that start holds the runner's lock, and both wait forever.
    gc.collect()
    raise failure


def _no_workers_timeout(dask_scheduler: Any) -> float | None:
    return dask_scheduler.no_workers_timeout


def _warn_without_no_workers_timeout(client: distributed.Client, target: str | None) -> None:
    """Say so when a remote scheduler would wait forever once every worker is gone (bigdist cannot change that)."""
    try:
        timeout = client.run_on_scheduler(_no_workers_timeout)
    except Exception as error:  # noqa: BLE001  (a scheduler may refuse to run functions; then nothing is known)
        logger.debug("could not read the no-workers-timeout of the scheduler at %s: %s", target, error)
        return
    if timeout is None:
        logger.warning(
            "the Dask scheduler at %s has no distributed.scheduler.no-workers-timeout: if all its workers die, "
            "the run waits for new ones forever; start the scheduler with "
            "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT=60s to make it fail instead",
            target,
        )


@contextlib.contextmanager
def cluster_errors() -> Iterator[None]:
    """Turn Dask's cluster failures into ClusterError messages that say what happened and what to do."""
    from distributed.scheduler import KilledWorker, NoValidWorkerError, NoWorkerError

    try:
        yield
    except NoWorkerError as error:
        raise ClusterError(
            f"no Dask worker was running for {error.timeout} s, so the run was stopped instead of waiting forever "
            f"(task {error.task!r}); the workers died or were never started: check their logs (out of memory?) "
            f"and the cluster, then run again (unfinished outputs resume). The wait is the bigdist config "
            f"runtime.no-workers-timeout"
        ) from None
    except NoValidWorkerError as error:
        raise ClusterError(
            f"no Dask worker could run task {error.task!r} within {error.timeout} s (its restrictions: hosts "
            f"{sorted(error.host_restrictions)}, workers {sorted(error.worker_restrictions)}, resources "
            f"{error.resource_restrictions}); add workers that satisfy them"
        ) from None
    except KilledWorker as error:
        deaths = error.allowed_failures + 1
        raise ClusterError(
            f"task {error.task!r} was running on Dask workers that died {deaths} time{'s' if deaths > 1 else ''} "
            f"(last: {getattr(error.last_worker, 'address', error.last_worker)}); it probably needs more memory than "
            f"a worker has: give the workers more memory (bigdist config runtime.memory-limit) or use smaller "
            f"blocks (bigdist config chunk-bytes, knn.query-block-rows), then run again (unfinished outputs resume)"
        ) from None


def _scheduler_settings() -> dict[str, Any]:
    """Dask settings of the scheduler of a LocalCluster bigdist starts (Dask's own setting wins when given)."""
    timeout = config.get("runtime.no-workers-timeout")
    if timeout is None or dask.config.get("distributed.scheduler.no-workers-timeout", None) is not None:
        return {}
    return {"distributed.scheduler.no-workers-timeout": f"{timeout}s"}


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
        blas_threads = config.get("runtime.blas-threads")
        if scheduler or scheduler_file:
            client = stack.enter_context(_connect(scheduler, scheduler_file))
            _warn_without_no_workers_timeout(client, scheduler or scheduler_file)
        else:
            n_workers = n_workers or config.get("runtime.n-workers") or os.cpu_count() or 1
            threads_per_worker = threads_per_worker or config.get("runtime.threads-per-worker")
            blas_threads = blas_threads or max(1, CPU_COUNT // (n_workers * threads_per_worker))
            stack.enter_context(dask.config.set(_scheduler_settings()))
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    memory_limit=memory_limit or config.get("runtime.memory-limit"),
                    dashboard_address=_free_dashboard_address(
                        dashboard_address or config.get("runtime.dashboard-address")
                    ),
                    host="127.0.0.1",
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        client.register_plugin(BlasThreadLimit(blas_threads))
        if client.dashboard_link:
            logger.info("Dask dashboard: %s", client.dashboard_link)
        if performance_report:
            stack.enter_context(distributed.performance_report(filename=performance_report))
        yield client
