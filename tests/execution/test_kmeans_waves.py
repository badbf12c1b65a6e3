"""k-means and mean shift through the waves: bitwise the single-graph results, bounded, resumable, fault tolerant."""

import importlib
import itertools

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SkKMeans
from sklearn.cluster import MeanShift as SkMeanShift

import bigdist as bd
from bigdist.execution.passes import TreeFold
from bigdist.execution.waves import window_size
from bigdist.io import make_random, read_group
from bigdist.kernels.kmeans import kmeans_chunk, kmeans_combine, labels_chunk, update_centroids
from bigdist.reductions import block_tree_reduce


def _nested(parts):
    return tuple(parts)


@pytest.mark.parametrize(("n_leaves", "split_every"), [(1, 2), (2, 2), (5, 2), (9, 3), (17, 4), (8, 8), (30, 2)])
def test_tree_fold_groups_as_the_single_graph_tree_in_any_arrival_order(n_leaves, split_every):
    # The oracle: the merge tree dask builds for the single-graph reduction, with a combine that keeps the grouping.
    leaves = da.arange(n_leaves, chunks=1)
    expected = block_tree_reduce(
        leaves, lambda block, first_row: int(block[0]), _nested, split_every=split_every, name="t"
    ).compute(scheduler="sync")
    rng = np.random.default_rng(n_leaves)
    for _ in range(5):
        fold = TreeFold(n_leaves, _nested, split_every)
        for i in rng.permutation(n_leaves):
            fold.add(int(i), int(i))
        assert fold.result() == expected


def _lloyd_oracle(X, chunks, init, max_iter, tol, split_every):
    """Lloyd's loop on the kernels, reduced by the single-graph tree: the results the waves must equal bitwise."""
    A = da.from_array(X, chunks=(chunks, X.shape[1]))
    n, k = len(X), len(init)
    centroids, tol_abs, n_iter = init.astype(np.float64), None, 0
    for _ in range(max_iter):
        chunk = lambda block, first, c=centroids, m=tol_abs is None: kmeans_chunk(block, first, c, k, m)  # noqa: E731
        state = block_tree_reduce(
            A, chunk, lambda p: kmeans_combine(p, k), split_every=split_every, name="oracle"
        ).compute(scheduler="sync")
        if tol_abs is None:
            mean, mean_sq = state["moments"] / n
            tol_abs = float(np.mean(mean_sq - mean**2) * tol)
        new = update_centroids(state, centroids)[0]
        shift = float(((new - centroids) ** 2).sum())
        centroids, n_iter = new, n_iter + 1
        if shift <= tol_abs:
            break
    chunk = lambda block, first: kmeans_chunk(block, first, centroids, 0)  # noqa: E731
    final = block_tree_reduce(A, chunk, lambda p: kmeans_combine(p, 0), split_every=split_every, name="o").compute(
        scheduler="sync"
    )
    starts = np.concatenate([[0], np.cumsum(A.chunks[0])])
    labels = np.concatenate([labels_chunk(X[a:b], a, centroids) for a, b in itertools.pairwise(starts)])
    return centroids, labels, float(final["inertia"]), n_iter


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(3)
    centres = rng.uniform(-10, 10, size=(6, 5))
    return (centres[rng.integers(6, size=1100)] + rng.normal(size=(1100, 5))).astype(np.float32)


