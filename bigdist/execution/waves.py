"""Run a job as bounded waves: a window of tasks in flight, the next ones submitted as earlier ones finish.

Each output block (one query block) is the work of a few *panel* tasks
and a *finish* task that merges their partial results and writes the block
to its Zarr region (then marks it done). Partial results are small (k
values per row): they come back to the client, which merges them
``split_every`` at a time as they arrive, so no task depends on another and
the scheduler forgets each one as soon as it is done (a tree of merge tasks
would keep the whole lineage of a block in the scheduler until its end).
At most ``window`` tasks are in flight, and the window is refilled as tasks
complete (futures on a ``dask.distributed`` Client, a thread pool on the
threaded scheduler, inline when synchronous; see
:mod:`bigdist.execution.executors`), so the graph on the client and the
scheduler never grows with the data and no thread waits for a slow task.
Progress (blocks written, rate, ETA) goes to the log every
``bigdist.execution.progress-interval`` seconds and to an optional callback.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bigdist import config
from bigdist.errors import ParameterError
from bigdist.execution.executors import Executor, ambient_client, local_threads, open_executor

logger = logging.getLogger(__name__)

#: ``progress(done, total, elapsed_seconds)``, called after every finished block.
ProgressCallback = Callable[[int, int, float], None]


def window_size(client: Any | None = None) -> int:
    """Tasks in flight at once: the cluster's threads times ``bigdist.execution.tasks-per-thread``.

    Parameters
    ----------
    client : distributed.Client or None
        None: the threads of the local scheduler.
    """
    threads = sum(client.nthreads().values()) if client is not None else local_threads()
    return max(1, threads) * config.get("execution.tasks-per-thread")


@dataclass
class BlockWork:
    """The tasks of one output block.

    ``panels``: (function, args) pairs, each computing a partial result in a task;
    ``combine(list_of_partials)``: merges partials on the client, in any grouping (the result must not depend on it);
    ``finish(list_of_partials, *finish_args)``: a task that merges the last partials and writes the block.
    A block without panels is only its finish, with an empty list.
    """

    index: int
    panels: list[tuple[Callable[..., Any], tuple[Any, ...]]]
    combine: Callable[[list[Any]], Any]
    finish: Callable[..., Any]
    finish_args: tuple[Any, ...] = ()
    submitted: int = 0
    running: int = 0
    finishing: bool = False
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
    """Run every block's panels and finish with at most ``window`` tasks in flight.

    Parameters
    ----------
    blocks : iterator of BlockWork
        The blocks still to write, built as the runner reaches them (so a job
        of millions of blocks is never held at once).
    total : int
        Blocks of the whole output (for progress); ``done`` of them were written before.
    split_every : int
        Partials of a block merged at once on the client (and most given to its finish task).
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
    if window < 1:
        raise ParameterError(f"the window of tasks in flight must be >= 1, got window={window}")
    with open_executor(f"{name}-{uuid.uuid4().hex[:12]}", client) as executor:
        _Runner(blocks, executor, window, split_every, Progress(what, total, done, progress)).run()


class _Runner:
    """The bookkeeping of :func:`run_blocks`: which task to submit next, and what a completion does.

    Finish tasks go first (they free the client of a block's partials), then
    the next panel of the oldest block with panels left; a new block is only
    started when the active ones have all their panels submitted.
    """

    def __init__(
        self, blocks: Iterator[BlockWork], executor: Executor, window: int, split_every: int, progress: Progress
    ) -> None:
        self.blocks = blocks
        self.executor = executor
        self.window = window
        self.split_every = split_every
        self.progress = progress
        self.active: list[BlockWork] = []
        self.exhausted = False
        # handle -> (block, is_finish)
        self.tasks: dict[Any, tuple[BlockWork, bool]] = {}

    def _activate(self) -> BlockWork | None:
        block = None if self.exhausted else next(self.blocks, None)
        if block is None:
            self.exhausted = True
            return None
        self.active.append(block)
        return block

    def _next(self) -> bool:
        """Submit one task if a slot is free and one is due."""
        if len(self.tasks) >= self.window:
            return False
        for block in self.active:
            if not block.finishing and not block.panels_left and block.running == 0:
                if len(block.ready) > self.split_every:
                    block.ready = [block.combine(block.ready)]
                partials, block.ready = block.ready, []
                block.finishing = True
                self.tasks[self.executor.submit(block.finish, partials, *block.finish_args)] = (block, True)
                return True
        block = next((b for b in self.active if b.panels_left), None) or self._activate()
        if block is None:
            return False
        if block.panels_left:
            func, args = block.panels[block.submitted]
            block.submitted += 1
            block.running += 1
            self.tasks[self.executor.submit(func, *args)] = (block, False)
        return True  # a block without panels is finished by the next call

    def run(self) -> None:
        while True:
            while self._next():
                pass
            if not self.tasks:
                if self.exhausted and not self.active:
                    return
                raise RuntimeError("bigdist wave runner made no progress")  # a bookkeeping bug, never user input
            self._collect()

    def _collect(self) -> None:
        # A method of its own, so no local variable keeps the last finished future (and its task) alive.
        for handle, value in self.executor.completed():
            block, is_finish = self.tasks.pop(handle)
            if is_finish:
                self.active.remove(block)
                self.progress.advance()
                continue
            block.running -= 1
            block.ready.append(value)
            if len(block.ready) >= self.split_every:
                block.ready = [block.combine(block.ready)]


__all__ = ["BlockWork", "Progress", "ProgressCallback", "ambient_client", "local_threads", "run_blocks", "window_size"]
