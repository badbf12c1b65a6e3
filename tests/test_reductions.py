import dask
import dask.array as da
import numpy as np
import pytest

from bigdist.reductions import block_tree_reduce, block_tree_reduce_carry

pytestmark = pytest.mark.usefixtures("synchronous")


def _count_and_mark(block, first_row, seen, step):
    # Partial: the block's sum and global rows; carried: how many passes saw each row.
    before = np.zeros(len(block), dtype=np.int64) if seen is None else seen
    return {"sum": block.sum(), "rows": first_row + np.arange(len(block))}, before + step


def _merge(partials):
    return {"sum": sum(p["sum"] for p in partials), "rows": np.concatenate([p["rows"] for p in partials])}


def _rows_seen_twice(block, first_row, seen):
    return int((seen == 2).sum())


@pytest.mark.parametrize("split_every", [2, 8])
def test_carried_state_flows_from_pass_to_pass(split_every):
    values = np.arange(1000.0)
    array = da.from_array(values, chunks=((100, 0, 250, 1, 349, 300),))
    carried = None
    for _ in range(2):
        partials, carried = block_tree_reduce_carry(
            array, carried, _count_and_mark, _merge, carried_dtype=np.int64, split_every=split_every,
            name="test-pass", extra=(1,),
        )  # fmt: skip
        assert len(partials) <= split_every
        state = _merge(list(dask.compute(*partials)))
        assert state["sum"] == values.sum()
        np.testing.assert_array_equal(np.sort(state["rows"]), np.arange(1000))
    # The carried array computes on its own, and feeds a plain reduction.
    np.testing.assert_array_equal(carried.compute(), np.full(1000, 2))
    seen_twice = block_tree_reduce(array, _rows_seen_twice, sum, split_every=split_every, name="test", carried=carried)
    assert seen_twice.compute() == 1000
