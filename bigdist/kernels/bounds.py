"""Running k-th keys that the tasks of one kNN run share within a process. NumPy only.

Each train block's tile used to start its scan with no bound, so every
block paid the warm-up of an empty pool: nearly every early score pooled,
then compacted away, and k survivors per row re-checked in float64 even
when another block had already found better ones. A row's k-th smallest
upper end among any k real pairs is at least its k-th key over the whole
train set, so every tile of the same run and query rows may prune with the
best bound any of them has found, and tiles that run later (the next block
of a panel, the next task on the thread) start from it. The result does not
change: no pair at or below the true k-th key is ever above a valid bound.
Threads update without a lock; a lost update only loses a tightening.

Bounds are keyed by a run's random token, never by content, so a store
rewritten under the same path cannot inherit another run's bounds.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

import numpy as np

# Bytes of bounds a process keeps for later tiles, the least recently used dropped first (a query
# block of 16,384 rows takes 128 KiB); a running tile holds on to its own.
CAPACITY_BYTES = 64 * 2**20

_lock = threading.Lock()
_bounds: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
_kept_bytes = 0


def new_run() -> str:
    """A token for one run's tiles to share bounds under."""
    return uuid.uuid4().hex


def shared_bounds(run: str, first_row: int, n_rows: int) -> np.ndarray:
    """The shared bounds (float64, +inf at first) of query rows [first_row, first_row + n_rows) of ``run``."""
    global _kept_bytes
    key = (run, first_row, n_rows)
    with _lock:
        bounds = _bounds.get(key)
        if bounds is None:
            bounds = _bounds[key] = np.full(n_rows, np.inf)
            _kept_bytes += bounds.nbytes
            while len(_bounds) > 1 and _kept_bytes > CAPACITY_BYTES:
                _kept_bytes -= _bounds.popitem(last=False)[1].nbytes
        else:
            _bounds.move_to_end(key)
        return bounds


__all__ = ["new_run", "shared_bounds"]
