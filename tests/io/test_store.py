import dask.array as da
import numpy as np
import pytest
import zarr

from bigdist.errors import IncompleteOutputError, OutputExistsError
from bigdist.io import describe, read_group, update_attrs, write_group

pytestmark = pytest.mark.usefixtures("synchronous")


def test_round_trip_with_irregular_chunks(tmp_path):
    values = np.arange(70, dtype=np.float32).reshape(35, 2)
    indices = np.arange(35 * 3, dtype=np.int64).reshape(35, 3)
    path = str(tmp_path / "out.zarr")
    write_group(
        path,
        {"values": da.from_array(values, chunks=((10, 5, 20), 2)), "indices": da.from_array(indices, chunks=7)},
        attrs={"run": {"k": 3}},
    )
    arrays = read_group(path)
    np.testing.assert_array_equal(arrays["values"].compute(), values)
    np.testing.assert_array_equal(arrays["indices"].compute(), indices)
    info = describe(path)
    assert info["complete"] and info["attrs"]["run"] == {"k": 3}
    assert set(info["attrs"]["bigdist"]["versions"]) >= {"bigdist", "dask", "zarr", "numpy"}


def _fails_on_third_block(block, block_info=None):
    if block_info[0]["chunk-location"][0] == 2:
        raise RuntimeError("killed mid-write")
    return block


def test_interrupted_write_is_never_taken_for_finished(tmp_path):
    path = str(tmp_path / "out.zarr")
    data = da.ones((50, 2), chunks=10).map_blocks(_fails_on_third_block, dtype=float)
    with pytest.raises(RuntimeError, match="killed"):
        write_group(path, {"x": data})
    assert zarr.open_group(path, mode="r").attrs["bigdist"]["complete"] is False
    with pytest.raises(IncompleteOutputError, match="unfinished"):
        read_group(path)
    # A re-run replaces the unfinished output without --overwrite.
    write_group(path, {"x": da.ones((50, 2), chunks=10)})
    assert read_group(path)["x"].sum().compute() == 100


def test_finished_output_needs_overwrite(tmp_path):
    path = str(tmp_path / "out.zarr")
    write_group(path, {"x": da.ones((4, 2), chunks=2)})
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_group(path, {"x": da.zeros((4, 2), chunks=2)})
    assert read_group(path)["x"].sum().compute() == 8
    write_group(path, {"x": da.zeros((4, 2), chunks=2)}, overwrite=True)
    assert read_group(path)["x"].sum().compute() == 0


def test_lazy_write_marks_complete_only_when_computed(tmp_path):
    path = str(tmp_path / "out.zarr")
    pending = write_group(path, {"x": da.ones((4, 2), chunks=2)}, compute=False)
    assert describe(path)["complete"] is False
    pending.compute()
    update_attrs(path, timings={"seconds": 1.5})
    info = describe(path)
    assert info["complete"] and info["attrs"]["timings"] == {"seconds": 1.5}
