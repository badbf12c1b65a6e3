"""Open inputs as row-chunked float dask arrays, validating them on the way in.

Every input — NumPy or dask array, ``zarr.Array``, Zarr path or URL, ``.npy``
file, or a format of :mod:`bigdist.io.formats` (Parquet, HDF5, AnnData,
``.npy`` shards) — comes out of :func:`as_array` as a 2-D float32/float64 dask array of
shape (n_samples, n_features) whose feature axis is one chunk. Validation of
the values (NaN, infinity) happens inside the pass that reads the blocks.
"""

from __future__ import annotations

import logging
import numbers
import operator
import os
import pathlib
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse
import zarr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from bigdist import config
from bigdist.errors import (
    IncompleteOutputError,
    InputDtypeError,
    InputShapeError,
    NonFiniteError,
    ParameterError,
    StoreNotFoundError,
)
from bigdist.io import formats
from bigdist.io.integrity import ZarrSource
from bigdist.resources import current_client

logger = logging.getLogger(__name__)

# A dask input is re-chunked along rows only when it has more blocks than
# this, each below chunk-bytes / _SMALL_BLOCK_FRACTION: with fewer blocks the
# per-task overhead (1-4 ms) stays negligible, and tests keep their chunking.
_MANY_BLOCKS = 128
_SMALL_BLOCK_FRACTION = 64

_DTYPE_FIXES = {
    "c": "Complex data not supported; use np.abs({name}) or stack {name}.real and {name}.imag as features",
    "U": "parse the strings into numbers first, e.g. {name}.astype('float64')",
    "S": "parse the bytes into numbers first, e.g. {name}.astype('float64')",
    "M": "convert the datetimes to numbers first, e.g. {name}.astype('datetime64[s]').astype('float64')",
    "m": "convert the durations to numbers first, e.g. {name} / np.timedelta64(1, 's')",
    "O": "convert it to numbers first, e.g. {name}.astype('float64')",
    "V": "turn the record fields into columns, e.g. numpy.lib.recfunctions.structured_to_unstructured({name})",
}


