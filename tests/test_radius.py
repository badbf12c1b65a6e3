import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import bigdist as bd
import bigdist.execution.radius as execution_radius
from bigdist.errors import OutputExistsError, ParameterError, TooManyNeighborsError
from tests.estimator_checks import estimator_checks
from tests.oracle import knn_keys

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture(scope="module")
def digits():
    return load_digits().data


def _oracle(queries, train, radius, metric):
    """Sets of train rows within the radius, by float64 brute force (inner product: at least the radius)."""
    keys = knn_keys(queries, train, metric)
    if metric == "euclidean":
        inside = cdist(np.asarray(queries, np.float64), np.asarray(train, np.float64)) <= radius
    elif metric == "inner_product":
        inside = -keys >= radius
    else:
        inside = keys <= radius
    return [set(np.flatnonzero(row)) for row in inside]


@pytest.mark.parametrize("sort_results", [False, True])
@pytest.mark.parametrize(("metric", "radius"), [("euclidean", 22.0), ("cosine", 0.08)])
def test_radius_neighbors_match_scikit_learn(digits, metric, radius, sort_results, small_tiles):
    queries, train = digits[:150], digits[150:]
    ours = bd.NearestNeighbors(radius=radius, metric=metric, split_every=2).fit(
        da.from_array(train, chunks=((500, 17, 600, 530), -1))
    )
    theirs = SkNearestNeighbors(radius=radius, metric=metric, algorithm="brute").fit(train)
    distances, indices = ours.radius_neighbors(
        da.from_array(queries, chunks=((100, 50), -1)), sort_results=sort_results
    )
    assert isinstance(indices, da.Array) and indices.dtype == object
    distances, indices = dask.compute(distances, indices)
    expected_distances, expected_indices = theirs.radius_neighbors(queries, sort_results=True)
    assert sum(len(row) for row in indices) > 1000
    for got_d, got_i, want_d, want_i in zip(distances, indices, expected_distances, expected_indices, strict=True):
        assert set(got_i) == set(want_i)
        if sort_results:
            assert (np.diff(got_d) >= 0).all()
        else:
            assert (np.diff(got_i) > 0).all()
        order = np.argsort(got_i)
        np.testing.assert_allclose(got_d[order], want_d[np.argsort(want_i)], rtol=1e-9, atol=1e-6)


def test_boundary_is_decided_as_float64_brute_force(small_tiles):
    # Integer points: many distances are exactly the radius (1, sqrt 2, 2, ...).
    rng = np.random.default_rng(3)
    train = rng.integers(0, 4, size=(300, 3)).astype(np.float64)
    queries = rng.integers(0, 4, size=(60, 3)).astype(np.float64)
    for metric, radius in [("euclidean", 1.0), ("euclidean", np.sqrt(2.0)), ("sqeuclidean", 2.0), ("euclidean", 0)]:
        distances, indices = bd.radius_neighbors(queries, train, radius, metric).compute()
        expected = _oracle(queries, train, radius, metric)
        assert [set(row) for row in indices] == expected
    # float32 far from the origin: the GEMM cancels badly, the float64 re-check does not.
    points = (rng.standard_normal((400, 16)) + 1e4).astype(np.float32)
    distances, indices = bd.radius_neighbors(points[:50], points, 4.0, "euclidean").compute()
    assert [set(row) for row in indices] == _oracle(points[:50], points, 4.0, "euclidean")
    assert distances[0].dtype == np.float32


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_other_gemm_metrics_against_the_oracle(metric, small_tiles):
    rng = np.random.default_rng(4)
    train, queries = rng.standard_normal((250, 8)), rng.standard_normal((40, 8))
    radius = 6.0 if metric == "sqeuclidean" else 2.5
    distances, indices = bd.radius_neighbors(queries, train, radius, metric, sort_results=True).compute()
    assert [set(row) for row in indices] == _oracle(queries, train, radius, metric)
    keys = knn_keys(queries, train, metric)
    for row, (got_d, got_i) in enumerate(zip(distances, indices, strict=True)):
        expected = keys[row, got_i] if metric == "sqeuclidean" else -keys[row, got_i]
        np.testing.assert_allclose(got_d, expected, rtol=1e-12)
        assert (np.diff(keys[row, got_i]) >= 0).all()


def test_self_join_excludes_each_row(digits, small_tiles):
    train = digits[:500]
    ours = bd.NearestNeighbors(radius=20.0).fit(train)
    theirs = SkNearestNeighbors(radius=20.0, algorithm="brute").fit(train)
    _, indices = ours.radius_neighbors()
    _, expected = theirs.radius_neighbors()
    assert [set(row) for row in indices] == [set(row) for row in expected]
    assert all(row not in set(found) for row, found in enumerate(indices))
    graph = ours.radius_neighbors_graph(train[:80], mode="distance")
    expected_graph = theirs.radius_neighbors_graph(train[:80], mode="distance")
    np.testing.assert_array_equal(graph.toarray() > 0, expected_graph.toarray() > 0)
    np.testing.assert_allclose(graph.toarray(), expected_graph.toarray(), atol=1e-6)


