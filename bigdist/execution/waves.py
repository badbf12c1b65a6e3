"""Run a job as bounded waves: a window of tasks in flight, the next ones submitted as earlier ones finish.

Each output block (one query block) is the work of a few *panel* tasks
whose partial results are merged, ``split_every`` at a time, by *combine*
tasks, and a *finish* task that merges the last partials and writes the
block to its Zarr region (then marks it done). The runner keeps at most
``window`` tasks and held partial results at a time — on a
``dask.distributed`` Client it submits futures and refills the window as
they complete; on the local schedulers it runs one ``dask.compute`` per
wave — so the graph on the client and the scheduler never grows with the
data. Progress (blocks written, rate, ETA) goes to the log every
``bigdist.execution.progress-interval`` seconds and to an optional callback.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dask

from bigdist import config
from bigdist.errors import ParameterError

logger = logging.getLogger(__name__)

#: ``progress(done, total, elapsed_seconds)``, called after every finished block.
ProgressCallback = Callable[[int, int, float], None]

# Below this, a merge can wait for a free slot while panels hold the rest (see ``_Runner._step``).
MIN_WINDOW = 4


def ambient_client() -> Any | None:
    """The ``dask.distributed`` Client the computation would run on, or None for the local schedulers."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    scheduler = dask.config.get("scheduler", None)
    if scheduler not in (None, "dask.distributed", "distributed"):
        return None
    try:
        return get_client()
    except ValueError:
        return None


def local_threads() -> int:
    """Threads of the local scheduler: dask's ``num_workers`` config, else the cores; 1 when synchronous."""
    if dask.config.get("scheduler", None) in ("synchronous", "sync", "single-threaded"):
        return 1
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def window_size(client: Any | None = None) -> int:
    """Tasks in flight at once: the cluster's threads times ``bigdist.execution.tasks-per-thread`` (at least 4).

    Parameters
    ----------
    client : distributed.Client or None
        None: the threads of the local scheduler.
    """
    threads = sum(client.nthreads().values()) if client is not None else local_threads()
    return max(MIN_WINDOW, max(1, threads) * config.get("execution.tasks-per-thread"))


@dataclass
class BlockWork:
    """The tasks of one output block: ``panels`` (function, args) each give a partial result,
    ``combine(list_of_partials)`` merges partials, ``finish(list_of_partials, *finish_args)`` writes the block."""

    index: int
    panels: list[tuple[Callable[..., Any], tuple[Any, ...]]]
    combine: Callable[[list[Any]], Any]
    finish: Callable[..., Any]
    finish_args: tuple[Any, ...] = ()
    submitted: int = 0
    running: int = 0
    ready: list[Any] = field(default_factory=list)

    @property
    def panels_left(self) -> bool:
        return self.submitted < len(self.panels)


class Progress:
    """Blocks written out of the total, logged every ``interval`` seconds and passed to ``callback``."""

    def __init__(self, what: str, total: int, done: int, callback: ProgressCallback | None) -> None:
        self.what, self.total, self.done, self.callback = what, total, done, callback
        self.kept = done
        self.start = self.last_log = time.perf_counter()
        self.interval = float(config.get("execution.progress-interval"))

    def advance(self) -> None:
        self.done += 1
        now = time.perf_counter()
        elapsed = now - self.start
        if self.callback is not None:
            self.callback(self.done, self.total, elapsed)
        if now - self.last_log >= self.interval or self.done == self.total:
            self.last_log = now
            new = self.done - self.kept
            rate = new / elapsed if elapsed > 0 else math.inf
            left = (self.total - self.done) / rate if rate > 0 else math.inf
            logger.info(
                "%s: %d of %d blocks written (%.1f%%), %.2f blocks/s, ETA %s",
                self.what,
                self.done,
                self.total,
                100.0 * self.done / max(1, self.total),
                rate,
                _duration(left),
            )


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class _LocalExecutor:
    """Collects submitted calls and runs them as one ``dask.compute`` per wave on the ambient local scheduler."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending: list[tuple[Any, Callable[..., Any], tuple[Any, ...]]] = []
        self.counter = 0

    def submit(self, func: Callable[..., Any], *args: Any) -> Any:
        handle = object()
        self.pending.append((handle, func, args))
        return handle

    def completed(self) -> Iterator[tuple[Any, Any]]:
        """Run the wave; (handle, result) of each of its calls."""
        wave, self.pending = self.pending, []
        calls = []
        for _, func, args in wave:
            self.counter += 1
            calls.append(dask.delayed(func, pure=False)(*args, dask_key_name=f"{self.name}-{self.counter}"))
        results = dask.compute(*calls, optimize_graph=False)
        yield from zip((handle for handle, _, _ in wave), results, strict=True)

    def cancel(self) -> None:
        self.pending = []


class _DistributedExecutor:
    """Submits futures to a Client and hands them back as they complete."""

    def __init__(self, client: Any, name: str) -> None:
        from distributed import as_completed

        self.client = client
        self.name = name
        self.counter = 0
        self.running = as_completed()
        self.live: set[Any] = set()

    def submit(self, func: Callable[..., Any], *args: Any) -> Any:
        self.counter += 1
        future = self.client.submit(func, *args, key=f"{self.name}-{self.counter}", pure=False)
        self.running.add(future)
        self.live.add(future)
        return future

    def completed(self) -> Iterator[tuple[Any, Any]]:
        """At least one finished future (more if several finished meanwhile); raises a task's error."""
        for future in self.running.next_batch(block=True):
            self.live.discard(future)
            if future.status == "error":
                future.result()  # raises the task's own exception (e.g. CorruptChunkError)
            # The partial stays on its worker: the next task receives the future, not the data.
            yield future, future

    def cancel(self) -> None:
        if self.live:
            self.client.cancel(list(self.live))
        self.live.clear()


