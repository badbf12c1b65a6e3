"""Read Zarr arrays so that a missing or damaged chunk raises instead of reading as something else.

Zarr returns the fill value (usually zeros) for a chunk that is not in the
store, and decodes whatever bytes a chunk file holds. :class:`ZarrSource`
wraps a ``zarr.Array`` for ``dask.array.from_array``: each read first checks
that the stored chunks (or shards) it covers exist, then reads; a decoding
failure (a crc32c checksum mismatch, a truncated file) is reported with the
array, the chunk and the fix. Arrays bigdist writes carry a crc32c checksum
per chunk (:func:`output_codecs`), so truncation and bit flips are caught.

Rows of an array chunked along rows only, whose chunks are their values
compressed once at most (what zarr writes by default: zstd) and checksummed
once at most, are decoded by :class:`_ChunkDecoder` straight into the
block being read, in the reading thread: zarr's own pipeline decodes into a
buffer of its own and copies, 2 to 5 times the time of the decompression.
Local chunk files are mapped rather than read into new memory.
"""

from __future__ import annotations

import asyncio
import itertools
import mmap
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import zarr
import zarr.codecs
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from bigdist import config
from bigdist.errors import CorruptChunkError, DataIntegrityError, MissingChunkError, StoreError

# Zarr raises these for a chunk whose bytes cannot be decoded: a checksum
# mismatch or a wrong size (ValueError), a broken compressed stream (RuntimeError).
_DECODE_ERRORS = (ValueError, RuntimeError, TypeError)


def _store_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [OSError, TimeoutError]
    try:
        # s3fs passes botocore's connection errors through untranslated.
        from botocore.exceptions import BotoCoreError

        errors.append(BotoCoreError)
    except ImportError:
        pass
    return tuple(errors)


#: What a filesystem raises when the store itself fails (after its own retries), not the data.
STORE_ERRORS = _store_errors()


def output_codecs(compressor: str) -> list[Any]:
    """Bytes-to-bytes codecs of arrays bigdist writes: the compressor (if any), then a crc32c checksum.

    Parameters
    ----------
    compressor : {"none", "zstd", "lz4", "blosc-lz4"}
    """
    codecs: list[Any] = []
    if compressor == "zstd":
        codecs.append(zarr.codecs.ZstdCodec())
    elif compressor in ("lz4", "blosc-lz4"):
        # zarr v3 has no bare lz4 codec in its specification.
        codecs.append(zarr.codecs.BloscCodec(cname="lz4", shuffle=zarr.codecs.BloscShuffle.shuffle))
    # Last, so the checksum covers the bytes as stored: truncation and bit flips fail on read.
    codecs.append(zarr.codecs.Crc32cCodec())
    return codecs


def _describe_store(array: zarr.Array) -> str:
    store = str(array.store_path)
    return store.removeprefix("file://")


def _metadata_mtime(array: zarr.Array) -> int | None:
    """Modification time of a local array's metadata (rewritten when the array is recreated)."""
    root = getattr(array.store_path.store, "root", None)
    if root is None:
        return None
    for name in ("zarr.json", ".zarray"):
        try:
            return os.stat(os.path.join(str(root), array.store_path.path, name)).st_mtime_ns
        except OSError:
            continue
    return None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class _ChunkDecoder:
    """Decodes a stored chunk into a C-order array: a crc32c checksum checked, then one decompression or a copy.

    Parameters
    ----------
    compressor : numcodecs codec or None
        What the values were compressed with (None: stored as they are).
    checksummed : bool
        The stored bytes end with the crc32c checksum of the bytes before it.
    """

    def __init__(self, compressor: numcodecs.abc.Codec | None, checksummed: bool) -> None:
        self.compressor = compressor
        self.checksummed = checksummed

    def __call__(self, stored: np.ndarray, out: np.ndarray) -> None:
        """Write the values of ``stored`` (the chunk file's bytes, uint8) into ``out``; ValueError if damaged."""
        if self.checksummed:
            if len(stored) < 4 or np.uint32(google_crc32c.value(stored[:-4])).tobytes() != bytes(stored[-4:]):
                raise ValueError("the crc32c checksum of the stored bytes does not match")
            stored = stored[:-4]
        if self.compressor is not None:
            self.compressor.decode(stored, out=out)
            return
        if len(stored) != out.nbytes:
            raise ValueError(f"{len(stored)} bytes stored for a chunk of {out.nbytes}")
        out.reshape(-1).view(np.uint8)[:] = stored


