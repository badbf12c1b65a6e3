"""Where the tasks of the waves run: one interface over the ambient scheduler, refilled as tasks finish.

An executor takes calls (:meth:`submit`, a handle back), hands finished
ones back (:meth:`completed`, at least one at a time, raising a failed
task's own exception) and drops what is still queued (:meth:`cancel`). The
wave runners keep at most a window of calls submitted and not yet handed
back, and submit the next as soon as one comes back, so no thread waits for
the slowest task of a wave. Which executor runs them follows the ambient
dask scheduler:

- a ``dask.distributed`` Client: futures, handed back with ``as_completed``;
- the threaded scheduler (the default, ``scheduler="threads"``, a
  ``ThreadPoolExecutor`` as dask's ``pool`` or ``scheduler``): that pool, or
  a pool of :func:`local_threads` threads of our own for the run;
- ``scheduler="synchronous"``: inline, in the order submitted;
- anything else (``processes``, a ``get`` function, another kind of pool):
  one ``dask.compute`` per window, which is correct on any scheduler but
  waits for a window's slowest task before the next starts.
"""

from __future__ import annotations

import contextvars
import itertools
import os
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import dask

from bigdist.resources import current_client

_SYNCHRONOUS = ("synchronous", "sync", "single-threaded")
_THREADED = (None, "threads", "threading")

T = TypeVar("T")


class Executor(Protocol):
    """Runs the calls of a wave runner; ``key`` names the task where the scheduler shows names."""

    def submit(self, func: Callable[..., Any], *args: Any, key: str | None = None) -> Hashable: ...

    def completed(self) -> Iterator[tuple[Hashable, Any]]: ...

    def cancel(self) -> None: ...


def ambient_client() -> Any | None:
    """The ``dask.distributed`` Client the computation would run on, or None for the local schedulers."""
    scheduler = dask.config.get("scheduler", None)
    if scheduler not in (None, "dask.distributed", "distributed"):
        return None
    return current_client()


def _scheduler_name() -> Any:
    scheduler = dask.config.get("scheduler", None)
    return scheduler.lower() if isinstance(scheduler, str) else scheduler


def _thread_pool() -> ThreadPoolExecutor | None:
    """The thread pool the threaded scheduler is told to use (``scheduler`` or ``pool`` in dask's config), if any."""
    scheduler = _scheduler_name()
    if isinstance(scheduler, ThreadPoolExecutor):
        return scheduler
    pool = dask.config.get("pool", None)
    if scheduler in _THREADED and isinstance(pool, ThreadPoolExecutor):
        return pool
    return None


def local_threads() -> int:
    """Threads of the local scheduler: its thread pool's, else dask's ``num_workers``, else the cores; 1 if sync."""
    if _scheduler_name() in _SYNCHRONOUS:
        return 1
    pool = _thread_pool()
    if pool is not None:
        return max(1, pool._max_workers)
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


class _QueuedExecutor:
    """Calls queued in this process, each with a handle from a counter, until :meth:`completed` runs them."""

    def __init__(self) -> None:
        self.pending: deque[tuple[int, Callable[..., Any], tuple[Any, ...]]] = deque()
        self.counter = itertools.count()

    def submit(self, func: Callable[..., Any], *args: Any, key: str | None = None) -> Hashable:
        handle = next(self.counter)
        self.pending.append((handle, func, args))
        return handle

    def cancel(self) -> None:
        self.pending.clear()


class InlineExecutor(_QueuedExecutor):
    """The synchronous scheduler: each call runs in this thread, in the order submitted, when handed back."""

    def completed(self) -> Iterator[tuple[Hashable, Any]]:
        handle, func, args = self.pending.popleft()
        yield handle, func(*args)


class ThreadExecutor:
    """A thread pool: calls run as soon as a thread is free, handed back as they finish.

    Parameters
    ----------
    pool : ThreadPoolExecutor, optional
        The pool of dask's config; None: a pool of ``threads`` threads of our own, shut down by :meth:`close`.
    threads : int
        Threads of our own pool.
    """

    def __init__(self, pool: ThreadPoolExecutor | None, threads: int) -> None:
        self.owned = pool is None
        # The pool's size is what bigdist.blas reads from a task's thread to share the cores with BLAS.
        self.pool = pool if pool is not None else ThreadPoolExecutor(threads, thread_name_prefix="bigdist")
        self.live: dict[Future[Any], int] = {}
        self.counter = itertools.count()

    def submit(self, func: Callable[..., Any], *args: Any, key: str | None = None) -> Hashable:
        # The caller's context variables reach the task, as with dask's own pool.
        future = self.pool.submit(contextvars.copy_context().run, func, *args)
        self.live[future] = next(self.counter)
        return future

    def completed(self) -> Iterator[tuple[Hashable, Any]]:
        """Every call finished by now (at least one), in the order submitted; raises a failed call's exception."""
        done, _ = wait(self.live, return_when=FIRST_COMPLETED)
        for future in sorted(done, key=self.live.__getitem__):
            del self.live[future]
            yield future, future.result()

    def cancel(self) -> None:
        """Drop the calls not started (those running finish in their threads)."""
        for future in self.live:
            future.cancel()
        self.live.clear()

    def close(self) -> None:
        if self.owned:
            self.pool.shutdown(wait=False, cancel_futures=True)


