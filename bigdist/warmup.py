"""Compiled kernels loaded on a thread of their own while a call reads its data.

The first call of a numba kernel in a process loads numba's typing and
lowering registries and the kernel's cached machine code, a quarter of a
second, during which the other dask threads wait at numba's lock with a
core idle. A call that is about to run kernels in this process starts
:func:`warm_up` on tiny inputs first: the loading then overlaps the data's
decompression (which releases the GIL). k-means does, before it reads its
data into memory. A kNN call does not: its graph is built and run in Python
(holding the GIL) while it reads, and loading ahead only delayed its first
tasks (2,000 x 1M x 128: 3.11 s without, 3.30 s with, medians of 6).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

import dask
import dask.local
import dask.threaded

from bigdist.resources import current_client

logger = logging.getLogger(__name__)

_started: set[Hashable] = set()
_started_lock = threading.Lock()


# The schedulers that run tasks in this process's threads.
_LOCAL_SCHEDULERS = (None, "threads", "threading", "sync", "synchronous", "single-threaded", dask.threaded.get,
                     dask.local.get_sync)  # fmt: skip


def kernels_run_here() -> bool:
    """Whether a computation started now runs its tasks in this process (not in a Client's workers or processes)."""
    scheduler = dask.config.get("scheduler", None)
    if not any(scheduler is local or scheduler == local for local in _LOCAL_SCHEDULERS):
        return False
    return scheduler is not None or current_client() is None


def warm_up(key: Hashable, kernel: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``kernel(*args, **kwargs)`` on a daemon thread, once per process and ``key``, if kernels run here.

    ``key`` names what the call loads (the kernel and the argument types that
    select its compiled version). A failure is only logged: the real call meets it and reports it.
    """
    if not kernels_run_here():
        return  # nothing marked: a later call whose tasks run here loads it
    with _started_lock:
        if key in _started:
            return
        _started.add(key)
    threading.Thread(target=_run, args=(kernel, args, kwargs), name="bigdist-warm-up", daemon=True).start()


def _run(kernel: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        kernel(*args, **kwargs)
    except Exception:
        logger.debug("loading the compiled kernel %r ahead failed", kernel, exc_info=True)