def rows_per_block(n_features: int, itemsize: int) -> int:
    """Rows of one block of ``bigdist.chunk-bytes`` (at least one)."""
    return max(1, config.get("chunk-bytes") // max(1, n_features * itemsize))


def _float_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """The float dtype bigdist computes ``dtype`` in, or InputDtypeError naming it and the fix."""
    if dtype.kind == "f" or dtype.name == "bfloat16":
        # float16 and bfloat16 (ml_dtypes) have no BLAS; float32 holds both exactly.
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    if dtype.kind in "biu":
        # float64 represents every int32 exactly and int64 up to 2**53.
        return np.dtype(np.float64)
    fix = _DTYPE_FIXES.get(dtype.kind, "convert it to a float array, e.g. {name}.astype('float32')")
    raise InputDtypeError(
        f"{name} has dtype {dtype}, which bigdist cannot compute distances with; {fix.format(name=name)}"
    )


class _NpyFile:
    """A ``.npy`` file that every read maps anew.

    Dask tasks then carry the path, not the data: a pickled ``np.memmap``
    holds a copy of all its bytes, which would ship the whole file to each
    worker.
    """

    def __init__(self, path: pathlib.Path) -> None:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            if "object" in str(error).lower() or "python objects" in str(error).lower():
                raise InputDtypeError(
                    f"{str(path)!r} holds Python objects (dtype object); save it as a float array, e.g. "
                    f"np.save(path, X.astype('float32'))"
                ) from None
            raise StoreNotFoundError(f"cannot read {str(path)!r} as a .npy file ({error})") from None
        if not isinstance(array, np.ndarray):
            raise StoreNotFoundError(f"{str(path)!r} is not a single .npy array; save one array per .npy file")
        self.path = str(path)
        self.shape: tuple[int, ...] = array.shape
        self.dtype: np.dtype = array.dtype
        self.ndim = array.ndim
        stat = os.stat(path)
        self._token = (self.path, stat.st_size, stat.st_mtime_ns)

    def __getitem__(self, key: Any) -> np.ndarray:
        # np.array copies: the block owns its memory once read.
        return np.array(np.load(self.path, mmap_mode="r", allow_pickle=False)[key])

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("bigdist-npy", *self._token)

    def __repr__(self) -> str:
        return f"_NpyFile({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def _array_paths(group: zarr.Group) -> list[str]:
    return sorted(path for path, node in group.members(max_depth=None) if isinstance(node, zarr.Array))


def _open_path(
    path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, key: str | None = None
) -> Any:
    """Open a Zarr array, ``.npy`` file, Parquet, HDF5, AnnData or ``.npy`` shards (path or URL), reading no data."""
    text = os.fspath(path)
    if "://" not in text:
        text = os.path.expanduser(text)
    # Parquet, HDF5, AnnData and .npy shards; None leaves Zarr arrays and single .npy files to the code below.
    source = formats.open_source(text, storage_options, key=key)
    if source is not None:
        return source
    if "://" not in text:
        local = pathlib.Path(text)
        if not local.exists():
            raise StoreNotFoundError(f"no such file or Zarr store: {text!r}; check the path")
        if local.is_file():
            if local.suffix == ".npy":
                return _NpyFile(local)
            raise StoreNotFoundError(f"{text!r} is a file bigdist cannot read; give {formats.recognised_files()}")
        text = str(local)
    elif key is not None:
        raise InputShapeError(f"key={key!r} names a part of Parquet, HDF5 or AnnData inputs; {text!r} is none")
    try:
        with formats.protocol_errors(text):
            node = zarr.open(store=text, mode="r", storage_options=storage_options)
    except FileNotFoundError:
        # zarr's NodeNotFoundError is a FileNotFoundError: an empty directory or a missing URL.
        raise StoreNotFoundError(f"no Zarr array at {text!r}; check the path or URL") from None
    if isinstance(node, zarr.Group):
        arrays = _array_paths(node)
        example = f"{text.rstrip('/')}/{arrays[0] if arrays else 'NAME'}"
        raise InputShapeError(
            f"{text!r} is a Zarr group, not an array; name one of its arrays as path/to/group/arrayname, "
            f"e.g. {example!r} (arrays inside: {', '.join(arrays) or 'none'})"
        )
    meta = dict(node.attrs).get("bigdist")
    if isinstance(meta, dict) and meta.get("complete") is False:
        raise IncompleteOutputError(
            f"{text!r} is unfinished: the run that wrote it stopped before its last block (started at "
            f"{meta.get('started_at', 'an unknown time')}); write it again (e.g. bigdist generate ... --out {text})"
        )
    return node


def _first_non_finite(block: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first NaN or infinity of a 1-D or 2-D block (column 0 for 1-D), None if there is none."""
    if block.dtype.kind != "f":
        return None  # integers and booleans are always finite
    # One sum is cheaper than an isfinite mask; only a non-finite sum (NaN, inf,
    # or an overflow of finite values) needs the exact check.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(block.sum()) or np.isfinite(block).all():
            return None
    rows, cols = np.nonzero(~np.isfinite(block.reshape(len(block), -1)))
    return int(rows[0]), int(cols[0])


def _check_finite_block(
    block: np.ndarray, label: str, block_info: dict[Any, Any] | None = None, *, whole: bool = False
) -> np.ndarray:
    """Return ``block`` unchanged, or raise NonFiniteError naming the row and the block's global rows."""
    found = _first_non_finite(block)
    if found is None:
        return block
    row, col = found
    start = block_info[0]["array-location"][0][0] if block_info else 0
    value = "NaN" if np.isnan(block[row, col]) else str(block[row, col]).replace("inf", "infinity")
    where = "" if whole else f" (in the block of rows {start}-{start + len(block) - 1})"
    raise NonFiniteError(
        f"{label} holds {value} at row {start + row}, column {col}{where}; NaN or infinity cannot be "
        f"compared by distance: remove or impute those rows first (e.g. with numpy.nan_to_num or "
        f"sklearn.impute.SimpleImputer)"
    )


def _check_finite_regular(
    block: np.ndarray, label: str, block_rows: int, block_id: tuple[int, ...] | None = None
) -> np.ndarray:
    """:func:`_check_finite_block` for blocks of ``block_rows`` rows (the last one shorter), located by ``block_id``.

    dask builds ``block_info`` as one dict per block before the first task
    (about 1 s at 1e9 rows); ``block_id`` costs nothing.
    """
    start = block_id[0] * block_rows if block_id else 0
    return _check_finite_block(block, label, {0: {"array-location": [(start, start + len(block))]}})


class StoredRows:
    """Rows of an input opened from a store, read the way its graph reads them, without the graph.

    What a block of :func:`as_array`'s result computes — the stored rows
    (through the source's own checks, e.g. :class:`~bigdist.io.integrity.ZarrSource`),
    cast to the float dtype, checked for NaN and infinity — for any row range,
    from a few small attributes: picklable, the same size whatever the
    number of rows.

    Parameters
    ----------
    source : lazy array of shape (n_rows, n_features)
        What ``dask.array.from_array`` reads (a ZarrSource, a ``.npy`` file, ...).
    dtype : dtype
        The float dtype the rows are cast to.
    label : str or None
        How a NonFiniteError calls the input; None when values are not checked.
    unit_rows : int
        Rows the source decodes at once (a stored chunk), 0 when it reads any rows alone.
    """

    def __init__(self, source: Any, dtype: np.dtype, label: str | None, unit_rows: int) -> None:
        self.source = source
        self.dtype = np.dtype(dtype)
        self.label = label
        self.unit_rows = unit_rows

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``, read and cast (not checked: see :meth:`check`)."""
        rows = np.asarray(self.source[slice(start, stop), slice(0, int(self.source.shape[1]))])
        return rows.astype(self.dtype) if rows.dtype != self.dtype else rows

    def check(self, block: np.ndarray, start: int) -> np.ndarray:
        """``block`` (global first row ``start``) unchanged, or NonFiniteError as the graph's check raises it."""
        if self.label is None:
            return block
        location = {0: {"array-location": [(start, start + len(block)), (0, block.shape[1])]}}
        return _check_finite_block(block, self.label, location)

    def __repr__(self) -> str:
        return f"StoredRows({self.source!r}, dtype={self.dtype})"


# The attribute of as_array's result that holds its StoredRows (only there: any array made from it lacks it).
_STORED_ATTRIBUTE = "_bigdist_stored_rows"


def stored_rows(array: Any) -> StoredRows | None:
    """How to read ``array``'s rows straight from their store, if :func:`as_array` made it from one; else None."""
    return getattr(array, _STORED_ATTRIBUTE, None)


def _layer_label(name: str) -> str:
    # Readable in the dashboard: "/data/train.zarr" -> "train".
    base = os.path.basename(name.rstrip("/")) or name
    base = re.sub(r"\.(zarr|npy)$", "", base)
    return re.sub(r"[^A-Za-z0-9_]+", "_", base)[:40] or "X"


def _coerce(data: Any, name: str) -> Any:
    """Turn lists and object arrays into NumPy; refuse sparse matrices."""
    if hasattr(data, "tocsr") or type(data).__module__.startswith("scipy.sparse"):
        raise InputDtypeError(
            f"{name} is a sparse matrix, and sparse input is not supported here (knn, radius_neighbors, "
            f"pairwise_distances, kmeans and the neighbour estimators take it); convert it with {name}.toarray()"
        )
    if isinstance(data, zarr.Array):
        # Read through the checks: a missing chunk raises instead of reading as the fill value.
        array = ZarrSource(data, name)
    elif isinstance(data, (da.Array, ZarrSource, _NpyFile, np.ndarray)):
        array = data
    elif (
        hasattr(data, "shape")
        and hasattr(data, "dtype")
        and hasattr(data, "__getitem__")
        and not type(data).__module__.startswith("pandas")
    ):
        array = data  # another lazy array (h5py, xarray's backends): read block by block like Zarr
    else:
        try:
            array = np.asarray(data)
        except ValueError as error:
            raise InputShapeError(
                f"{name} cannot be made into an array ({error}); give rows of equal length, as a 2-D array "
                f"(n_samples, n_features)"
            ) from None
    if isinstance(array, np.ndarray) and array.dtype == object and array.size:
        first = array.flat[0]
        if isinstance(first, (list, tuple, np.ndarray)) or type(first).__module__.startswith("pyarrow"):
            # A DataFrame or Series column of embeddings: one sequence per row.
            raise InputDtypeError(
                f"{name} holds a sequence of {len(first)} values in each cell (an embedding column); stack it into "
                f"a 2-D array, e.g. np.stack(df['column'].to_numpy()), or give the Parquet file itself as "
                f"'data.parquet#column' to read it lazily"
            )
    if isinstance(array, np.ndarray) and array.dtype == object:
        # scikit-learn's convention: object arrays of numbers are accepted.
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise InputDtypeError(
                f"{name} has dtype object and values that are not numbers ({error}); "
                f"convert it to numbers first, e.g. {name}.astype('float64')"
            ) from None
    return array


def _check_shape(shape: Sequence[int], name: str) -> None:
    shape = tuple(int(size) for size in shape)
    if len(shape) == 1:
        raise InputShapeError(
            f"{name} is 1-D with shape {shape}; bigdist needs a 2-D array (n_samples, n_features). Reshape your "
            f"data either using {name}.reshape(-1, 1) if it has a single feature or {name}.reshape(1, -1) if it "
            f"contains a single sample"
        )
    if len(shape) != 2:
        raise InputShapeError(
            f"Found array with dim {len(shape)}: {name} has {len(shape)} dimensions, shape {shape}; bigdist needs a "
            f"2-D array (n_samples, n_features). "
            f"Reshape your data, e.g. {name}.reshape(len({name}), -1) to flatten each sample's features"
        )
    n_rows, n_features = shape
    # scikit-learn's wording ("Found array with ..."), which its users and tests match.
    if n_features == 0:
        raise InputShapeError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is required: {name} is empty; give "
            f"at least one column"
        )
    if n_rows == 0:
        raise InputShapeError(
            f"Found array with 0 sample(s) (shape={shape}) while a minimum of 1 is required: {name} is empty; give "
            f"at least one row"
        )


def _stored_rows(source: Any) -> int | None:
    """Rows of the unit a lazy source is best read in: a Zarr shard, else a Zarr chunk."""
    for attribute in ("shards", "chunks"):
        value = getattr(source, attribute, None)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], numbers.Integral):
            return int(value[0])
    return None


