import uuid

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.delayed import Delayed

from bigdist.errors import IncompleteOutputError, OutputExistsError, StoreNotFoundError
from bigdist.io import describe, read_group, update_attrs, versions, write_group

pytestmark = pytest.mark.usefixtures("synchronous")


def test_round_trip_with_irregular_chunks(tmp_path):
    values = np.arange(70, dtype=np.float32).reshape(35, 2)
    indices = np.arange(35 * 3, dtype=np.int64).reshape(35, 3)
    labels = np.arange(35, dtype=np.int32)
    path = str(tmp_path / "out.zarr")
    returned = write_group(
        path,
        {
            "values": da.from_array(values, chunks=((10, 5, 20), 2)),
            "indices": da.from_array(indices, chunks=(7, 3)),
            "labels": labels,  # NumPy is accepted too
            "inertia": da.from_array(np.float64(2.5)),  # and 0-d arrays
        },
        attrs={"run": {"k": 3}},
    )
    assert returned == path
    arrays = read_group(path)
    np.testing.assert_array_equal(arrays["values"].compute(), values)
    np.testing.assert_array_equal(arrays["indices"].compute(), indices)
    np.testing.assert_array_equal(arrays["labels"].compute(), labels)
    assert arrays["inertia"].compute() == 2.5
    group = zarr.open_group(path, mode="r")
    assert group.metadata.zarr_format == 3
    # Irregular chunks become the largest one; regular ones are kept.
    assert group["values"].chunks == (20, 2) and group["indices"].chunks == (7, 3)
    info = describe(path)
    assert info["complete"] is True and info["attrs"]["run"] == {"k": 3}
    meta = info["attrs"]["bigdist"]
    assert meta["versions"] == versions() and meta["finished_at"] and meta["started_at"]
    assert sorted(meta["arrays"]) == ["indices", "inertia", "labels", "values"]


def test_versions():
    assert set(versions()) == {"bigdist", "dask", "distributed", "zarr", "numpy", "python"}
    assert versions()["zarr"] == zarr.__version__


@pytest.mark.parametrize(
    ("codec", "expected"), [("none", ["none"]), ("zstd", ["ZstdCodec"]), ("lz4", ["BloscCodec(lz4)"])]
)
def test_compressor_comes_from_config(tmp_path, codec, expected):
    with dask.config.set({"bigdist.io.compressor": codec}):
        write_group(tmp_path / "out.zarr", {"x": da.ones((4, 2), chunks=2)})
    assert describe(tmp_path / "out.zarr")["arrays"]["x"]["compressors"] == expected


def _fails_on_third_block(block, block_info=None):
    if block_info[0]["chunk-location"][0] == 2:
        raise RuntimeError("killed mid-write")
    return block


def test_interrupted_write_is_never_taken_for_finished(tmp_path, caplog):
    path = str(tmp_path / "out.zarr")
    data = da.ones((50, 2), chunks=10).map_blocks(_fails_on_third_block, dtype=float, chunks=((10,) * 5, (2,)))
    with pytest.raises(RuntimeError, match="killed"):
        write_group(path, {"x": data})
    assert zarr.open_group(path, mode="r").attrs["bigdist"]["complete"] is False
    assert describe(path)["complete"] is False
    with pytest.raises(IncompleteOutputError, match="unfinished"):
        read_group(path)
    # A re-run replaces the unfinished output without --overwrite, and says so.
    write_group(path, {"x": da.ones((50, 2), chunks=10)})
    assert "replacing the unfinished output" in caplog.text
    assert read_group(path)["x"].sum().compute() == 100


def test_finished_output_needs_overwrite(tmp_path):
    path = str(tmp_path / "out.zarr")
    write_group(path, {"x": da.ones((4, 2), chunks=2)})
    with pytest.raises(OutputExistsError, match=r"out.zarr.*--overwrite"):
        write_group(path, {"x": da.zeros((4, 2), chunks=2)})
    assert read_group(path)["x"].sum().compute() == 8
    write_group(path, {"x": da.zeros((4, 2), chunks=2)}, overwrite=True)
    assert read_group(path)["x"].sum().compute() == 0


