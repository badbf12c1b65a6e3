"""K-means on blocks: assignment by the expansion trick, partial sums, their merge; k-means|| rounds.

The per-step maths is the compiled ``bigdist.kernels.assign.lloyd_block``;
each thread keeps its scratch arrays between tasks (``_scratch``).

A Lloyd pass maps ``kmeans_chunk`` (or ``kmeans_bounded_chunk``, which also
carries per-row bounds between passes and skips the rows whose centroid
provably stays; or ``kmeans_grouped_chunk``, the same with a bound per group
of centroids) over the row blocks and merges the partial states with
``kmeans_combine``; the state is a small dict::

    {"sums": (k, d) float64, "counts": (k,) int64, "inertia": float,
     "full_rows": rows assigned through the GEMM (the others kept their centroid by the bounds, or compared
     the few centroids the group bounds left),
     "pairs": row-centroid distances computed to label the rows (k per GEMM row, and the group filters'),
     "moments": (2, d) float64 (sum of x and of x**2, for the data's variance),
     "far": the block's rows farthest from their centroid (for empty clusters)}

With sample weights (``weights=``, or ``with_row_weights`` in a graph) the
sums and the inertia are weighted and the state also holds ``"weights"``,
(k,) float64, each centroid's summed weight, as scikit-learn defines them.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from bigdist.errors import InputShapeError, ParameterError, ValueRangeError
from bigdist.kernels.assign import DONE, grouped_block, lloyd_block
from bigdist.kernels.metrics import margin
from bigdist.kernels.scaling import largest_magnitude, safe_range

# Rows per step: the step's rows stay in cache between the GEMM and the sums.
STEP_ROWS = 1024

# Most products of one GEMM (a tile of centroids against a step's rows): 512 KiB of float32 stay in L2.
TILE_VALUES = 2**17

# Scratch arrays a thread keeps from one task to the next, in all (a block of 262,144 rows keeps ~7 MiB).
SCRATCH_KEEP_BYTES = 32 * 2**20
_thread_scratch = threading.local()

# What a row carries from one Lloyd pass to the next (Hamerly's bounds).
BOUNDS_DTYPE = np.dtype([("label", np.int64), ("lower", np.float64)])

# Group bounds (Yinyang): a tenth as many groups as centroids (Ding et al. 2015), at most MAX_GROUPS (each
# a float64 per row, carried; and each group's best two per step row in the GEMM path), from
# MIN_GROUPED_CLUSTERS centroids on. Callgrind, one late pass of 5,000 x 64 float32 rows against Hamerly's:
# k=1000 random 0.63x the instructions; k=100 blobs 0.91x, random 1.01x (below that, Hamerly's single
# bound, 16 bytes a row instead of 8 + 8t, does as well).
MAX_GROUPS = 64
CENTROIDS_PER_GROUP = 10
MIN_GROUPED_CLUSTERS = 100

# A row whose group and local filters leave more than this share of the centroids goes through the GEMM
# (which computes a distance at a fraction of the cost of an exact float64 one); the others compare theirs
# one by one. Callgrind, one pass of 5,000 x 64 float32 rows: 0.1 and 0.25 equal at k=1000, 0.25 costs 16%
# more instructions than 0.1 at k=100 on random data.
LOCAL_SHARE = 0.1

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
    """The ``gemm`` tuple of :func:`~bigdist.kernels.assign.lloyd_block` for a GEMM in ``dtype``.

    Both sides are shifted to the centroids' mean, which keeps the
    expansion's cancellation small for data far from the origin. The
    centroids go through the GEMM in tiles of ``TILE_VALUES // step_rows``.
    """
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
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Label ``block`` into ``carried_out`` and ``distances`` and return its partial sums (see ``lloyd_block``).

    The GEMM runs in float32 for float32 data unless squares leave float32's
    range (then in float64, as exact); ``carried`` (with ``drift_other`` and
    ``half_gap``) are Hamerly's bounds from the last pass. With ``groups``
    (each centroid's group, and the groups' drifts), the bounds are per
    group (``grouped_block``) and ``drift_other`` is each centroid's drift.
    """
    # One memory layout (and the step's rows contiguous): each layout would be another compiled kernel.
    block = np.ascontiguousarray(block)
    n, d = block.shape
    k = len(centroids)
    labels, lower = carried_out["label"], carried_out["lower"]
    if groups is not None:
        group_of, group_drift = groups
        # By group, then by decreasing drift: the local filter stops at a group's first centroid ruled out.
        members = np.lexsort((-drift_other, group_of)) if carried is not None else np.argsort(group_of, kind="stable")
        n_groups = len(group_drift)
        starts = np.searchsorted(group_of[members], np.arange(n_groups + 1))
        group_info = (group_of, members, starts, int(LOCAL_SHARE * k))
        if carried is None:
            bounds = (False, labels, lower, np.zeros(k), np.zeros(n_groups), np.zeros(k))
        else:
            bounds = (True, carried["label"], carried["lower"], drift_other, group_drift, half_gap)
    elif carried is None:
        # Unused: the same array types as real bounds, so no second kernel is compiled for the first pass.
        bounds = (False, labels, lower, np.zeros(k), np.zeros(k))
    else:
        bounds = (True, carried["label"], carried["lower"], drift_other, half_gap)
    dtype = np.result_type(block.dtype, np.float32)
    for gemm_dtype in [dtype] if dtype == np.float64 else [dtype, np.dtype(np.float64)]:
        step_rows = max(1, min(STEP_ROWS, n))
        gemm = _gemm_inputs(centroids, gemm_dtype, d, step_rows)
        scratch = (
            _scratch("products", (min(k, gemm[4]) * step_rows,), gemm_dtype),
            _scratch("shifted", (step_rows * d,), gemm_dtype),
            _scratch("best", (step_rows,), gemm_dtype),
            _scratch("second", (step_rows,), gemm_dtype),
            _scratch("first", (step_rows,), np.int32),
            _scratch("selected", (step_rows,), np.int64),
            _scratch("norms", (step_rows,), np.float64),
        )
        state = {"sums": np.zeros((k, d)), "counts": np.zeros(k, dtype=np.int64), "moments": np.zeros((2, d))}
        weight_sums = np.zeros(k)
        outputs = (
            labels, lower, distances, state["sums"], state["counts"], state["moments"], with_moments,
            distances if weights is None else weights, weight_sums, weights is not None,
        )  # fmt: skip
        if groups is None:
            status, inertia, gemm_rows = lloyd_block(block, centroids, gemm, bounds, outputs, scratch)
            pairs = 0
        else:
            scratch += (
                _scratch("group_best", (n_groups * step_rows,), gemm_dtype),
                _scratch("group_second", (n_groups * step_rows,), gemm_dtype),
                _scratch("group_first", (n_groups * step_rows,), np.int32),
                _scratch("moved", (n_groups,), np.float64),
                _scratch("values", (k,), np.float64),
                _scratch("cut", (n_groups,), np.int64),
                _scratch("single", (n,), np.float64),
            )
            status, inertia, gemm_rows, pairs = grouped_block(
                block, centroids, gemm, bounds, group_info, outputs, scratch
            )
        if status == DONE:
            # The row-centroid distances computed to label the rows (the GEMM's, and the exact ones of the
            # group filters), besides each bounded row's distance to its last centroid.
            state.update(inertia=inertia, full_rows=gemm_rows, pairs=gemm_rows * k + pairs)
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
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    weights = check_weights(weights, len(block))
    carried_out = _scratch("carried", (len(block),), BOUNDS_DTYPE)
    distances = _scratch("distances", (len(block),), np.float64)
    state = _run_block(block, centroids, carried_out, distances, with_moments=with_moments, weights=weights)
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
    state = _run_block(block, centroids, carried_out, distances, carried, drift_other, half_gap, with_moments, weights)
    state["far"] = _farthest(distances, carried_out["label"], block, first_row, n_far, weights)
    return state, carried_out