def _chunk_decoder(array: zarr.Array) -> _ChunkDecoder | None:
    """The direct decoder of ``array``'s chunks, or None where zarr's pipeline must read them.

    Only 2-D numeric arrays with every feature in one chunk qualify (a row
    range is then one contiguous run of each chunk), unsharded, stored in
    native byte order and C order, with no filter: zarr v3's bytes codec then
    zstd, gzip or blosc, and crc32c, each optional; or v2's compressor alone.
    """
    dtype = np.dtype(array.dtype)
    if array.ndim != 2 or array.chunks[1] != array.shape[1] or dtype.kind not in "biuf" or not dtype.isnative:
        return None
    metadata = array.metadata
    if metadata.zarr_format == 2:
        if metadata.filters or metadata.order != "C":
            return None
        return _ChunkDecoder(metadata.compressor, checksummed=False)
    if array.shards:
        return None
    codecs = list(metadata.codecs)
    first = codecs.pop(0)
    if not isinstance(first, zarr.codecs.BytesCodec):
        return None
    if dtype.itemsize > 1 and (first.endian is None or first.endian.value != sys.byteorder):
        return None
    checksummed = bool(codecs) and isinstance(codecs[-1], zarr.codecs.Crc32cCodec)
    if checksummed:
        codecs.pop()
    if not codecs:
        return _ChunkDecoder(None, checksummed)
    if len(codecs) > 1:
        return None
    codec = codecs[0]
    if isinstance(codec, zarr.codecs.ZstdCodec):
        return _ChunkDecoder(numcodecs.Zstd(level=codec.level), checksummed)
    if isinstance(codec, zarr.codecs.GzipCodec):
        return _ChunkDecoder(numcodecs.GZip(level=codec.level), checksummed)
    if isinstance(codec, zarr.codecs.BloscCodec):
        return _ChunkDecoder(numcodecs.Blosc(), checksummed)  # blosc's header holds its settings
    return None


def _mapped(path: str) -> np.ndarray | None:
    """The bytes of a local file, mapped read-only (unmapped when the array goes), or None if there is none.

    zarr writes a chunk file to a new file and renames it over the old one,
    so a mapping keeps the bytes it was made on.
    """
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return np.empty(0, dtype=np.uint8)
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # what zarr's LocalStore reads as missing
        return None
    if hasattr(mmap, "MADV_SEQUENTIAL"):  # read ahead from disk (no madvise on Windows)
        mapped.madvise(mmap.MADV_SEQUENTIAL)
    return np.frombuffer(mapped, dtype=np.uint8)


