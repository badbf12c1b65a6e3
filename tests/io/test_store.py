import pathlib
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
    ("codec", "expected"),
    [
        ("none", ["Crc32cCodec"]),
        ("zstd", ["ZstdCodec", "Crc32cCodec"]),
        ("lz4", ["BloscCodec(lz4)", "Crc32cCodec"]),
    ],
)
def test_compressor_comes_from_config(tmp_path, codec, expected):
    with dask.config.set({"bigdist.io.compressor": codec}):
        write_group(tmp_path / "out.zarr", {"x": da.ones((4, 2), chunks=2)})
    assert describe(tmp_path / "out.zarr")["arrays"]["x"]["compressors"] == expected


COMPUTED_BLOCKS: list[int] = []
# A transient fault: the block that fails while set (module state, so the graph's names do not change).
FAULT = {"block": None}


def _flaky(block, block_info=None):
    index = block_info[0]["chunk-location"][0]
    COMPUTED_BLOCKS.append(index)
    if index == FAULT["block"]:
        raise RuntimeError("killed mid-write")
    return block


def _data():
    values = np.arange(100, dtype=np.float64).reshape(50, 2)
    return da.from_array(values, chunks=10).map_blocks(_flaky, dtype=float, chunks=((10,) * 5, (2,)))


@pytest.fixture
def fault_on_third_block():
    FAULT["block"] = 2
    yield
    FAULT["block"] = None


def _chunk_files(path):
    root = pathlib.Path(path) / "x"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_interrupted_write_is_resumed_block_by_block(tmp_path):
    clean, path = str(tmp_path / "clean.zarr"), str(tmp_path / "out.zarr")
    write_group(clean, {"x": _data()}, attrs={"run": {"k": 3}})
    FAULT["block"] = 2
    try:
        with pytest.raises(RuntimeError, match="killed"):
            write_group(path, {"x": _data()}, attrs={"run": {"k": 3}})
    finally:
        FAULT["block"] = None
    assert zarr.open_group(path, mode="r").attrs["bigdist"]["complete"] is False
    assert describe(path)["complete"] is False
    with pytest.raises(IncompleteOutputError, match="unfinished"):
        read_group(path)
    written = np.asarray(zarr.open_array(f"{path}/bigdist_progress/x", mode="r")[:]).astype(bool)
    assert describe(path)["progress"] == {"x": f"{written.sum()} of 5 blocks written"}
    assert list(describe(path)["arrays"]) == ["x"]
    assert 0 < written.sum() < 5 and not written[2]

    # Another run's data is refused, naming what differs, and kept.
    with pytest.raises(OutputExistsError, match=r"different run \(run.k: 3 -> 4\).*--overwrite"):
        write_group(path, {"x": da.zeros((50, 2), chunks=10)}, attrs={"run": {"k": 4}})
    assert describe(path)["complete"] is False

    # The same run again computes only the blocks not yet written.
    COMPUTED_BLOCKS.clear()
    write_group(path, {"x": _data()}, attrs={"run": {"k": 3}})
    assert sorted(COMPUTED_BLOCKS) == sorted(np.flatnonzero(~written).tolist())
    assert describe(path)["complete"] is True
    assert "bigdist_progress" not in zarr.open_group(path, mode="r")
    assert _chunk_files(path) == _chunk_files(clean)
    np.testing.assert_array_equal(read_group(path)["x"].compute(), np.arange(100).reshape(50, 2))


def test_unfinished_output_of_another_run_replaced_with_overwrite(tmp_path, caplog, fault_on_third_block):
    path = str(tmp_path / "out.zarr")
    with pytest.raises(RuntimeError, match="killed"):
        write_group(path, {"x": _data()})
    write_group(path, {"x": da.ones((50, 2), chunks=10)}, overwrite=True)
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


def test_run_killed_while_creating_its_arrays_starts_afresh(tmp_path, fault_on_third_block):
    path = str(tmp_path / "out.zarr")
    with pytest.raises(RuntimeError, match="killed"):
        write_group(path, {"x": _data()})
    # As if killed after the attributes were written but before the progress markers were created.
    del zarr.open_group(path, mode="r+")["bigdist_progress"]
    FAULT["block"] = None
    write_group(path, {"x": _data()})
    np.testing.assert_array_equal(read_group(path)["x"].compute(), np.arange(100).reshape(50, 2))


def test_two_writers_of_one_output_leave_no_progress_markers(tmp_path, recwarn):
    """A second writer resumed from the same markers finishes after the first: no bare marker chunks remain."""
    path = str(tmp_path / "out.zarr")
    source = da.arange(12.0, chunks=3).reshape(6, 2)
    first = write_group(path, {"x": source}, compute=False)
    second = write_group(path, {"x": source}, compute=False)  # resumes the same unfinished group
    first.compute()
    second.compute()
    assert not (tmp_path / "out.zarr" / "bigdist_progress").exists()
    np.testing.assert_array_equal(read_group(path)["x"].compute(), np.arange(12.0).reshape(6, 2))
    assert describe(path)["complete"] is True
    assert not [w for w in recwarn if "not recognized as a component" in str(w.message)]