def group_bounds_dtype(n_groups: int) -> np.dtype:
    """What a row carries from one pass to the next with group bounds: its label, one bound per group."""
    return np.dtype([("label", np.int64), ("lower", np.float64, (n_groups,))])


def kmeans_grouped_chunk(
    block: np.ndarray,
    first_row: int,
    carried: np.ndarray | None,
    centroids: np.ndarray,
    groups: np.ndarray,
    drift: np.ndarray,
    group_drift: np.ndarray,
    half_gap: np.ndarray,
    n_far: int,
    with_moments: bool = False,
    weights: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`kmeans_bounded_chunk` with a lower bound per group of centroids (Yinyang k-means).

    Each row carries its label and, for each group, a lower bound on its
    distance to the group's centroids other than its own. A row keeps its
    label when its exact distance stays below every group's bound less the
    group's drift; otherwise only the centroids of the groups (and, within
    them, those) the bounds cannot rule out are compared with it, exactly,
    or through the GEMM when they are many. The partial state is bitwise that
    of :func:`kmeans_chunk`.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    first_row : int, global index of ``block[0]``
    carried : structured ndarray of shape (n,), dtype ``group_bounds_dtype(t)``, from the last pass; or None
        (the first pass: every row is assigned in full)
    centroids : ndarray of shape (k, d), the current centroids
    groups : ndarray of shape (k,), int64, each centroid's group in ``[0, t)``, the same every pass
    drift : ndarray of shape (k,), how far each centroid moved since the last pass (rounded up)
    group_drift : ndarray of shape (t,), the farthest any centroid of each group moved (rounded up)
    half_gap : ndarray of shape (k,), as for :func:`kmeans_bounded_chunk`
    n_far, with_moments, weights : as for :func:`kmeans_bounded_chunk`

    Returns
    -------
    (dict, structured ndarray of shape (n,)), the partial state and the rows' new labels and bounds
    """
    if with_moments and carried is not None:
        raise ValueError("with_moments needs a full pass (carried=None)")
    centroids = np.asarray(centroids, dtype=np.float64)
    weights = check_weights(weights, len(block))
    carried_out = np.empty(len(block), dtype=group_bounds_dtype(len(group_drift)))
    distances = _scratch("distances", (len(block),), np.float64)
    groups = np.ascontiguousarray(groups, dtype=np.int64)
    state = _run_block(
        block, centroids, carried_out, distances, carried, drift, half_gap, with_moments, weights, (groups, group_drift)
    )
    state["far"] = _farthest(distances, carried_out["label"], block, first_row, n_far, weights)
    return state, carried_out


def bound_groups(n_clusters: int, affordable: int) -> int:
    """How many groups of centroids the rows' bounds tell apart; 0: Hamerly's single bound.

    ``affordable``: the most bounds per row the memory budget holds.
    """
    if n_clusters < MIN_GROUPED_CLUSTERS:
        return 0
    n_groups = min(n_clusters // CENTROIDS_PER_GROUP, MAX_GROUPS, affordable)
    return n_groups if n_groups >= 2 else 0


def centroid_groups(centroids: np.ndarray, n_groups: int, n_iter: int = 5) -> np.ndarray:
    """Each centroid's group: a few Lloyd iterations over the centroids (Ding et al.), deterministic.

    Only the speed depends on the grouping, never the result.

    Parameters
    ----------
    centroids : ndarray of shape (k, d)
    n_groups : int, t <= k

    Returns
    -------
    ndarray of shape (k,), int64, in ``[0, t)``, each group holding at least one centroid (fewer than
    ``n_groups`` groups when one ends empty)
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    k = len(centroids)
    centres = centroids[np.linspace(0, k - 1, n_groups).astype(np.int64)]
    norms2 = np.einsum("ij,ij->i", centroids, centroids)
    for _ in range(n_iter):
        gaps2 = norms2[:, None] - 2 * centroids @ centres.T + np.einsum("ij,ij->i", centres, centres)[None, :]
        groups = np.argmin(gaps2, axis=1)
        counts = np.bincount(groups, minlength=n_groups)
        sums = np.zeros_like(centres)
        np.add.at(sums, groups, centroids)
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
    # Groups numbered 0 to t' - 1 without gaps (a group left empty is dropped).
    return np.unique(groups, return_inverse=True)[1].astype(np.int64).ravel()


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
        keep = np.flatnonzero(distances >= np.partition(distances, len(distances) - n_far)[len(distances) - n_far])
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
    far = {key: np.concatenate([p["far"][key] for p in partials]) for key in partials[0]["far"]}
    order = np.lexsort((far["index"], -far["distance"]))[:n_far]
    merged = {
        "full_rows": sum(p["full_rows"] for p in partials),
        "pairs": sum(p["pairs"] for p in partials),
        "sums": sum(p["sums"] for p in partials),
        "counts": sum(p["counts"] for p in partials),
        "inertia": sum(p["inertia"] for p in partials),
        "moments": sum(p["moments"] for p in partials),
        "far": {key: value[order] for key, value in far.items()},
    }
    if "weights" in partials[0]:
        merged["weights"] = sum(p["weights"] for p in partials)
    return merged


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
    k = len(after)
    drift = _drifts(before, after)
    if k == 1:
        return np.zeros(1), np.full(1, np.inf)
    order = np.argsort(drift)
    drift_other = np.full(k, drift[order[-1]])
    drift_other[order[-1]] = drift[order[-2]]
    return drift_other, _half_gaps(after)


def group_bound_updates(
    before: np.ndarray, after: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`kmeans_grouped_chunk` needs to know of a centroid update.

    Parameters
    ----------
    before, after : ndarray of shape (k, d), float64, the centroids of the last pass and of this one
    groups : ndarray of shape (k,), int64, each centroid's group in ``[0, t)``

    Returns
    -------
    drift : ndarray of shape (k,), how far each centroid moved, rounded up
    group_drift : ndarray of shape (t,), the farthest move in each group (0 for an empty group)
    half_gap : ndarray of shape (k,), as :func:`bound_updates` gives it
    """
    drift = _drifts(before, after)
    group_drift = np.zeros(int(groups.max()) + 1)
    np.maximum.at(group_drift, groups, drift)
    half_gap = np.full(1, np.inf) if len(after) == 1 else _half_gaps(after)
    return drift, group_drift, half_gap


def _drifts(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.sqrt(((after - before) ** 2).sum(axis=1)) * (1 + 1e-12)


def _half_gaps(after: np.ndarray) -> np.ndarray:
    """Half of each centroid's distance to its nearest other one, rounded down."""
    k, d = after.shape
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
    return 0.5 * np.sqrt(np.maximum(nearest2 - error, 0.0)) * (1 - 1e-12)


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
