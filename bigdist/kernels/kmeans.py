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


def assign(block: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row, ties to the lower centroid index.

    Parameters
    ----------
    block : ndarray of shape (n, d)
    centroids : ndarray of shape (k, d)

    Returns
    -------
    labels : ndarray of shape (n,), int64
    distances : ndarray of shape (n,), float64, squared distance to that centroid (>= 0)
    """
    dtype = np.result_type(block.dtype, np.float32)
    # Shifting both sides to the centroids' mean keeps the expansion's
    # cancellation small for data far from the origin.
    shift = centroids.mean(axis=0)
    rows = (block - shift).astype(dtype, copy=False)
    centres = (centroids - shift).astype(dtype)
    half_norms = 0.5 * np.einsum("ij,ij->i", centres, centres)
    # argmin of |c|^2/2 - x.c is argmin of |x - c|^2; argmin keeps the first of equals.
    scores = half_norms[None, :] - rows @ centres.T
    labels = np.argmin(scores, axis=1)
    row_norms = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    distances = np.maximum(row_norms + 2.0 * scores[np.arange(len(rows)), labels], 0.0)
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
    labels, distances = assign(block, centroids)
    sums = np.zeros((k, d))
    np.add.at(sums, labels, block)
    counts = np.bincount(labels, minlength=k).astype(np.int64)
    moments = np.stack([block.sum(axis=0, dtype=np.float64), np.einsum("ij,ij->j", block, block, dtype=np.float64)])
    far = _farthest(distances, labels, block, first_row, n_far)
    return {"sums": sums, "counts": counts, "inertia": float(distances.sum()), "moments": moments, "far": far}


def _farthest(distances: np.ndarray, labels: np.ndarray, block: np.ndarray, first_row: int, n_far: int) -> dict[str, np.ndarray]:
    # Farthest first; ties to the lower global row, so the choice is chunking-independent.
    order = np.lexsort((np.arange(len(distances)), -distances))[:n_far]
    return {
        "distance": distances[order],
        "index": first_row + order.astype(np.int64),
        "label": labels[order],
        "row": block[order].astype(np.float64),
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