def test_cap_names_the_query_and_the_fix(small_tiles):
    rng = np.random.default_rng(5)
    train = np.vstack([rng.random((100, 2)) * 100, rng.random((30, 2)) * 0.01])  # a dense corner
    queries = np.vstack([rng.random((70, 2)) * 100 + 1000, [[0.005, 0.005]]])
    with pytest.raises(TooManyNeighborsError, match=r"query 70 has at least \d+ neighbours.*cap of 10.*max-neighbors"):
        bd.radius_neighbors(queries, train, 0.1, max_neighbors=10).compute()
    with dask.config.set({"bigdist.radius.max-neighbors": 29}), pytest.raises(TooManyNeighborsError, match="query 70"):
        bd.NearestNeighbors(radius=0.1).fit(train).radius_neighbors(queries)
    _, indices = bd.radius_neighbors(queries, train, 0.1, max_neighbors=30).compute()
    assert len(indices[70]) == 30


def test_csr_to_zarr_round_trip(digits, tmp_path):
    with dask.config.set({"bigdist.knn.query-block-rows": 37}):  # 3 query blocks, each its part of indptr
        result = bd.radius_neighbors(digits[:90], digits, 21.0, sort_results=True)
    indptr, indices, distances = result.to_csr()
    path = str(tmp_path / "radius.zarr")
    result.to_zarr(path)
    stored = bd.io.read_group(path)
    np.testing.assert_array_equal(stored["indptr"].compute(), indptr)
    np.testing.assert_array_equal(stored["indices"].compute(), indices)
    np.testing.assert_array_equal(stored["distances"].compute(), distances)
    assert zarr.open_group(path, mode="r").attrs["radius_neighbors"]["radius"] == 21.0
    np.testing.assert_array_equal(np.diff(indptr), result.counts.compute())
    expected = _oracle(digits[:90], digits, 21.0, "euclidean")
    assert [set(indices[indptr[i] : indptr[i + 1]]) for i in range(90)] == expected
    np.testing.assert_array_equal(np.diff(stored["indptr"].compute()), [len(rows) for rows in expected])
    with pytest.raises(OutputExistsError):
        result.to_zarr(path)


def test_interrupted_to_zarr_resumes_on_rerun(digits, tmp_path, monkeypatch, caplog):
    # A rerun of the same radius query must resume the unfinished group, not take it for another run's.
    path = str(tmp_path / "radius.zarr")
    stage_block = execution_radius.stage_block
    stored = []

    def killed_after_two_blocks(*args, **kwargs):
        if len(stored) == 2:
            raise KeyboardInterrupt("killed")
        stored.append(stage_block(*args, **kwargs))
        return stored[-1]

    with dask.config.set({"bigdist.knn.query-block-rows": 30}):
        monkeypatch.setattr(execution_radius, "stage_block", killed_after_two_blocks)
        with pytest.raises(KeyboardInterrupt):
            bd.radius_neighbors(digits[:90], digits, 21.0).to_zarr(path)
        assert zarr.open_group(path, mode="r").attrs["bigdist"]["complete"] is False
        monkeypatch.setattr(execution_radius, "stage_block", stage_block)
        bd.radius_neighbors(digits[:90], digits, 21.0).to_zarr(path)
    assert "resuming the unfinished output" in caplog.text
    stored_group = bd.io.read_group(path)
    indptr, indices = stored_group["indptr"].compute(), stored_group["indices"].compute()
    expected = _oracle(digits[:90], digits, 21.0, "euclidean")
    assert [set(indices[indptr[i] : indptr[i + 1]]) for i in range(90)] == expected


def test_bad_parameters():
    points = np.random.default_rng(6).random((20, 3))
    with pytest.raises(ParameterError, match=r"radius must be >= 0.*radius=-1"):
        bd.radius_neighbors(points, points, -1.0)
    with pytest.raises(ParameterError, match=r"radius must be a finite number, got radius=nan"):
        bd.radius_neighbors(points, points, float("nan"))
    with pytest.raises(ParameterError, match=r"max_neighbors must be an integer >= 1"):
        bd.radius_neighbors(points, points, 1.0, max_neighbors=0)
    with pytest.raises(ParameterError, match=r"return_distance must be True if sort_results is True"):
        bd.NearestNeighbors().fit(points).radius_neighbors(points, return_distance=False, sort_results=True)


@estimator_checks([bd.NearestNeighbors()])
def test_nearest_neighbors_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("sort_results", [False, True])
def test_results_do_not_depend_on_chunks_or_split_every(digits, sort_results):
    expected = bd.radius_neighbors(digits[:200], digits, 20.0, sort_results=sort_results).to_csr()
    with dask.config.set({"bigdist.knn.query-block-rows": 23, "bigdist.knn.tile-train-rows": 40}):
        got = bd.radius_neighbors(
            da.from_array(digits[:200], chunks=((150, 50), -1)),
            da.from_array(digits, chunks=((700, 1, 300, 796), -1)),
            20.0,
            sort_results=sort_results,
            split_every=2,
        ).to_csr()
    for left, right in zip(got, expected, strict=True):
        np.testing.assert_array_equal(left, right)
    assert expected[0][-1] > 1000
