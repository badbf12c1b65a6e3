"""What the tests of the waves share: digests of stored chunks, counted calls, a watch on the scheduler."""

from __future__ import annotations

import glob
import hashlib
import os
import pathlib
from types import ModuleType
from typing import Any

import pytest
from distributed.diagnostics.plugin import SchedulerPlugin


def chunk_digests(path: str) -> dict[str, str]:
    """md5 of every stored chunk file of the output's result arrays, by relative path."""
    files = sorted(glob.glob(f"{path}/*/c/**", recursive=True))
    return {os.path.relpath(f, path): hashlib.md5(pathlib.Path(f).read_bytes()).hexdigest() for f in files
            if os.path.isfile(f) and "bigdist_progress" not in f}  # fmt: skip


def counting(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, calls: dict[str, int], fail_at: int | None = None
) -> Any:
    """Count the calls of ``module.name`` in ``calls[name]``, the ``fail_at``-th raising KeyboardInterrupt.

    Returns the real function.
    """
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        if calls[name] == fail_at:
            raise KeyboardInterrupt  # as if the run were killed here
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return real


class SchedulerWatch(SchedulerPlugin):
    """Records the most tasks the scheduler held at once, and every key it saw."""

    name = "bigdist-test-watch"

    async def start(self, scheduler):
        self.scheduler, self.most, self.keys, self.at_most = scheduler, 0, set(), {}

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "released" and finish == "waiting":
            self.keys.add(key)  # submitted since the watch began (the fixture's input may linger as released keys)
        live = {
            k: task
            for k, task in self.scheduler.tasks.items()
            if k in self.keys and task.state not in ("released", "forgotten")
        }
        if len(live) > self.most:
            self.most = len(live)
            self.at_most = {str(k): (task.state, len(task.who_wants or ())) for k, task in live.items()}
