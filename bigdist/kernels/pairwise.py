"""One block of a distance matrix, for every metric of the registry (NumPy and numba; no dask).

GEMM family (``euclidean``, ``sqeuclidean``, ``cosine``, ``correlation``,
``inner_product``): the rows are prepared once per block and one GEMM gives
the block, which a compiled pass then turns into distances in place. The
expansion trick is hardened as in the kNN: both sides are centred on the
train block's mean (distances do not change, the cancellation of large
offsets goes away), squared distances are clamped at 0, in a self-join the
distance of a row to itself is exactly 0, and every pair whose key (squared
distance, 1 - cosine) is within ``RECHECK`` times its rounding bound is
recomputed exactly in float64 from the rows. float32 inputs keep a float32
GEMM: the other keys err by at most ``1 / RECHECK`` of themselves in the
worst case (the bound is ``bigdist.kernels.metrics.margin``), typically by a
few float32 roundings. Values whose squares leave the float range are
scaled by a power of two before the GEMM and the block scaled back
(``bigdist.kernels.scaling``), as in the kNN.

Direct metrics: ``bigdist.kernels.direct``, float64 sums, rounded once.
"""

from __future__ import annotations

import numba
import numpy as np

from bigdist.errors import ValueRangeError
from bigdist.kernels.direct import check_values, direct_block, direct_code
from bigdist.kernels.metrics import gemm_dtype, margin
from bigdist.kernels.scaling import largest_magnitude, power_of_two_exponent
from bigdist.kernels.scan import COSINE, L2, pair_key

SQEUCLIDEAN, EUCLIDEAN, COSINE_DISTANCE, SIMILARITY = range(4)
# Keys below this many times their rounding bound are recomputed exactly: such
# pairs are rare (near-duplicates), and the rest err by at most 1/RECHECK of their key.
RECHECK = 16.0


def out_dtype(*dtypes: np.dtype) -> np.dtype:
    """float32 when every input is float32, else float64."""
    return gemm_dtype(*dtypes)


def centre_rows(block: np.ndarray) -> np.ndarray:
    """Each row minus its own mean, in float64 (``correlation`` is the cosine of these)."""
    rows = np.asarray(block, dtype=np.float64)
    return rows - rows.mean(axis=1, keepdims=True)


