"""The row blocks a task reads itself: from the store for stored inputs, from each block's culled graph otherwise."""

import pathlib
import pickle

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.highlevelgraph import HighLevelGraph

import bigdist as bd
import bigdist.execution.sources as sources
from bigdist.errors import CorruptChunkError, MissingChunkError, NonFiniteError
from bigdist.execution.blocks import write_blocks
from bigdist.execution.sources import BlockReader, InputRows, StoreReader, rows_of
from bigdist.io import as_array, open_array, read_group
from bigdist.io.integrity import ZarrSource
from tests.oracle import distances, knn_oracle

pytestmark = pytest.mark.usefixtures("synchronous")


def _store(tmp_path, values, chunk_rows, name="x.zarr"):
    path = str(tmp_path / name)
    zarr.create_array(path, shape=values.shape, chunks=(chunk_rows, values.shape[1]), dtype=values.dtype)[:] = values
    return path


def _blocks(rows, blocks):
    return [(start, block.copy()) for start, block in rows.reader(blocks)]


# (stored chunk rows, rows of a block from chunk-bytes): chunks inside blocks, equal, and larger than a block.
CHUNKINGS = [(10, 30), (30, 30), (70, 30), (70, 20)]


@pytest.mark.parametrize(("chunk_rows", "block_rows"), CHUNKINGS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "float16"])
def test_store_reader_equals_the_dask_array_and_the_stored_values(tmp_path, chunk_rows, block_rows, dtype):
    values = (np.random.default_rng(0).standard_normal((205, 4)) * 50).astype(dtype)
    path = _store(tmp_path, values, chunk_rows)
    float_dtype = np.float32 if np.dtype(dtype).kind == "f" and np.dtype(dtype).itemsize <= 4 else np.float64
    with dask.config.set({"bigdist.chunk-bytes": block_rows * 4 * np.dtype(float_dtype).itemsize}):
        array = open_array(path)
    rows = InputRows(array)
    assert rows.in_store
    every = list(range(array.numblocks[0]))
    for blocks in (every, every[1::2], every[::-1], [every[-1]]):
        reader = rows.reader(blocks)
        assert isinstance(reader, StoreReader)
        read = _blocks(rows, blocks)
        assert [start for start, _ in read] == [rows.starts[j] for j in blocks]
        for (start, block), j in zip(read, blocks, strict=True):
            expected = array.blocks[j].compute()  # the graph's own block
            assert block.dtype == expected.dtype and block.shape == expected.shape
            assert block.tobytes() == expected.tobytes()
            np.testing.assert_array_equal(block, values[start : start + len(block)].astype(float_dtype))


def test_store_reader_decompresses_a_chunk_once_for_the_blocks_inside_it(tmp_path, monkeypatch):
    values = np.arange(140 * 3, dtype=np.float32).reshape(140, 3)
    path = _store(tmp_path, values, 70)
    with dask.config.set({"bigdist.chunk-bytes": 20 * 3 * 4}):
        array = open_array(path)
    assert array.chunks[0] == (18, 18, 17, 17, 18, 18, 17, 17)  # each stored chunk cut into 4 blocks
    reads = []
    read = ZarrSource.__getitem__
    monkeypatch.setattr(ZarrSource, "__getitem__", lambda self, key: reads.append(key) or read(self, key))
    rows = InputRows(array)
    got = np.concatenate([block for _, block in rows.reader(range(8))])
    np.testing.assert_array_equal(got, values)
    assert [key[0] for key in reads] == [slice(0, 70), slice(70, 140)]
    reads.clear()
    list(rows.reader([1, 2, 5]))  # blocks 1-2 share chunk 0; block 5 is in chunk 1
    assert [key[0] for key in reads] == [slice(18, 53), slice(88, 106)]


def test_panels_keep_a_stored_chunk_whole_so_each_task_decodes_it_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    train = rng.standard_normal((250, 3)).astype(np.float32)
    queries = rng.standard_normal((30, 3)).astype(np.float32)
    path = _store(tmp_path, train, 70)
    # Blocks of at most 20 rows, and a panel-flops target a single block already reaches.
    settings = {"bigdist.chunk-bytes": 20 * 3 * 4, "bigdist.execution.panel-flops": 1.0,
                "bigdist.knn.query-block-rows": 15}  # fmt: skip
    with dask.config.set(settings):
        result = bd.knn(queries, open_array(path), k=4)
        # bd.open_array's array is kept as it is, so the tasks read the store themselves.
        assert isinstance(InputRows(result.train_array).reader([0]), StoreReader)
        panels = result.job.panels
        assert [(p.start, p.stop) for p in panels] == [(0, 70), (70, 140), (140, 210), (210, 250)]
        reads = []
        read = ZarrSource.__getitem__
        monkeypatch.setattr(ZarrSource, "__getitem__", lambda self, key: reads.append(key[0]) or read(self, key))
        result.to_zarr(str(tmp_path / "nn.zarr"))
    # Each of the 2 query blocks reads each stored chunk once (one read per panel), not once per block.
    assert sorted((r.start, r.stop) for r in reads) == sorted([(0, 70), (70, 140), (140, 210), (210, 250)] * 2)
    got = read_group(str(tmp_path / "nn.zarr"))
    expected_dist, expected_idx = knn_oracle(queries, train, 4)
    np.testing.assert_array_equal(got["indices"].compute(), expected_idx)
    np.testing.assert_allclose(got["distances"].compute(), expected_dist, rtol=1e-6)


