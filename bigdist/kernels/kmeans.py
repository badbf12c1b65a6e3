"""K-means on blocks: assignment by the expansion trick, partial sums, their merge; k-means|| rounds.

The per-step maths is the compiled ``bigdist.kernels.assign.lloyd_rows``;
each thread keeps its scratch arrays between tasks (``_scratch``). With
``threads`` > 1 a block's rows go in pieces to a pool of the process shared
by all its tasks (``_lloyd_shared``), with bitwise the same partial state.

A Lloyd pass maps ``kmeans_chunk`` (or ``kmeans_bounded_chunk``, which also
carries per-row bounds between passes and skips the rows whose centroid
provably stays) over the row blocks and merges the partial states with
``kmeans_combine``; the state is a small dict::

    {"sums": (k, d) float64, "counts": (k,) int64, "inertia": float,
     "full_rows": rows assigned through the GEMM (the others kept their centroid by Hamerly's bounds),
     "moments": (2, d) float64 (sum of x and of x**2, for the data's variance),
     "far": the block's rows farthest from their centroid (for empty clusters)}

With sample weights (``weights=``, or ``with_row_weights`` in a graph) the
sums and the inertia are weighted and the state also holds ``"weights"``,
(k,) float64, each centroid's summed weight, as scikit-learn defines them.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from bigdist.errors import InputShapeError, ParameterError, ValueRangeError
from bigdist.kernels.assign import DONE, accumulate_rows, lloyd_rows
from bigdist.kernels.metrics import margin
from bigdist.kernels.scaling import largest_magnitude, safe_range
from bigdist.kernels.topk import nth_largest

# The GEMM's dtypes, in the order tried: float32 while the values' squares stay in its range.
GEMM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Rows per step: the step's rows stay in cache between the GEMM and the sums. With 512 rather than 1,024
# a tile holds twice the centroids, a shape OpenBLAS runs ~10% faster when the features are few (d=32).
STEP_ROWS = 512

# Most products of one GEMM (a tile of centroids against a step's rows): 512 KiB of float32 stay in L2.
TILE_VALUES = 2**17

# A piece of a block shared among threads (whole steps): a millisecond or two of work, in L2 when summed.
PIECE_BYTES = 2**20

# Scratch arrays a thread keeps from one task to the next, in all (a block of 262,144 rows keeps ~7 MiB).
SCRATCH_KEEP_BYTES = 32 * 2**20
_thread_scratch = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools() -> None:
    # A forked child has none of the pools' threads (nor the lock's holder): it makes its own.
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)

# What a row carries from one Lloyd pass to the next (Hamerly's bounds).
BOUNDS_DTYPE = np.dtype([("label", np.int64), ("lower", np.float64)])

# Each row's nearest k-means|| candidate so far and its squared distance, carried from one round to the next.
NEAREST_DTYPE = np.dtype([("label", np.int64), ("cost", np.float64)])


def _scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A scratch array of this thread, kept for its later tasks (contents undefined).

    Under Dask's ``MALLOC_TRIM_THRESHOLD_`` every fresh array of more than
    128 KiB is fresh pages, and faulting them in cost ~20% of a bounded
    pass's task. A thread keeps at most ``SCRATCH_KEEP_BYTES`` in all; past
    that, arrays are allocated afresh.
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buffers = _thread_scratch.__dict__.setdefault("buffers", {})
    buffer = buffers.get((name, dtype))
    if buffer is None or buffer.size < size:
        kept = sum(kept.nbytes for kept in buffers.values()) - (0 if buffer is None else buffer.nbytes)
        if kept + size * dtype.itemsize > SCRATCH_KEEP_BYTES:
            return np.empty(shape, dtype=dtype)
        buffer = buffers[(name, dtype)] = np.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


def _gemm_inputs(centroids: np.ndarray, dtype: np.dtype, n_features: int, step_rows: int) -> tuple[Any, ...]:
    """The ``gemm`` tuple of :func:`~bigdist.kernels.assign.lloyd_rows` for a GEMM in ``dtype``.

    Both sides are shifted to the centroids' mean, which keeps the
    expansion's cancellation small for data far from the origin. The
    centroids go through the GEMM in tiles of ``TILE_VALUES // step_rows``.
    """
    # Centroids beyond float32's range turn inf here: the kernel, which checks their magnitude, then reports
    # OUT_OF_RANGE and the float64 GEMM runs instead.
    with np.errstate(over="ignore"):
        shift = centroids.mean(axis=0).astype(dtype)
        centres = np.ascontiguousarray((centroids - shift).astype(dtype))
    half_norms = 0.5 * np.einsum("ij,ij->i", centres, centres).astype(np.float64)
    max_norm = float(np.sqrt(2 * half_norms.max()))
    # The error bound of |c|^2/2 - x.c is half that of the squared distance, which scales with (|x| + |c|)^2;
    # plus, for values taken in the GEMM dtype, the rounding of the half norm and of the difference.
    bound_factor = float(0.5 * margin("sqeuclidean", dtype, n_features, np.zeros(1), 1.0)[0] + np.finfo(dtype).eps)
    low, high = safe_range(dtype, n_features)
    if dtype == np.float64:
        low = 0.0  # tiny float64 values lose nothing that matters; only squares beyond the range do
    tile = max(1, TILE_VALUES // step_rows)
    return (
        centres, shift, half_norms, half_norms.astype(dtype), tile, max_norm, bound_factor, low, high,
        largest_magnitude(centroids),
    )  # fmt: skip


def _pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``threads`` threads that the blocks' pieces share (made once per size)."""
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="bigdist-kmeans")
        return pool


