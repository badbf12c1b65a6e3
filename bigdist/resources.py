"""What the ambient cluster offers an algorithm: memory for persisted data, threads.

Library code never creates a Client; these helpers ask the ambient one, and
fall back to the machine's own resources under the local schedulers.
"""

from __future__ import annotations

import logging
import os
import time

import dask.array as da

logger = logging.getLogger(__name__)


def memory_budget() -> float:
    """Bytes that data kept in the cluster may take: half the workers' memory limits (a quarter of RAM locally)."""
    try:
        from distributed import get_client

        workers = get_client().scheduler_info()["workers"].values()
        return 0.5 * sum(w.get("memory_limit", 0) or 0 for w in workers)
    except (ImportError, ValueError):
        return 0.25 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def threads() -> int:
    """Threads of the ambient cluster (the machine's cores without a distributed client)."""
    try:
        from distributed import get_client

        return max(1, sum(get_client().nthreads().values()))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def should_persist(X: da.Array, persist: bool | None) -> bool:
    """``persist`` if given, else whether the data fits in :func:`memory_budget`."""
    return X.nbytes <= memory_budget() if persist is None else bool(persist)


def maybe_persist(X: da.Array, persist: bool | None, algorithm: str) -> da.Array:
    """Keep the data in the cluster's memory between passes when it fits in :func:`memory_budget` (or when told to)."""
    if should_persist(X, persist):
        began = time.perf_counter()
        X = X.persist()
        try:
            from distributed import get_client, wait

            get_client()
            # Loaded before the first pass, so its time counts as loading, not as an iteration.
            wait(X)
        except (ImportError, ValueError):
            pass  # local schedulers persist synchronously
        logger.info(
            "%s: keeping the %.2f GB of data in memory (loaded in %.1f s)",
            algorithm, X.nbytes / 1e9, time.perf_counter() - began,
        )  # fmt: skip
        return X
    logger.info("%s: %.2f GB of data is re-read every iteration", algorithm, X.nbytes / 1e9)
    return X
