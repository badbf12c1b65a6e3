"""What the ambient cluster offers an algorithm: memory for persisted data, threads.

Library code never creates a Client; these helpers ask the ambient one, and
fall back to the machine's own resources under the local schedulers.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import dask
import dask.array as da
import dask.threaded
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph

logger = logging.getLogger(__name__)


def current_client() -> Any | None:
    """The current ``distributed`` Client, or None; never imports distributed (~0.3 s), which any Client has."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


def _default_local_scheduler() -> Any | None:
    """dask's threaded scheduler when dask would pick it (none configured, no Client), named; else None.

    Left to choose, dask imports distributed (~0.2 s) to look for a Client,
    even where none can exist; named, it does not.
    """
    if dask.config.get("scheduler", None) is None and current_client() is None:
        return dask.threaded.get
    return None


def compute(*collections: Any, **kwargs: Any) -> tuple[Any, ...]:
    """``dask.compute`` on the ambient scheduler, without importing distributed to look for a Client."""
    if "scheduler" not in kwargs:
        kwargs["scheduler"] = _default_local_scheduler()
    return dask.compute(*collections, **kwargs)


def persist(*collections: Any) -> tuple[Any, ...]:
    """``dask.persist`` on the ambient scheduler, without importing distributed to look for a Client."""
    return dask.persist(*collections, scheduler=_default_local_scheduler())


def spread(X: da.Array, workers: list[str]) -> da.Array:
    """``X`` persisted on a Client, its row blocks moved so that block ``i`` is on ``workers[i % len(workers)]``.

    The persisted blocks land where their inputs were read, often most on
    one worker; tasks that go to their data then queue there. Each block
    moves once, under a key of its own (its lineage kept, so a lost block is
    recomputed).
    """
    from distributed import get_client, wait

    client = get_client()
    by_key = {future.key: future for future in client.futures_of(X)}
    name = f"{X.name}-spread"
    # Loosely placed: a block lost with its worker is recomputed on another.
    moved = [
        client.submit(_same, by_key[key], key=(name, *key[1:]), workers=[workers[i % len(workers)]],
                      allow_other_workers=True, pure=False)
        for i, key in enumerate(flatten(X.__dask_keys__()))
    ]  # fmt: skip
    wait(moved)
    graph = HighLevelGraph.from_collections(name, {future.key: future for future in moved}, dependencies=())
    return da.Array(graph, name, X.chunks, meta=X._meta)


def _same(block: Any) -> Any:
    return block


def memory_budget() -> float:
    """Bytes that data kept in the cluster may take: half the workers' memory limits (a quarter of RAM locally)."""
    client = current_client()
    if client is None:
        return 0.25 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    workers = client.scheduler_info()["workers"].values()
    return 0.5 * sum(w.get("memory_limit", 0) or 0 for w in workers)


def threads() -> int:
    """Threads of the ambient cluster (the machine's cores without a distributed client)."""
    client = current_client()
    if client is None:
        return os.cpu_count() or 1
    return max(1, sum(client.nthreads().values()))


def should_persist(X: da.Array, persist: bool | None) -> bool:
    """``persist`` if given, else whether the data fits in :func:`memory_budget`."""
    return X.nbytes <= memory_budget() if persist is None else bool(persist)


def maybe_persist(X: da.Array, persist: bool | None, algorithm: str) -> da.Array:
    """Keep the data in the cluster's memory between passes when it fits in :func:`memory_budget` (or when told to)."""
    if should_persist(X, persist):
        began = time.perf_counter()
        client = current_client()
        X = X.persist(scheduler=_default_local_scheduler())  # local schedulers persist synchronously
        if client is not None:
            from distributed import wait

            # Loaded before the first pass, so its time counts as loading, not as an iteration.
            wait(X)
        logger.info(
            "%s: keeping the %.2f GB of data in memory (loaded in %.1f s)",
            algorithm, X.nbytes / 1e9, time.perf_counter() - began,
        )  # fmt: skip
        return X
    logger.info("%s: %.2f GB of data is re-read every iteration", algorithm, X.nbytes / 1e9)
    return X