@pytest.mark.parametrize("bounds", ["always", "never"])
@pytest.mark.parametrize(("chunks", "split_every"), [(100, 2), ((37, 200, 13, 250, 400, 200), 2), (1100, 4)])
def test_kmeans_is_bitwise_the_single_graph_lloyd(blobs, bounds, chunks, split_every):
    init = blobs[[0, 100, 200, 300, 400, 500, 600]]
    expected = _lloyd_oracle(blobs, chunks, init, 30, 1e-6, split_every)
    with dask.config.set({"bigdist.kmeans.bounds": bounds, "scheduler": "threads", "num_workers": 2}):
        got = bd.kmeans(da.from_array(blobs, chunks=(chunks, 5)), 7, init=init, max_iter=30, tol=1e-6,
                        split_every=split_every)  # fmt: skip
    np.testing.assert_array_equal(got.centroids, expected[0])
    np.testing.assert_array_equal(got.labels.compute(), expected[1])
    assert got.inertia == expected[2] and got.n_iter == expected[3]
    # And scikit-learn, from the same init, finds the same clustering.
    reference = SkKMeans(7, init=init.astype(np.float64), n_init=1, max_iter=30, tol=1e-6).fit(blobs.astype(np.float64))
    np.testing.assert_allclose(got.centroids, reference.cluster_centers_, rtol=1e-4, atol=1e-4)


def test_kmeans_to_zarr_resumes_a_killed_write_without_relabelling(tmp_path, blobs, synchronous):
    result = bd.kmeans(da.from_array(blobs, chunks=100), 6, random_state=0)
    out = str(tmp_path / "km.zarr")
    window = window_size()

    def interrupt(done, total, elapsed):
        if done == window:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        result.to_zarr(out, progress=interrupt)
    seen = []
    result.to_zarr(out, progress=lambda done, total, elapsed: seen.append((done, total)))
    assert seen[0] == (window + 1, 11) and seen[-1] == (11, 11)
    written = read_group(out)
    np.testing.assert_array_equal(written["labels"].compute(), result.labels.compute())
    np.testing.assert_array_equal(written["centroids"].compute(), result.centroids)
    assert zarr.open_group(out, mode="r").attrs["kmeans"]["n_iter"] == result.n_iter


def test_meanshift_through_waves_equals_scikit_learn(tmp_path, synchronous):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(c, 0.4, size=(80, 2)) for c in ((0, 0), (3, 3), (0, 4))])
    # Several blocks of seeds per pass (one task per row block and seed block), irregular chunks, split_every=2.
    with dask.config.set({"bigdist.meanshift.seed-block-rows": 50}):
        got = bd.meanshift(da.from_array(X, chunks=((37, 100, 13, 90), 2)), 1.0, kernel="flat", split_every=2)
    reference = SkMeanShift(bandwidth=1.0).fit(X)
    order = np.lexsort(got.cluster_centers.T)
    np.testing.assert_allclose(got.cluster_centers[order], reference.cluster_centers_[np.lexsort(
        reference.cluster_centers_.T)], rtol=1e-10)  # fmt: skip
    out = got.to_zarr(str(tmp_path / "ms.zarr"))
    labels = read_group(out)["labels"].compute()
    # The same partition as scikit-learn's labels.
    pairs = set(zip(labels, reference.labels_, strict=True))
    assert len(pairs) == len(set(labels)) == len(set(reference.labels_))


class _MostTasks(SchedulerPlugin):
    """The most tasks the scheduler held at once (not counting released ones)."""

    name = "bigdist-test-most-tasks"

    async def start(self, scheduler):
        self.scheduler, self.most = scheduler, 0

    def transition(self, key, start, finish, *args, **kwargs):
        live = sum(task.state not in ("released", "forgotten") for task in self.scheduler.tasks.values())
        self.most = max(self.most, live)


@pytest.mark.parametrize("bounds", ["never", "always"])
def test_kmeans_on_a_cluster_holds_a_bounded_graph_and_equals_synchronous(tmp_path, bounds):
    path = str(tmp_path / "data.zarr")
    make_random(path, 6000, 4, chunk_rows=100, random_state=2)
    init = np.asarray(bd.open_array(path)[:5])
    settings = {"bigdist.kmeans.bounds": bounds, "bigdist.chunk-bytes": 100 * 4 * 4}
    with dask.config.set({**settings, "scheduler": "synchronous"}):
        clean = bd.kmeans(path, 5, init=init, max_iter=4, tol=0)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client, dask.config.set(settings):
            watch = _MostTasks()
            client.register_plugin(watch)
            got = bd.kmeans(path, 5, init=init, max_iter=4, tol=0, persist=False)
            most = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[watch.name].most)
            out = got.to_zarr(str(tmp_path / "km.zarr"))
    # 60 row blocks a pass: the scheduler holds the window's tasks (three each with bounds), the shared
    # centroids and, with bounds, one key per block for the last pass's bounds and one for this pass's.
    window = 2 * 2
    assert most <= (3 * window + 2 * 60 + 2 if bounds == "always" else window + 2), most
    np.testing.assert_array_equal(got.centroids, clean.centroids)
    np.testing.assert_array_equal(read_group(out)["labels"].compute(), clean.labels.compute())
    assert got.inertia == clean.inertia and got.n_iter == clean.n_iter


