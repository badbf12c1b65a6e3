"""Helpers the benchmark scripts share: process memory, best-of-two timers, the command line.

Not a benchmark; the scripts import it from their own directory (run them as ``python scripts/bench_x.py``).
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from typing import Any

import numpy as np
import psutil


def print_command() -> None:
    """The command line of this run, so its output says how to repeat it."""
    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)


def best_cpu_seconds(func: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Fewest CPU seconds of this process over two calls, and the last result.

    CPU time, not wall time: on a machine shared with other jobs, the time
    slices they take do not count. Best of two: on these VMs the first touch
    of a freshly mapped output costs about 3 s per GB of page faults, which
    a repeated call mostly no longer pays; every library gets the same rule.
    """
    best, value = float("inf"), None
    for _ in range(2):
        value = None  # the previous result is freed before the next call
        start = time.process_time()
        value = func(*args, **kwargs)
        best = min(best, time.process_time() - start)
    return best, value


def best_wall_seconds(func: Any, *args: Any, **kwargs: Any) -> float:
    """Fewest wall seconds over two calls."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        func(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def process_rss() -> dict[int, int]:
    """RSS of this process and of all its descendants, by pid."""
    me = psutil.Process()
    rss = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            rss[proc.pid] = proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss


def total_rss() -> int:
    """RSS summed over this process and its descendants."""
    return sum(process_rss().values())


class PeakRSS:
    """Peak of the RSS summed over this process and its descendants, sampled in a thread.

    Keeps every sample ``(seconds since start, total bytes)`` and the
    per-process breakdown at the peak.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_at = 0.0
        self.peak_breakdown: dict[int, int] = {}
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="peak-rss")
        self._start = 0.0

    def _sample(self) -> None:
        while True:
            rss = process_rss()
            total = sum(rss.values())
            now = time.perf_counter() - self._start
            self.samples.append((now, total))
            if total > self.peak:
                self.peak, self.peak_at, self.peak_breakdown = total, now, rss
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRSS:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def timeline(self, points: int = 11) -> list[tuple[float, int]]:
        """The samples nearest to ``points`` evenly spaced moments of the run."""
        if not self.samples:
            return []
        end = self.samples[-1][0]
        times = np.array([t for t, _ in self.samples])
        picks = [int(np.abs(times - end * i / (points - 1)).argmin()) for i in range(points)]
        return [self.samples[i] for i in picks]
