"""Parquet, HDF5, .npy shards and AnnData inputs: the same rows, and the same neighbours, as from Zarr."""

import pickle
import sys
import uuid

import dask
import fsspec
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import zarr
from dask.base import tokenize
from distributed.utils_test import (  # noqa: F401  (pytest fixtures)
    cleanup,
    client,
    cluster_fixture,
    loop,
    loop_in_thread,
)

import bigdist as bd
from bigdist.errors import (
    InputDtypeError,
    InputShapeError,
    InputValueError,
    ReaderNotInstalledError,
    StoreNotFoundError,
)
from bigdist.io.formats import natural_key
from tests.oracle import knn_oracle

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
h5py = pytest.importorskip("h5py")
anndata = pytest.importorskip("anndata")

N, D = 600, 6
# 40 rows of D float32 values per block: several blocks, and stored units split and joined.
SMALL_BLOCKS = {"bigdist.chunk-bytes": 40 * D * 4}


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    # Far from the origin: the float32 GEMM alone would get neighbours wrong (cancellation).
    return (rng.standard_normal((N, D)) + 1e3).astype(np.float32)


def _write_all(tmp_path, data):
    """The same rows in every format; returns {label: path}."""
    paths = {}
    zarr.create_array(str(tmp_path / "x.zarr"), data=data, chunks=(64, D))
    paths["zarr"] = str(tmp_path / "x.zarr")
    table = pa.table({"id": np.arange(N), "emb": pa.array(list(data), type=pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "list.parquet", row_group_size=70)
    paths["parquet list column"] = str(tmp_path / "list.parquet")
    fixed = pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(data.ravel()), D), "label": ["a"] * N})
    pq.write_table(fixed, tmp_path / "fixed.parquet", row_group_size=25)
    paths["parquet fixed-size list, named"] = str(tmp_path / "fixed.parquet") + "#emb"
    (tmp_path / "dataset").mkdir()
    for part, (start, stop) in enumerate([(0, 250), (250, 251), (251, N)]):
        frame = pa.table({f"f{j}": data[start:stop, j] for j in range(D)})
        pq.write_table(frame, tmp_path / "dataset" / f"part-{part}.parquet", row_group_size=90)
    (tmp_path / "dataset" / "_SUCCESS").write_text("")
    paths["parquet dataset folder, numeric columns"] = str(tmp_path / "dataset")
    with h5py.File(tmp_path / "ann.hdf5", "w") as f:
        f.create_dataset("train", data=data, chunks=(32, D))
        f["test"] = data[:5]
        f["neighbors"] = np.zeros((5, 3), dtype=np.int32)
    paths["hdf5 ann-benchmarks train"] = str(tmp_path / "ann.hdf5") + "#train"
    (tmp_path / "shards").mkdir()
    # Natural order: 2 < 10 < 11, where a plain sort would put 10 and 11 first.
    for number, (start, stop) in zip((2, 10, 11), [(0, 130), (130, 131), (131, N)], strict=True):
        np.save(tmp_path / "shards" / f"img_emb_{number}.npy", data[start:stop])
    paths["npy shard folder"] = str(tmp_path / "shards")
    paths["npy shard glob"] = str(tmp_path / "shards" / "img_emb_*.npy")
    adata = anndata.AnnData(X=np.zeros((N, 2), dtype=np.float32), obsm={"X_pca": data})
    adata.write_h5ad(tmp_path / "cells.h5ad")
    paths["h5ad obsm"] = str(tmp_path / "cells.h5ad") + "#obsm/X_pca"
    with pytest.warns(UserWarning, match="zarr v2"):
        anndata.AnnData(X=data).write_zarr(tmp_path / "cells.zarr")
    paths["anndata zarr X"] = str(tmp_path / "cells.zarr")
    return paths