def test_kmeans_parallel_init_survives_a_lost_worker_bitwise():
    from tests.test_faults import _kill_a_worker_when_busy

    rng = np.random.default_rng(6)
    data = da.from_array(rng.uniform(size=(12000, 8)), chunks=500)
    options = {"init": "k-means||", "max_iter": 6, "tol": 0, "random_state": 2, "split_every": 2}
    with dask.config.set({"scheduler": "synchronous", "bigdist.kmeans.bounds": "always"}):
        clean = bd.kmeans(data, 10, persist=False, **options)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client, dask.config.set({"bigdist.kmeans.bounds": "always"}):
            client.wait_for_workers(2, timeout=60)
            # A worker dies in a k-means|| round: its blocks' nearest candidates are rebuilt, bit for bit.
            watcher = _kill_a_worker_when_busy(client, "bigdist-kmeans||-sample-")
            got = bd.kmeans(data, 10, persist=False, **options)
            watcher.join()
            labels = got.labels.compute()
    assert "killed" in watcher.outcome
    np.testing.assert_array_equal(got.centroids, clean.centroids)
    np.testing.assert_array_equal(labels, clean.labels.compute())
    assert got.inertia == clean.inertia and got.n_iter == clean.n_iter


def test_plan_counts_the_waves_of_every_pass_and_of_the_labels(synchronous):
    X = da.from_array(np.zeros((1000, 3), dtype=np.float32), chunks=100)
    with dask.config.set({"bigdist.execution.tasks-per-thread": 3}):
        plan = bd.plan("kmeans", X, n_clusters=4, max_iter=5, calibrate_kernel=False)
    assert plan.tasks == 5 * 10
    # 10 row blocks in windows of 3 tasks: 4 waves a pass, and 4 more for the labels.
    assert plan.waves == 5 * 4 + 4
    assert any("labels" in note for note in plan.notes)


def test_plan_on_a_client_counts_the_pieces_a_run_labels(two_worker_processes, caplog, monkeypatch):
    monkeypatch.setattr(importlib.import_module("bigdist.kmeans"), "MIN_PIECE_WORK", 0)
    X = da.from_array(np.random.default_rng(2).standard_normal((20000, 5)), chunks=(20000, 5))
    plan = bd.plan("kmeans", X, n_clusters=4, max_iter=5, calibrate_kernel=False)
    with caplog.at_level("INFO", logger="bigdist.kmeans"):
        bd.kmeans(X, 4, init=np.asarray(X[:4]), max_iter=1)
    # The run cut its one block into 3 pieces: a labelling and a summing task each, every pass.
    assert "1 row blocks in 3 pieces" in caplog.text
    assert plan.tasks == 5 * 2 * 3
    assert plan.waves == 5 * 1 + 1
    assert any("3 pieces" in note for note in plan.notes)


