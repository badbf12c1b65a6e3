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

from bigdist.kernels.metrics import margin

STEP_ROWS = 1024


def assign(block: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row, ties to the lower centroid index.

    One GEMM ranks the centroids; rows whose best two are closer than the
    GEMM's error bound are settled exactly in float64, so the labels are
    those of an exact computation.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    centroids : ndarray of shape (k, d)

    Returns
    -------
    labels : ndarray of shape (n,), int64
    distances : ndarray of shape (n,), float64, squared distance to that centroid
    """
    dtype = np.result_type(block.dtype, np.float32)
    # Shifting both sides to the centroids' mean keeps the expansion's
    # cancellation small for data far from the origin; fl(x - c) errs
    # relative to x - c, so the shift is done in the GEMM's dtype.
    shift = centroids.mean(axis=0).astype(dtype)
    rows = np.subtract(block, shift, dtype=dtype)
    centres = (centroids - shift).astype(dtype)
    half_norms = 0.5 * np.einsum("ij,ij->i", centres, centres)
    # |x - c|^2 / 2 - |x|^2 / 2 = |c|^2 / 2 - x.c; argmin keeps the first of equals.
    scores = rows @ centres.T
    np.subtract(half_norms, scores, out=scores)
    labels = np.argmin(scores, axis=1)
    row_norms2 = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    best = scores[np.arange(len(rows)), labels].astype(np.float64)
    bound = 0.5 * margin(
        "sqeuclidean", dtype, block.shape[1], np.sqrt(row_norms2), float(np.sqrt(2 * half_norms.max()))
    )
    distances = np.maximum(row_norms2 + 2.0 * best, 0.0)
    near = scores <= (best + bound)[:, None]
    ambiguous = np.flatnonzero(near.sum(axis=1) > 1)
    for start in range(0, len(ambiguous), 1024):
        rows_at = ambiguous[start : start + 1024]
        diff = block[rows_at, None, :].astype(np.float64) - centroids[None, :, :]
        exact = np.where(near[rows_at], np.einsum("ijk,ijk->ij", diff, diff), np.inf)
        labels[rows_at] = np.argmin(exact, axis=1)
        distances[rows_at] = exact.min(axis=1)
    return labels.astype(np.int64), distances


def kmeans_chunk(block: np.ndarray, first_row: int, centroids: np.ndarray, n_far: int) -> dict[str, Any]:
    """Partial Lloyd state of one row block.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    first_row : int, global index of ``block[0]``
    centroids : ndarray of shape (k, d)
    n_far : int, how many of the farthest rows to keep for relocating empty clusters
    """
    k, d = centroids.shape
    partials = []
    # Steps of a few thousand rows keep every temporary in cache.
    for start in range(0, max(len(block), 1), STEP_ROWS):
        rows = block[start : start + STEP_ROWS]
        labels, distances = assign(rows, centroids)
        columns = np.ascontiguousarray(rows.T, dtype=np.float64)
        partials.append(
            {
                "sums": np.stack([np.bincount(labels, weights=column, minlength=k) for column in columns], axis=1),
                "counts": np.bincount(labels, minlength=k).astype(np.int64),
                "inertia": float(distances.sum()),
                "moments": np.stack([columns.sum(axis=1), np.einsum("ij,ij->i", columns, columns)]),
                "far": _farthest(distances, labels, rows, first_row + start, n_far),
            }
        )
    return kmeans_combine(partials, n_far)


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