def run_blocks(
    blocks: Iterator[BlockWork],
    *,
    total: int,
    done: int = 0,
    split_every: int,
    name: str,
    what: str,
    progress: ProgressCallback | None = None,
    window: int | None = None,
) -> None:
    """Run every block's panels, merges and finish with at most ``window`` tasks and held partials at a time.

    Parameters
    ----------
    blocks : iterator of BlockWork
        The blocks still to write, built as the runner reaches them (so a job
        of millions of blocks is never held at once).
    total : int
        Blocks of the whole output (for progress); ``done`` of them were written before.
    split_every : int
        Most partials one combine or finish task merges.
    name : str
        Prefix of the task keys, e.g. ``bigdist-knn-panel``.
    what : str
        What the progress lines call the job.
    progress : callable, optional
        ``progress(done, total, elapsed_seconds)`` after every finished block.
    window : int, optional
        Default :func:`window_size` of the ambient scheduler.
    """
    client = ambient_client()
    if window is None:
        window = window_size(client)
    if window < MIN_WINDOW:
        raise ParameterError(f"the window of tasks in flight must be >= {MIN_WINDOW}, got window={window}")
    token = f"{name}-{uuid.uuid4().hex[:12]}"
    executor: Any = _DistributedExecutor(client, token) if client is not None else _LocalExecutor(token)
    runner = _Runner(blocks, executor, window, split_every, Progress(what, total, done, progress))
    try:
        runner.run()
    except BaseException:
        executor.cancel()
        raise


class _Runner:
    """The bookkeeping of :func:`run_blocks`: which task to submit next, and what its completion frees.

    Occupancy counts the tasks submitted and not finished, their inputs, and
    the finished partials not yet merged; it never exceeds the window. A panel
    is only submitted while two slots are free, so a merge can always start
    when nothing runs, and there is no deadlock.
    """

    def __init__(
        self, blocks: Iterator[BlockWork], executor: Any, window: int, split_every: int, progress: Progress
    ) -> None:
        self.blocks = blocks
        self.executor = executor
        self.window = window
        self.split_every = split_every
        self.progress = progress
        self.active: list[BlockWork] = []
        self.exhausted = False
        self.occupancy = 0
        # handle -> (block, kind, inputs held by the task)
        self.tasks: dict[Any, tuple[BlockWork, str, int]] = {}
        self.combine_at = max(2, min(split_every, window - 2))

    def _activate(self) -> BlockWork | None:
        if self.exhausted:
            return None
        block = next(self.blocks, None)
        if block is None:
            self.exhausted = True
            return None
        self.active.append(block)
        return block

    def _submit(self, block: BlockWork, kind: str, func: Callable[..., Any], *args: Any, inputs: int = 0) -> None:
        handle = self.executor.submit(func, *args)
        self.tasks[handle] = (block, kind, inputs)
        self.occupancy += 1
        if kind != "finish":
            block.running += 1

    def _merge(self) -> bool:
        """Submit one merge (finish or combine) if one is due and a slot is free."""
        if self.occupancy + 1 > self.window:
            return False
        crowded = self.occupancy + 2 > self.window
        for block in self.active:
            if not block.panels_left and block.running == 0 and len(block.ready) <= self.split_every:
                if block.ready or not block.panels:
                    partials, block.ready = block.ready, []
                    # The held partials now count as the finish task's inputs (same occupancy).
                    self._submit(block, "finish", block.finish, partials, *block.finish_args, inputs=len(partials))
                    block.running = -1  # finished blocks take no more work
                    return True
            if len(block.ready) >= self.combine_at or (crowded and len(block.ready) >= 2):
                count = min(self.split_every, len(block.ready))
                partials, block.ready = block.ready[:count], block.ready[count:]
                self._submit(block, "combine", block.combine, partials, inputs=len(partials))
                return True
        return False

    def _panel(self) -> bool:
        """Submit the next panel of the oldest block with panels left, activating a new block if none has."""
        if self.occupancy + 2 > self.window:
            return False
        block = next((b for b in self.active if b.panels_left), None) or self._activate()
        if block is None or not block.panels_left:
            return block is not None  # a block without panels goes straight to its finish
        func, args = block.panels[block.submitted]
        block.submitted += 1
        self._submit(block, "panel", func, *args)
        return True

    def run(self) -> None:
        while True:
            while self._merge() or self._panel():
                pass
            if not self.tasks:
                if self.exhausted and not self.active:
                    return
                raise RuntimeError("bigdist wave runner made no progress")  # a bookkeeping bug, never user input
            for handle, value in self.executor.completed():
                block, kind, inputs = self.tasks.pop(handle)
                # The task's inputs are released with it; a partial result stays held until merged.
                self.occupancy -= 1 + inputs
                if kind == "finish":
                    self.active.remove(block)
                    self.progress.advance()
                    continue
                block.running -= 1
                block.ready.append(value)
                self.occupancy += 1


__all__ = ["BlockWork", "Progress", "ProgressCallback", "ambient_client", "run_blocks", "window_size"]