def _unit_rows(source: Any) -> int:
    """Rows of the smallest unit a stored source decodes at once (0 when it reads any rows alone)."""
    stored = _stored_rows(source)
    if stored is None:
        return 0
    inner = getattr(source, "chunks", None)
    if getattr(source, "shards", None) and isinstance(inner, tuple) and isinstance(inner[0], numbers.Integral):
        return int(inner[0])  # zarr reads the inner chunks of a shard on their own
    return stored


def _block_rows(source: Any, n_features: int, itemsize: int, name: str) -> int:
    """Rows per block for a NumPy, .npy or Zarr source: toward chunk-bytes, whole stored chunks each."""
    rows = rows_per_block(n_features, itemsize)
    stored = _stored_rows(source)
    if stored is None:
        return rows
    if stored <= rows:
        # Whole stored chunks per task, so no chunk is read (and decompressed) twice.
        return rows // stored * stored
    inner = getattr(source, "chunks", None)
    if getattr(source, "shards", None) and isinstance(inner, tuple) and inner[0] <= rows:
        # Shards too large for one block: whole inner chunks, which zarr reads on their own.
        return rows // inner[0] * inner[0]
    logger.warning(
        "%s is stored in chunks of %d rows, more than the %d rows of bigdist.chunk-bytes; each chunk is read "
        "whole and cut into blocks; kNN, radius and classify tasks take whole chunks, but k-means passes and "
        "distance matrices written in waves decode a chunk once per block (rewrite it with smaller chunks to "
        "avoid that)",
        name,
        stored,
        rows,
    )
    return rows


