"""The metrics with a GEMM form, as the tile kernels see them.

Every such metric ranks pairs by a *key* where smaller is better, and the
key is an affine function of a score computed by one GEMM of prepared rows::

    key(q, x) = alpha_q - beta * (q_prep . x_prep + bias_x)

- sqeuclidean / euclidean: rows centred on the train block's mean (the
  distances do not change, the cancellation of large offsets goes away),
  ``bias_x = -|x|^2 / 2``, ``alpha_q = |q|^2``, ``beta = 2``.
- cosine: rows normalised, ``key = 1 - cos``; zero rows have cosine 0.
- inner_product: ``key = -q.x``; the reported value is ``q.x``, largest first.

The float GEMM only selects candidates; their keys are then recomputed from
the original rows in float64 (``bigdist.kernels.scan.pair_key``), and the
bound ``margin`` guarantees that no true neighbour is dropped by the
rounding of the GEMM. NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GEMM_METRICS = ("euclidean", "sqeuclidean", "cosine", "inner_product")


@dataclass(frozen=True)
class Prepared:
    """Rows of one block made ready for the score GEMM.

    rows : ndarray of shape (n, d + 1), the prepared rows, last column bias (train) or 1 (queries)
    alpha : ndarray of shape (n,), float64, the per-query constant of the key (queries only)
    norms : ndarray of shape (n,), float64, Euclidean norms of the prepared rows without the extra column
    """

    rows: np.ndarray
    alpha: np.ndarray
    norms: np.ndarray


def gemm_dtype(*dtypes: np.dtype) -> np.dtype:
    """float32 when every input is float32, else float64."""
    return np.dtype(np.float32) if all(np.dtype(t) == np.float32 for t in dtypes) else np.dtype(np.float64)


def key_beta(metric: str) -> float:
    """The factor between score and key: ``key = alpha - beta * score``."""
    return 2.0 if metric in ("euclidean", "sqeuclidean") else 1.0


def train_center(metric: str, train: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    """The shift applied to both sides before the GEMM (L2 metrics only).

    Any shift leaves distances unchanged; the block mean makes the centred
    rows small, and ``fl(x - c)`` errs relative to ``x - c``, not to ``x``.
    """
    if metric in ("euclidean", "sqeuclidean"):
        return train.mean(axis=0, dtype=np.float64).astype(dtype)
    return None


def prepare(
    block: np.ndarray,
    metric: str,
    center: np.ndarray | None,
    dtype: np.dtype,
    side: str,
    buffer: np.ndarray | None = None,
) -> Prepared:
    """Prepare a query block (``side="query"``) or a train block (``side="train"``).

    Parameters
    ----------
    block : ndarray of shape (n, d)
    metric : str, one of GEMM_METRICS
    center : ndarray of shape (d,) or None, from ``train_center``
    dtype : float32 or float64, the GEMM dtype
    side : {"query", "train"}
    buffer : ndarray of shape (at least n, d + 1) and dtype ``dtype``, optional
        Memory for the prepared rows, reused across sub-tiles: a fresh
        allocation per sub-tile costs page faults under Dask's malloc settings.
    """
    n, d = block.shape
    out = np.empty((n, d + 1), dtype=dtype) if buffer is None else buffer[:n]
    rows = out[:, :-1]
    if center is not None:
        np.subtract(block, center, out=rows, casting="unsafe")
    else:
        rows[...] = block
    norms2 = np.einsum("ij,ij->i", rows, rows).astype(np.float64)
    if metric == "cosine":
        norms = np.sqrt(norms2)
        np.divide(rows, norms[:, None].astype(dtype), out=rows, where=norms[:, None] > 0)
        norms2 = (norms2 > 0).astype(np.float64)
    l2 = metric in ("euclidean", "sqeuclidean")
    if side == "query":
        out[:, -1] = 1.0
        alpha = norms2 if l2 else np.full(n, 1.0 if metric == "cosine" else 0.0)
    else:
        out[:, -1] = -0.5 * norms2 if l2 else 0.0
        alpha = np.zeros(n)
    return Prepared(rows=out, alpha=alpha, norms=np.sqrt(norms2))


def margin(metric: str, dtype: np.dtype, n_features: int, query_norms: np.ndarray, max_train_norm: float) -> np.ndarray:
    """Upper bound on |approximate key - exact key| for each query row.

    Covers the rounding of the prepared rows (centring, normalising: a few
    ``u`` relative per element), of the norms in ``alpha`` and the bias
    column, and of the GEMM's dot products (``gamma_{d+2}``, the classical
    worst-case bound, so it holds for every BLAS summation order), all
    relative to ``(|q| + |x|)^2``, with a factor 2 of slack.
    """
    unit = np.finfo(dtype).eps / 2
    n = n_features + 2
    gamma = n * unit / (1 - n * unit)
    beta = key_beta(metric)
    scale = (query_norms * (1 + gamma) + max_train_norm * (1 + gamma)) ** 2
    return 2.0 * ((beta + 1) * gamma + 8 * unit) * scale


def keys_to_values(metric: str, keys: np.ndarray) -> np.ndarray:
    """Turn keys into the reported values (distances, or inner products)."""
    if metric == "euclidean":
        return np.sqrt(np.maximum(keys, 0.0))
    if metric == "sqeuclidean":
        return np.maximum(keys, 0.0)
    if metric == "inner_product":
        return -keys
    return keys