def test_data_bigdist_did_not_write_is_protected(tmp_path):
    # An input named as the output by mistake is not replaced without --overwrite.
    zarr.create_array(str(tmp_path / "train.zarr"), data=np.ones((4, 2)))
    with pytest.raises(OutputExistsError, match="did not write"):
        write_group(tmp_path / "train.zarr", {"x": da.zeros((4, 2), chunks=2)})
    assert zarr.open_array(str(tmp_path / "train.zarr"), mode="r")[0, 0] == 1
    with pytest.raises(IncompleteOutputError, match="not written by bigdist"):
        read_group(_foreign_group(tmp_path))
    # Something that is not Zarr at all is never deleted, even with overwrite.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    (tmp_path / "file.zarr").write_text("keep me")
    for path in (tmp_path / "notes", tmp_path / "file.zarr"):
        with pytest.raises(OutputExistsError, match="is not a Zarr store"):
            write_group(path, {"x": da.zeros((4, 2), chunks=2)}, overwrite=True)
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
    # An empty directory is fine.
    (tmp_path / "empty.zarr").mkdir()
    write_group(tmp_path / "empty.zarr", {"x": da.zeros((4, 2), chunks=2)})


def _foreign_group(tmp_path):
    group = zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    group.create_array("x", shape=(2, 2), dtype="f4")
    return tmp_path / "foreign.zarr"


def test_lazy_write_marks_complete_only_when_computed(tmp_path):
    path = str(tmp_path / "out.zarr")
    seen = []

    def record(block, block_info=None):
        seen.append(block_info[0]["chunk-location"][0])
        return block

    source = da.ones((6, 2), chunks=(2, 2)).map_blocks(record, dtype=float, chunks=((2, 2, 2), (2,)))
    pending = write_group(path, {"x": source}, compute=False)
    assert isinstance(pending, Delayed)
    assert describe(path)["complete"] is False
    keys = [dask.utils.key_split(key) for key in dict(pending.__dask_graph__())]
    assert keys.count("bigdist-finish-output") == 1
    assert pending.compute() == path
    assert sorted(seen) == [0, 1, 2]  # each block computed and stored once
    update_attrs(path, timings={"seconds": 1.5}, bigdist={"note": "kept alongside"})
    info = describe(path)
    assert info["complete"] and info["attrs"]["timings"] == {"seconds": 1.5}
    assert info["attrs"]["bigdist"]["note"] == "kept alongside"


def test_url_round_trip():
    url = f"memory://{uuid.uuid4().hex}/out.zarr"
    write_group(url, {"x": da.arange(6, chunks=4).reshape(3, 2)})
    np.testing.assert_array_equal(read_group(url)["x"].compute(), np.arange(6).reshape(3, 2))


def test_describe_and_read_group_errors(tmp_path):
    zarr.create_array(str(tmp_path / "a.zarr"), data=np.ones((4, 2), dtype="f4"), chunks=(2, 2))
    info = describe(tmp_path / "a.zarr")
    assert info["kind"] == "array" and info["complete"] is None and info["status"] == "not written by bigdist"
    assert info["arrays"][""] == {
        "shape": [4, 2],
        "dtype": "float32",
        "chunks": [2, 2],
        "shards": None,
        "compressors": info["arrays"][""]["compressors"],
        "nbytes": 32,
    }
    with pytest.raises(StoreNotFoundError, match="open it with bigdist.open_array"):
        read_group(tmp_path / "a.zarr")
    for function in (describe, read_group):
        with pytest.raises(StoreNotFoundError, match="missing.zarr"):
            function(tmp_path / "missing.zarr")
    with pytest.raises(StoreNotFoundError, match="missing.zarr"):
        update_attrs(tmp_path / "missing.zarr", a=1)