def _cut_stored_chunks(source: Any, rows: int, n_rows: int, n_features: int) -> da.Array:
    """``source`` read one whole stored chunk per task (``_unit_rows``), each cut into even blocks of at most ``rows``.

    A compressed chunk is decompressed whole whatever part of it is asked
    for: read per block of it, it would be decompressed once per block. The
    blocks are views of the chunk read (``rechunk`` would copy each), so the
    chunk stays in memory until its last block is released.
    """
    stored = _unit_rows(source)
    whole = da.from_array(source, chunks=(stored, n_features), asarray=True)
    name = f"bigdist-cut-{tokenize(whole, rows)}"
    tasks: dict[Any, Any] = {}
    sizes: list[int] = []
    for chunk, start in enumerate(range(0, n_rows, stored)):
        size = min(stored, n_rows - start)
        pieces = -(-size // rows)
        base, extra = divmod(size, pieces)
        offset = 0
        for piece in [base + 1] * extra + [base] * (pieces - extra):
            rows_slice = (slice(offset, offset + piece), slice(None))
            tasks[(name, len(sizes), 0)] = (operator.getitem, (whole.name, chunk, 0), rows_slice)
            sizes.append(piece)
            offset += piece
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=[whole])
    return da.Array(graph, name, chunks=(tuple(sizes), (n_features,)), meta=whole._meta)


