"""Zarr chunks decoded straight into the rows read give what zarr itself reads, or fall back to zarr."""

import pathlib

import numcodecs
import numpy as np
import pytest
import zarr
import zarr.codecs

from bigdist.errors import CorruptChunkError, MissingChunkError
from bigdist.io.integrity import ZarrSource, output_codecs

ROWS, COLUMNS, CHUNK_ROWS = 53, 5, 8  # the last chunk is partial (5 of 8 rows)

DIRECT = {
    "v3-default": {},
    "v3-raw": {"compressors": None},
    "v3-gzip": {"compressors": zarr.codecs.GzipCodec()},
    "v3-blosc": {"compressors": zarr.codecs.BloscCodec(cname="lz4")},
    "v3-zstd-checksum": {"compressors": zarr.codecs.ZstdCodec(level=3, checksum=True)},
    "v3-bigdist-output": {"compressors": output_codecs("zstd")},
    "v3-crc32c-only": {"compressors": output_codecs("none")},
    "v2-default": {"zarr_format": 2},
    "v2-raw": {"zarr_format": 2, "compressors": None},
}

FALLBACK = {
    "sharded": {"shards": (16, COLUMNS)},
    "features-chunked": {"chunks": (CHUNK_ROWS, 2)},
    "big-endian-v3": {"serializer": zarr.codecs.BytesCodec(endian="big")},
    "big-endian-v2": {"zarr_format": 2, "dtype": ">f4"},
    "v2-filter": {"zarr_format": 2, "filters": [numcodecs.Delta(dtype="<f4")]},
}


def _array(tmp_path, dtype="float32", **options):
    values = np.random.default_rng(0).normal(size=(ROWS, COLUMNS)) * 100
    options = {"chunks": (CHUNK_ROWS, COLUMNS), "dtype": dtype, **options}
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=values.shape, **options)
    array[:] = values.astype(options["dtype"])
    return zarr.open_array(str(tmp_path / "a.zarr"), mode="r")


RANGES = [(0, ROWS), (0, CHUNK_ROWS), (3, 21), (16, 24), (40, ROWS), (50, 52), (7, 7)]


@pytest.mark.parametrize("layout", sorted(DIRECT))
@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint8"])
def test_direct_decoding_reads_what_zarr_reads(tmp_path, layout, dtype):
    array = _array(tmp_path, dtype, **DIRECT[layout])
    source = ZarrSource(array, "a")
    assert source._decoder is not None, "this layout should be decoded directly"
    for start, stop in RANGES:
        rows = source[start:stop, 0:COLUMNS]
        assert rows.dtype == array.dtype and rows.flags.c_contiguous
        np.testing.assert_array_equal(rows, array[start:stop])


@pytest.mark.parametrize("layout", sorted(FALLBACK))
def test_other_layouts_are_read_by_zarr(tmp_path, layout):
    array = _array(tmp_path, **FALLBACK[layout])
    source = ZarrSource(array, "a")
    assert source._decoder is None
    for start, stop in RANGES:
        np.testing.assert_array_equal(source[start:stop, 0:COLUMNS], array[start:stop])


def test_column_subsets_and_steps_go_through_zarr(tmp_path):
    array = _array(tmp_path)
    source = ZarrSource(array, "a")
    np.testing.assert_array_equal(source[2:30, 1:3], array[2:30, 1:3])
    np.testing.assert_array_equal(source[2:30:3, :], array[2:30:3])
    np.testing.assert_array_equal(source[5], array[5])


def _chunk_file(tmp_path, index):
    return pathlib.Path(tmp_path / "a.zarr" / "c" / str(index) / "0")


@pytest.mark.parametrize("layout", ["v3-default", "v3-bigdist-output", "v3-raw"])
def test_truncated_chunk_is_named(tmp_path, layout):
    array = _array(tmp_path, **DIRECT[layout])
    chunk = _chunk_file(tmp_path, 2)
    chunk.write_bytes(chunk.read_bytes()[:-7])
    source = ZarrSource(array, "a")
    with pytest.raises(CorruptChunkError, match=r"chunk 'c/2/0' \(rows 16-23\).*damaged"):
        source[10:30, 0:COLUMNS]
    np.testing.assert_array_equal(source[0:16, 0:COLUMNS], array[0:16])


@pytest.mark.parametrize("layout", ["v3-default", "v3-raw"])
def test_an_empty_chunk_file_is_named(tmp_path, layout):
    array = _array(tmp_path, **DIRECT[layout])
    _chunk_file(tmp_path, 1).write_bytes(b"")
    with pytest.raises(CorruptChunkError, match=r"chunk 'c/1/0' \(rows 8-15\).*damaged"):
        ZarrSource(array, "a")[0:ROWS, 0:COLUMNS]


def test_bit_flip_fails_the_checksum(tmp_path):
    array = _array(tmp_path, **DIRECT["v3-crc32c-only"])
    chunk = _chunk_file(tmp_path, 1)
    data = bytearray(chunk.read_bytes())
    data[3] ^= 0x10
    chunk.write_bytes(bytes(data))
    with pytest.raises(CorruptChunkError, match=r"chunk 'c/1/0' \(rows 8-15\).*crc32c"):
        ZarrSource(array, "a")[0:ROWS, 0:COLUMNS]


def test_missing_chunk_raises_or_reads_as_the_fill_value(tmp_path):
    array = _array(tmp_path)
    _chunk_file(tmp_path, 3).unlink()
    with pytest.raises(MissingChunkError, match=r"chunk 'c/3/0' \(rows 24-31\) is missing"):
        ZarrSource(array, "a")[20:40, 0:COLUMNS]
    filled = ZarrSource(array, "a", missing="fill")[20:40, 0:COLUMNS]
    np.testing.assert_array_equal(filled, array[20:40])
    assert (filled[4:12] == array.fill_value).all()


def test_a_block_of_many_small_chunks(tmp_path):
    # More chunks than zarr's async.concurrency are fetched for one block, a few at a time.
    array = _array(tmp_path, chunks=(2, COLUMNS))
    source = ZarrSource(array, "a")
    assert source._decoder is not None
    np.testing.assert_array_equal(source[1:ROWS, 0:COLUMNS], array[1:ROWS])
