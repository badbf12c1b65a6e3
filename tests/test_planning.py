import importlib
import itertools

import dask
import dask.array as da
import numpy as np
import pytest
from dask._task_spec import Task

import bigdist as bd
import bigdist.planning as planning
from bigdist.planning import balanced_query_blocks, even_blocks, query_blocks, split_rows
from tests.oracle import knn_oracle

# The module, which the package's function of the same name hides.
knn_module = importlib.import_module("bigdist.knn")


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


def _thread_loads(tasks, owners, threads):
    loads = [0] * threads
    for work, owner in zip(tasks, owners, strict=True):
        loads[owner] += work
    return loads


def _best_makespan(query_rows, train_rows, threads):
    """The least busiest-thread work over an even share, by trying every assignment of the tasks to threads."""
    tasks = [q * t for q in query_rows for t in train_rows]
    share = sum(tasks) / threads
    best = min(
        max(_thread_loads(tasks, owners, threads)) for owners in itertools.product(range(threads), repeat=len(tasks))
    )
    return best / share


def test_a_few_train_blocks_on_two_threads_get_finer_query_blocks():
    train = (65536, 65536, 65536, 3392)
    # One query block: its best schedule leaves a thread idle a third of the time.
    assert _best_makespan((2000,), train, 2) > 1.3
    blocks = balanced_query_blocks((2000,), train, 2)
    assert sum(blocks) == 2000 and max(blocks) - min(blocks) <= 1
    assert _best_makespan(blocks, train, 2) <= planning.BALANCE_TOLERANCE
    # The fewest blocks that do: every coarser even split stays above the tolerance.
    for count in range(1, len(blocks)):
        assert _best_makespan(even_blocks(2000, -(-2000 // count)), train, 2) > planning.BALANCE_TOLERANCE


@pytest.mark.parametrize(
    ("queries", "train", "threads"),
    [((2000,), (65536,) * 15 + (16960,), 2), ((16384,) * 6 + (1696,), (65536,) * 2, 2), ((2000,), (65536,) * 3, 1)],
)
def test_balanced_tasks_keep_their_query_blocks(queries, train, threads):
    assert balanced_query_blocks(queries, train, threads) == queries


def test_query_blocks_are_not_cut_below_the_minimum_rows():
    # One train block on 8 threads would want 8 query blocks; 2000 rows give at most 7 of 256 or more.
    blocks = balanced_query_blocks((2000,), (65536,), 8)
    assert len(blocks) == 2000 // planning.MIN_BALANCED_ROWS
    assert min(blocks) >= planning.MIN_BALANCED_ROWS
    assert balanced_query_blocks((300,), (65536,) * 3, 2) == (300,)


def test_a_knn_of_few_tasks_runs_in_balanced_query_blocks_with_the_exact_result(monkeypatch):
    monkeypatch.setattr(knn_module, "threads", lambda: 2)
    rng = np.random.default_rng(5)
    queries = rng.standard_normal((600, 9)).astype(np.float32)
    train = rng.standard_normal((3050, 9)).astype(np.float32)
    train_array = da.from_array(train, chunks=((1000, 1000, 1000, 50), 9))
    result = bd.knn(queries, train_array, k=7)
    assert result.distances.chunks[0] == (300, 300)
    with dask.config.set(scheduler="synchronous"):
        distances, indices = result.compute()
    expected_distances, expected_indices = knn_oracle(queries, train, 7)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-5)