def _rechunk_dask(array: da.Array, dtype: np.dtype, name: str) -> da.Array:
    """Features into one chunk; rows re-chunked only when the blocks would be far off chunk-bytes."""
    n_rows, n_features = array.shape
    target = rows_per_block(n_features, dtype.itemsize)
    row_chunks = array.chunks[0]
    largest = max(row_chunks)
    if array.numblocks[1] > 1:
        if largest <= target:
            return array.rechunk({1: -1})
        # Joining the feature chunks would make blocks larger than chunk-bytes.
        logger.info("%s: feature axis joined into one chunk, rows re-chunked to %d", name, target)
        return array.rechunk({0: target, 1: -1})
    mean_rows = n_rows / len(row_chunks)
    if len(row_chunks) > _MANY_BLOCKS and mean_rows < target / _SMALL_BLOCK_FRACTION:
        # Whole input blocks per new block, so blocks read from storage stay aligned.
        rows = max(largest, target // largest * largest)
        logger.info(
            "%s: %d row blocks of about %d rows are re-chunked to %d rows (bigdist.chunk-bytes)",
            name,
            len(row_chunks),
            round(mean_rows),
            rows,
        )
        return array.rechunk({0: rows})
    return array


# NumPy inputs above this size go to the cluster once, by scatter, instead of inside every graph
# (distributed warns "Sending large graph" from 10 MB on, and ships the bytes again with each compute).
_SCATTER_BYTES = 1 << 20


def _scattered(source: np.ndarray, rows: int) -> da.Array | None:
    """``source`` scattered to the ambient distributed Client in blocks of ``rows``; None without a client."""
    if source.nbytes < _SCATTER_BYTES:
        return None
    client = current_client()
    if client is None:
        return None
    if client.asynchronous:
        return None  # scatter would return a coroutine here
    blocks = [source[start : start + rows] for start in range(0, len(source), rows)]
    # hash=True: the same data gets the same keys, so scattering it again for the next call costs nothing new.
    futures = client.scatter(blocks, hash=True)
    parts = [da.from_delayed(f, shape=b.shape, dtype=b.dtype) for f, b in zip(futures, blocks, strict=True)]
    return da.concatenate(parts)


def as_array(data: Any, *, name: str = "X", check_finite: bool = True) -> da.Array:
    """Return ``data`` as a 2-D float dask array, rows chunked, features in one chunk.

    Parameters
    ----------
    data : array-like of shape (n_samples, n_features), or str / PathLike
        NumPy or dask array, ``zarr.Array``, path or fsspec URL of a Zarr
        array (``data.zarr``, ``group.zarr/points``, ``memory://x``,
        ``s3://bucket/x.zarr``), a ``.npy`` path (read through a memory map),
        or any stored input of :func:`open_array` (Parquet, HDF5, AnnData,
        ``.npy`` shards).
    name : str
        How error messages and graph layer names call this input.
    check_finite : bool
        Raise NonFiniteError for NaN or infinity: at once for in-memory NumPy
        inputs, otherwise inside the pass that reads the blocks (a
        ``bigdist-check-finite-<name>`` layer), so there is no extra pass.

    Returns
    -------
    dask array of shape (n_samples, n_features)
        float32 for float16/bfloat16/float32 inputs, float64 for float64, integer and
        boolean ones. Row blocks: a dask input keeps its own (unless its
        feature axis was chunked or its blocks are tiny and many); other
        inputs get blocks of about ``bigdist.chunk-bytes``, made of whole
        stored Zarr chunks.

    Raises
    ------
    InputShapeError
        Not 2-D, no rows or no features, or a Zarr group instead of an array.
    InputDtypeError
        Complex, string, datetime, object (non-numeric) or sparse input.
    StoreNotFoundError
        A path or URL with nothing to open.
    NonFiniteError
        NaN or infinity (on compute for lazy inputs).
    """
    if isinstance(data, (str, os.PathLike)):
        data = _open_path(data)
    stored = stored_rows(data)
    if stored is not None:
        # Made by as_array already (bd.open_array): kept when checked alike, so tasks still read the store.
        if (stored.label is not None) == check_finite:
            return data
        data = stored.source
    source = _coerce(data, name)
    _check_shape(source.shape, name)
    n_rows, n_features = (int(size) for size in source.shape)
    dtype = _float_dtype(np.dtype(source.dtype), name)
    eager = isinstance(source, np.ndarray) and not isinstance(source, np.memmap)

    if isinstance(source, da.Array):
        array = _rechunk_dask(source, dtype, name)
    else:
        rows = min(_block_rows(source, n_features, dtype.itemsize, name), n_rows)
        scattered = _scattered(source, rows) if eager else None
        if scattered is not None:
            array = scattered
        elif not eager and _unit_rows(source) > rows:
            array = _cut_stored_chunks(source, rows, n_rows, n_features)
        else:
            array = da.from_array(source, chunks=(rows, n_features), asarray=True)
    if array.dtype != dtype:
        array = array.astype(dtype)

    if check_finite:
        if eager:
            # In memory already: one vectorised check costs less than a graph layer.
            _check_finite_block(source, name, whole=True)
        else:
            row_chunks = array.chunks[0]
            regular = len(set(row_chunks[:-1])) <= 1 and row_chunks[-1] <= row_chunks[0]
            check = (
                partial(_check_finite_regular, label=name, block_rows=row_chunks[0])
                if regular
                else partial(_check_finite_block, label=name)
            )
            array = array.map_blocks(
                check,
                name=f"bigdist-check-finite-{_layer_label(name)}-{tokenize(array, name)}",
                dtype=array.dtype,
                chunks=array.chunks,
                meta=np.empty((0, 0), dtype=array.dtype),
            )
    if not isinstance(source, (np.ndarray, da.Array)):
        # Read from a store: the execution layer's tasks read their blocks from it directly.
        setattr(array, _STORED_ATTRIBUTE, StoredRows(source, dtype, name if check_finite else None, _unit_rows(source)))
    return array


def open_array(
    path_or_url: Any,
    *,
    name: str | None = None,
    storage_options: dict[str, Any] | None = None,
    key: str | None = None,
) -> da.Array:
    """Open a stored array (local path or fsspec URL) as a validated, lazy, row-chunked dask array.

    Parameters
    ----------
    path_or_url : str, PathLike, or array-like of shape (n_samples, n_features)
        A path or URL of a Zarr array (``data.zarr``, ``group.zarr/points``,
        ``file://...``, ``memory://...``, ``s3://...``), a ``.npy`` file, a
        folder or glob of ``.npy`` shards (``emb/img_emb_*.npy``, stacked in
        natural order of their names), a Parquet file or folder
        (``data.parquet#embedding`` for a list column, ``#a,b,c`` for numeric
        columns; blocks follow row groups), an HDF5 dataset
        (``ann.hdf5#train``) or an AnnData store (``cells.h5ad``,
        ``cells.zarr#obsm/X_pca``). NumPy arrays, dask arrays and
        ``zarr.Array`` objects are accepted too.
    name : str, optional
        How error messages call this input (default: the path, or "X").
    storage_options : dict, optional
        Passed to fsspec for remote stores (credentials, endpoints).
    key : str, optional
        The part to read, instead of ``#part`` in the path: Parquet
        column(s), HDF5 dataset, AnnData ``X`` / ``obsm/KEY`` / ``layers/KEY``.

    Returns
    -------
    dask array of shape (n_samples, n_features)
        As :func:`as_array`: float32/float64, rows chunked, features in one chunk.
    """
    if isinstance(path_or_url, (str, os.PathLike)):
        label = name or os.fspath(path_or_url)
        return as_array(_open_path(path_or_url, storage_options, key), name=label)
    if key is not None:
        raise ParameterError(f"key={key!r} names a part of a stored file; it needs a path, not {type(path_or_url)}")
    return as_array(path_or_url, name=name or "X")


def in_memory(data: Any) -> bool:
    """Whether ``data`` is an in-memory input (NumPy or scipy.sparse in, NumPy out; dask, Zarr and files stay lazy)."""
    return isinstance(data, (np.ndarray, list, tuple)) or scipy.sparse.issparse(data)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise ParameterError naming it when it is not an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def check_number(
    name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None, open_minimum: bool = False
) -> float:
    """Return ``value`` as a float, or raise ParameterError naming it when it is not a finite number in range.

    For parameters such as ``tol`` (``minimum=0``), ``bandwidth`` or ``radius``
    (``minimum=0, open_minimum=True``), a quantile (``minimum=0, maximum=1``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
        raise ParameterError(f"{name} must be a finite number, got {name}={value!r}")
    number = float(value)
    if minimum is not None and (number < minimum or (open_minimum and number == minimum)):
        bound = f"> {minimum:g}" if open_minimum else f">= {minimum:g}"
        raise ParameterError(f"{name} must be {bound}, got {name}={value!r}")
    if maximum is not None and number > maximum:
        raise ParameterError(f"{name} must be <= {maximum:g}, got {name}={value!r}")
    return number


def check_features(queries: Any, train: Any, *, names: tuple[str, str] = ("queries", "train")) -> None:
    """Raise InputShapeError when ``queries`` and ``train`` have different feature counts.

    Parameters
    ----------
    queries : array of shape (n_queries, n_features)
    train : array of shape (n_train, n_features)
    names : (str, str)
        How the message calls the two inputs.
    """
    if queries.shape[1] != train.shape[1]:
        raise InputShapeError(
            f"{names[0]} have {queries.shape[1]} features, {names[1]} has {train.shape[1]}; "
            f"both must have the same number of columns"
        )