def test_an_opened_array_passed_again_keeps_its_checks_and_its_store(tmp_path):
    values = np.ones((40, 2), dtype=np.float32)
    values[7, 1] = np.nan
    opened = open_array(_store(tmp_path, values, 10))
    assert as_array(opened) is opened
    # Without the finiteness check (nan_euclidean) the NaN must come through: a new array, still read from the store.
    unchecked = as_array(opened, check_finite=False)
    assert unchecked is not opened
    assert np.isnan(unchecked.compute()[7, 1])
    assert isinstance(InputRows(unchecked).reader([0]), StoreReader)
    with pytest.raises(NonFiniteError):
        opened.compute()


def test_corrupt_and_missing_chunks_still_name_the_chunk_and_rows(tmp_path):
    values = np.random.default_rng(1).standard_normal((120, 3)).astype(np.float32)
    path = _store(tmp_path, values, 40)
    with dask.config.set({"bigdist.chunk-bytes": 20 * 3 * 4}):
        rows = InputRows(open_array(path))
    chunk = pathlib.Path(path) / "c" / "1" / "0"
    data = bytearray(chunk.read_bytes())
    chunk.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(CorruptChunkError, match=r"chunk 'c/1/0' \(rows 40-79\)"):
        list(rows.reader([2, 3]))
    chunk.unlink()
    with pytest.raises(MissingChunkError, match=r"chunk 'c/1/0' \(rows 40-79\) is missing"):
        list(rows.reader([3]))
    assert len(list(rows.reader([0, 1, 4, 5]))) == 4  # the intact chunks still read


def test_non_finite_value_raises_as_the_graph_does(tmp_path):
    values = np.ones((60, 2), dtype=np.float32)
    values[47, 1] = np.nan
    path = _store(tmp_path, values, 20)
    with dask.config.set({"bigdist.chunk-bytes": 20 * 2 * 4}):
        array = open_array(path, name="train")
    with pytest.raises(NonFiniteError) as from_graph:
        array.compute()
    with pytest.raises(NonFiniteError) as from_reader:
        list(InputRows(array).reader([0, 1, 2]))
    assert str(from_reader.value) == str(from_graph.value)
    assert "row 47, column 1 (in the block of rows 40-59)" in str(from_reader.value)
    with dask.config.set({"bigdist.chunk-bytes": 20 * 2 * 4}):
        unchecked = as_array(zarr.open_array(path, mode="r"), check_finite=False)
    (start, block), = InputRows(unchecked).reader([2])  # fmt: skip
    assert start == 40 and np.isnan(block[7, 1])


def test_store_reader_pickles_small_whatever_the_rows(tmp_path):
    sizes = []
    for n_rows in (10**6, 10**9):
        # Metadata only: no chunk is written, none is read.
        path = str(tmp_path / f"{n_rows}.zarr")
        zarr.create_array(path, shape=(n_rows, 128), chunks=(65536, 128), dtype="float32")
        rows = InputRows(open_array(path))
        sizes.append([len(pickle.dumps(rows.reader(blocks))) for blocks in ([0], [3, 4], [len(rows.keys) - 1])])
    assert max(max(s) for s in sizes) < 4000, sizes
    # The same but for the digits of the shape, the path and the row numbers.
    assert all(abs(a - b) <= 40 for a, b in zip(*sizes, strict=True)), sizes


def _lazy(n_rows, block_rows=1000):
    return as_array(da.random.default_rng(3).standard_normal((n_rows, 8), chunks=(block_rows, 8)).astype(np.float32))


