"""K-means on blocks: assignment by the expansion trick, partial sums, their merge. NumPy only.

A Lloyd pass maps ``kmeans_chunk`` (or ``kmeans_bounded_chunk``, which also
carries per-row bounds between passes and skips the rows whose centroid
provably stays) over the row blocks and merges the partial states with
``kmeans_combine``; the state is a small dict::

    {"sums": (k, d) float64, "counts": (k,) int64, "inertia": float,
     "full_rows": rows assigned through the GEMM (the others kept their centroid by Hamerly's bounds),
     "moments": (2, d) float64 (sum of x and of x**2, for the data's variance),
     "far": the block's rows farthest from their centroid (for empty clusters)}
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from bigdist.errors import ValueRangeError
from bigdist.kernels.assign import DONE, lloyd_block
from bigdist.kernels.metrics import margin
from bigdist.kernels.scaling import largest_magnitude, safe_range

# Rows per step: the step's rows and its (k, STEP_ROWS) products stay in cache between the GEMM and the sums.
STEP_ROWS = 1024

# Per-thread scratch arrays up to this size are kept from one task to the next.
SCRATCH_KEEP_BYTES = 16 * 2**20
_thread_buffers = threading.local()

# What a row carries from one Lloyd pass to the next (Hamerly's bounds).
BOUNDS_DTYPE = np.dtype([("label", np.int64), ("lower", np.float64)])


def _scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A scratch array of this thread, kept for its later tasks (contents undefined).

    Under Dask's ``MALLOC_TRIM_THRESHOLD_`` every fresh array of more than
    128 KiB is fresh pages, and faulting them in cost ~20% of a bounded
    pass's task. Arrays above ``SCRATCH_KEEP_BYTES`` are not kept.
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    if size * dtype.itemsize > SCRATCH_KEEP_BYTES:
        return np.empty(shape, dtype=dtype)
    buffers = _thread_buffers.__dict__
    buffer = buffers.get((name, dtype.str))
    if buffer is None or buffer.size < size:
        buffer = buffers[(name, dtype.str)] = np.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


def _gemm_inputs(centroids: np.ndarray, dtype: np.dtype, n_features: int) -> tuple[Any, ...]:
    """The ``gemm`` tuple of :func:`~bigdist.kernels.assign.lloyd_block` for a GEMM in ``dtype``.

    Both sides are shifted to the centroids' mean, which keeps the
    expansion's cancellation small for data far from the origin.
    """
    shift = centroids.mean(axis=0).astype(dtype)
    centres = np.ascontiguousarray((centroids - shift).astype(dtype))
    half_norms = 0.5 * np.einsum("ij,ij->i", centres, centres).astype(np.float64)
    max_norm = float(np.sqrt(2 * half_norms.max()))
    # The error bound of |c|^2/2 - x.c is half that of the squared distance, which scales with (|x| + |c|)^2.
    bound_factor = float(0.5 * margin("sqeuclidean", dtype, n_features, np.zeros(1), 1.0)[0])
    low, high = safe_range(dtype, n_features)
    if dtype == np.float64:
        low = 0.0  # tiny float64 values lose nothing that matters; only squares beyond the range do
    return centres, shift, half_norms, max_norm, bound_factor, low, high, largest_magnitude(centroids)


def _run_block(
    block: np.ndarray,
    centroids: np.ndarray,
    carried_out: np.ndarray,
    distances: np.ndarray,
    carried: np.ndarray | None = None,
    drift_other: np.ndarray | None = None,
    half_gap: np.ndarray | None = None,
    with_moments: bool = False,
) -> dict[str, Any]:
    """Label ``block`` into ``carried_out`` and ``distances`` and return its partial sums (see ``lloyd_block``).

    The GEMM runs in float32 for float32 data unless squares leave float32's
    range (then in float64, as exact); ``carried`` (with ``drift_other`` and
    ``half_gap``) are Hamerly's bounds from the last pass.
    """
    n, d = block.shape
    k = len(centroids)
    labels, lower = carried_out["label"], carried_out["lower"]
    if carried is None:
        # Unused: the same array types as real bounds, so the kernel is compiled once.
        bounds = (False, labels, lower, np.zeros(k), np.zeros(k))
    else:
        bounds = (True, carried["label"], carried["lower"], drift_other, half_gap)
    dtype = np.result_type(block.dtype, np.float32)
    for gemm_dtype in [dtype] if dtype == np.float64 else [dtype, np.dtype(np.float64)]:
        step_rows = max(1, min(STEP_ROWS, n))
        scratch = (
            _scratch("products", (k * step_rows,), gemm_dtype),
            _scratch("shifted", (step_rows * d,), gemm_dtype),
            _scratch("best", (step_rows,), np.float64),
            _scratch("second", (step_rows,), np.float64),
            _scratch("first", (step_rows,), np.int64),
            _scratch("selected", (step_rows,), np.int64),
        )
        state = {"sums": np.zeros((k, d)), "counts": np.zeros(k, dtype=np.int64), "moments": np.zeros((2, d))}
        outputs = (labels, lower, distances, state["sums"], state["counts"], state["moments"], with_moments)
        status, inertia, gemm_rows = lloyd_block(
            block, centroids, _gemm_inputs(centroids, gemm_dtype, d), bounds, outputs, scratch
        )
        if status == DONE:
            state.update(inertia=inertia, full_rows=gemm_rows)
            return state
    amax = largest_magnitude(block, centroids)
    raise ValueRangeError(
        f"k-means: values up to {amax:.3g} have squared distances beyond the float64 range (1.8e308); "
        f"rescale the data first, e.g. X / 1e150 (the clustering does not change, centroids scale with it)"
    )


def assign(block: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row, ties to the lower centroid index.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    centroids : ndarray of shape (k, d)

    Returns
    -------
    labels : ndarray of shape (n,), int64
    distances : ndarray of shape (n,), float64, squared distance to that centroid
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    carried_out = _scratch("carried", (len(block),), BOUNDS_DTYPE)
    distances = np.empty(len(block))
    _run_block(block, centroids, carried_out, distances)
    return carried_out["label"].copy(), distances


def kmeans_chunk(
    block: np.ndarray, first_row: int, centroids: np.ndarray, n_far: int, with_moments: bool = False
) -> dict[str, Any]:
    """Partial Lloyd state of one row block.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    first_row : int, global index of ``block[0]``
    centroids : ndarray of shape (k, d)
    n_far : int, how many of the farthest rows to keep for relocating empty clusters
    with_moments : bool, also sum x and x**2 per feature (for the data's variance)
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    carried_out = _scratch("carried", (len(block),), BOUNDS_DTYPE)
    distances = _scratch("distances", (len(block),), np.float64)
    state = _run_block(block, centroids, carried_out, distances, with_moments=with_moments)
    state["far"] = _farthest(distances, carried_out["label"], block, first_row, n_far)
    return state


def kmeans_bounded_chunk(
    block: np.ndarray,
    first_row: int,
    carried: np.ndarray | None,
    centroids: np.ndarray,
    drift_other: np.ndarray,
    half_gap: np.ndarray,
    n_far: int,
    with_moments: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    """Partial Lloyd state of one row block, skipping the rows whose centroid provably stays.

    Hamerly's algorithm: each row carries its label and a lower bound on its
    distance to every other centroid from the last pass. Rows whose exact
    distance to their centroid stays below that bound (less how far the
    other centroids moved) keep their label at the cost of one distance;
    only the others go through the GEMM. The partial state is bitwise that
    of :func:`kmeans_chunk`.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    first_row : int, global index of ``block[0]``
    carried : structured ndarray of shape (n,), dtype ``BOUNDS_DTYPE``, from the last pass; or None
        (the first pass: every row is assigned in full)
    centroids : ndarray of shape (k, d), the current centroids
    drift_other : ndarray of shape (k,), for each centroid the largest distance any other centroid
        moved since the last pass (rounded up)
    half_gap : ndarray of shape (k,), half the distance of each centroid to its nearest other one
        (rounded down)
    n_far : int, how many of the farthest rows to keep for relocating empty clusters
    with_moments : bool, also sum x and x**2 per feature (only with ``carried=None``)

    Returns
    -------
    (dict, structured ndarray of shape (n,)), the partial state and the rows' new labels and bounds
    """
    if with_moments and carried is not None:
        raise ValueError("with_moments needs a full pass (carried=None)")
    centroids = np.asarray(centroids, dtype=np.float64)
    carried_out = np.empty(len(block), dtype=BOUNDS_DTYPE)
    distances = _scratch("distances", (len(block),), np.float64)
    state = _run_block(block, centroids, carried_out, distances, carried, drift_other, half_gap, with_moments)
    state["far"] = _farthest(distances, carried_out["label"], block, first_row, n_far)
    return state, carried_out


def _farthest(
    distances: np.ndarray, labels: np.ndarray, rows: np.ndarray, first_row: int, n_far: int
) -> dict[str, np.ndarray]:
    # Farthest first; ties to the lower global row, so the choice is chunking-independent.
    if 0 < n_far < len(distances):
        keep = np.flatnonzero(distances >= np.partition(distances, len(distances) - n_far)[len(distances) - n_far])
    else:
        keep = np.arange(len(distances) if n_far else 0)
    order = keep[np.lexsort((keep, -distances[keep]))][:n_far]
    return {
        "distance": distances[order],
        "index": first_row + order.astype(np.int64),
        "label": labels[order],
        "row": rows[order].astype(np.float64),
    }


def kmeans_combine(partials: list[dict[str, Any]], n_far: int) -> dict[str, Any]:
    """Merge partial Lloyd states."""
    far = {key: np.concatenate([p["far"][key] for p in partials]) for key in partials[0]["far"]}
    order = np.lexsort((far["index"], -far["distance"]))[:n_far]
    return {
        "full_rows": sum(p["full_rows"] for p in partials),
        "sums": sum(p["sums"] for p in partials),
        "counts": sum(p["counts"] for p in partials),
        "inertia": sum(p["inertia"] for p in partials),
        "moments": sum(p["moments"] for p in partials),
        "far": {key: value[order] for key, value in far.items()},
    }


def update_centroids(state: dict[str, Any], centroids: np.ndarray) -> tuple[np.ndarray, int]:
    """New centroids from a merged state; empty clusters take the farthest rows.

    As scikit-learn does: each empty cluster takes one of the rows farthest
    from their centroid, which leaves its old cluster. Returns the centroids
    and the number of clusters relocated.
    """
    sums = state["sums"].copy()
    counts = state["counts"].astype(np.float64)
    empty = np.flatnonzero(counts == 0)
    far = state["far"]
    for cluster, (row, old) in zip(empty, zip(far["row"], far["label"], strict=False), strict=False):
        sums[old] -= row
        counts[old] -= 1
        sums[cluster] = row
        counts[cluster] = 1
    new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids)
    return new.astype(centroids.dtype), len(empty)


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # Made once: finding the loaded BLAS libraries costs ~15 ms.
    return ThreadpoolController()


def bound_updates(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`kmeans_bounded_chunk` needs to know of a centroid update.

    Parameters
    ----------
    before, after : ndarray of shape (k, d), float64, the centroids of the last pass and of this one

    Returns
    -------
    drift_other : ndarray of shape (k,), for each centroid the largest move of any other one, rounded up
    half_gap : ndarray of shape (k,), half the distance of each new centroid to its nearest other one,
        rounded down (0 when k is 1: no other centroid to tell apart)
    """
    k, d = after.shape
    drift = np.sqrt(((after - before) ** 2).sum(axis=1)) * (1 + 1e-12)
    if k == 1:
        return np.zeros(1), np.full(1, np.inf)
    order = np.argsort(drift)
    drift_other = np.full(k, drift[order[-1]])
    drift_other[order[-1]] = drift[order[-2]]
    centred = after - after.mean(axis=0)
    norms2 = np.einsum("ij,ij->i", centred, centred)
    # Expansion in float64, in row blocks: the k x k gaps at GEMM speed, with the rounding bound subtracted.
    error = 4 * (d + 4) * np.finfo(np.float64).eps * 4 * norms2.max()
    nearest2 = np.empty(k)
    # One BLAS thread: waking the client's BLAS threads for these small products cost ~25 ms a pass.
    with _blas_controller().limit(limits=1, user_api="blas"):
        for start in range(0, k, 1024):
            gaps2 = norms2[start : start + 1024, None] - 2 * centred[start : start + 1024] @ centred.T + norms2[None, :]
            gaps2[np.arange(len(gaps2)), np.arange(start, start + len(gaps2))] = np.inf
            nearest2[start : start + 1024] = gaps2.min(axis=1)
    half_gap = 0.5 * np.sqrt(np.maximum(nearest2 - error, 0.0)) * (1 - 1e-12)
    return drift_other, half_gap