class ZarrSource:
    """A ``zarr.Array`` that refuses to read missing chunks and names damaged ones.

    Used as the source of ``dask.array.from_array``; every block read checks
    the existence of the chunk (or shard) files it covers first, a handful of
    concurrent ``exists`` calls per block, never a listing of the store.

    Parameters
    ----------
    array : zarr.Array
    label : str
        How error messages call the array (its path, or "train", "queries").
    missing : {"error", "fill"}, optional
        What a missing chunk does: raise MissingChunkError, or read as the
        fill value (for arrays written with ``write_empty_chunks=False`` on
        purpose). Default from the ``bigdist.io.missing-chunks`` config.
    """

    def __init__(self, array: zarr.Array, label: str, missing: str | None = None) -> None:
        self.array = array
        self.label = label
        self.missing = missing or config.get("io.missing-chunks")
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype: np.dtype = np.dtype(array.dtype)
        self.ndim = array.ndim
        self.chunks: tuple[int, ...] = tuple(array.chunks)
        self.shards: tuple[int, ...] | None = tuple(array.shards) if array.shards else None
        self._token = (_describe_store(array), self.shape, str(self.dtype), self.chunks, self.shards)
        self._mtime = _metadata_mtime(array)
        self._decoder = _chunk_decoder(array)

    # The unit a file holds: a shard when the array is sharded, else a chunk.
    @property
    def _grid(self) -> tuple[int, ...]:
        return self.shards or self.chunks

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("bigdist-zarr", *self._token, self._mtime, self.missing)

    def __repr__(self) -> str:
        return f"ZarrSource({self._token[0]!r}, shape={self.shape}, dtype={self.dtype})"

    def _ranges(self, key: Any) -> list[tuple[int, int]]:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        ranges = []
        for item, size in zip(key, self.shape, strict=True):
            if isinstance(item, slice):
                start, stop, _ = item.indices(size)
            else:
                start = int(item) % size if size else 0
                stop = start + 1
            ranges.append((start, max(start, stop)))
        return ranges

    def _units(self, ranges: Sequence[tuple[int, int]], grid: Sequence[int]) -> Iterator[tuple[int, ...]]:
        axes = [range(start // step, (stop - 1) // step + 1) if stop > start else range(0) for (start, stop), step in
                zip(ranges, grid, strict=True)]  # fmt: skip
        return itertools.product(*axes)

    def _store_key(self, coords: tuple[int, ...]) -> str:
        key = self.array.metadata.encode_chunk_key(coords)
        prefix = self.array.store_path.path
        return f"{prefix}/{key}" if prefix else key

    def _rows_of(self, coords: tuple[int, ...], grid: Sequence[int]) -> str:
        first = coords[0] * grid[0]
        last = min(self.shape[0], first + grid[0]) - 1
        return f"rows {first}-{last}"

    def check_present(self, key: Any) -> None:
        """Raise MissingChunkError when a chunk (or shard) file covering ``key`` is not in the store."""
        if self.missing == "fill" or not self.ndim:
            return
        grid = self._grid
        coords = list(self._units(self._ranges(key), grid))
        store = self.array.store_path.store
        keys = [self._store_key(c) for c in coords]

        async def exist() -> list[bool]:
            return list(await asyncio.gather(*(store.exists(k) for k in keys)))

        for found, key_name, coord in zip(sync(exist()), keys, coords, strict=True):
            if not found:
                raise self._missing(key_name, self._rows_of(coord, grid))

    def _missing(self, key_name: str, rows: str) -> MissingChunkError:
        unit = "shard" if self.shards else "chunk"
        return MissingChunkError(
            f"{self.label}: {unit} {key_name!r} ({rows}) is missing from "
            f"{_describe_store(self.array)}, so zarr would silently read it as the fill value "
            f"{_plain(self.array.fill_value)!r}; the array is incomplete or damaged: write or copy it again. "
            f"If it was written with zarr's write_empty_chunks=False on purpose, set the bigdist config "
            f"io.missing-chunks: fill to read missing chunks as the fill value"
        )

    def _corrupt(self, key_name: str, rows: str, cause: Exception) -> CorruptChunkError:
        return CorruptChunkError(
            f"{self.label}: the stored chunk {key_name!r} ({rows}) of {_describe_store(self.array)} is damaged "
            f"and cannot be read ({type(cause).__name__}: {cause}); the file was truncated or changed on disk. "
            f"Write or copy the array again (bigdist outputs: rerun with --overwrite)"
        )

    def _find_corrupt(self, ranges: Sequence[tuple[int, int]]) -> tuple[str, str, Exception] | None:
        """The first stored chunk inside ``ranges`` that fails to decode (only looked for after a failure)."""
        for coords in self._units(ranges, self.chunks):
            bounds = zip(coords, self.chunks, self.shape, strict=True)
            region = tuple(slice(c * step, min(size, (c + 1) * step)) for c, step, size in bounds)
            try:
                self.array[region]
            except _DECODE_ERRORS as error:
                shard = tuple(c * step // outer for c, step, outer in zip(coords, self.chunks, self._grid, strict=True))
                return self._store_key(shard), self._rows_of(coords, self.chunks), error
        return None

    def _store_failed(self, key: Any, error: Exception) -> StoreError:
        ranges = self._ranges(key)
        coords = list(self._units(ranges, self._grid))
        unit = "shard" if self.shards else "chunk"
        names = ", ".join(repr(self._store_key(c)) for c in coords[:3]) + (" ..." if len(coords) > 3 else "")
        return StoreError(
            f"{self.label}: reading the {unit}(s) {names} (rows {ranges[0][0]}-{ranges[0][1] - 1}) from "
            f"{_describe_store(self.array)} failed ({type(error).__name__}: {error}) after the filesystem's "
            f"retries; check the store, then run again (a bigdist output being written resumes)"
        )

    def _whole_rows(self, key: Any) -> tuple[int, int] | None:
        """``key``'s row range when the direct decoder can read it (every column, rows in order), else None."""
        if self._decoder is None or not isinstance(key, tuple) or len(key) != 2:
            return None
        rows, columns = key
        if not (isinstance(rows, slice) and isinstance(columns, slice)):
            return None
        start, stop, step = rows.indices(self.shape[0])
        if step != 1 or columns.indices(self.shape[1]) != (0, self.shape[1], 1):
            return None
        return start, max(start, stop)

    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``: their chunks' files fetched, each decoded straight into the rows."""
        chunk_rows, width = self.chunks[0], self.shape[1]
        out = np.empty((stop - start, width), dtype=self.dtype)
        indices = range(start // chunk_rows, (stop - 1) // chunk_rows + 1) if stop > start else range(0)
        keys = [self._store_key((index, 0)) for index in indices]
        for index, key_name, stored in zip(indices, keys, self._fetch(keys), strict=True):
            first = index * chunk_rows
            low, high = max(start, first), min(stop, first + chunk_rows)
            if stored is None:
                if self.missing != "fill":
                    raise self._missing(key_name, self._rows_of((index, 0), self.chunks))
                out[low - start : high - start] = self.array[low:high]
                continue
            # A chunk is stored whole, the last one too (padded): a part of it is decoded aside, then copied.
            whole = low == first and high == first + chunk_rows
            target = out[low - start : high - start] if whole else np.empty((chunk_rows, width), dtype=self.dtype)
            try:
                self._decoder(stored, target)
            except _DECODE_ERRORS as error:
                raise self._corrupt(key_name, self._rows_of((index, 0), self.chunks), error) from None
            if not whole:
                out[low - start : high - start] = target[low - first : high - first]
        return out

    def _fetch(self, keys: Sequence[str]) -> Iterator[np.ndarray | None]:
        """The stored bytes of each chunk file (uint8), None for a missing one.

        Local files are mapped, one at a time as they are decoded: reading a
        chunk into new memory costs more than decompressing it where page
        faults are dear (virtual machines). Other stores' files are fetched
        concurrently, at most zarr's ``async.concurrency`` at a time (a block
        may span hundreds of small chunks).
        """
        store = self.array.store_path.store
        if isinstance(store, LocalStore):
            for key in keys:
                yield _mapped(os.path.join(store.root, key))
            return
        prototype = default_buffer_prototype()
        limit = asyncio.Semaphore(int(zarr.config.get("async.concurrency") or 10))

        async def get(key: str) -> Any:
            async with limit:
                return await store.get(key, prototype=prototype)

        async def fetch() -> list[Any]:
            return list(await asyncio.gather(*(get(k) for k in keys)))

        for stored in sync(fetch()):
            yield None if stored is None else stored.as_numpy_array()

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            rows = self._whole_rows(key)
            if rows is not None:
                return self._read_rows(*rows)
            self.check_present(key)
            return np.asarray(self.array[key])
        except STORE_ERRORS as error:
            if isinstance(error, DataIntegrityError):
                raise
            # The filesystem has retried already (s3fs, botocore): the store kept failing.
            raise self._store_failed(key, error) from error
        except _DECODE_ERRORS as error:
            ranges = self._ranges(key)
            found = self._find_corrupt(ranges)
            key_name, rows, cause = found if found else ("?", f"rows {ranges[0][0]}-{ranges[0][1] - 1}", error)
            raise self._corrupt(key_name, rows, cause) from None

    def read_all(self) -> np.ndarray:
        """The whole array, checked."""
        return self[tuple(slice(None) for _ in self.shape)]


def verify(path: str, *, max_problems: int = 20) -> dict[str, Any]:
    """Read every stored chunk of a Zarr array or group, and report the missing and damaged ones.

    Parameters
    ----------
    path : str
        Local path or URL of a Zarr array or group (e.g. a bigdist output or input).
    max_problems : int
        Stop listing after this many problems (the counts stay exact).

    Returns
    -------
    dict
        ``path``; ``arrays`` (how many), ``chunks`` (files read, a shard counting once);
        ``missing`` and ``damaged`` counts; ``problems``: messages naming each
        array, chunk and rows; ``ok`` when nothing is wrong.
    """
    node = zarr.open(store=path, mode="r")
    if isinstance(node, zarr.Group):
        arrays = {
            name: array
            for name, array in node.members(max_depth=None)
            if isinstance(array, zarr.Array) and not name.startswith("bigdist_progress/")
        }
    else:
        arrays = {"": node}
    report: dict[str, Any] = {"path": path, "arrays": len(arrays), "chunks": 0, "missing": 0, "damaged": 0}
    problems: list[str] = []
    for name, array in sorted(arrays.items()):
        source = ZarrSource(array, f"{path.rstrip('/')}/{name}" if name else path, missing="error")
        if not source.ndim:
            continue
        grid = source._grid
        for coords in source._units([(0, size) for size in source.shape], grid):
            region = tuple(
                slice(c * step, min(size, (c + 1) * step))
                for c, step, size in zip(coords, grid, source.shape, strict=True)
            )
            report["chunks"] += 1
            try:
                source[region]
            except MissingChunkError as error:
                report["missing"] += 1
                problems.append(str(error))
            except CorruptChunkError as error:
                report["damaged"] += 1
                problems.append(str(error))
    report["problems"] = problems[:max_problems]
    report["ok"] = not problems
    return report
