"""Sparse blocks (CSR): kNN, radius and distance-matrix tiles, exact (NumPy, scipy.sparse and numba; no dask).

- ``euclidean``, ``sqeuclidean``, ``cosine``, ``inner_product``: one sparse
  product ``Q @ X.T`` (float64) per sub-tile gives approximate keys through
  the row norms (``|q|^2 + |x|^2 - 2 q.x``, ``1 - q.x / (|q| |x|)``,
  ``-q.x``); a pair that may belong to the result (within twice the rounding
  bound of the k-th key, or of the radius) is recomputed exactly in float64
  by merging the two rows' sorted coordinates, in coordinate order — the sum
  a dense float64 brute force makes, the zeros adding nothing.
- ``manhattan``: every pair by the same merge, exactly.
- Every other metric: bounded dense tiles (at most ``DENSE_TILE_BYTES`` of
  rows densified at once) through the dense kernels.

Blocks are ``scipy.sparse`` matrices, canonical CSR (``bigdist.io.sparse``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import scipy.sparse

from bigdist.kernels.dense import tile_topk, tile_within
from bigdist.kernels.direct import insert_sorted
from bigdist.kernels.knn import knn_chunk
from bigdist.kernels.pairwise import out_dtype, pairwise_chunk, zero_diagonal
from bigdist.kernels.radius import check_cap, empty_partial, radius_chunk, radius_combine, radius_key
from bigdist.kernels.topk import PAD_INDEX, empty_topk, topk_merge

SPARSE_GEMM = ("euclidean", "sqeuclidean", "cosine", "inner_product")
SPARSE_METRICS = (*SPARSE_GEMM, "manhattan")
L2, COSINE, INNER, MANHATTAN = range(4)
_CODES = {"euclidean": L2, "sqeuclidean": L2, "cosine": COSINE, "inner_product": INNER, "manhattan": MANHATTAN}
# Approximate keys of one sub-tile held at once (float64).
TILE_ELEMENTS = 2**20
# Rows densified at once for the metrics without a sparse kernel.
DENSE_TILE_BYTES = 2**25
# How an exact key is compared with the radius: euclidean keys are squares (decided on their square root, as
# cdist's distance), inner products are similarities.
_SQRT_AT_MOST, _AT_MOST, _NEGATED_AT_LEAST = range(3)
# Pairwise blocks: keys below this many times their rounding bound are recomputed exactly.
RECHECK = 16.0


def _csr(block: Any) -> scipy.sparse.csr_matrix:
    csr = scipy.sparse.csr_matrix(block, dtype=np.float64)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    return csr


@numba.njit(cache=True, nogil=True)
def _exact(code, qptr, qind, qdat, i, xptr, xind, xdat, j, qnorm, xnorm):  # type: ignore[no-untyped-def]
    """Exact float64 key of query row ``i`` and train row ``j``, their coordinates merged in increasing order."""
    a, a_end = qptr[i], qptr[i + 1]
    b, b_end = xptr[j], xptr[j + 1]
    total = 0.0
    while a < a_end or b < b_end:
        if b >= b_end or (a < a_end and qind[a] < xind[b]):
            u, v = qdat[a], 0.0
            a += 1
        elif a >= a_end or xind[b] < qind[a]:
            u, v = 0.0, xdat[b]
            b += 1
        else:
            u, v = qdat[a], xdat[b]
            a += 1
            b += 1
        if code == L2:
            diff = u - v
            total += diff * diff
        elif code == MANHATTAN:
            total += abs(u - v)
        else:
            total += u * v
    if code == INNER:
        return -total
    if code == COSINE:
        denom = qnorm * xnorm
        cosine = total / denom if denom > 0 else 0.0
        return min(max(1.0 - cosine, 0.0), 2.0)
    return total


@numba.njit(cache=True, nogil=True)
def _all_exact(code, qptr, qind, qdat, xptr, xind, xdat, out):  # type: ignore[no-untyped-def]
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = _exact(code, qptr, qind, qdat, i, xptr, xind, xdat, j, 0.0, 0.0)


@numba.njit(cache=True, nogil=True)
def _select(approx, limits, code, qptr, qind, qdat, xptr, xind, xdat, qnorms, xnorms, first_train, own_offset, best_keys, best_indices):  # type: ignore[no-untyped-def]  # fmt: skip # noqa: E501
    """Fold the pairs whose approximate key is within ``limits`` into the rows' top-k, on their exact keys."""
    last = best_keys.shape[1] - 1
    for i in range(approx.shape[0]):
        own = own_offset + i
        for j in range(approx.shape[1]):
            if j == own or not approx[i, j] <= limits[i]:
                continue
            key = _exact(code, qptr, qind, qdat, i, xptr, xind, xdat, j, qnorms[i], xnorms[j])
            if key < best_keys[i, last] or (key == np.inf and best_indices[i, last] == PAD_INDEX):
                insert_sorted(best_keys, best_indices, i, key, first_train + j)