def test_meanshift_on_a_cluster_equals_synchronous(tmp_path):
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(c, 0.5, size=(150, 3)) for c in (0, 3, 6)])
    A = da.from_array(X, chunks=((100, 37, 200, 113), 3))
    settings = {"bigdist.meanshift.seed-block-rows": 64}
    with dask.config.set({**settings, "scheduler": "synchronous"}):
        clean = bd.meanshift(A, 1.2, split_every=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster), dask.config.set(settings):
            got = bd.meanshift(A, 1.2, split_every=2)
            out = got.to_zarr(str(tmp_path / "ms.zarr"))
    np.testing.assert_array_equal(got.cluster_centers, clean.cluster_centers)
    np.testing.assert_array_equal(got.intensities, clean.intensities)
    assert got.n_iter == clean.n_iter
    written = read_group(out)
    np.testing.assert_array_equal(written["labels"].compute(), clean.labels.compute())
    np.testing.assert_array_equal(written["cluster_centers"].compute(), clean.cluster_centers)


@pytest.fixture(scope="module")
def two_worker_processes():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            yield client


@pytest.mark.parametrize("bounds", ["always", "never"])
def test_kmeans_of_one_block_labelled_in_pieces_on_two_workers_is_bitwise_the_single_graph_lloyd(
    two_worker_processes, caplog, monkeypatch, bounds
):
    monkeypatch.setattr(
        importlib.import_module("bigdist.kmeans"), "MIN_PIECE_WORK", 0
    )  # small data cut as big data would be
    rng = np.random.default_rng(8)
    centres = rng.uniform(-10, 10, size=(8, 5))
    X = (centres[rng.integers(8, size=20000)] + rng.normal(size=(20000, 5))).astype(np.float32)
    init = X[:8]
    expected = _lloyd_oracle(X, 20000, init, 20, 1e-6, 2)
    with dask.config.set({"bigdist.kmeans.bounds": bounds}), caplog.at_level("INFO", logger="bigdist.kmeans"):
        got = bd.kmeans(da.from_array(X, chunks=(20000, 5)), 8, init=init, max_iter=20, tol=1e-6, split_every=2)
        labels = got.labels.compute()
    # One block of 20,000 rows: pieces of 8,192 rows (16 steps), so that both workers label.
    assert "1 row blocks in 3 pieces, labelled on 2 workers at once" in caplog.text
    np.testing.assert_array_equal(got.centroids, expected[0])
    np.testing.assert_array_equal(labels, expected[1])
    assert got.inertia == expected[2] and got.n_iter == expected[3]
    reference = SkKMeans(8, init=init.astype(np.float64), n_init=1, max_iter=20, tol=1e-6).fit(X.astype(np.float64))
    np.testing.assert_allclose(got.centroids, reference.cluster_centers_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("init", ["k-means||", "random"])
def test_weighted_kmeans_in_pieces_on_two_workers_equals_synchronous(two_worker_processes, monkeypatch, init):
    monkeypatch.setattr(importlib.import_module("bigdist.kmeans"), "MIN_PIECE_WORK", 0)
    rng = np.random.default_rng(9)
    X = rng.standard_normal((30000, 4))
    X[:10000] += 5
    weights = rng.uniform(0, 3, size=len(X))
    options = {"init": init, "max_iter": 200, "tol": 0, "random_state": 3, "sample_weight": weights}
    with dask.config.set(scheduler="synchronous"):
        clean = bd.kmeans(X, 6, **options)
    got = bd.kmeans(da.from_array(X, chunks=(30000, 4)), 6, **options)
    np.testing.assert_array_equal(got.centroids, clean.centroids)
    np.testing.assert_array_equal(got.labels.compute(), clean.labels.compute())
    assert got.inertia == clean.inertia and got.n_iter == clean.n_iter
    assert [s["reassigned_fraction"] for s in got.stats] == [s["reassigned_fraction"] for s in clean.stats]
    # Converged (tol=0: no centroid moved): each row at its nearest centroid, each centroid its rows' weighted mean.
    assert got.n_iter < 200
    labels = got.labels.compute()
    np.testing.assert_array_equal(labels, np.argmin(cdist(X, got.centroids, "sqeuclidean"), axis=1))
    means = [np.average(X[labels == c], axis=0, weights=weights[labels == c]) for c in range(6)]
    np.testing.assert_allclose(got.centroids, means, rtol=1e-10, atol=1e-12)
