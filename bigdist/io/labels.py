"""Open per-row labels (class labels or regression targets) aligned with a train set.

Labels may be a NumPy array or list, a dask array, a ``zarr.Array``, or the
path/URL of a Zarr array or ``.npy`` file; they stay lazy unless given in
memory, and are never gathered to the client.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from bigdist.errors import InputDtypeError, InputShapeError, NonFiniteError
from bigdist.io.arrays import _first_non_finite, _NpyFile, _open_path, rows_per_block


def _check_finite_labels(block: np.ndarray, name: str, first_row: int = 0) -> np.ndarray:
    """Return ``block`` (labels of shape (n,) or (n, n_outputs)), or raise NonFiniteError naming the row."""
    found = _first_non_finite(block)
    if found is None:
        return block
    row, column = found
    value = block.reshape(len(block), -1)[row, column]
    where = f"row {first_row + row}" + (f", output {column}" if block.ndim == 2 else "")
    raise NonFiniteError(
        f"{name} holds {'NaN' if np.isnan(value) else 'infinity'} at {where}; every train row needs a finite "
        f"label: drop those rows from both the train set and {name}, or fill in their labels"
    )


def _check_finite_block(block: np.ndarray, name: str, block_info: dict[Any, Any] | None = None) -> np.ndarray:
    first_row = block_info[0]["array-location"][0][0] if block_info else 0
    return _check_finite_labels(block, name, first_row)


def _coerce_labels(data: Any, name: str) -> Any:
    """Lazy sources stay lazy; everything else becomes NumPy, object (string) labels included."""
    if hasattr(data, "tocsr") or type(data).__module__.startswith("scipy.sparse"):
        raise InputDtypeError(f"{name} is a sparse matrix; give the labels as a dense array, e.g. {name}.toarray()")
    if isinstance(data, (da.Array, zarr.Array, _NpyFile, np.ndarray)):
        return data
    if not type(data).__module__.startswith("pandas") and all(
        hasattr(data, attribute) for attribute in ("shape", "dtype", "__getitem__")
    ):
        return data  # another lazy array (h5py, xarray's backends): read block by block
    return np.asarray(data)


def as_labels(data: Any, n_rows: int, *, name: str = "y", check_finite: bool = True) -> np.ndarray | da.Array:
    """Return per-row labels as a NumPy array (in-memory input) or a row-chunked dask array.

    Parameters
    ----------
    data : array-like of shape (n_rows,) or (n_rows, n_outputs), or str / PathLike
        NumPy or dask array, list, ``zarr.Array``, or the path/URL of a Zarr
        array or ``.npy`` file.
    n_rows : int
        Rows of the train set the labels belong to.
    name : str
        How error messages call this input.
    check_finite : bool
        Raise NonFiniteError for NaN or infinity in float labels: at once for
        in-memory labels, otherwise when their blocks are read.

    Returns
    -------
    ndarray or dask array of shape (n_rows,) or (n_rows, n_outputs)
        The dtype of the input; a dask array keeps its row chunks (outputs in one chunk).

    Raises
    ------
    InputShapeError
        Not 1-D or 2-D, no outputs, or a length other than ``n_rows``.
    InputDtypeError
        Complex labels, or a sparse matrix.
    NonFiniteError
        NaN or infinity (on compute for lazy labels).
    """
    if isinstance(data, (str, os.PathLike)):
        data = _open_path(data)
    source = _coerce_labels(data, name)
    shape = tuple(int(size) for size in source.shape)
    if len(shape) not in (1, 2):
        raise InputShapeError(
            f"{name} has {len(shape)} dimensions, shape {shape}; labels must be 1-D (n_samples,) or 2-D "
            f"(n_samples, n_outputs)"
        )
    if len(shape) == 2 and shape[1] == 0:
        raise InputShapeError(f"{name} has shape {shape}, no outputs; give at least one label column")
    if shape[0] != n_rows:
        raise InputShapeError(
            f"{name} has {shape[0]} labels but the train set has {n_rows} rows; give exactly one label per "
            f"train row, in the same order"
        )
    if np.dtype(source.dtype).kind == "c":
        raise InputDtypeError(f"{name} has complex dtype {source.dtype}; labels must be real numbers or strings")
    if isinstance(source, np.ndarray) and not isinstance(source, np.memmap):
        if check_finite:
            _check_finite_labels(source, name)
        return source
    if isinstance(source, da.Array):
        array = source.rechunk({1: -1}) if source.ndim == 2 else source
    else:
        rows = rows_per_block(int(np.prod(shape[1:], dtype=np.int64)), 8)
        array = da.from_array(source, chunks=(min(rows, n_rows), *shape[1:]), asarray=True)
    if check_finite and array.dtype.kind == "f":
        array = array.map_blocks(
            partial(_check_finite_block, name=name),
            name=f"bigdist-check-finite-labels-{tokenize(array, name)}",
            dtype=array.dtype,
            meta=np.empty((0,) * array.ndim, dtype=array.dtype),
        )
    return array


__all__ = ["as_labels"]