class WaveExecutor(_QueuedExecutor):
    """Any other local scheduler: the calls submitted since the last hand-back run as one ``dask.compute``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def completed(self) -> Iterator[tuple[Hashable, Any]]:
        wave, self.pending = self.pending, deque()
        calls = [
            dask.delayed(func, pure=False)(*args, dask_key_name=f"{self.name}-{handle}") for handle, func, args in wave
        ]
        results = dask.compute(*calls, optimize_graph=False)
        yield from zip((handle for handle, _, _ in wave), results, strict=True)


class DistributedExecutor:
    """Submits futures to a Client and hands them back as they complete."""

    def __init__(self, client: Any, name: str) -> None:
        from distributed import as_completed

        self.client = client
        self.name = name
        self.counter = itertools.count(1)
        self.running = as_completed()
        self.live: set[Any] = set()

    def submit(
        self, func: Callable[..., Any], *args: Any, key: str | None = None, track: bool = True, **options: Any
    ) -> Any:
        """A future of ``func(*args)``; ``options`` go to ``Client.submit``; ``track=False``: not handed back."""
        name = f"{self.name}-{next(self.counter) if key is None else key}"
        future = self.client.submit(func, *args, key=name, pure=False, **options)
        if track:
            self.running.add(future)
            self.live.add(future)
        return future

    def completed(self) -> Iterator[tuple[Any, Any]]:
        """At least one finished future (more if several finished meanwhile) and its result; raises a task's error."""
        batch = self.running.next_batch(block=True)
        # Raises the first failed task's own exception (e.g. CorruptChunkError).
        results = self.client.gather(batch)
        self.live.difference_update(batch)
        # Forgotten by the scheduler before the next task is submitted: cancel sends its message from the
        # client's event loop and waits, where a release would be queued behind the next submission.
        self.client.cancel(batch)
        yield from zip(batch, results, strict=True)

    def cancel(self) -> None:
        if self.live:
            self.client.cancel(list(self.live))
        self.live.clear()


@contextmanager
def open_executor(name: str, client: Any | None = None) -> Iterator[Any]:
    """The executor of the ambient scheduler for one run (``client``: from :func:`ambient_client`).

    On any error (a task's, or Ctrl-C) the calls not yet started are
    dropped and the error goes to the caller at once, as dask's threaded
    scheduler does: calls already running finish in their threads, and a
    block they write is only marked done once it is stored.
    """
    scheduler = _scheduler_name()
    pool = _thread_pool()
    if client is not None:
        executor: Any = DistributedExecutor(client, name)
    elif scheduler in _SYNCHRONOUS:
        executor = InlineExecutor()
    elif pool is not None or (scheduler in _THREADED and dask.config.get("pool", None) is None):
        executor = ThreadExecutor(pool, local_threads())
    else:
        executor = WaveExecutor(name)
    try:
        yield executor
    except BaseException:
        executor.cancel()
        raise
    finally:
        if isinstance(executor, ThreadExecutor):
            executor.close()


def run_window(
    executor: Executor,
    items: Iterable[T],
    submit: Callable[[T], Hashable],
    done: Callable[[T, Any], None],
    window: int,
) -> None:
    """``submit(item)`` for every item with at most ``window`` handed out at once; ``done(item, result)`` as each ends.

    The next item is submitted as soon as a finished one is handed back.
    """
    pending = iter(items)
    live: dict[Hashable, T] = {}

    def refill() -> None:
        for item in itertools.islice(pending, max(0, window - len(live))):
            live[submit(item)] = item

    refill()
    while live:
        for handle, value in executor.completed():
            done(live.pop(handle), value)
        refill()


__all__ = [
    "DistributedExecutor",
    "Executor",
    "InlineExecutor",
    "ThreadExecutor",
    "WaveExecutor",
    "ambient_client",
    "local_threads",
    "open_executor",
    "run_window",
]
