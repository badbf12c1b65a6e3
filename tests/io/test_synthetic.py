import dask
import numpy as np
import pytest
import zarr

from bigdist.errors import OutputExistsError, ParameterError
from bigdist.io import blob_centers, describe, make_blobs, make_random, open_array

pytestmark = pytest.mark.usefixtures("synchronous")

BLOBS = {"centers": 3, "cluster_std": 0.5, "random_state": 7, "chunk_rows": 700}


def _read(path):
    return zarr.open_array(str(path), mode="r")[...]


def test_blobs_are_deterministic_and_a_new_sample_seed_keeps_the_centres(tmp_path):
    a = make_blobs(tmp_path / "a.zarr", 3000, 4, labels_path=tmp_path / "a-labels.zarr", **BLOBS)
    b = make_blobs(tmp_path / "b.zarr", 3000, 4, **BLOBS)
    c = make_blobs(tmp_path / "c.zarr", 3000, 4, sample_seed=8, labels_path=tmp_path / "c-labels.zarr", **BLOBS)
    x, y, z = (_read(path) for path in (a, b, c))
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z)
    # Independent check: each set's per-label means are the same centres.
    centres = blob_centers(7, 3, 4)
    for points, labels in ((x, _read(tmp_path / "a-labels.zarr")), (z, _read(tmp_path / "c-labels.zarr"))):
        assert labels.dtype == np.int64 and set(np.unique(labels)) == {0, 1, 2}
        for label in range(3):
            members = points[labels == label]
            # The mean of ~1000 points with std 0.5 is within 0.1 of the centre (6 standard errors).
            np.testing.assert_allclose(members.mean(axis=0), centres[label], atol=0.1)
            np.testing.assert_allclose(members.std(axis=0), 0.5, rtol=0.1)
    assert zarr.open_array(str(a), mode="r").chunks == (700, 4)


def test_another_random_state_moves_the_centres(tmp_path):
    first = _read(make_blobs(tmp_path / "a.zarr", 100, 2, random_state=1))
    second = _read(make_blobs(tmp_path / "b.zarr", 100, 2, random_state=2))
    assert not np.array_equal(first, second)
    assert not np.array_equal(blob_centers(1, 8, 2), blob_centers(2, 8, 2))
    box = blob_centers(1, 50, 3, center_box=(-50, 50))
    assert box.shape == (50, 3) and -50 <= box.min() and box.max() <= 50


def test_blobs_cluster_around_their_centres(tmp_path):
    from scipy.spatial.distance import cdist

    path = make_blobs(
        tmp_path / "a.zarr", 2000, 2, centers=4, cluster_std=0.1, center_box=(-50, 50), random_state=1,
        labels_path=tmp_path / "labels.zarr",
    )  # fmt: skip
    points, labels = open_array(path).compute(), _read(tmp_path / "labels.zarr")
    distances = cdist(points, blob_centers(1, 4, 2, center_box=(-50, 50)))
    # Every point is nearest its own centre and within 6 std of it.
    np.testing.assert_array_equal(distances.argmin(axis=1), labels)
    assert distances.min(axis=1).max() < 0.6


def test_blocks_follow_the_spawned_seed_sequence(tmp_path):
    path = make_random(tmp_path / "r.zarr", 250, 3, random_state=5, chunk_rows=100, dtype="float64")
    values = _read(path)
    for block in range(3):
        seed = np.random.SeedSequence(5).spawn(2)[1].spawn(block + 1)[block]
        expected = np.random.default_rng(seed).standard_normal((min(100, 250 - 100 * block), 3))
        np.testing.assert_array_equal(values[100 * block : 100 * (block + 1)], expected)
    # The first blocks do not depend on how many rows follow.
    np.testing.assert_array_equal(_read(make_random(tmp_path / "s.zarr", 200, 3, random_state=5, chunk_rows=100,
                                                    dtype="float64")), values[:200])  # fmt: skip


