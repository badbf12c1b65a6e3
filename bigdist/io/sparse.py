"""Sparse inputs: scipy.sparse matrices and dask arrays of sparse blocks, as row-chunked dask arrays of CSR blocks.

A sparse input is never densified whole: its blocks stay CSR (float32 or
float64, canonical: sorted indices, no duplicates), rows chunked so that a
block's stored values stay near ``bigdist.chunk-bytes``, features in one
chunk. The kernels (``bigdist.kernels.sparse``) densify at most a bounded
tile at a time.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse
from dask.base import tokenize

from bigdist import config
from bigdist.errors import InputDtypeError, InputShapeError, NonFiniteError


def is_sparse(data: Any) -> bool:
    """Whether ``data`` is a scipy.sparse matrix/array or a dask array of sparse blocks."""
    if isinstance(data, da.Array):
        return scipy.sparse.issparse(getattr(data, "_meta", None))
    return scipy.sparse.issparse(data)


def canonical_csr(block: Any, dtype: np.dtype) -> scipy.sparse.csr_matrix:
    """``block`` as a canonical CSR matrix (sorted indices, duplicates summed) of ``dtype``."""
    csr = scipy.sparse.csr_matrix(block, dtype=dtype)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    return csr


def _float_dtype(dtype: np.dtype, name: str) -> np.dtype:
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    raise InputDtypeError(
        f"{name} is a sparse matrix of dtype {dtype}; give real numbers, e.g. {name}.astype('float64')"
    )


def _checked_block(block: Any, first_row: np.ndarray, *, dtype: np.dtype, name: str, check_finite: bool) -> Any:
    csr = canonical_csr(block, dtype)
    if check_finite and not np.isfinite(csr.data).all():
        position = int(np.flatnonzero(~np.isfinite(csr.data))[0])
        row = int(np.searchsorted(csr.indptr, position, side="right") - 1)
        value = "NaN" if np.isnan(csr.data[position]) else "infinity"
        start = int(first_row[0]) if len(first_row) else 0
        raise NonFiniteError(
            f"{name} holds {value} at row {start + row}, column {int(csr.indices[position])}; NaN or infinity cannot "
            f"be compared by distance: remove or impute those rows first"
        )
    return csr


def sparse_rows_per_block(n_rows: int, nnz: int) -> int:
    """Rows of one block whose stored values (value + column index, 12-16 bytes each) stay near chunk-bytes."""
    per_row = max(1.0, nnz / max(n_rows, 1)) * 16 + 8
    return max(1, min(n_rows, int(config.get("chunk-bytes") // per_row)))


def as_sparse_array(data: Any, *, name: str = "X", check_finite: bool = True) -> da.Array:
    """A sparse input as a 2-D dask array of canonical CSR blocks, rows chunked, features in one chunk.

    Parameters
    ----------
    data : scipy.sparse matrix or array of shape (n_samples, n_features), or a dask array of sparse blocks
    name : str, how messages call this input
    check_finite : bool, raise NonFiniteError for NaN or infinity among the stored values (inside the read)

    Returns
    -------
    dask array of shape (n_samples, n_features) with ``scipy.sparse.csr_matrix`` blocks,
    float32 for float32 input, else float64

    Raises
    ------
    InputShapeError
        Not 2-D, or no rows or no features.
    InputDtypeError
        Values that are not real numbers.
    """
    shape = tuple(int(size) for size in data.shape)
    if len(shape) != 2 or 0 in shape:
        raise InputShapeError(f"{name} is a sparse matrix of shape {shape}; give a 2-D (n_samples, n_features) one")
    dtype = _float_dtype(np.dtype(data.dtype), name)
    if isinstance(data, da.Array):
        array = data.rechunk({1: -1}) if data.numblocks[1] > 1 else data
    else:
        csr = scipy.sparse.csr_matrix(data)
        rows = sparse_rows_per_block(shape[0], csr.nnz)
        array = da.from_array(csr, chunks=(rows, shape[1]), asarray=False)
    first_rows = da.arange(shape[0], chunks=(array.chunks[0],), dtype=np.int64)
    meta = scipy.sparse.csr_matrix((0, 0), dtype=dtype)
    return da.blockwise(
        partial(_checked_block, dtype=dtype, name=name, check_finite=check_finite),
        "if",
        array,
        "if",
        first_rows,
        "i",
        dtype=dtype,
        meta=meta,
        name=f"bigdist-sparse-{tokenize(array, dtype, name, check_finite)}",
    )


def sparse_or_dense(data: Any, as_dense: Any, *, name: str, check_finite: bool = True) -> da.Array:
    """``as_sparse_array`` for sparse input, else ``as_dense(data, name=..., check_finite=...)``."""
    if is_sparse(data):
        return as_sparse_array(data, name=name, check_finite=check_finite)
    return as_dense(data, name=name, check_finite=check_finite)


def _densify(block: Any) -> np.ndarray:
    return np.asarray(block.toarray())


def as_dense_rows(data: Any, as_dense: Any, *, name: str) -> da.Array:
    """Rows as dense blocks: a sparse input re-chunked to blocks of about chunk-bytes when dense, each densified
    by the task that reads it (never the whole matrix); any other input through ``as_dense(data, name=...)``.

    For the algorithms whose kernels take dense blocks only (k-means): exact, out of core, and as fast as dense
    data of the same shape (slow for very wide rows, whose dense blocks hold few rows).
    """
    if not is_sparse(data):
        return as_dense(data, name=name)
    array = as_sparse_array(data, name=name)
    rows = max(1, config.get("chunk-bytes") // (array.shape[1] * array.dtype.itemsize))
    array = array.rechunk({0: min(rows, array.shape[0])})
    return array.map_blocks(
        _densify,
        dtype=array.dtype,
        meta=np.empty((0, 0), dtype=array.dtype),
        name=f"bigdist-densify-{_label(name)}-{tokenize(array)}",
    )


def _label(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40] or "X"


def to_sparse_blocks(array: da.Array) -> da.Array:
    """A dense row-chunked dask array as CSR blocks (for a sparse input's other side)."""
    meta = scipy.sparse.csr_matrix((0, 0), dtype=array.dtype)
    return array.map_blocks(scipy.sparse.csr_matrix, dtype=array.dtype, meta=meta)


__all__ = [
    "as_sparse_array",
    "canonical_csr",
    "is_sparse",
    "sparse_or_dense",
    "sparse_rows_per_block",
    "to_sparse_blocks",
]