def unit_rows(block: np.ndarray, dtype: np.dtype, eps: float = 0.0) -> np.ndarray:
    """Rows divided by ``max(norm, eps)`` (norms in float64), as ``dtype``; zero rows stay zero."""
    rows = np.asarray(block, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    scale = np.maximum(norms, eps)
    out = np.zeros(rows.shape, dtype=dtype)
    np.divide(rows, scale[:, None], out=out, where=scale[:, None] > 0, casting="unsafe")
    return out


@numba.njit(cache=True, nogil=True)
def _finish(block, alpha, bias, code, first_query, first_train, zero_self, queries, train, query_norms, train_norms, bounds):  # type: ignore[no-untyped-def]  # fmt: skip # noqa: E501
    """Turn GEMM scores into distances in place (float64 arithmetic, one rounding).

    A distance whose approximate key (squared distance, or 1 - cosine) is
    within ``RECHECK`` times the row's rounding bound is recomputed exactly
    in float64 from the rows: near-duplicates get their true small distance
    instead of the square root of rounding noise. The first loop has no
    branch the compiler cannot vectorise; the rare rows with such a pair get
    a second look.
    """
    rows, cols = block.shape
    for i in range(rows):
        if code == SIMILARITY:
            for j in range(cols):
                block[i, j] = min(max(np.float64(block[i, j]), -1.0), 1.0)
            continue
        limit = RECHECK * bounds[i]
        suspects = 0
        if code == COSINE_DISTANCE:
            for j in range(cols):
                value = 1.0 - np.float64(block[i, j])
                suspects += value < limit
                block[i, j] = min(max(value, 0.0), 2.0)
        else:
            for j in range(cols):
                value = alpha[i] + bias[j] - 2.0 * np.float64(block[i, j])
                suspects += value < limit
                value = max(value, 0.0)
                block[i, j] = np.sqrt(value) if code == EUCLIDEAN else value
        if suspects:
            # Stored values are monotone in the keys: a slightly larger cut re-finds every suspect.
            cut = (np.sqrt(limit) if code == EUCLIDEAN else limit) * 1.001
            for j in range(cols):
                if block[i, j] < cut:
                    if code == COSINE_DISTANCE:
                        value = pair_key(queries[i], train[j], COSINE, query_norms[i], train_norms[j])
                    else:
                        value = max(pair_key(queries[i], train[j], L2, 0.0, 0.0), 0.0)
                        if code == EUCLIDEAN:
                            value = np.sqrt(value)
                    block[i, j] = value
        if zero_self:
            own = first_query + i - first_train
            if 0 <= own < cols:
                block[i, own] = 0.0


def _gemm(queries: np.ndarray, train: np.ndarray, dtype: np.dtype) -> np.ndarray:
    out = np.empty((queries.shape[0], train.shape[0]), dtype=dtype)
    np.matmul(queries, train.T, out=out)
    return out


def gemm_pairwise(
    queries: np.ndarray, train: np.ndarray, metric: str, first_query: int, first_train: int, self_join: bool
) -> np.ndarray:  # noqa: E501
    """One block of a GEMM-family metric.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    train : ndarray of shape (n, d)
    metric : {"euclidean", "sqeuclidean", "cosine", "correlation", "inner_product"}
    first_query, first_train : int, global rows of ``queries[0]`` and ``train[0]``
    self_join : bool, set the distance of a row to itself (same global row) to 0

    Returns
    -------
    ndarray of shape (m, n), float32 when both inputs are float32, else float64

    Raises
    ------
    ValueRangeError
        Values so large that the block does not fit its dtype (float32: squared distances or inner products
        beyond 3.4e38, pass float64; float64: beyond 1.8e308).
    """
    dtype = gemm_dtype(queries.dtype, train.dtype)
    d = queries.shape[1]
    # Values whose squares leave the float range are scaled by a power of two (exact), the block scaled back below;
    # the cosine family needs none: its rows are divided by float64 norms before the GEMM.
    exponent = 0
    if metric not in ("cosine", "correlation"):
        exponent = power_of_two_exponent(largest_magnitude(queries, train), dtype, d)
    if exponent:
        queries, train = np.ldexp(queries, -exponent), np.ldexp(train, -exponent)
    if metric == "inner_product":
        block = _gemm(queries.astype(dtype, copy=False), train.astype(dtype, copy=False), dtype)
        return _scale_back(block, exponent, metric)
    if metric in ("euclidean", "sqeuclidean"):
        center = train.mean(axis=0, dtype=np.float64)
        # Centred in float64, rounded once: each element errs relative to |x - c|, not |x|.
        q_rows = (queries - center).astype(dtype)
        x_rows = (train - center).astype(dtype)
        alpha = np.einsum("ij,ij->i", q_rows, q_rows, dtype=np.float64)
        bias = np.einsum("ij,ij->i", x_rows, x_rows, dtype=np.float64)
        bounds = margin("euclidean", dtype, d, np.sqrt(alpha), float(np.sqrt(bias.max())))
        code = EUCLIDEAN if metric == "euclidean" else SQEUCLIDEAN
        query_norms = train_norms = np.empty(0)
    else:
        if metric == "correlation":
            queries, train = centre_rows(queries), centre_rows(train)
        query_norms, train_norms = row_norms(queries), row_norms(train)
        q_rows, x_rows = unit_rows(queries, dtype), unit_rows(train, dtype)
        bounds = margin("cosine", dtype, d, np.ones(len(q_rows)), 1.0)
        alpha = bias = np.empty(0)
        code = COSINE_DISTANCE
    block = _gemm(q_rows, x_rows, dtype)
    _finish(block, alpha, bias, code, first_query, first_train, self_join, queries, train, query_norms, train_norms, bounds)  # fmt: skip # noqa: E501
    return _scale_back(block, exponent, metric)


def _scale_back(block: np.ndarray, exponent: int, metric: str) -> np.ndarray:
    """The block of rows scaled by ``2**-exponent``, scaled back in place; ValueRangeError rather than infinity."""
    if exponent == 0:
        return block
    with np.errstate(over="ignore"):
        np.ldexp(block, exponent if metric == "euclidean" else 2 * exponent, out=block)
    if not np.isfinite(block).all():
        what = "inner products" if metric == "inner_product" else "distances"
        fix = "pass float64 inputs (X.astype('float64'))" if block.dtype == np.float32 else "rescale the data first"
        raise ValueRangeError(
            f"pairwise distances with metric={metric!r}: the values are so large (about 2**{exponent}) that their "
            f"{what} exceed the {block.dtype} range ({np.finfo(block.dtype).max:.3g}); {fix}"
        )
    return block


def row_norms(rows: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row, in float64."""
    return np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))


def pairwise_chunk(
    queries: np.ndarray,
    train: np.ndarray,
    query_index: np.ndarray,
    train_index: np.ndarray,
    *,
    metric: str,
    p: float,
    gemm: bool,
    self_join: bool,
) -> np.ndarray:
    """The (query block, train block) block of the distance matrix.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    train : ndarray of shape (n, d)
    query_index, train_index : ndarray of shape (m,) and (n,), int64, consecutive global rows
    metric : str, a canonical name of ``bigdist.kernels.registry.METRICS``
    p : float, the Minkowski order
    gemm : bool, whether ``metric`` is in the GEMM family
    self_join : bool, queries and train are the same rows: a row is at distance 0 from itself

    Returns
    -------
    ndarray of shape (m, n), float32 when both inputs are float32, else float64
    """
    first_query = int(query_index[0]) if len(query_index) else 0
    first_train = int(train_index[0]) if len(train_index) else 0
    if gemm:
        return gemm_pairwise(queries, train, metric, first_query, first_train, self_join)
    check_values(queries, metric, "queries", first_query)
    check_values(train, metric, "train", first_train)
    out = np.empty((queries.shape[0], train.shape[0]), dtype=out_dtype(queries.dtype, train.dtype))
    direct_block(queries, train, direct_code(metric), float(p), out)
    if self_join:
        # russellrao of a row with itself is not 0, nor nan_euclidean of an all-NaN row: scikit-learn's
        # pairwise_distances(X) has a zero diagonal.
        zero_diagonal(out, first_query, first_train)
    return out


def zero_diagonal(block: np.ndarray, first_query: int, first_train: int) -> None:
    """Set the distance of each row to itself (same global row) to 0, in place."""
    rows = np.arange(block.shape[0])
    own = first_query + rows - first_train
    keep = (own >= 0) & (own < block.shape[1])
    block[rows[keep], own[keep]] = 0


def cosine_similarity_chunk(queries: np.ndarray, train: np.ndarray, *, eps: float) -> np.ndarray:
    """One block of the cosine-similarity matrix, rows divided by ``max(norm, eps)``, clipped to [-1, 1].

    Returns
    -------
    ndarray of shape (m, n), float32 when both inputs are float32, else float64
    """
    dtype = gemm_dtype(queries.dtype, train.dtype)
    block = _gemm(unit_rows(queries, dtype, eps), unit_rows(train, dtype, eps), dtype)
    empty = np.empty(0)
    _finish(block, empty, empty, SIMILARITY, 0, 0, False, queries, train, empty, empty, np.zeros(len(queries)))
    return block