def _lloyd_shared(
    block: np.ndarray,
    centroids: np.ndarray,
    gemm: tuple,
    bounds: tuple,
    outputs: tuple,
    step_rows: int,
    threads: int,
    accumulate: bool = True,
) -> tuple[int, float, int]:
    """``lloyd_rows`` over a block on the process's pool of ``threads``: pieces labelled at once, summed in order.

    Every task of the process that runs here waits for the pool, so the
    pieces of all of them keep ``threads`` threads busy to the last one. A
    piece is summed as soon as it and every piece before it are labelled,
    by the thread that labelled it or the one that summed the piece before
    (its rows still in cache), so the sums are bitwise those of one ``lloyd_rows`` over the block.
    Without ``accumulate`` the pieces are only labelled.
    """
    n, d = block.shape
    k = len(centroids)
    pool = _pool(threads)
    piece_rows = max(1, PIECE_BYTES // (d * block.itemsize) // step_rows) * step_rows
    starts = range(0, n, piece_rows)
    labelled = [False] * len(starts)
    lock = threading.Lock()
    running = {"next": 0, "inertia": 0.0, "status": DONE}

    def piece(index: int) -> int:
        start = starts[index]
        scratch = _step_scratch(k, d, step_rows, gemm)
        status, _, rows = lloyd_rows(block, start, min(start + piece_rows, n), False, centroids, gemm, bounds, outputs,
                                     scratch)  # fmt: skip
        with lock:
            labelled[index] = True
            running["status"] = max(running["status"], status)
            if not accumulate or index != running["next"] or running["status"] != DONE:
                return rows
        # This thread holds the sums until it meets a piece not labelled yet: the one labelling it goes on.
        while True:
            start = starts[index]
            stop = min(start + piece_rows, n)
            running["inertia"] = accumulate_rows(block, start, stop, step_rows, centroids, outputs, running["inertia"])
            with lock:
                index += 1
                running["next"] = index
                if index == len(starts) or not labelled[index] or running["status"] != DONE:
                    return rows

    gemm_rows = sum(pool.map(piece, range(len(starts))))
    if running["status"] != DONE:
        return running["status"], 0.0, 0
    return DONE, running["inertia"], gemm_rows


def _step_scratch(k: int, d: int, step_rows: int, gemm: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """The ``scratch`` tuple of :func:`~bigdist.kernels.assign.lloyd_rows`, this thread's."""
    dtype = gemm[0].dtype
    return (
        _scratch("products", (min(k, gemm[4]) * step_rows,), dtype),
        _scratch("shifted", (step_rows * d,), dtype),
        _scratch("best", (step_rows,), dtype),
        _scratch("second", (step_rows,), dtype),
        _scratch("first", (step_rows,), np.int32),
        _scratch("selected", (step_rows,), np.int64),
        _scratch("norms", (step_rows,), np.float64),
    )


def _run_block(
    block: np.ndarray,
    centroids: np.ndarray,
    carried_out: np.ndarray,
    distances: np.ndarray,
    carried: np.ndarray | None = None,
    drift_other: np.ndarray | None = None,
    half_gap: np.ndarray | None = None,
    with_moments: bool = False,
    weights: np.ndarray | None = None,
    threads: int = 1,
    accumulate: bool = True,
) -> dict[str, Any]:
    """Label ``block`` into ``carried_out`` and ``distances`` and return its partial sums (see ``lloyd_rows``).

    The GEMM runs in float32, for float64 data too, unless squares leave
    float32's range (then in float64): its error bound sends every close
    call to the exact float64 comparison, and the distances and sums come
    from the original rows, so the result is bitwise that of a float64 GEMM
    at half its cost. ``carried`` (with ``drift_other`` and
    ``half_gap``) are Hamerly's bounds from the last pass. ``threads`` > 1:
    the block's rows are shared among a pool of that many threads (see
    :func:`_lloyd_shared`), with the same result. Without ``accumulate`` the
    rows are only labelled: the sums stay zero and the inertia 0.
    """
    # One memory layout (and the step's rows contiguous): each layout would be another compiled kernel.
    block = np.ascontiguousarray(block)
    n, d = block.shape
    k = len(centroids)
    labels, lower = carried_out["label"], carried_out["lower"]
    if carried is None:
        # Unused: the same array types as real bounds, so no second kernel is compiled for the first pass.
        bounds = (False, labels, lower, np.zeros(k), np.zeros(k))
    else:
        bounds = (True, carried["label"], carried["lower"], drift_other, half_gap)
    for gemm_dtype in GEMM_DTYPES:
        step_rows = max(1, min(STEP_ROWS, n))
        gemm = _gemm_inputs(centroids, gemm_dtype, d, step_rows)
        state = {"sums": np.zeros((k, d)), "counts": np.zeros(k, dtype=np.int64), "moments": np.zeros((2, d))}
        weight_sums = np.zeros(k)
        outputs = (
            labels, lower, distances, state["sums"], state["counts"], state["moments"], with_moments,
            distances if weights is None else weights, weight_sums, weights is not None,
        )  # fmt: skip
        if threads > 1:
            status, inertia, gemm_rows = _lloyd_shared(
                block, centroids, gemm, bounds, outputs, step_rows, threads, accumulate
            )
        else:
            status, inertia, gemm_rows = lloyd_rows(
                block, 0, n, accumulate, centroids, gemm, bounds, outputs, _step_scratch(k, d, step_rows, gemm)
            )
        if status == DONE:
            state.update(inertia=inertia, full_rows=gemm_rows)
            if weights is not None:
                state["weights"] = weight_sums
            return state
    amax = largest_magnitude(block, centroids)
    raise ValueRangeError(
        f"k-means: values up to {amax:.3g} have squared distances beyond the float64 range (1.8e308); "
        f"rescale the data first, e.g. X / 1e150 (the clustering does not change, centroids scale with it)"
    )


def check_weights(weights: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """A block's sample weights as float64, checked (in the pass that uses them: no pass of their own)."""
    if weights is None:
        return None
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.shape != (n_rows,):
        raise InputShapeError(
            f"sample_weight has a block of shape {weights.shape} for {n_rows} rows; give one weight per row of X"
        )
    bad = ~(np.isfinite(weights) & (weights >= 0))
    if bad.any():
        raise ParameterError(
            f"sample_weight holds {weights[bad][0]!r}; give finite weights >= 0 (0 leaves a row out of the sums)"
        )
    return weights


def with_row_weights(
    chunk: Any, block: np.ndarray, first_row: int, weights: np.ndarray, *args: Any, **kwargs: Any
) -> Any:
    """``chunk(block, first_row, *args, weights=weights, **kwargs)``: a kernel fed its rows' weights by the graph."""
    return chunk(block, first_row, *args, weights=weights, **kwargs)


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


def labels_chunk(block: np.ndarray, first_row: int, centroids: np.ndarray, radius: float | None = None) -> np.ndarray:
    """Nearest centroid of each row of a block, int64; with ``radius``, -1 for rows farther than it.

    For :func:`~bigdist.reductions.map_row_blocks` (``first_row`` unused).
    """
    labels, distances = assign(block, centroids)
    if radius is not None:
        labels[np.sqrt(distances) > radius] = -1
    return labels


def inertia_chunk(
    block: np.ndarray, first_row: int, centroids: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """The block's (weighted) sum of squared distances to the nearest centroid, as a 1-element array."""
    distances = assign(block, centroids)[1]
    weights = check_weights(weights, len(block))
    return np.atleast_1d(distances.sum() if weights is None else distances @ weights)


def kmeans_chunk(
    block: np.ndarray,
    first_row: int,
    centroids: np.ndarray,
    n_far: int,
    with_moments: bool = False,
    weights: np.ndarray | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Partial Lloyd state of one row block.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    first_row : int, global index of ``block[0]``
    centroids : ndarray of shape (k, d)
    n_far : int, how many of the farthest rows to keep for relocating empty clusters
    with_moments : bool, also sum x and x**2 per feature (for the data's variance, unweighted)
    weights : ndarray of shape (n,), optional, the rows' sample weights
    threads : int, threads of the process's pool that the block's rows are shared among (1: this thread)
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    weights = check_weights(weights, len(block))
    carried_out = _scratch("carried", (len(block),), BOUNDS_DTYPE)
    distances = _scratch("distances", (len(block),), np.float64)
    state = _run_block(
        block, centroids, carried_out, distances, with_moments=with_moments, weights=weights, threads=threads
    )
    state["far"] = _farthest(distances, carried_out["label"], block, first_row, n_far, weights)
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
    weights: np.ndarray | None = None,
    threads: int = 1,
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
    weights : ndarray of shape (n,), optional, the rows' sample weights
    threads : int, threads of the process's pool that the block's rows are shared among (1: this thread)

    Returns
    -------
    (dict, structured ndarray of shape (n,)), the partial state and the rows' new labels and bounds
    """
    if with_moments and carried is not None:
        raise ValueError("with_moments needs a full pass (carried=None)")
    centroids = np.asarray(centroids, dtype=np.float64)
    weights = check_weights(weights, len(block))
    carried_out = np.empty(len(block), dtype=BOUNDS_DTYPE)
    distances = _scratch("distances", (len(block),), np.float64)
    state = _run_block(
        block, centroids, carried_out, distances, carried, drift_other, half_gap, with_moments, weights, threads
    )
    state["far"] = _farthest(distances, carried_out["label"], block, first_row, n_far, weights)
    return state, carried_out


def kmeans_label_piece(
    block: np.ndarray,
    first_row: int,
    carried: np.ndarray | None,
    centroids: np.ndarray,
    drift_other: np.ndarray | None = None,
    half_gap: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[dict[str, Any], np.ndarray]:
    """The first half of a Lloyd pass over one piece of a row block: its rows' labels, bounds and distances.

    A block cut into pieces (whole steps of ``STEP_ROWS`` from its first
    row) is labelled piece by piece, on several workers at once, and summed
    by :func:`kmeans_accumulate_piece` from one piece to the next in row
    order: bitwise the partial state of :func:`kmeans_bounded_chunk` (or
    :func:`kmeans_chunk`, without ``carried``) over the whole block, since a
    row's label and distance are exact whichever rows go through the GEMM.

    Parameters
    ----------
    block : ndarray of shape (n, d), the piece's rows
    first_row : int, global index of ``block[0]`` (unused: the signature of a pass's kernels)
    carried : structured ndarray of shape (n,), dtype ``BOUNDS_DTYPE``, the piece's bounds from the last
        pass; or None (every row is assigned in full)
    centroids, drift_other, half_gap : as for :func:`kmeans_bounded_chunk` (the last two only with ``carried``)
    threads : int, threads of the process's pool that the piece's rows are shared among (1: this thread)

    Returns
    -------
    (dict, structured ndarray of shape (n,)): ``{"labelled": the rows' labels and bounds, "distances":
    (n,) float64, "full_rows": rows assigned through the GEMM}`` for the summation, and the bounds for
    the next pass (the same array)
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    carried_out = np.empty(len(block), dtype=BOUNDS_DTYPE)
    distances = np.empty(len(block))
    state = _run_block(
        block, centroids, carried_out, distances, carried, drift_other, half_gap, threads=threads, accumulate=False
    )
    return {"labelled": carried_out, "distances": distances, "full_rows": state["full_rows"]}, carried_out


def kmeans_accumulate_piece(
    block: np.ndarray,
    first_row: int,
    labelled: dict[str, Any],
    running: dict[str, Any] | None,
    centroids: np.ndarray,
    *bound_updates: np.ndarray,
    n_far: int,
    with_moments: bool = False,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """The second half of a Lloyd pass over a piece: its labelled rows added to the block's running state.

    Parameters
    ----------
    block : ndarray of shape (n, d), the piece's rows
    first_row : int, global index of ``block[0]``
    labelled : dict, the piece's :func:`kmeans_label_piece` output
    running : dict, the state after the block's pieces before this one (None for its first piece); not
        changed (it may be kept for a rerun)
    centroids : ndarray of shape (k, d)
    bound_updates : the pass's other shared arguments (``drift_other``, ``half_gap``), unused here
    n_far, with_moments, weights : as for :func:`kmeans_bounded_chunk`

    Returns
    -------
    dict, the running state with this piece added; after the block's last piece, its partial state
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    block = np.ascontiguousarray(block)
    k, d = centroids.shape
    weights = check_weights(weights, len(block))
    if running is None:
        state = {"sums": np.zeros((k, d)), "counts": np.zeros(k, dtype=np.int64), "moments": np.zeros((2, d)),
                 "inertia": 0.0, "full_rows": 0}  # fmt: skip
        weight_sums = np.zeros(k)
    else:
        state = {key: running[key].copy() for key in ("sums", "counts", "moments")}
        state.update(inertia=running["inertia"], full_rows=running["full_rows"])
        weight_sums = running["weights"].copy() if weights is not None else np.zeros(k)
    carried_out, distances = labelled["labelled"], labelled["distances"]
    outputs = (
        carried_out["label"], carried_out["lower"], distances, state["sums"], state["counts"], state["moments"],
        with_moments, distances if weights is None else weights, weight_sums, weights is not None,
    )  # fmt: skip
    # Steps of the whole block's: a piece starts on one of its step boundaries.
    step_rows = min(STEP_ROWS, len(block))
    state["inertia"] = accumulate_rows(block, 0, len(block), step_rows, centroids, outputs, state["inertia"])
    state["full_rows"] += labelled["full_rows"]
    if weights is not None:
        state["weights"] = weight_sums
    far = _farthest(distances, carried_out["label"], block, first_row, n_far, weights)
    state["far"] = far if running is None else _merge_far([running["far"], far], n_far)
    return state


def _farthest(
    distances: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    first_row: int,
    n_far: int,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    # Farthest first; ties to the lower global row, so the choice is chunking-independent.
    if 0 < n_far < len(distances):
        # Every pass keeps these: a partition of a million distances cost 7 ms, a third of a pass at d=2.
        keep = np.flatnonzero(distances >= nth_largest(distances, n_far))
    else:
        keep = np.arange(len(distances) if n_far else 0)
    order = keep[np.lexsort((keep, -distances[keep]))][:n_far]
    return {
        "distance": distances[order],
        "index": first_row + order.astype(np.int64),
        "label": labels[order],
        "row": rows[order].astype(np.float64),
        "weight": np.ones(len(order)) if weights is None else weights[order],
    }


def kmeans_combine(partials: list[dict[str, Any]], n_far: int) -> dict[str, Any]:
    """Merge partial Lloyd states."""
    merged = {
        "full_rows": sum(p["full_rows"] for p in partials),
        "sums": sum(p["sums"] for p in partials),
        "counts": sum(p["counts"] for p in partials),
        "inertia": sum(p["inertia"] for p in partials),
        "moments": sum(p["moments"] for p in partials),
        "far": _merge_far([p["far"] for p in partials], n_far),
    }
    if "weights" in partials[0]:
        merged["weights"] = sum(p["weights"] for p in partials)
    return merged


def _merge_far(fars: list[dict[str, np.ndarray]], n_far: int) -> dict[str, np.ndarray]:
    # The n_far farthest of the farthest rows of each part, ties to the lower global row, as _farthest keeps them.
    far = {key: np.concatenate([part[key] for part in fars]) for key in fars[0]}
    order = np.lexsort((far["index"], -far["distance"]))[:n_far]
    return {key: value[order] for key, value in far.items()}


def update_centroids(state: dict[str, Any], centroids: np.ndarray) -> tuple[np.ndarray, int]:
    """New centroids from a merged state; empty clusters take the farthest rows.

    As scikit-learn does: each empty cluster (no weight, when weighted)
    takes one of the rows farthest from their centroid, which leaves its old
    cluster with its weight. Returns the centroids and the number of clusters
    relocated.
    """
    sums = state["sums"].copy()
    weighted = "weights" in state
    counts = state["weights"].copy() if weighted else state["counts"].astype(np.float64)
    empty = np.flatnonzero(counts == 0)
    far = state["far"]
    moves = zip(far["row"], far["label"], far["weight"], strict=False)
    for cluster, (row, old, weight) in zip(empty, moves, strict=False):
        sums[old] -= row * weight if weighted else row
        counts[old] -= weight
        sums[cluster] = row * weight if weighted else row
        counts[cluster] = weight
    new = np.where(counts[:, None] > 0, sums / np.where(counts > 0, counts, 1)[:, None], centroids)
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


def row_uniforms(seed: int, stream: int, rows: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers keyed by global row (splitmix64), so sampling ignores the chunking."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64((seed * 1000003 + stream) & (2**64 - 1))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def fold_candidates_chunk(
    block: np.ndarray,
    first_row: int,
    nearest: np.ndarray | None,
    new: np.ndarray,
    first_label: int,
    n_labels: int,
    weights: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """k-means||: each row's nearest candidate once ``new`` (labelled from ``first_label``) joins ``nearest``'s.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    first_row : int, global index of ``block[0]`` (unused: the fold needs no global index)
    nearest : structured ndarray of shape (n,), dtype ``NEAREST_DTYPE``, from the last round; or None
    new : ndarray of shape (m, d), the round's new candidates
    first_label, n_labels : int, the label of ``new[0]`` and the number of candidates in all
    weights : ndarray of shape (n,), optional, the rows' sample weights

    Returns
    -------
    ({"cost": sum of the rows' (weighted) squared distances to their nearest candidate, "counts":
    (n_labels,) rows (their weight) per candidate}, structured ndarray of shape (n,) of the rows'
    nearest candidates). Ties keep the older candidate, the lower label.
    """
    weights = check_weights(weights, len(block))
    labels, costs = assign(block, new)
    folded = np.empty(len(block), dtype=NEAREST_DTYPE)
    folded["label"] = labels + first_label
    folded["cost"] = costs
    if nearest is not None:
        older = nearest["cost"] <= costs
        folded[older] = nearest[older]
    if weights is None:
        return {"cost": float(folded["cost"].sum()), "counts": np.bincount(folded["label"], minlength=n_labels)}, folded
    counts = np.bincount(folded["label"], weights=weights, minlength=n_labels)
    return {"cost": float(folded["cost"] @ weights), "counts": counts}, folded


def candidate_costs_chunk(
    block: np.ndarray, first_row: int, candidates: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """k-means|| without carried state: the fold of every candidate at once (see ``fold_candidates_chunk``)."""
    return fold_candidates_chunk(block, first_row, None, candidates, 0, len(candidates), weights)[0]


def fold_combine(partials: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the states of ``fold_candidates_chunk``."""
    return {"cost": sum(p["cost"] for p in partials), "counts": sum(p["counts"] for p in partials)}


def _sample_rows(
    block: np.ndarray,
    first_row: int,
    costs: np.ndarray,
    rate: float,
    seed: int,
    stream: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    # Row i is drawn with probability rate * weight_i * cost_i (capped at 1), by a uniform keyed on its global index.
    draws = row_uniforms(seed, stream, np.arange(first_row, first_row + len(block)))
    weights = check_weights(weights, len(block))
    costs = costs if weights is None else costs * weights
    return block[draws < rate * costs].astype(np.float64)


def sample_by_cost_chunk(
    block: np.ndarray, first_row: int, nearest: np.ndarray, weights: np.ndarray | None = None, **draw: Any
) -> np.ndarray:
    """k-means||: the block's rows drawn by their carried cost (``rate``, ``seed``, ``stream``), as float64."""
    return _sample_rows(block, first_row, nearest["cost"], weights=weights, **draw)


def sample_by_distance_chunk(
    block: np.ndarray, first_row: int, candidates: np.ndarray, weights: np.ndarray | None = None, **draw: Any
) -> np.ndarray:
    """:func:`sample_by_cost_chunk` without carried costs: the distances to every candidate are computed again."""
    return _sample_rows(block, first_row, assign(block, candidates)[1], weights=weights, **draw)


def weighted_draw_chunk(block: np.ndarray, first_row: int, weights: np.ndarray, size: int, seed: int) -> dict[str, Any]:
    """The block's ``size`` rows of largest key ``log(u) / weight`` (u keyed by global row), with their keys.

    The rows of largest keys over all blocks are a draw without replacement
    with probabilities proportional to the weights (Efraimidis and Spirakis);
    rows of weight 0 are never drawn. Ties go to the lower global row.
    """
    weights = check_weights(weights, len(block))
    rows = np.arange(first_row, first_row + len(block))
    with np.errstate(divide="ignore"):
        keys = np.log(row_uniforms(seed, 0, rows)) / weights
    keys[weights == 0] = -np.inf
    order = np.lexsort((rows, -keys))[:size]
    order = order[keys[order] > -np.inf]
    return {"key": keys[order], "index": rows[order], "row": block[order].astype(np.float64), "size": size}


def weighted_draw_combine(partials: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the draws of :func:`weighted_draw_chunk`."""
    merged = {key: np.concatenate([p[key] for p in partials]) for key in ("key", "index", "row")}
    size = partials[0]["size"]
    order = np.lexsort((merged["index"], -merged["key"]))[:size]
    return {**{key: value[order] for key, value in merged.items()}, "size": size}


def stack_rows(values: list[np.ndarray]) -> np.ndarray:
    """Merge sampled rows."""
    return np.concatenate(values)
