"""Parquet, HDF5, AnnData and folders of ``.npy`` shards as lazy row-chunked dask arrays.

:func:`open_source` recognises a path or fsspec URL by its suffix, by what a
folder or glob holds, or by a file's magic bytes, and returns a dask array
whose blocks follow the stored units (Parquet row groups, HDF5 chunks,
shards), or a ``zarr.Array`` for an AnnData Zarr store. Part of a file is
named after ``#``: ``emb.parquet#embedding``, ``ann.hdf5#train``,
``cells.h5ad#obsm/X_pca``.

Every task opens its file itself: the graph holds paths and row offsets,
never a live handle, so it pickles to distributed workers and tokenizes
deterministically (path, size and modification time).

Shards of a folder or glob are read in natural order of their names
(``img_emb_2.npy`` before ``img_emb_10.npy``).
"""

from __future__ import annotations

import bisect
import contextlib
import importlib
import logging
import posixpath
import re
from collections.abc import Iterator, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from bigdist import config
from bigdist.errors import (
    InputDtypeError,
    InputShapeError,
    InputValueError,
    ReaderNotInstalledError,
    StoreNotFoundError,
)

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
ANNDATA_SUFFIXES = (".h5ad",)
_GLOB_CHARS = re.compile(r"[*?\[]")
_MAGIC = {b"PAR1": "parquet", b"\x89HDF\r\n\x1a\n": "hdf5", b"\x93NUMPY": "npy"}
_EXTRAS = {"pyarrow": "parquet", "h5py": "hdf5", "anndata": "anndata"}


def natural_key(name: str) -> list[Any]:
    """Sort key that orders the digits in names by value: ``emb_2`` before ``emb_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def require(module: str, what: str) -> Any:
    """Import ``module`` or raise ReaderNotInstalledError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = _EXTRAS[module.split(".")[0]]
        raise ReaderNotInstalledError(
            f"{what} needs {module}, which is not installed; install it with pip install 'bigdist[{extra}]'"
        ) from None


def split_fragment(text: str) -> tuple[str, str | None]:
    """``"a.parquet#emb"`` -> ``("a.parquet", "emb")``; no ``#`` -> ``(text, None)``."""
    base, sep, fragment = text.rpartition("#")
    if not sep or not base:
        return text, None
    return base, fragment.strip("/") or None


@contextlib.contextmanager
def protocol_errors(text: str) -> Iterator[None]:
    """A URL whose fsspec backend is missing, or whose protocol fsspec does not know, as StoreNotFoundError."""
    try:
        yield
    except ImportError as error:
        raise StoreNotFoundError(
            f"cannot open {text!r}: {error}; install the fsspec backend for this protocol (e.g. s3fs, gcsfs)"
        ) from None
    except ValueError as error:
        if "protocol" not in str(error).lower():
            raise
        raise StoreNotFoundError(
            f"cannot open {text!r}: {error}; use a local path or a URL whose protocol fsspec knows "
            f"(file://, memory://, s3://, gs://, ...)"
        ) from None


def _filesystem(text: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    with protocol_errors(text):
        fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
    return fs, path


def _token(fs: Any, path: str) -> tuple[Any, ...]:
    """What identifies one version of a file: path, size and modification time (when the filesystem has it)."""
    info = fs.info(path)
    changed = info.get("mtime", info.get("LastModified", info.get("last_modified", info.get("ETag", ""))))
    return (fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0], path, info.get("size"), str(changed))