@pytest.mark.usefixtures("synchronous")
def test_every_format_gives_the_zarr_rows_and_the_oracles_neighbours(tmp_path, data):
    paths = _write_all(tmp_path, data)
    expected_distances, expected_indices = knn_oracle(data[:50], data, 5)
    with dask.config.set(SMALL_BLOCKS):
        from_zarr = bd.knn(bd.open_array(paths["zarr"])[:50], paths["zarr"], k=5).compute()
        for label, path in paths.items():
            array = bd.open_array(path)
            assert array.shape == (N, D) and array.dtype == np.float32, label
            assert array.numblocks[0] > 1, label
            np.testing.assert_array_equal(array.compute(), data, err_msg=label)
            distances, indices = bd.knn(array[:50], path, k=5).compute()
            np.testing.assert_array_equal(indices, expected_indices, err_msg=label)
            np.testing.assert_allclose(distances, expected_distances, rtol=1e-6, err_msg=label)
            np.testing.assert_array_equal(indices, from_zarr[1], err_msg=label)
            np.testing.assert_array_equal(distances, from_zarr[0], err_msg=label)


def test_formats_on_a_distributed_cluster(client, tmp_path, data):  # noqa: F811
    paths = _write_all(tmp_path, data)
    expected_distances, expected_indices = knn_oracle(data, None, 4)
    with dask.config.set(SMALL_BLOCKS):
        for label in ("parquet list column", "hdf5 ann-benchmarks train", "npy shard glob", "h5ad obsm"):
            distances, indices = bd.knn(paths[label], None, k=4).compute()
            np.testing.assert_array_equal(indices, expected_indices, err_msg=label)
            np.testing.assert_allclose(distances, expected_distances, rtol=1e-6, err_msg=label)


@pytest.mark.usefixtures("synchronous")
def test_blocks_follow_row_groups_and_shards(tmp_path, data, caplog):
    pq.write_table(pa.table({f"f{j}": data[:, j] for j in range(D)}), tmp_path / "x.parquet", row_group_size=15)
    with dask.config.set(SMALL_BLOCKS):
        # Row groups of 15 joined while they fit in 40 rows; a 100-row group split evenly.
        assert bd.open_array(tmp_path / "x.parquet").chunks[0] == (30,) * 20
        np.save(tmp_path / "a.npy", data[:100])
        np.save(tmp_path / "b.npy", data[100:110])
        array = bd.open_array(str(tmp_path / "*.npy"))
        assert array.chunks[0] == (34, 33, 33, 10)
        np.testing.assert_array_equal(array.compute(), data[:110])
        assert "read once per block" not in caplog.text  # a memory map reads only the rows asked for
        # A row group larger than a block is read once per block of it: said, and still right.
        pq.write_table(pa.table({f"f{j}": data[:100, j] for j in range(D)}), tmp_path / "big.parquet")
        big = bd.open_array(tmp_path / "big.parquet")
        assert "units of up to 100 rows" in caplog.text and "read once per block" in caplog.text
        assert big.chunks[0] == (34, 33, 33)
        np.testing.assert_array_equal(big.compute(), data[:100])


def test_natural_order_of_names():
    names = ["img_emb_10.npy", "img_emb_2.npy", "img_emb_1.npy", "img_emb_11.npy"]
    assert sorted(names, key=natural_key) == ["img_emb_1.npy", "img_emb_2.npy", "img_emb_10.npy", "img_emb_11.npy"]


def test_graphs_pickle_and_tokens_follow_the_files(tmp_path, data):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"emb": pa.array(list(data), type=pa.list_(pa.float32()))}), path)
    array = bd.open_array(path)
    graph = dict(array.__dask_graph__())
    # The graph carries the path, not the rows (a live handle or a memory map would not pickle small).
    assert len(pickle.dumps(graph)) < data.nbytes / 4
    assert tokenize(bd.open_array(path)) == tokenize(array)
    pq.write_table(pa.table({"emb": pa.array(list(data + 1), type=pa.list_(pa.float32()))}), path)
    assert tokenize(bd.open_array(path)) != tokenize(array)


