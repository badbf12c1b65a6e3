"""Deleted, truncated and bit-flipped chunk files raise errors naming the array and chunk."""

import pathlib

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

import bigdist as bd
from bigdist.errors import CorruptChunkError, DataIntegrityError, MissingChunkError
from bigdist.io import make_random, open_array, read_group, write_group

pytestmark = pytest.mark.usefixtures("synchronous")

VALUES = np.arange(40 * 3, dtype=np.float32).reshape(40, 3) + 1


def _output(tmp_path, compressor="none"):
    path = str(tmp_path / "out.zarr")
    with dask.config.set({"bigdist.io.compressor": compressor}):
        write_group(path, {"x": da.from_array(VALUES, chunks=10)})
    return path


def _flip_byte(file: pathlib.Path, position: int = 5) -> None:
    data = bytearray(file.read_bytes())
    data[position] ^= 0x01
    file.write_bytes(bytes(data))


def test_intact_output_reads_back(tmp_path):
    np.testing.assert_array_equal(read_group(_output(tmp_path))["x"].compute(), VALUES)


def test_deleted_output_chunk_raises_naming_it(tmp_path):
    path = _output(tmp_path)
    (pathlib.Path(path) / "x" / "c" / "2" / "0").unlink()
    with pytest.raises(MissingChunkError, match=r"out.zarr/x: chunk 'x/c/2/0' \(rows 20-29\) is missing.*fill value"):
        read_group(path)["x"].compute()
    # Blocks that do not touch the missing chunk still read.
    np.testing.assert_array_equal(read_group(path)["x"][:20].compute(), VALUES[:20])


@pytest.mark.parametrize("compressor", ["none", "zstd", "lz4"])
def test_bit_flip_in_output_chunk_fails_its_checksum(tmp_path, compressor):
    path = _output(tmp_path, compressor)
    _flip_byte(pathlib.Path(path) / "x" / "c" / "1" / "0")
    with pytest.raises(CorruptChunkError, match=r"chunk 'x/c/1/0' \(rows 10-19\).*damaged.*--overwrite"):
        read_group(path)["x"].compute()


def test_truncated_output_chunk_raises(tmp_path):
    path = _output(tmp_path)
    chunk = pathlib.Path(path) / "x" / "c" / "3" / "0"
    chunk.write_bytes(chunk.read_bytes()[:50])
    with pytest.raises(CorruptChunkError, match="x/c/3/0"):
        read_group(path)["x"].compute()


def test_missing_chunk_of_a_foreign_input(tmp_path):
    # An array written by someone else, without checksums: a missing chunk still raises, not zeros.
    path = str(tmp_path / "train.zarr")
    zarr.create_array(path, data=VALUES, chunks=(8, 3), compressors=None)
    (pathlib.Path(path) / "c" / "1" / "0").unlink()
    with pytest.raises(MissingChunkError, match=r"train.zarr: chunk 'c/1/0' \(rows 8-15\)"):
        open_array(path).compute()
    with pytest.raises(MissingChunkError, match="train: chunk 'c/1/0'"):
        bd.knn(VALUES[:5], zarr.open_array(path, mode="r"), k=2).compute()
    # Arrays written with write_empty_chunks=False on purpose can opt in to reading the fill value.
    with dask.config.set({"bigdist.io.missing-chunks": "fill"}):
        read = open_array(path).compute()
    np.testing.assert_array_equal(read[8:16], 0)
    np.testing.assert_array_equal(read[16:], VALUES[16:])


def test_missing_shard_and_zarr_v2_chunk(tmp_path):
    sharded = str(tmp_path / "sharded.zarr")
    zarr.create_array(sharded, data=VALUES, chunks=(5, 3), shards=(20, 3))
    (pathlib.Path(sharded) / "c" / "1" / "0").unlink()
    with pytest.raises(MissingChunkError, match=r"shard 'c/1/0' \(rows 20-39\)"):
        open_array(sharded).compute()
    v2 = str(tmp_path / "v2.zarr")
    zarr.create_array(v2, data=VALUES, chunks=(10, 3), zarr_format=2)
    (pathlib.Path(v2) / "0.0").unlink()
    with pytest.raises(MissingChunkError, match=r"chunk '0.0' \(rows 0-9\)"):
        open_array(v2).compute()


def test_generated_data_is_checksummed(tmp_path):
    path = str(tmp_path / "data.zarr")
    make_random(path, 60, 4, chunk_rows=20)
    _flip_byte(pathlib.Path(path) / "c" / "1" / "0", position=17)
    with pytest.raises(
        CorruptChunkError, match=r"queries: the stored chunk 'c/1/0' \(rows 20-39\) of .*data.zarr is damaged"
    ):
        bd.knn(path, None, k=3).compute()
    assert issubclass(CorruptChunkError, (DataIntegrityError, OSError))


def test_verify_lists_every_missing_and_damaged_chunk(tmp_path):
    from click.testing import CliRunner

    from bigdist.cli.main import main
    from bigdist.io.integrity import verify

    path = _output(tmp_path)
    assert verify(path) == {
        "path": path, "arrays": 1, "chunks": 4, "missing": 0, "damaged": 0, "problems": [], "ok": True,
    }  # fmt: skip
    (pathlib.Path(path) / "x" / "c" / "0" / "0").unlink()
    _flip_byte(pathlib.Path(path) / "x" / "c" / "3" / "0")
    report = verify(path)
    assert (report["missing"], report["damaged"], report["ok"]) == (1, 1, False)
    assert "chunk 'x/c/0/0' (rows 0-9) is missing" in report["problems"][0]
    assert "chunk 'x/c/3/0' (rows 30-39)" in report["problems"][1] and "damaged" in report["problems"][1]
    result = CliRunner().invoke(main, ["verify", path])
    assert result.exit_code == 1
    assert "4 chunk files in 1 array(s) read, 1 missing, 1 damaged" in result.output
    assert "x/c/0/0" in result.output and "Traceback" not in result.output