def test_lazy_input_is_read_from_culled_graphs_without_materialising_it(monkeypatch):
    array = _lazy(20_000).rechunk({0: 700})  # a Blockwise chain and a materialised rechunk layer
    expected = array.compute()
    starts = np.concatenate([[0], np.cumsum(array.chunks[0])])

    def refuse(self):
        raise AssertionError("the input's whole graph was materialised")

    monkeypatch.setattr(HighLevelGraph, "to_dict", refuse)
    monkeypatch.setattr(sources, "_CACHED_BLOCKS", 3)
    rows = InputRows(array)
    assert rows.in_store
    blocks = [0, 5, 28, 17, 5]
    reader = rows.reader(blocks)
    assert isinstance(reader, BlockReader)
    for (start, block), j in zip(pickle.loads(pickle.dumps(reader)), blocks, strict=True):
        assert start == starts[j]
        assert block.tobytes() == expected[starts[j] : starts[j + 1]].tobytes()
    assert len(rows._culled) <= 3  # bounded, whatever the number of blocks


def test_lazy_reader_pickles_small_whatever_the_rows():
    sizes = []
    for n_rows in (10**5, 10**8):
        rows = InputRows(_lazy(n_rows, block_rows=50_000).rechunk({0: 20_000}))
        sizes.append([len(pickle.dumps(rows.reader([j]))) for j in (0, 1, len(rows.keys) - 1)])
        # An unpickled reader has its graphs, never the InputRows (which holds the whole graph).
        assert pickle.loads(pickle.dumps(rows.reader([1])))._rows is None
    assert max(max(s) for s in sizes) < 6000, sizes
    assert all(abs(a - b) <= 40 for a, b in zip(*sizes, strict=True)), sizes


def test_readers_made_for_work_not_yet_submitted_cull_nothing():
    rows = InputRows(_lazy(10_000))
    culled = len(rows._culled)
    readers = [rows.reader([j]) for j in range(len(rows.keys))]
    assert len(rows._culled) == culled
    assert len(list(readers[3])) == 1 and len(rows._culled) == culled + 1


def test_in_memory_inputs_are_not_read_from_their_graph():
    rows = InputRows(da.from_array(np.ones((400, 3)), chunks=(100, 3)))
    assert not rows.in_store
    (start, block), = rows_of(rows.reader([2]))  # fmt: skip
    assert start == 200 and block.shape == (100, 3)


def test_graph_of_old_style_tuple_tasks_is_still_read():
    # Tuple tasks name their dependencies only among all keys: InputRows falls back to the whole graph.
    graph = {("x", 0, 0): (np.ones, (10, 3)), ("x", 1, 0): (np.add, ("x", 0, 0), 1.0)}
    rows = InputRows(da.Array(graph, "x", chunks=((10, 10), (3,)), dtype=float))
    read = list(rows.reader([1, 0]))
    assert [start for start, _ in read] == [10, 0]
    np.testing.assert_array_equal(read[0][1], np.full((10, 3), 2.0))
    np.testing.assert_array_equal(read[1][1], np.ones((10, 3)))


@pytest.mark.parametrize("query_rows", [70, 333])
def test_lazy_pipeline_self_join_written_in_waves_equals_the_oracle(tmp_path, query_rows):
    # A user's pipeline (random rows, scaled and shifted): read by the tasks from its culled graphs.
    X = da.random.default_rng(5).standard_normal((900, 5), chunks=((130,) * 6 + (120,), 5)) * 2 + 1
    path = str(tmp_path / "nn.zarr")
    with dask.config.set({"bigdist.knn.query-block-rows": query_rows, "bigdist.execution.panel-flops": 1e5}):
        result = bd.knn(X, None, k=3)
        assert len(result.job.panels) > 1
        result.to_zarr(path)
    distances, indices = knn_oracle(X.compute().astype(np.float64), None, 3)
    out = read_group(path)
    np.testing.assert_array_equal(out["indices"].compute(), indices)
    np.testing.assert_allclose(out["distances"].compute(), distances, rtol=1e-12)


def test_matrix_written_block_by_block_never_materialises_its_graph(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    queries, train = rng.standard_normal((230, 5)), rng.standard_normal((410, 5))
    paths = [_store(tmp_path, values, 50, name) for values, name in ((queries, "q.zarr"), (train, "t.zarr"))]

    def refuse(self):
        raise AssertionError("the matrix's whole graph was materialised")

    with dask.config.set({"bigdist.chunk-bytes": 40 * 40 * 8}):
        matrix = bd.pairwise_distances(*paths, metric="euclidean")
        assert matrix.npartitions > 20
        with monkeypatch.context() as patch:
            patch.setattr(HighLevelGraph, "to_dict", refuse)
            write_blocks(str(tmp_path / "d.zarr"), {"distances": matrix}, flops_per_element=10.0)
    got = read_group(str(tmp_path / "d.zarr"))["distances"].compute()
    np.testing.assert_allclose(got, distances(queries, train, "euclidean"), rtol=1e-10, atol=1e-10)
