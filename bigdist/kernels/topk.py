"""Top-k selection and merging of partial top-k results. NumPy only.

A partial result is a structured array of shape (m, k) with fields ``key``
(float64, smaller is better) and ``index`` (int64, global row of the train
set). Rows are sorted by (key, index), so ties go to the lower index. Rows
with fewer than k real entries are padded with ``(inf, PAD_INDEX)``, which
sorts after every real entry.
"""

from __future__ import annotations

import numpy as np

TOPK_DTYPE = np.dtype([("key", np.float64), ("index", np.int64)])
PAD_INDEX = np.iinfo(np.int64).max


def empty_topk(n_rows: int, k: int) -> np.ndarray:
    """A padded partial result of shape (n_rows, k)."""
    out = np.empty((n_rows, k), dtype=TOPK_DTYPE)
    out["key"] = np.inf
    out["index"] = PAD_INDEX
    return out


def topk_merge(partials: np.ndarray, k: int) -> np.ndarray:
    """Reduce partial results laid side by side to the k best of each row.

    Parameters
    ----------
    partials : structured ndarray of shape (m, s * k), dtype TOPK_DTYPE
    k : int

    Returns
    -------
    structured ndarray of shape (m, k), sorted by (key, index) in each row
    """
    order = np.lexsort((partials["index"], partials["key"]), axis=-1)[:, :k]
    return np.take_along_axis(partials, order, axis=1)


def merge_candidates(
    best: np.ndarray, rows: np.ndarray, keys: np.ndarray, indices: np.ndarray
) -> None:
    """Merge candidate (row, key, index) triples into ``best`` in place.

    Parameters
    ----------
    best : structured ndarray of shape (m, k), dtype TOPK_DTYPE, sorted rows
    rows : ndarray of shape (p,), int, the row of ``best`` each candidate belongs to
    keys : ndarray of shape (p,), float64
    indices : ndarray of shape (p,), int64, global train indices (none already in ``best``)
    """
    if len(rows) == 0:
        return
    k = best.shape[1]
    touched = np.flatnonzero(np.bincount(rows, minlength=len(best)))
    held = best[touched]
    all_rows = np.concatenate([np.repeat(np.arange(len(touched)), k), np.searchsorted(touched, rows)])
    all_keys = np.concatenate([held["key"].ravel(), keys])
    all_indices = np.concatenate([held["index"].ravel(), indices])
    order = np.lexsort((all_indices, all_keys, all_rows))
    sorted_rows = all_rows[order]
    starts = np.searchsorted(sorted_rows, np.arange(len(touched)))
    rank = np.arange(len(order)) - starts[sorted_rows]
    keep = order[rank < k]
    merged = np.empty((len(touched), k), dtype=TOPK_DTYPE)
    merged["key"] = all_keys[keep].reshape(len(touched), k)
    merged["index"] = all_indices[keep].reshape(len(touched), k)
    best[touched] = merged