@numba.njit(cache=True, nogil=True)
def _within(approx, limit, code, qptr, qind, qdat, xptr, xind, xdat, qnorms, xnorms, own_offset, inclusion, radius, rows, columns, keys):  # type: ignore[no-untyped-def]  # fmt: skip # noqa: E501
    """Pairs whose exact key is within the radius, among those whose approximate key is within ``limit[i]``."""
    count = 0
    for i in range(approx.shape[0]):
        own = own_offset + i
        for j in range(approx.shape[1]):
            if j == own or not approx[i, j] <= limit[i]:
                continue
            key = _exact(code, qptr, qind, qdat, i, xptr, xind, xdat, j, qnorms[i], xnorms[j])
            if inclusion == _SQRT_AT_MOST:
                inside = np.sqrt(max(key, 0.0)) <= radius
            elif inclusion == _NEGATED_AT_LEAST:
                inside = -key >= radius
            else:
                inside = key <= radius
            if inside:
                if count == len(rows):
                    return -1
                rows[count] = i
                columns[count] = j
                keys[count] = key
                count += 1
    return count


def _unit() -> float:
    return float(np.finfo(np.float64).eps) / 2


def _approximate(queries: scipy.sparse.csr_matrix, train: scipy.sparse.csr_matrix, code: int) -> tuple[np.ndarray, ...]:
    """(approximate keys (m, w), per-row rounding bound (m,), query norms, train norms), float64."""
    scores = (queries @ train.T).toarray()
    q2 = np.asarray(queries.multiply(queries).sum(axis=1)).ravel()
    x2 = np.asarray(train.multiply(train).sum(axis=1)).ravel()
    qn, xn = np.sqrt(q2), np.sqrt(x2)
    n = queries.shape[1] + 2
    gamma = n * _unit() / (1 - n * _unit())
    largest = float(xn.max()) if len(xn) else 0.0
    if code == L2:
        approx = q2[:, None] + x2[None, :] - 2.0 * scores
        bound = 4.0 * (3 * gamma + 8 * _unit()) * (qn + largest) ** 2
    elif code == COSINE:
        denom = np.outer(qn, xn)
        cosine = np.divide(scores, denom, out=np.zeros_like(scores), where=denom > 0)
        approx = 1.0 - cosine
        bound = np.full(len(qn), 4.0 * (3 * gamma + 8 * _unit()))
    else:
        approx = -scores
        bound = 4.0 * (gamma + 4 * _unit()) * qn * largest
    return approx, bound, qn, xn