@pytest.mark.usefixtures("synchronous")
def test_fsspec_urls(data):
    root = f"memory://{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    with fs.open(f"{root}/emb/part_1.npy", "wb") as f:
        np.save(f, data[:200])
    with fs.open(f"{root}/emb/part_2.npy", "wb") as f:
        np.save(f, data[200:])
    with fs.open(f"{root}/t.parquet", "wb") as f:
        pq.write_table(pa.table({"emb": pa.array(list(data), type=pa.list_(pa.float32()))}), f, row_group_size=50)
    with dask.config.set(SMALL_BLOCKS):
        np.testing.assert_array_equal(bd.open_array(f"{root}/emb").compute(), data)
        np.testing.assert_array_equal(bd.open_array(f"{root}/emb/*.npy").compute(), data)
        np.testing.assert_array_equal(bd.open_array(f"{root}/t.parquet#emb").compute(), data)
        np.testing.assert_array_equal(bd.open_array(f"{root}/emb/part_2.npy").compute(), data[200:])


@pytest.mark.usefixtures("synchronous")
def test_half_precision_is_computed_in_float32_exactly(tmp_path):
    rng = np.random.default_rng(5)
    half = (rng.standard_normal((300, 4)) * 3 + 50).astype(np.float16)
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f["x"] = half
    pq.write_table(pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(half.ravel()), 4)}), tmp_path / "h.pq")
    expected_distances, expected_indices = knn_oracle(half.astype(np.float64), None, 3)
    for path in (str(tmp_path / "h.h5"), str(tmp_path / "h.pq")):
        array = bd.open_array(path)
        assert array.dtype == np.float32
        distances, indices = bd.knn(array, None, k=3).compute()
        np.testing.assert_array_equal(indices, expected_indices)
        np.testing.assert_allclose(distances, expected_distances, rtol=1e-6)


def test_bfloat16_is_computed_in_float32():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(6)
    values = rng.standard_normal((200, 5)).astype(ml_dtypes.bfloat16)
    array = bd.open_array(values)
    assert array.dtype == np.float32
    exact = values.astype(np.float64)
    distances, indices = bd.knn(values, None, k=3).compute(scheduler="synchronous")
    expected_distances, expected_indices = knn_oracle(exact, None, 3)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-6)