def test_one_task_per_block_and_no_task_needs_the_whole_array(tmp_path):
    pending = make_blobs(tmp_path / "a.zarr", 10_000, 4, chunk_rows=1000, compute=False)
    graph = dict(pending.__dask_graph__())
    # Dask fuses index -> generate -> store into one task per block.
    stores = [key for key in graph if isinstance(key, tuple) and dask.utils.key_split(key) == "store-map"]
    assert stores and all(sorted(key[1] for key in stores if key[0] == name) == list(range(10))
                          for name in {key[0] for key in stores})  # fmt: skip
    for key in stores:
        # Each block's task depends on that block only, never on the whole array.
        assert {dependency[1] for dependency in dask.core.get_dependencies(graph, key)} <= {key[1]}
    assert describe(tmp_path / "a.zarr")["complete"] is False
    pending.compute()
    info = describe(tmp_path / "a.zarr")
    assert info["complete"] is True and info["kind"] == "array"
    assert info["attrs"]["bigdist"]["generator"]["chunk_rows"] == 1000
    assert info["attrs"]["bigdist"]["generator"]["sample_seed"] == 0
    assert set(info["attrs"]["bigdist"]["versions"]) >= {"bigdist", "dask", "zarr", "numpy"}


def test_random_lazy_until_computed(tmp_path):
    pending = make_random(tmp_path / "r.zarr", 1000, 3, distribution="uniform", chunk_rows=100, compute=False)
    assert zarr.open_array(str(tmp_path / "r.zarr"), mode="r").attrs["bigdist"]["complete"] is False
    pending.compute()
    values = open_array(tmp_path / "r.zarr").compute()
    assert values.shape == (1000, 3) and values.dtype == np.float32 and 0 <= values.min() and values.max() < 1


def test_default_chunk_rows_follow_chunk_bytes(tmp_path):
    with dask.config.set({"bigdist.chunk-bytes": 4 * 10 * 64}):
        make_random(tmp_path / "r.zarr", 1000, 10)
    assert zarr.open_array(str(tmp_path / "r.zarr"), mode="r").chunks == (64, 10)


def test_refuses_to_overwrite(tmp_path, caplog):
    make_random(tmp_path / "r.zarr", 10, 3)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        make_random(tmp_path / "r.zarr", 10, 3)
    make_random(tmp_path / "r.zarr", 10, 3, random_state=1, overwrite=True)
    # Unfinished generated data is replaced without being asked.
    make_random(tmp_path / "p.zarr", 10, 3, compute=False)
    make_random(tmp_path / "p.zarr", 10, 3)
    assert "replacing the unfinished output" in caplog.text
    make_blobs(tmp_path / "a.zarr", 10, 3, labels_path=tmp_path / "l.zarr")
    with pytest.raises(OutputExistsError, match="l.zarr"):
        make_blobs(tmp_path / "b.zarr", 10, 3, labels_path=tmp_path / "l.zarr")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples=0"),
        ({"n_features": -1}, "n_features=-1"),
        ({"n_samples": 2.5}, "n_samples=2.5"),
        ({"centers": 0}, "centers=0"),
        ({"cluster_std": -1.0}, "cluster_std=-1.0"),
        ({"cluster_std": float("nan")}, "cluster_std=nan"),
        ({"center_box": (5, 1)}, r"center_box=\(5, 1\)"),
        ({"center_box": 3}, "two numbers"),
        ({"random_state": -1}, "random_state=-1"),
        ({"sample_seed": "x"}, "sample_seed='x'"),
        ({"chunk_rows": 0}, "chunk_rows=0"),
        ({"dtype": "int32"}, "dtype='int32'"),
    ],
)
def test_bad_blob_parameters(tmp_path, kwargs, match):
    arguments = {"n_samples": 10, "n_features": 2, **kwargs}
    with pytest.raises(ParameterError, match=match):
        make_blobs(tmp_path / "a.zarr", **arguments)
    assert not (tmp_path / "a.zarr").exists()


def test_bad_random_parameters(tmp_path):
    with pytest.raises(ParameterError, match="distribution"):
        make_random(tmp_path / "s.zarr", 5, 3, distribution="cauchy")
    with pytest.raises(ParameterError, match="dtype"):
        make_random(tmp_path / "s.zarr", 5, 3, dtype="float16")