def _train_steps(m: int, n: int) -> int:
    return max(1, min(n, TILE_ELEMENTS // max(m, 1)))


def _dense_rows(n_features: int) -> int:
    return max(1, DENSE_TILE_BYTES // (8 * n_features))


def _dense(block: Any, start: int, stop: int) -> np.ndarray:
    return np.asarray(block[start:stop].toarray())


def sparse_knn_chunk(
    queries: Any,
    train: Any,
    query_index: np.ndarray,
    train_index: np.ndarray,
    *,
    k: int,
    metric: str,
    p: float,
    exclude_self: bool,
    tile_query_rows: int,
    tile_train_rows: int,
) -> np.ndarray:
    """Exact top-k of every query row within one train block, both sparse.

    Parameters
    ----------
    queries : scipy.sparse matrix of shape (m, d); train : scipy.sparse matrix of shape (n, d)
    query_index, train_index : ndarray of shape (m,) and (n,), int64, consecutive global rows
    k : int; metric : str, a canonical name of the registry; p : float, the Minkowski order
    exclude_self : bool
    tile_query_rows, tile_train_rows : int, sub-tiles of the dense kernels (metrics without a sparse kernel)

    Returns
    -------
    structured ndarray of shape (m, k), dtype TOPK_DTYPE, sorted by (key, index)
    """
    m, n = queries.shape[0], train.shape[0]
    if m == 0 or n == 0:
        return empty_topk(m, k)
    first_query, first_train = int(query_index[0]), int(train_index[0])
    if metric not in SPARSE_METRICS:
        return _dense_knn(queries, train, first_query, first_train, k, metric, p, exclude_self, tile_query_rows,
                          tile_train_rows)  # fmt: skip
    q, x = _csr(queries), _csr(train)
    code = _CODES[metric]
    best = empty_topk(m, k)
    step = _train_steps(m, n)
    for start in range(0, n, step):
        xs = x[start : start + step]
        own_offset = first_query - (first_train + start) if exclude_self else -(2**62)
        if code == MANHATTAN:
            exact = np.empty((m, xs.shape[0]))
            _all_exact(code, q.indptr, q.indices, q.data, xs.indptr, xs.indices, xs.data, exact)
            found = tile_topk(exact, first_query, first_train + start, k=k, exclude_self=exclude_self)
            best = topk_merge(np.concatenate([best, found], axis=1), k)
            continue
        approx, bound, qn, xn = _approximate(q, xs, code)
        if exclude_self:
            rows = np.arange(m)
            own = rows + own_offset
            keep = (own >= 0) & (own < xs.shape[0])
            approx[rows[keep], own[keep]] = np.inf
        if approx.shape[1] >= k:
            kth = np.partition(approx, k - 1, axis=1)[:, k - 1]
        else:
            kth = np.full(m, np.inf)
        keys, indices = best["key"].copy(), best["index"].copy()
        limits = np.minimum(kth + 2 * bound, keys[:, -1] + bound)
        _select(approx, limits, code, q.indptr, q.indices, q.data, xs.indptr, xs.indices, xs.data, qn, xn,
                first_train + start, own_offset, keys, indices)  # fmt: skip
        best["key"], best["index"] = keys, indices
    return best


def _dense_knn(queries, train, first_query, first_train, k, metric, p, exclude_self, tile_query_rows, tile_train_rows):  # type: ignore[no-untyped-def]  # fmt: skip # noqa: E501
    """Top-k through the dense kernel on bounded dense tiles of both blocks."""
    m, n = queries.shape[0], train.shape[0]
    rows = _dense_rows(queries.shape[1])
    parts = []
    for q_start in range(0, m, rows):
        q_stop = min(q_start + rows, m)
        dense_q = _dense(queries, q_start, q_stop)
        q_index = np.arange(first_query + q_start, first_query + q_stop, dtype=np.int64)
        best = empty_topk(q_stop - q_start, k)
        for x_start in range(0, n, rows):
            x_stop = min(x_start + rows, n)
            x_index = np.arange(first_train + x_start, first_train + x_stop, dtype=np.int64)
            found = knn_chunk(dense_q, _dense(train, x_start, x_stop), q_index, x_index, k=k, metric=metric,
                              exclude_self=exclude_self, tile_query_rows=tile_query_rows,
                              tile_train_rows=tile_train_rows, p=p)  # fmt: skip
            best = topk_merge(np.concatenate([best, found], axis=1), k)
        parts.append(best)
    return np.concatenate(parts)


def sparse_radius_chunk(
    queries: Any,
    train: Any,
    first_query: int,
    first_train: int,
    *,
    radius: float,
    metric: str,
    p: float,
    exclude_self: bool,
    max_neighbors: int,
    tile_query_rows: int,
    tile_train_rows: int,
) -> dict[str, Any]:
    """Every pair of a sparse query block and a sparse train block within the radius, as a radius partial result.

    ``euclidean`` keys are squared distances (``radius_finish`` takes their square roots), as in the dense kernel.
    """
    m, n = queries.shape[0], train.shape[0]
    if m == 0 or n == 0:
        return empty_partial(m, first_query)
    if metric not in SPARSE_METRICS:
        return _dense_radius(queries, train, first_query, first_train, radius, metric, p, exclude_self,
                             max_neighbors, tile_query_rows, tile_train_rows)  # fmt: skip
    q, x = _csr(queries), _csr(train)
    code = _CODES[metric]
    inclusion = {"euclidean": _SQRT_AT_MOST, "inner_product": _NEGATED_AT_LEAST}.get(metric, _AT_MOST)
    counts = np.zeros(m, dtype=np.int64)
    rows_list, columns_list, keys_list = [], [], []
    step = _train_steps(m, n)
    for start in range(0, n, step):
        xs = x[start : start + step]
        own_offset = first_query - (first_train + start) if exclude_self else -(2**62)
        if code == MANHATTAN:
            exact = np.empty((m, xs.shape[0]))
            _all_exact(code, q.indptr, q.indices, q.data, xs.indptr, xs.indices, xs.data, exact)
            rows, columns, keys = tile_within(exact, first_query, first_train + start, radius=radius,
                                              exclude_self=exclude_self)  # fmt: skip
            columns = columns - first_train
        else:
            approx, bound, qn, xn = _approximate(q, xs, code)
            limit = radius_key(metric, radius) + bound
            capacity = 4 * m + 1024
            while True:
                rows, columns, keys = np.empty(capacity, np.int64), np.empty(capacity, np.int64), np.empty(capacity)
                count = _within(approx, limit, code, q.indptr, q.indices, q.data, xs.indptr, xs.indices, xs.data,
                                qn, xn, own_offset, inclusion, radius, rows, columns, keys)  # fmt: skip
                if count >= 0:
                    break
                capacity *= 2
            rows, columns, keys = rows[:count], columns[:count] + start, keys[:count]
        counts += np.bincount(rows, minlength=m)
        check_cap(counts, first_query, max_neighbors)
        rows_list.append(rows)
        columns_list.append(columns + first_train)
        keys_list.append(keys)
    rows, indices, keys = np.concatenate(rows_list), np.concatenate(columns_list), np.concatenate(keys_list)
    order = np.lexsort((indices, rows))
    return {"counts": counts, "indices": indices[order], "keys": keys[order], "first_query": first_query}


def _dense_radius(queries, train, first_query, first_train, radius, metric, p, exclude_self, max_neighbors, tile_query_rows, tile_train_rows):  # type: ignore[no-untyped-def]  # fmt: skip # noqa: E501
    m, n = queries.shape[0], train.shape[0]
    rows = _dense_rows(queries.shape[1])
    blocks = []
    for q_start in range(0, m, rows):
        q_stop = min(q_start + rows, m)
        dense_q = _dense(queries, q_start, q_stop)
        partials = [
            radius_chunk(
                dense_q,
                _dense(train, x_start, min(x_start + rows, n)),
                first_query + q_start,
                first_train + x_start,
                radius=radius,
                metric=metric,
                exclude_self=exclude_self,
                max_neighbors=max_neighbors,
                tile_query_rows=tile_query_rows,
                tile_train_rows=tile_train_rows,
                p=p,
            )  # fmt: skip
            for x_start in range(0, n, rows)
        ]
        blocks.append(radius_combine(partials, max_neighbors=max_neighbors))
    return {
        "counts": np.concatenate([block["counts"] for block in blocks]),
        "indices": np.concatenate([block["indices"] for block in blocks]),
        "keys": np.concatenate([block["keys"] for block in blocks]),
        "first_query": first_query,
    }


def sparse_pairwise_chunk(
    queries: Any,
    train: Any,
    query_index: np.ndarray,
    train_index: np.ndarray,
    *,
    metric: str,
    p: float,
    gemm: bool,
    self_join: bool,
) -> np.ndarray:
    """The (query block, train block) block of the distance matrix of sparse rows, dense.

    Returns
    -------
    ndarray of shape (m, n), float32 when both inputs are float32, else float64
    """
    first_query = int(query_index[0]) if len(query_index) else 0
    first_train = int(train_index[0]) if len(train_index) else 0
    dtype = out_dtype(queries.dtype, train.dtype)
    if metric not in SPARSE_METRICS:
        rows = _dense_rows(queries.shape[1])
        out = np.empty((queries.shape[0], train.shape[0]), dtype=dtype)
        for q_start in range(0, queries.shape[0], rows):
            dense_q = _dense(queries, q_start, q_start + rows)
            for x_start in range(0, train.shape[0], rows):
                dense_x = _dense(train, x_start, x_start + rows)
                out[q_start : q_start + len(dense_q), x_start : x_start + len(dense_x)] = pairwise_chunk(
                    dense_q, dense_x, query_index[q_start : q_start + rows], train_index[x_start : x_start + rows],
                    metric=metric, p=p, gemm=gemm, self_join=self_join,
                )  # fmt: skip
        return out
    q, x = _csr(queries), _csr(train)
    code = _CODES[metric]
    if code == MANHATTAN:
        exact = np.empty((q.shape[0], x.shape[0]))
        _all_exact(code, q.indptr, q.indices, q.data, x.indptr, x.indices, x.data, exact)
        return exact.astype(dtype, copy=False)
    approx, bound, qn, xn = _approximate(q, x, code)
    if code != INNER:
        # Small keys carry the expansion's cancellation: those pairs are recomputed exactly.
        rows, cols = np.nonzero(approx < RECHECK * bound[:, None])
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            approx[i, j] = _exact(code, q.indptr, q.indices, q.data, i, x.indptr, x.indices, x.data, j, qn[i], xn[j])
        np.clip(approx, 0.0, 2.0 if code == COSINE else None, out=approx)
    if metric == "euclidean":
        np.sqrt(approx, out=approx)
    values = -approx if code == INNER else approx
    if self_join and code != INNER:
        zero_diagonal(values, first_query, first_train)
    return values.astype(dtype, copy=False)


__all__ = ["SPARSE_GEMM", "SPARSE_METRICS", "sparse_knn_chunk", "sparse_pairwise_chunk", "sparse_radius_chunk"]