def test_refusals_name_the_input_and_the_fix(tmp_path, data):
    paths = _write_all(tmp_path, data)
    with pytest.raises(InputShapeError, match=r"3 2-D numeric datasets.*train \(600, 6\).*ann.hdf5#train"):
        bd.open_array(tmp_path / "ann.hdf5")
    with pytest.raises(StoreNotFoundError, match=r"give '.*ann.hdf5#train'"):
        bd.open_array(str(tmp_path / "ann.hdf5" / "train"))
    with pytest.raises(StoreNotFoundError, match=r"no dataset 'nope'.*train \(600, 6\) float32"):
        bd.open_array(str(tmp_path / "ann.hdf5") + "#nope")
    with pytest.raises(InputShapeError, match=r"no column 'vec'.*emb \(list<"):
        bd.open_array(paths["parquet list column"] + "#vec")
    pq.write_table(pa.table({"a": [1.0, 2.0], "label": ["x", "y"]}), tmp_path / "strings.parquet")
    with pytest.raises(InputDtypeError, match=r"not numbers \(label\).*strings.parquet#a'"):
        bd.open_array(tmp_path / "strings.parquet")
    with pytest.raises(StoreNotFoundError, match=r"has no 'obsm/X_umap'; dense matrices inside: X, obsm/X_pca"):
        bd.open_array(str(tmp_path / "cells.h5ad") + "#obsm/X_umap")
    with pytest.raises(InputShapeError, match=r"names its arrays by path.*x.zarr/points"):
        bd.open_array(paths["zarr"] + "#points")
    with pytest.raises(InputShapeError, match=r"no parts to name after '#'"):
        bd.open_array(paths["npy shard folder"] + "#x")
    with pytest.raises(StoreNotFoundError, match=r"no file matches"):
        bd.open_array(str(tmp_path / "nothing_*.npy"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StoreNotFoundError, match=r"cannot read; give a Zarr array.*data.h5#dataset.*h5ad#obsm"):
        bd.open_array(tmp_path / "notes.txt")


def test_bad_rows_are_named(tmp_path):
    ragged = pa.table({"emb": pa.array([[1.0, 2.0], [1.0, 2.0], [3.0]], type=pa.list_(pa.float32()))})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    with pytest.raises(InputShapeError, match=r"row 2 has 1 values where the first row has 2"):
        bd.open_array(tmp_path / "ragged.parquet").compute(scheduler="synchronous")
    nulls = pa.table({"a": pa.array([1.0, None, 2.0]), "b": pa.array([1.0, 2.0, 3.0])})
    pq.write_table(nulls, tmp_path / "nulls.parquet")
    with pytest.raises(InputValueError, match=r"column 'a' .* null at row 1"):
        bd.open_array(tmp_path / "nulls.parquet").compute(scheduler="synchronous")
    (tmp_path / "mixed").mkdir()
    np.save(tmp_path / "mixed" / "a.npy", np.zeros((3, 4), dtype=np.float32))
    np.save(tmp_path / "mixed" / "b.npy", np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(InputShapeError, match=r"b.npy.* has 5 columns of float32, but .*a.npy' has 4"):
        bd.open_array(tmp_path / "mixed")
    np.save(tmp_path / "mixed" / "b.npy", np.zeros((3, 4), dtype=np.float32))
    pq.write_table(pa.table({"a": [1.0]}), tmp_path / "mixed" / "c.parquet")
    with pytest.raises(InputShapeError, match=r"both .npy shards and Parquet files; .*mixed/\*.npy'"):
        bd.open_array(tmp_path / "mixed")
    sparse = anndata.AnnData(X=scipy.sparse.random(10, 4, density=0.5, format="csr", dtype=np.float32))
    sparse.obsm["X_pca"] = np.zeros((10, 2))
    sparse.write_h5ad(tmp_path / "sparse.h5ad")
    with pytest.raises(InputDtypeError, match=r"'X' .* sparse matrix \(csr_matrix\).*sparse.h5ad#obsm/X_pca"):
        bd.open_array(tmp_path / "sparse.h5ad")


def test_dataframe_embedding_column_gets_the_right_advice(data):
    frame = pd.DataFrame({"emb": list(data[:10])})
    with pytest.raises(InputDtypeError, match=r"sequence of 6 values in each cell.*np.stack.*parquet#column"):
        bd.open_array(frame)
    with pytest.raises(InputDtypeError, match=r"sequence of 6 values"):
        bd.open_array(frame["emb"])


@pytest.mark.parametrize(
    ("module", "suffix", "extra"),
    [("pyarrow", "x.parquet", "parquet"), ("h5py", "x.h5", "hdf5"), ("h5py", "x.h5ad", "hdf5")],
)
def test_missing_reader_names_the_extra(tmp_path, monkeypatch, module, suffix, extra):
    (tmp_path / suffix).write_bytes(b"\0" * 16)
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    for name in [name for name in sys.modules if name.split(".")[0] == module] + [module]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ReaderNotInstalledError, match=rf"needs {module}.*pip install 'bigdist\[{extra}\]'"):
        bd.open_array(tmp_path / suffix)


@pytest.mark.usefixtures("synchronous")
def test_s3_with_storage_options(data):
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("bucket")
        with fs.open("bucket/emb/img_emb_1.npy", "wb") as f:
            np.save(f, data[:250])
        with fs.open("bucket/emb/img_emb_0.npy", "wb") as f:
            np.save(f, data[250:])
        with fs.open("bucket/t.parquet", "wb") as f:
            pq.write_table(pa.table({"emb": pa.array(list(data), type=pa.list_(pa.float32()))}), f, row_group_size=99)
        zarr.create_array("s3://bucket/x.zarr", storage_options=options, data=data, chunks=(100, D))
        with dask.config.set(SMALL_BLOCKS):
            shards = bd.open_array("s3://bucket/emb/*.npy", storage_options=options).compute()
            np.testing.assert_array_equal(shards, np.concatenate([data[250:], data[:250]]))
            np.testing.assert_array_equal(bd.open_array("s3://bucket/t.parquet", storage_options=options), data)
            np.testing.assert_array_equal(bd.open_array("s3://bucket/x.zarr", storage_options=options), data)
    finally:
        server.stop()
