"""K-means on blocks: assignment by the expansion trick, partial sums, their merge. NumPy only.

A Lloyd pass maps ``kmeans_chunk`` over the row blocks and merges the partial
states with ``kmeans_combine``; the state is a small dict::

    {"sums": (k, d) float64, "counts": (k,) int64, "inertia": float,
     "moments": (2, d) float64 (sum of x and of x**2, for the data's variance),
     "far": the block's rows farthest from their centroid (for empty clusters)}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bigdist.errors import ValueRangeError
from bigdist.kernels.assign import assign_accumulate
from bigdist.kernels.metrics import margin
from bigdist.kernels.scaling import largest_magnitude, power_of_two_exponent

STEP_ROWS = 4096


def _pass(block: np.ndarray, centroids: np.ndarray, with_moments: bool = False) -> dict[str, Any]:
    """Labels, squared distances and per-centroid sums of a block, step by step.

    One GEMM per step ranks the centroids (both sides shifted to the
    centroids' mean, which keeps the expansion's cancellation small for data
    far from the origin); the compiled ``assign_accumulate`` does the rest.
    """
    n, d = block.shape
    k = centroids.shape[0]
    dtype = np.result_type(block.dtype, np.float32)
    centroids = centroids.astype(np.float64)
    amax = largest_magnitude(block, centroids)
    if dtype == np.float32 and power_of_two_exponent(amax, dtype, d):
        # Squares beyond (or below) float32's range: the GEMM runs in float64 instead, as exact.
        dtype = np.dtype(np.float64)
    if power_of_two_exponent(amax, np.dtype(np.float64), d) and amax > 1.0:
        raise ValueRangeError(
            f"k-means: values up to {amax:.3g} have squared distances beyond the float64 range (1.8e308); "
            f"rescale the data first, e.g. X / 1e150 (the clustering does not change, centroids scale with it)"
        )
    shift = centroids.mean(axis=0).astype(dtype)
    centres = (centroids - shift).astype(dtype)
    half_norms = 0.5 * np.einsum("ij,ij->i", centres, centres).astype(np.float64)
    max_norm = float(np.sqrt(2 * half_norms.max()))
    out = {
        "labels": np.empty(n, dtype=np.int64),
        "distances": np.empty(n),
        "sums": np.zeros((k, d)),
        "counts": np.zeros(k, dtype=np.int64),
        "moments": np.zeros((2, d)),
        "inertia": 0.0,
    }
    # Buffers reused by every step: fresh ones would be fresh pages under
    # Dask's MALLOC_TRIM_THRESHOLD_, and page faults cost more than the maths.
    products = np.empty((min(STEP_ROWS, n), k), dtype=dtype)
    shifted_buffer = np.empty((min(STEP_ROWS, n), d), dtype=dtype)
    for start in range(0, n, STEP_ROWS):
        rows = block[start : start + STEP_ROWS]
        shifted = np.subtract(rows, shift, out=shifted_buffer[: len(rows)])
        step_products = products[: len(rows)]
        np.matmul(shifted, centres.T, out=step_products)
        norms2 = np.einsum("ij,ij->i", shifted, shifted).astype(np.float64)
        # Error bound of |c|^2/2 - x.c: half that of the squared distance.
        bounds = 0.5 * margin("sqeuclidean", dtype, d, np.sqrt(norms2), max_norm)
        out["inertia"] += assign_accumulate(
            step_products, half_norms, rows, norms2, bounds, centroids,
            out["labels"][start : start + STEP_ROWS], out["distances"][start : start + STEP_ROWS],
            out["sums"], out["counts"], out["moments"], with_moments,
        )  # fmt: skip
    return out


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
    result = _pass(block, centroids)
    return result["labels"], result["distances"]


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
    result = _pass(block, centroids, with_moments)
    return {
        "sums": result["sums"],
        "counts": result["counts"],
        "inertia": result["inertia"],
        "moments": result["moments"],
        "far": _farthest(result["distances"], result["labels"], block, first_row, n_far),
    }


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
