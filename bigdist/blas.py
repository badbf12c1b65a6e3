"""BLAS threads inside bigdist's tasks: dask threads times BLAS threads never exceed the cores.

OpenBLAS (NumPy's and SciPy's, the latter behind numba's ``np.dot``) keeps
one thread count per process, and ``openblas_set_num_threads_local`` sets
that same global in a pthreads build, so no limit can be private to one
dask thread. Every graph builder therefore wraps the kernels of its tasks in
:class:`BlasLimited`: the first such task to start in a process lowers the
count of every loaded BLAS library to this process's share of the cores,
the last one to finish puts the counts back as they were. A limit is only
ever lowered, never raised (the ``OPENBLAS_NUM_THREADS=1`` that
distributed's nanny gives each worker process stays). Between calls
nothing is left changed; during one, other threads of the process see the
same lowered count (the price of a process-wide setting).

The share is ``cores // dask threads of this process``, the dask threads
being those of the distributed workers living in this process, of the
thread pool running the task (the threaded scheduler's, or the one the waves
start with its thread count), or, in the main thread of a
process started by ``multiprocessing`` (the processes scheduler starts one
per core), one per core. The ``bigdist.runtime.blas-threads`` config, when
set, replaces the share.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from dask.base import tokenize
from dask.system import CPU_COUNT

from bigdist import config

_GONE = ("stopping", "stopped", "closing", "closing_gracefully", "closed", "failed")
_lock = threading.Lock()
_active = 0
_saved: list[tuple[Any, int]] = []
_found: tuple[int, list[Any]] = (-1, [])


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the loaded BLAS libraries (a scan costs ~15 ms: again only after imports)."""
    global _found
    if _found[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _found = (len(sys.modules), list(ThreadpoolController().select(user_api="blas").lib_controllers))
    return _found[1]


def _executor_of(thread: threading.Thread) -> ThreadPoolExecutor | None:
    """The ThreadPoolExecutor (the threaded scheduler's pool) whose worker ``thread`` is, if any."""
    # A pool adds a thread to its _threads only after starting it, so its first task would not find itself
    # there; the running worker function holds a weak reference to its pool among its arguments.
    for argument in getattr(thread, "_args", ()):
        if isinstance(argument, weakref.ReferenceType):
            pool = argument()
            if isinstance(pool, ThreadPoolExecutor):
                return pool
    return None


def dask_threads() -> int:
    """The dask threads of this process that may run a BLAS call at the same time as the calling one."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            worker = distributed.get_worker()
        except ValueError:
            worker = None
        if worker is not None:
            # processes=False puts several workers in one process, all sharing its BLAS.
            try:
                alive = [w for w in list(distributed.Worker._instances) if w.status.name not in _GONE]
            except RuntimeError:  # a worker of this process started during the copy
                alive = [worker]
            return max(1, sum(w.state.nthreads for w in alive) or worker.state.nthreads)
    current = threading.current_thread()
    pool = _executor_of(current)
    if pool is not None:
        return max(1, pool._max_workers)
    if current is threading.main_thread():
        # The processes scheduler runs tasks in the main thread of one process per core.
        return CPU_COUNT if multiprocessing.parent_process() is not None else 1
    return CPU_COUNT  # a thread of an unknown pool: assume one per core


def _set_threads(library: Any, threads: int) -> None:
    library.set_num_threads(threads)
    # threadpoolctl lets one thread at a time set OpenBLAS's process-wide count, the last to set it until
    # it lets go: let go at once, so the next task (in any thread) can. While a user's threadpool_limits
    # holds it in another thread, the set does nothing and the user's limit stands.
    let_go = getattr(library, "clear_controlling_thread", None)
    if let_go is not None:
        let_go()


def share_of_cores(threads: int) -> int:
    """BLAS threads for each of ``threads`` dask threads sharing the cores (``bigdist.runtime.blas-threads`` if set)."""
    configured = config.get("runtime.blas-threads")
    return configured or max(1, CPU_COUNT // max(1, threads))


def blas_threads() -> int:
    """The BLAS threads a task in the calling thread should use: its share of the cores."""
    return share_of_cores(dask_threads())


def set_blas_threads(threads: int, *, only_lower: bool) -> None:
    """Set every loaded BLAS library to ``threads`` for good (``only_lower``: where it has more), in a worker."""
    with _lock:
        for library in _blas_libraries():
            if library.num_threads > threads or (not only_lower and library.num_threads != threads):
                _set_threads(library, threads)
        for index, (library, _) in enumerate(_saved):
            # A task running now restores the new count, not the one from before.
            _saved[index] = (library, library.num_threads)


@contextmanager
def limited_blas(threads: int | None = None) -> Iterator[None]:
    """Hold BLAS at most ``threads`` (default :func:`blas_threads`) while any task of the process holds it."""
    global _active
    limit = blas_threads() if threads is None else threads
    with _lock:
        if _active == 0:
            _saved[:] = [(library, library.num_threads) for library in _blas_libraries()]
        for library, _ in _saved:
            # Lowered only: a task that wants more than another already running keeps the lower count.
            if library.num_threads > limit:
                _set_threads(library, limit)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                for library, before in _saved:
                    if library.num_threads != before:
                        _set_threads(library, before)
                _saved.clear()


class BlasLimited:
    """A task function run under :func:`limited_blas`; pickles and tokenizes as the function it wraps.

    Parameters
    ----------
    func : callable, the kernel (any arguments)
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with limited_blas():
            return self.func(*args, **kwargs)

    def __dask_tokenize__(self) -> str:
        return tokenize("bigdist-blas-limited", self.func)

    def __repr__(self) -> str:
        return f"BlasLimited({self.func!r})"