def _local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _row_chunks(unit_rows: Sequence[int], n_features: int, itemsize: int) -> tuple[int, ...]:
    """Blocks of about ``bigdist.chunk-bytes``: whole stored units joined, units larger than that split evenly."""
    target = max(1, config.get("chunk-bytes") // max(1, n_features * itemsize))
    chunks: list[int] = []
    pending = 0
    for rows in unit_rows:
        if rows == 0:
            continue
        if rows > target:
            if pending:
                chunks.append(pending)
                pending = 0
            pieces = -(-rows // target)
            chunks.extend(rows // pieces + (1 if i < rows % pieces else 0) for i in range(pieces))
        elif pending + rows > target:
            chunks.append(pending)
            pending = rows
        else:
            pending += rows
    if pending:
        chunks.append(pending)
    return tuple(chunks)


class RowSource:
    """Rows of a file-backed input, read by each task from the files themselves.

    Subclasses give ``shape``, ``dtype``, the rows of each stored unit
    (``unit_rows``) and ``read(start, stop)``; ``__getitem__`` takes the
    slices ``dask.array.from_array`` passes.
    """

    kind = "file"
    shape: tuple[int, int]
    dtype: np.dtype
    unit_rows: tuple[int, ...]
    label: str
    token: tuple[Any, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        rows = key[0]
        if not isinstance(rows, slice):
            raise TypeError(f"{type(self).__name__} reads row slices, got {rows!r}")
        start, stop, step = rows.indices(self.shape[0])
        block = self.read(start, max(start, stop))[::step]
        return block[(slice(None), *key[1:])]

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.shape, str(self.dtype), *self.token)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, shape={self.shape}, dtype={self.dtype})"

    # Whether a task reading part of a stored unit decodes all of it (a Parquet row group, an HDF5 chunk).
    whole_units = True

    def to_dask(self) -> da.Array:
        chunks = (_row_chunks(self.unit_rows, self.shape[1], self.dtype.itemsize), (self.shape[1],))
        if self.whole_units and self.unit_rows and max(self.unit_rows) > max(chunks[0]):
            logger.warning(
                "%s is stored in units of up to %d rows, more than the %d rows of bigdist.chunk-bytes; each unit "
                "will be read once per block of it (rewrite it with smaller row groups or chunks to avoid that)",
                self.label,
                max(self.unit_rows),
                max(chunks[0]),
            )
        base = re.sub(r"[^A-Za-z0-9_]+", "_", posixpath.basename(self.label.split("#")[0].rstrip("/")))[:40]
        return da.from_array(
            self,
            chunks=chunks,
            name=f"bigdist-read-{self.kind}-{base}-{tokenize(self)}",
            asarray=True,
            meta=np.empty((0, 0), dtype=self.dtype),
        )


class _Units:
    """Global row offsets of a sequence of stored units, and the units a row range touches."""

    def __init__(self, unit_rows: Sequence[int]) -> None:
        self.starts = [0]
        for rows in unit_rows:
            self.starts.append(self.starts[-1] + int(rows))

    def overlapping(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """(unit, first row within it, last row + 1 within it) for the rows [start, stop)."""
        out = []
        unit = bisect.bisect_right(self.starts, start) - 1
        while unit < len(self.starts) - 1 and self.starts[unit] < stop:
            lo = max(start, self.starts[unit]) - self.starts[unit]
            hi = min(stop, self.starts[unit + 1]) - self.starts[unit]
            if hi > lo:
                out.append((unit, lo, hi))
            unit += 1
        return out


def _concat(parts: list[np.ndarray], n_features: int, dtype: np.dtype) -> np.ndarray:
    if not parts:
        return np.empty((0, n_features), dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# --------------------------------------------------------------------------------------------------- .npy shards


def _npy_header(f: Any, name: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(f)
    except ValueError as error:
        raise StoreNotFoundError(f"cannot read {name!r} as a .npy file ({error})") from None
    return tuple(shape), np.dtype(dtype), bool(fortran), f.tell()


class NpyShards(RowSource):
    """The rows of several ``.npy`` files, stacked in natural order of their names.

    Only headers are read on opening; local shards are memory-mapped by each
    task, remote ones read by byte range.
    """

    kind = "npy"
    whole_units = False  # a memory map reads only the rows asked for

    def __init__(self, label: str, fs: Any, paths: list[str]) -> None:
        self.label = label
        self.fs = fs
        self.paths = paths
        self.offsets: list[int] = []
        rows: list[int] = []
        first: tuple[tuple[int, ...], np.dtype, str] | None = None
        tokens = []
        for path in paths:
            with fs.open(path, "rb") as f:
                shape, dtype, fortran, offset = _npy_header(f, path)
            if dtype.hasobject:
                raise InputDtypeError(
                    f"shard {path!r} of {label!r} holds Python objects; save each shard as a float array"
                )
            if len(shape) != 2:
                raise InputShapeError(
                    f"shard {path!r} of {label!r} has shape {shape}; every shard must be 2-D (rows, features)"
                )
            if fortran:
                raise InputShapeError(
                    f"shard {path!r} of {label!r} is stored in Fortran order, so its rows are not contiguous; "
                    f"save it in C order, e.g. np.save(path, np.ascontiguousarray(X))"
                )
            if first is None:
                first = (shape, dtype, path)
            elif shape[1] != first[0][1] or dtype != first[1]:
                raise InputShapeError(
                    f"shard {path!r} of {label!r} has {shape[1]} columns of {dtype}, but {first[2]!r} has "
                    f"{first[0][1]} of {first[1]}; every shard must have the same columns and dtype"
                )
            rows.append(shape[0])
            self.offsets.append(offset)
            tokens.append(_token(fs, path))
        assert first is not None
        self.shape = (sum(rows), first[0][1])
        self.dtype = first[1]
        self.unit_rows = tuple(rows)
        self.token = tuple(tokens)
        self._units = _Units(rows)
        self._local = _local(fs)

    def read(self, start: int, stop: int) -> np.ndarray:
        parts = []
        n_features = self.shape[1]
        row_bytes = n_features * self.dtype.itemsize
        for unit, lo, hi in self._units.overlapping(start, stop):
            path = self.paths[unit]
            if self._local:
                # np.array copies: the block owns its memory once read.
                parts.append(np.array(np.load(path, mmap_mode="r", allow_pickle=False)[lo:hi]))
                continue
            with self.fs.open(path, "rb") as f:
                f.seek(self.offsets[unit] + lo * row_bytes)
                data = f.read((hi - lo) * row_bytes)
            parts.append(np.frombuffer(data, dtype=self.dtype).reshape(hi - lo, n_features).copy())
        return _concat(parts, n_features, self.dtype)


# ------------------------------------------------------------------------------------------------------- Parquet


def _arrow_numpy_dtype(arrow_type: Any) -> np.dtype | None:
    pa = require("pyarrow", "reading Parquet")
    if pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return np.dtype(arrow_type.to_pandas_dtype())
    return None


def _is_list(arrow_type: Any) -> bool:
    pa = require("pyarrow", "reading Parquet")
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type)


def _describe_columns(schema: Any) -> str:
    return ", ".join(f"{field.name} ({field.type})" for field in schema)


class ParquetRows(RowSource):
    """Rows of a Parquet file or dataset: numeric columns side by side, or one list column of embeddings.

    Each task reads the row groups its rows fall in, only the chosen columns.
    """

    kind = "parquet"

    def __init__(self, label: str, fs: Any, paths: list[str], columns: list[str] | None) -> None:
        pq = require("pyarrow.parquet", "reading Parquet")
        self.label = label
        self.fs = fs
        self.paths = paths
        metas = []
        for path in paths:
            with fs.open(path, "rb") as f:
                try:
                    metas.append(pq.ParquetFile(f).metadata)
                except Exception as error:  # pyarrow raises ArrowInvalid for anything that is not Parquet
                    raise StoreNotFoundError(f"cannot read {path!r} as a Parquet file ({error})") from None
        schema = metas[0].schema.to_arrow_schema()
        self.columns, self.list_column = self._choose(schema, columns, label)
        for path, meta in zip(paths[1:], metas[1:], strict=True):
            other = meta.schema.to_arrow_schema()
            for name in self.columns:
                if other.get_field_index(name) < 0 or other.field(name).type != schema.field(name).type:
                    raise InputShapeError(
                        f"{path!r} of the Parquet dataset {label!r} has no column {name!r} of type "
                        f"{schema.field(name).type} like {paths[0]!r}; every file must have the same columns"
                    )
        self.units: list[tuple[int, int]] = []
        rows: list[int] = []
        for file_index, meta in enumerate(metas):
            for group in range(meta.num_row_groups):
                self.units.append((file_index, group))
                rows.append(meta.row_group(group).num_rows)
        self.unit_rows = tuple(rows)
        self._units = _Units(rows)
        field = schema.field(self.columns[0])
        if self.list_column:
            value_type = field.type.value_type
            dtype = _arrow_numpy_dtype(value_type)
            if dtype is None:
                raise InputDtypeError(
                    f"column {field.name!r} of {label!r} is a list of {value_type}, not of numbers; "
                    f"store the embeddings as a list of float32"
                )
            n_features = field.type.list_size if hasattr(field.type, "list_size") else self._list_length()
        else:
            dtype = np.result_type(*(_arrow_numpy_dtype(schema.field(name).type) for name in self.columns))
            n_features = len(self.columns)
        self.dtype = np.dtype(dtype)
        self.shape = (sum(rows), int(n_features))
        self.token = tuple(_token(fs, path) for path in paths) + tuple(self.columns)

    @staticmethod
    def _choose(schema: Any, columns: list[str] | None, label: str) -> tuple[list[str], bool]:
        """The columns to read and whether they are one list column."""
        names = list(schema.names)
        if columns:
            missing = [name for name in columns if name not in names]
            if missing:
                raise InputShapeError(
                    f"{label!r} has no column {missing[0]!r}; its columns are {_describe_columns(schema)}"
                )
            lists = [name for name in columns if _is_list(schema.field(name).type)]
            if lists and len(columns) > 1:
                raise InputShapeError(
                    f"{label!r}: the list column {lists[0]!r} must be named alone (#{lists[0]}), not with "
                    f"other columns ({', '.join(columns)})"
                )
            if not lists:
                bad = [name for name in columns if _arrow_numpy_dtype(schema.field(name).type) is None]
                if bad:
                    raise InputDtypeError(
                        f"column {bad[0]!r} of {label!r} has type {schema.field(bad[0]).type}, not numbers; "
                        f"name numeric columns or one list column of embeddings"
                    )
            return list(columns), bool(lists)
        lists = [field.name for field in schema if _is_list(field.type)]
        if len(lists) == 1:
            logger.info("%s: reading the list column %r as the embeddings", label, lists[0])
            return lists, True
        if len(lists) > 1:
            raise InputShapeError(
                f"{label!r} has several list columns ({', '.join(lists)}); name the one to read, "
                f"e.g. {label + '#' + lists[0]!r}"
            )
        numeric = [field.name for field in schema if _arrow_numpy_dtype(field.type) is not None]
        if len(numeric) == len(names) and numeric:
            return numeric, False
        other = [field.name for field in schema if _arrow_numpy_dtype(field.type) is None]
        example = f"{label}#{','.join(numeric)}" if numeric else f"{label}#COLUMN"
        raise InputDtypeError(
            f"{label!r} has columns that are not numbers ({', '.join(other)}); name the numeric columns to read, "
            f"e.g. {example!r} (its columns: {_describe_columns(schema)})"
        )

    def _list_length(self) -> int:
        pq = require("pyarrow.parquet", "reading Parquet")
        for path in self.paths:
            with self.fs.open(path, "rb") as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=1, columns=self.columns):
                    if batch.num_rows:
                        value = batch.column(0)[0]
                        if not value.is_valid:
                            raise InputValueError(
                                f"column {self.columns[0]!r} of {path!r} holds a null embedding in row 0 "
                                f"of that file; drop or fill the null rows first"
                            )
                        return len(value)
        return 0

    def _to_numpy(self, table: Any, where: str) -> np.ndarray:
        pa = require("pyarrow", "reading Parquet")
        n_rows = table.num_rows
        if self.list_column:
            column = table.column(0).combine_chunks()
            if column.null_count:
                row = int(np.flatnonzero(~np.asarray(column.is_valid()))[0])
                raise InputValueError(
                    f"column {self.columns[0]!r} of {where} holds a null embedding at row {row}; "
                    f"drop or fill the null rows first"
                )
            if not pa.types.is_fixed_size_list(column.type):
                lengths = np.diff(np.asarray(column.offsets))
                wrong = np.flatnonzero(lengths != self.shape[1])
                if wrong.size:
                    raise InputShapeError(
                        f"column {self.columns[0]!r} of {where}: row {int(wrong[0])} has {int(lengths[wrong[0]])} "
                        f"values where the first row has {self.shape[1]}; every embedding must have the same length"
                    )
            values = column.flatten()
            if values.null_count:
                raise InputValueError(
                    f"column {self.columns[0]!r} of {where} holds null values inside embeddings; fill them first"
                )
            return values.to_numpy(zero_copy_only=False).astype(self.dtype, copy=False).reshape(n_rows, self.shape[1])
        out = np.empty((n_rows, len(self.columns)), dtype=self.dtype)
        for position, name in enumerate(self.columns):
            column = table.column(name)
            if column.null_count:
                row = int(np.flatnonzero(~np.asarray(column.is_valid()))[0])
                raise InputValueError(
                    f"column {name!r} of {where} holds a null at row {row}; drop or fill the null rows first "
                    f"(nulls cannot be compared by distance)"
                )
            out[:, position] = column.to_numpy()
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        pq = require("pyarrow.parquet", "reading Parquet")
        parts = []
        by_file: dict[int, list[tuple[int, int, int]]] = {}
        for unit, lo, hi in self._units.overlapping(start, stop):
            file_index, group = self.units[unit]
            by_file.setdefault(file_index, []).append((group, lo, hi))
        for file_index, groups in by_file.items():
            path = self.paths[file_index]
            with self.fs.open(path, "rb") as f:
                reader = pq.ParquetFile(f)
                for group, lo, hi in groups:
                    table = reader.read_row_group(group, columns=self.columns).slice(lo, hi - lo)
                    parts.append(self._to_numpy(table, f"{path!r} (row group {group}, from row {lo})"))
        return _concat(parts, self.shape[1], self.dtype)


# ---------------------------------------------------------------------------------------------------------- HDF5


def _h5_members(handle: Any) -> list[tuple[str, Any]]:
    h5py = require("h5py", "reading HDF5")
    found: list[tuple[str, Any]] = []
    handle.visititems(lambda name, node: found.append((name, node)) if isinstance(node, h5py.Dataset) else None)
    return found


def _describe_datasets(handle: Any) -> str:
    members = [f"{name} {node.shape} {node.dtype}" for name, node in _h5_members(handle)]
    return ", ".join(members[:20]) + (", ..." if len(members) > 20 else "") or "none"


class HDF5Rows(RowSource):
    """Rows of one dataset of an HDF5 file; each task opens the file and reads its rows."""

    kind = "hdf5"

    def __init__(self, label: str, fs: Any, path: str, dataset: str) -> None:
        self.label = label
        self.fs = fs
        self.path = path
        self.dataset = dataset
        with self._open() as handle:
            node = self._node(handle, dataset, label)
            self.shape = tuple(int(size) for size in node.shape)  # type: ignore[assignment]
            self.dtype = np.dtype(node.dtype)
            chunks = node.chunks
        if len(self.shape) != 2:
            from bigdist.io.arrays import _check_shape

            _check_shape(self.shape, self.label)
        # A contiguous dataset reads any rows on their own.
        self.whole_units = chunks is not None
        stored = chunks[0] if chunks else self.shape[0]
        self.unit_rows = tuple(
            [stored] * (self.shape[0] // stored) + ([self.shape[0] % stored] if self.shape[0] % stored else [])
        )
        self._units = _Units(self.unit_rows)
        self.token = (_token(fs, path), dataset)

    def _open(self) -> Any:
        h5py = require("h5py", "reading HDF5")
        if _local(self.fs):
            return h5py.File(self.path, "r")
        return h5py.File(self.fs.open(self.path, "rb"), "r")

    @staticmethod
    def _node(handle: Any, dataset: str, label: str) -> Any:
        h5py = require("h5py", "reading HDF5")
        base = label.split("#")[0]
        if dataset not in handle:
            raise StoreNotFoundError(
                f"{base!r} has no dataset {dataset!r}; its datasets: {_describe_datasets(handle)}; "
                f"name one as {base + '#NAME'!r}"
            )
        node = handle[dataset]
        if not isinstance(node, h5py.Dataset):
            raise InputShapeError(
                f"{dataset!r} in {base!r} is an HDF5 group, not a dataset; its datasets: "
                f"{_describe_datasets(node)}; name one as {base + '#' + dataset + '/NAME'!r}"
            )
        if node.dtype.hasobject or node.dtype.kind in "SUO":
            raise InputDtypeError(
                f"dataset {dataset!r} of {base!r} has dtype {node.dtype}, not numbers; name a numeric dataset "
                f"(its datasets: {_describe_datasets(handle)})"
            )
        return node

    def read(self, start: int, stop: int) -> np.ndarray:
        with self._open() as handle:
            return np.asarray(handle[self.dataset][start:stop])


def _hdf5_default(fs: Any, path: str, label: str) -> str:
    """The dataset of an HDF5 file given without ``#``: its only 2-D dataset, else an error listing them."""
    h5py = require("h5py", "reading HDF5")
    with h5py.File(path if _local(fs) else fs.open(path, "rb"), "r") as handle:
        members = _h5_members(handle)
        two_d = [name for name, node in members if node.ndim == 2 and node.dtype.kind in "fiub"]
        if len(two_d) == 1:
            return two_d[0]
        listing = _describe_datasets(handle)
    example = f"{label}#{'train' if 'train' in two_d else (two_d[0] if two_d else 'DATASET')}"
    raise InputShapeError(
        f"{label!r} is an HDF5 file with {len(two_d)} 2-D numeric datasets ({listing}); name the one to read, "
        f"e.g. {example!r}"
    )


# ------------------------------------------------------------------------------------------------------- AnnData


def _anndata_key(fragment: str | None) -> str:
    return fragment or "X"


def _anndata_refuse_sparse(base: str, key: str, encoding: str, dense: list[str]) -> None:
    raise InputDtypeError(
        f"{key!r} of the AnnData store {base!r} is a sparse matrix ({encoding}), and sparse input is not "
        f"supported; name a dense representation instead, e.g. {base + '#' + (dense[0] if dense else 'obsm/X_pca')!r}"
        f" (dense ones here: {', '.join(dense) or 'none'})"
    )


def _h5ad_dense_keys(handle: Any) -> list[str]:
    h5py = require("h5py", "reading HDF5")
    keys = []
    for group in ("", "obsm/", "layers/"):
        node = handle[group] if group else handle
        if group and group.rstrip("/") not in handle:
            continue
        for name in node if group else ["X"]:
            if f"{group}{name}" in handle and isinstance(handle[f"{group}{name}"], h5py.Dataset):
                keys.append(f"{group}{name}")
    return keys


def _open_h5ad(fs: Any, path: str, text: str, fragment: str | None) -> da.Array:
    h5py = require("h5py", "reading .h5ad files")
    key = _anndata_key(fragment)
    with h5py.File(path if _local(fs) else fs.open(path, "rb"), "r") as handle:
        dense = _h5ad_dense_keys(handle)
        if key in handle and isinstance(handle[key], h5py.Group):
            encoding = handle[key].attrs.get("encoding-type", "a group")
            if encoding in ("csr_matrix", "csc_matrix"):
                _anndata_refuse_sparse(text, key, encoding, dense)
            raise InputShapeError(
                f"{key!r} of the AnnData store {text!r} is {encoding}, not a dense matrix; name one of "
                f"{', '.join(dense) or 'none'}"
            )
        if key not in handle:
            raise StoreNotFoundError(
                f"the AnnData store {text!r} has no {key!r}; dense matrices inside: {', '.join(dense) or 'none'} "
                f"(e.g. {text + '#obsm/X_pca'!r})"
            )
    return HDF5Rows(f"{text}#{key}", fs, path, key).to_dask()


def _open_anndata_zarr(group: Any, text: str, fragment: str | None) -> Any:
    import zarr

    key = _anndata_key(fragment)
    dense = [name for name in ["X"] if isinstance(group.get("X"), zarr.Array)]
    for parent in ("obsm", "layers"):
        if isinstance(group.get(parent), zarr.Group):
            dense.extend(f"{parent}/{name}" for name, node in group[parent].members() if isinstance(node, zarr.Array))
    node = group.get(key)
    if node is None:
        raise StoreNotFoundError(
            f"the AnnData store {text!r} has no {key!r}; dense matrices inside: {', '.join(dense) or 'none'}"
        )
    if isinstance(node, zarr.Group):
        encoding = dict(node.attrs).get("encoding-type", "a group")
        if encoding in ("csr_matrix", "csc_matrix"):
            _anndata_refuse_sparse(text, key, encoding, dense)
        raise InputShapeError(
            f"{key!r} of the AnnData store {text!r} is {encoding}, not a dense matrix; name one of "
            f"{', '.join(dense) or 'none'}"
        )
    return node


# ------------------------------------------------------------------------------------------------------ dispatch


def _sniff(fs: Any, path: str) -> str | None:
    try:
        with fs.open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def _kind_of_file(fs: Any, path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(ANNDATA_SUFFIXES):
        return "h5ad"
    if lower.endswith(HDF5_SUFFIXES):
        return "hdf5"
    if lower.endswith(".npy"):
        return "npy"
    return _sniff(fs, path)


def _hdf5_parent(fs: Any, path: str) -> tuple[str, str] | None:
    """``data.h5/group/set`` -> (``data.h5``, ``group/set``) when a leading part is an HDF5 or .h5ad file."""
    parts = path.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        head = "/".join(parts[:cut])
        if head and fs.isfile(head) and _kind_of_file(fs, head) in ("hdf5", "h5ad"):
            return head, "/".join(parts[cut:])
    return None


def _folder_files(fs: Any, path: str) -> list[str]:
    return [name for name in fs.ls(path, detail=False) if fs.isfile(name)]


def _sorted(paths: list[str]) -> list[str]:
    return sorted(paths, key=lambda name: natural_key(posixpath.basename(name)))


def _dataset_files(fs: Any, path: str) -> list[str]:
    """The .parquet files of a (possibly hive-partitioned) dataset, skipping _metadata, _SUCCESS and hidden files."""
    files = [
        name
        for name in fs.find(path)
        if not any(part.startswith(("_", ".")) for part in name[len(path) :].split("/") if part)
        and name.lower().endswith(PARQUET_SUFFIXES)
    ]
    return sorted(files, key=natural_key)


def _parquet_columns(fragment: str | None) -> list[str] | None:
    return [name.strip() for name in fragment.split(",") if name.strip()] if fragment else None


def _no_fragment(text: str, fragment: str | None, what: str) -> None:
    if fragment is not None:
        raise InputShapeError(f"{text!r}: {what} has no parts to name after '#'; give the path without '#{fragment}'")


def open_source(text: str, storage_options: dict[str, Any] | None = None, *, key: str | None = None) -> Any:
    """Open ``text`` when it is Parquet, HDF5, AnnData or ``.npy`` shards; None when it is a plain Zarr array or .npy.

    Parameters
    ----------
    text : str
        Local path or fsspec URL, optionally with ``#part``: a column (or
        ``#a,b,c`` columns) of Parquet, a dataset of HDF5, ``X``,
        ``obsm/KEY`` or ``layers/KEY`` of AnnData. A glob (``emb/*.npy``) or a
        folder of ``.npy`` or Parquet files reads them all, in natural order.
    storage_options : dict, optional
        Passed to fsspec.
    key : str, optional
        The part to read, as an alternative to ``#part``.

    Returns
    -------
    dask array of shape (n_samples, n_features), zarr.Array, or None
    """
    base, fragment = split_fragment(text)
    if key is not None:
        if fragment is not None and fragment != key:
            raise InputShapeError(f"{text!r} names #{fragment} and key={key!r}; give one of them")
        fragment = key
    fs, path = _filesystem(base, storage_options)
    if _GLOB_CHARS.search(path) and not fs.exists(path):
        matches = [name for name in fs.glob(path) if fs.isfile(name)]
        if not matches:
            raise StoreNotFoundError(f"no file matches {base!r}; check the pattern")
        kinds = {_kind_of_file(fs, name) for name in matches}
        if kinds == {"npy"}:
            _no_fragment(text, fragment, ".npy shards")
            return NpyShards(base, fs, _sorted(matches)).to_dask()
        if kinds == {"parquet"}:
            return ParquetRows(base, fs, sorted(matches, key=natural_key), _parquet_columns(fragment)).to_dask()
        raise StoreNotFoundError(
            f"{base!r} matches {len(matches)} files of different or unknown kinds ({', '.join(matches[:5])}); "
            f"a pattern must match .npy shards only or Parquet files only"
        )
    if not fs.exists(path):
        parent = _hdf5_parent(fs, path)
        if parent is not None:
            head, dataset = parent
            head_text = base[: len(base) - len(dataset) - 1]
            raise StoreNotFoundError(
                f"{base!r} is not a file; to read the dataset {dataset!r} of the HDF5 file {head_text!r}, "
                f"give {head_text + '#' + dataset!r}"
            )
        return None  # arrays.py says it is missing
    if fs.isfile(path):
        kind = _kind_of_file(fs, path)
        if kind == "parquet":
            return ParquetRows(base, fs, [path], _parquet_columns(fragment)).to_dask()
        if kind == "h5ad":
            return _open_h5ad(fs, path, base, fragment)
        if kind == "hdf5":
            dataset = fragment or _hdf5_default(fs, path, base)
            return HDF5Rows(f"{base}#{dataset}", fs, path, dataset).to_dask()
        if kind == "npy":
            _no_fragment(text, fragment, "a .npy file")
            if not _local(fs):
                return NpyShards(base, fs, [path]).to_dask()
        return None  # a local .npy file, or a file arrays.py refuses
    return _open_folder(fs, path, base, text, fragment, storage_options)


def _open_folder(
    fs: Any, path: str, base: str, text: str, fragment: str | None, storage_options: dict[str, Any] | None
) -> Any:
    """A folder: a Zarr store (AnnData or plain), a Parquet dataset, or .npy shards."""
    names = {posixpath.basename(name) for name in fs.ls(path, detail=False)}
    if names & {"zarr.json", ".zarray", ".zgroup"}:
        import zarr

        try:
            node = zarr.open(store=base, mode="r", storage_options=storage_options if "://" in base else None)
        except (FileNotFoundError, ValueError):
            return None
        if isinstance(node, zarr.Group) and dict(node.attrs).get("encoding-type") == "anndata":
            return _open_anndata_zarr(node, base, fragment)
        if fragment is not None:
            raise InputShapeError(
                f"{text!r}: a Zarr store names its arrays by path, not after '#'; give "
                f"{base.rstrip('/') + '/' + fragment!r}"
            )
        return None
    npy = [name for name in _folder_files(fs, path) if name.lower().endswith(".npy")]
    parquet = _dataset_files(fs, path)
    if npy and parquet:
        folder = base.rstrip("/")
        raise InputShapeError(
            f"{base!r} holds both .npy shards and Parquet files; give one kind with a glob, e.g. "
            f"{folder + '/*.npy'!r} or {folder + '/*.parquet'!r}"
        )
    if npy:
        _no_fragment(text, fragment, "a folder of .npy shards")
        return NpyShards(base, fs, _sorted(npy)).to_dask()
    if parquet:
        return ParquetRows(base, fs, parquet, _parquet_columns(fragment)).to_dask()
    return None


def recognised_files() -> str:
    """How the readers' inputs are spelled, for error messages."""
    return (
        "a Zarr array, a .npy file, a folder or glob of .npy shards (emb/*.npy), Parquet (data.parquet or a folder, "
        "data.parquet#column), HDF5 (data.h5#dataset) or AnnData (data.h5ad#obsm/X_pca)"
    )
