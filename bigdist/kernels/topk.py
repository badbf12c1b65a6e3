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
