"""Open inputs as row-chunked dask arrays, validating them on the way in."""

from __future__ import annotations

import logging
import numbers
import os
import pathlib
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from bigdist import config
from bigdist.errors import InputDtypeError, InputShapeError, NonFiniteError, ParameterError, StoreNotFoundError

logger = logging.getLogger(__name__)


def _rows_per_block(n_features: int, itemsize: int) -> int:
    return max(1, config.get("chunk-bytes") // max(1, n_features * itemsize))


def _float_dtype(dtype: np.dtype, name: str) -> np.dtype:
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    complex_note = "Complex data not supported; " if dtype.kind == "c" else ""
    raise InputDtypeError(
        f"{name} has dtype {dtype}, which bigdist cannot compute distances with; {complex_note}"
        f"convert it to a float or integer array (e.g. {name}.astype('float32'))"
    )


def _open_path(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> Any:
    text = os.fspath(path)
    if "://" not in text:
        local = pathlib.Path(text).expanduser()
        if not local.exists():
            raise StoreNotFoundError(f"no such file or Zarr store: {text!r}; check the path")
        if local.suffix == ".npy":
            return np.load(local, mmap_mode="r")
        text = str(local)
    try:
        node = zarr.open(store=text, mode="r", storage_options=storage_options)
    except FileNotFoundError:
        raise StoreNotFoundError(f"no Zarr array at {text!r}; check the path or URL") from None
    if isinstance(node, zarr.Group):
        arrays = sorted(name for name, _ in node.arrays())
        raise InputShapeError(
            f"{text!r} is a Zarr group, not an array; name one of its arrays, e.g. "
            f"{text.rstrip('/')}/{arrays[0] if arrays else 'NAME'} (arrays: {', '.join(arrays) or 'none'})"
        )
    return node


def _check_finite_block(block: np.ndarray, label: str, block_info: dict | None = None) -> np.ndarray:
    if not np.isfinite(block).all():
        bad_row = int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
        start = block_info[0]["array-location"][0][0] if block_info else 0
        raise NonFiniteError(
            f"{label} holds NaN or infinity at row {start + bad_row} (in the block of rows "
            f"{start}-{start + len(block) - 1}); remove or impute those rows first"
        )
    return block


def as_array(data: Any, *, name: str = "X", check_finite: bool = True) -> da.Array:
    """Return ``data`` as a 2-D float dask array, rows chunked, features in one chunk.

    Parameters
    ----------
    data : array-like of shape (n_samples, n_features), or str / PathLike
        NumPy or dask array, ``zarr.Array``, path or URL of a Zarr array, or a ``.npy`` path.
    name : str
        How error messages call this input.
    check_finite : bool
        Raise NonFiniteError for NaN or infinity: at once for in-memory
        inputs, inside the pass that reads the blocks for the others.

    Returns
    -------
    dask array of shape (n_samples, n_features), float32 or float64
    """
    if isinstance(data, (str, os.PathLike)):
        data = _open_path(data)
    if hasattr(data, "tocsr") or type(data).__module__.startswith("scipy.sparse"):
        raise InputDtypeError(
            f"{name} is a sparse matrix, and sparse input is not supported; convert it with {name}.toarray()"
        )
    if not isinstance(data, (np.ndarray, da.Array)) and not hasattr(data, "chunks"):
        data = np.asarray(data)
    if isinstance(data, np.ndarray) and data.dtype == object:
        try:
            data = data.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise InputDtypeError(f"{name} has dtype object and values that are not numbers ({error})") from None
    if len(data.shape) != 2:
        raise InputShapeError(
            f"{name} has shape {tuple(data.shape)}; bigdist needs a 2-D array (n_samples, n_features). Reshape your "
            f"data either using array.reshape(-1, 1) if it has a single feature or array.reshape(1, -1) if it "
            f"contains a single sample"
        )
    n_rows, n_features = data.shape
    if n_rows == 0 or n_features == 0:
        raise InputShapeError(
            f"{name} is empty: {n_features} feature(s) (shape={tuple(data.shape)}) while a minimum of 1 is required, "
            f"and {n_rows} sample(s); give at least one row and one feature"
        )
    dtype = _float_dtype(np.dtype(data.dtype), name)
    in_memory = isinstance(data, np.ndarray) and not isinstance(data, np.memmap)

    if isinstance(data, da.Array):
        array = data
        if array.numblocks[1] > 1:
            array = array.rechunk({1: -1})
    else:
        rows = _rows_per_block(n_features, dtype.itemsize)
        stored = getattr(data, "chunks", None)
        if isinstance(stored, tuple) and len(stored) == 2 and isinstance(stored[0], int):
            if stored[0] <= rows:
                # Whole stored chunks per task, so no chunk is read twice.
                rows = rows // stored[0] * stored[0]
            else:
                logger.warning(
                    "%s is stored in chunks of %d rows, more than the %d rows of bigdist.chunk-bytes; "
                    "each chunk will be read once per block of it (rewrite it with smaller chunks to avoid that)",
                    name,
                    stored[0],
                    rows,
                )
        array = da.from_array(data, chunks=(min(rows, n_rows), n_features), asarray=True)
    if array.dtype != dtype:
        array = array.astype(dtype)

    if check_finite:
        if in_memory:
            _check_finite_block(np.asarray(data), name)
        else:
            array = array.map_blocks(
                partial(_check_finite_block, label=name),
                name=f"bigdist-check-finite-{tokenize(array, name)}",
                dtype=array.dtype,
                chunks=array.chunks,
                meta=np.empty((0, 0), dtype=array.dtype),
            )
    return array


def open_array(data: Any, *, name: str | None = None, storage_options: dict[str, Any] | None = None) -> da.Array:
    """Open a Zarr array (local path or fsspec URL), a ``.npy`` file or an array as a dask array.

    Parameters
    ----------
    data : str, PathLike, or array-like of shape (n_samples, n_features)
        A path or URL, or a NumPy array, dask array or ``zarr.Array``.
    name : str, optional
        How error messages call this input (default: the path, or "X").
    storage_options : dict, optional
        Passed to fsspec for remote stores.

    Returns
    -------
    dask array of shape (n_samples, n_features), rows chunked, features in one chunk
    """
    if isinstance(data, (str, os.PathLike)):
        return as_array(_open_path(data, storage_options), name=name or os.fspath(data))
    return as_array(data, name=name or "X")


def in_memory(data: Any) -> bool:
    """Whether ``data`` is an in-memory input (NumPy in, NumPy out; dask, Zarr and files stay lazy)."""
    return isinstance(data, (np.ndarray, list, tuple))


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise ParameterError naming it when it is not an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def check_features(queries: da.Array, train: da.Array) -> None:
    """Raise InputShapeError when queries and train have different feature counts."""
    if queries.shape[1] != train.shape[1]:
        raise InputShapeError(
            f"queries have {queries.shape[1]} features but train has {train.shape[1]}; "
            f"both must have the same number of columns"
        )
