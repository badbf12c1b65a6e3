import dask
import dask.array as da
import pytest
from dask._task_spec import Task

import bigdist.planning as planning
from bigdist.planning import even_blocks, query_blocks, split_rows


@pytest.mark.parametrize(("n_rows", "max_rows"), [(10, 4), (1, 5), (4096, 4096), (10_000, 3)])
def test_even_blocks_are_the_fewest_and_differ_by_at_most_one(n_rows, max_rows):
    blocks = even_blocks(n_rows, max_rows)
    assert sum(blocks) == n_rows
    assert max(blocks) <= max_rows
    assert len(blocks) == -(-n_rows // max_rows)
    assert max(blocks) - min(blocks) <= 1


def test_wide_query_blocks_stay_within_chunk_bytes():
    queries = da.zeros((10_000, 1024), dtype="float32", chunks=(10_000, 1024))
    with dask.config.set({"bigdist.chunk-bytes": 1 << 20, "bigdist.knn.query-block-rows": 4096}):
        wide = query_blocks(queries)
        narrow = query_blocks(queries[:, :8])
    assert max(wide.chunks[0]) * 1024 * 4 <= 1 << 20
    assert narrow.chunks[0] == (3334, 3333, 3333)  # narrow rows: query-block-rows decides


@pytest.mark.parametrize("rows", [(100,) * 10, (1000,), (1,) * 1000, (999, 1), (7, 993), (130,) * 7 + (90,)])
def test_split_rows_equals_dask_rechunk_block_by_block(rows):
    array = da.random.default_rng(1).standard_normal((1000, 3), chunks=((130,) * 7 + (90,), 3))
    split = split_rows(array, rows)
    oracle = array.rechunk({0: rows})
    assert split.chunks == oracle.chunks
    assert split.compute().tobytes() == oracle.compute().tobytes()
    for j in sorted({0, len(rows) // 2, len(rows) - 1}):
        assert split.blocks[j].compute().tobytes() == oracle.blocks[j].compute().tobytes()


def test_split_rows_builds_no_task_until_one_is_read(monkeypatch):
    built = []
    monkeypatch.setattr(planning, "Task", lambda key, *args, **kwargs: built.append(key) or Task(key, *args, **kwargs))
    array = da.zeros((10**9, 128), dtype="float32", chunks=(65536, 128))
    split = split_rows(array, (40_000,) * 25_000)
    assert split.numblocks[0] == 25_000 and built == []
    task = split.dask[(split.name, 1, 0)]  # rows 40000-79999: the end of block 0 and the start of block 1
    assert built == [(split.name, 1, 0)]
    assert sorted(task.dependencies) == [(array.name, 0, 0), (array.name, 1, 0)]


def test_split_rows_leaves_sparse_and_feature_chunked_arrays_to_dask():
    array = da.zeros((100, 6), chunks=(10, 3))
    assert split_rows(array, (50, 50)).name.startswith("rechunk")
