import importlib
import subprocess
import sys
import tracemalloc

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_digits, make_blobs
from sklearn.exceptions import ConvergenceWarning

import bigdist as bd
from bigdist.errors import InputShapeError, ParameterError
from tests.estimator_checks import estimator_checks

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(3000, 5, centers=7, cluster_std=2.0, random_state=0)
    return X


def _sklearn(X, init, **kwargs):
    return SkKMeans(len(init), init=init, n_init=1, algorithm="lloyd", **kwargs).fit(X)


def test_same_init_gives_scikit_learns_result(blobs):
    init = blobs[np.random.default_rng(0).choice(len(blobs), 7, replace=False)]
    ours = bd.kmeans(blobs, 7, init=init)
    theirs = _sklearn(blobs, init)
    assert ours.n_iter == theirs.n_iter_
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, atol=1e-6)
    np.testing.assert_array_equal(ours.labels.compute(), theirs.labels_)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-9)
    assert [s["iteration"] for s in ours.stats] == list(range(1, ours.n_iter + 1))


@pytest.mark.parametrize("bounds", ["always", "never"])
def test_hamerly_bounds_skip_rows_without_changing_the_result(blobs, bounds):
    init = blobs[np.random.default_rng(4).choice(len(blobs), 7, replace=False)] + 1e4
    X = blobs + 1e4  # far from the origin: the bounds must hold under cancellation too
    with dask.config.set({"bigdist.kmeans.bounds": bounds}):
        ours = bd.kmeans(da.from_array(X, chunks=700), 7, init=init, tol=0, max_iter=20)
    theirs = _sklearn(X, init, tol=0, max_iter=20)
    np.testing.assert_array_equal(ours.labels.compute(), theirs.labels_)
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, rtol=1e-12)
    fractions = [s["reassigned_fraction"] for s in ours.stats]
    assert fractions[0] == 1
    if bounds == "always":
        assert fractions[-1] < 0.2, fractions
    else:
        assert fractions == [1] * len(fractions)


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_unclustered_float32_data_gives_scikit_learns_result(scheduler, monkeypatch):
    # Rows keep changing cluster on random data (the bounds prune little): every path of a bounded pass
    # runs, on one thread and with blocks shared among threads (pieces of 1,024 rows).
    from bigdist.kernels import kmeans as kernels_kmeans

    monkeypatch.setattr(kernels_kmeans, "PIECE_BYTES", 1024 * 16 * 4)
    X = np.random.default_rng(6).standard_normal((5000, 16)).astype(np.float32)
    init = X[np.random.default_rng(7).choice(len(X), 40, replace=False)].astype(np.float64)
    with dask.config.set(scheduler=scheduler, num_workers=2, **{"bigdist.kmeans.bounds": "always"}):
        ours = bd.kmeans(da.from_array(X, chunks=1700), 40, init=init, tol=0, max_iter=25)
        labels = ours.labels.compute()
    theirs = _sklearn(X.astype(np.float64), init, tol=0, max_iter=25)
    assert ours.n_iter == theirs.n_iter_
    np.testing.assert_array_equal(labels, theirs.labels_)
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, rtol=1e-10, atol=1e-12)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-10)
    fractions = [s["reassigned_fraction"] for s in ours.stats]
    assert any(0 < fraction < 1 for fraction in fractions[1:]), fractions


@pytest.mark.parametrize("chunks", [3000, 700])
def test_threads_sharing_blocks_give_the_synchronous_result(blobs, chunks, monkeypatch):
    # Pieces of 1,024 rows on a pool of 3 threads (one block, or four and a remainder): sklearn's
    # labels, and bitwise the result of one thread.
    from bigdist.kernels import kmeans as kernels_kmeans

    monkeypatch.setattr(kernels_kmeans, "PIECE_BYTES", 1024 * 5 * 8)
    init = blobs[np.random.default_rng(5).choice(len(blobs), 7, replace=False)] + 1e3
    X = da.from_array(blobs + 1e3, chunks=chunks)
    alone = bd.kmeans(X, 7, init=init, tol=0, max_iter=15)
    with dask.config.set(scheduler="threads", num_workers=3):
        shared = bd.kmeans(X, 7, init=init, tol=0, max_iter=15)
        labels = shared.labels.compute()
    theirs = _sklearn(blobs + 1e3, init, tol=0, max_iter=15)
    np.testing.assert_array_equal(labels, theirs.labels_)
    np.testing.assert_array_equal(shared.centroids, alone.centroids)
    np.testing.assert_array_equal(labels, alone.labels.compute())
    assert shared.inertia == alone.inertia
    assert [s["reassigned_fraction"] for s in shared.stats] == [s["reassigned_fraction"] for s in alone.stats]


def test_seed_001_example():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    ours = bd.kmeans(x, 2, init=y)
    theirs = _sklearn(x, y)
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_)
    np.testing.assert_array_equal(ours.labels.compute(), theirs.labels_)


def test_init_leaving_a_cluster_empty_is_relocated_like_scikit_learn(blobs):
    init = blobs[:7].copy()
    init[3] = 1e3  # attracts nothing
    ours = bd.kmeans(blobs, 7, init=init, max_iter=1)
    theirs = _sklearn(blobs, init, max_iter=1)
    assert ours.stats[0]["relocated"] == 1
    assert np.isfinite(ours.centroids).all()
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, atol=1e-6)


def test_chunking_and_split_every_do_not_matter(blobs):
    init = blobs[10:17]
    reference = bd.kmeans(blobs, 7, init=init)
    chunked = da.from_array(blobs, chunks=((1000, 1, 999, 600, 400), 5))
    other = bd.kmeans(chunked, 7, init=init, split_every=2)
    np.testing.assert_array_equal(other.labels.compute(), reference.labels.compute())
    np.testing.assert_allclose(other.centroids, reference.centroids, rtol=1e-12)
    for init_name in ("k-means||", "k-means++", "random"):
        a = bd.kmeans(blobs, 7, init=init_name, random_state=3)
        b = bd.kmeans(chunked, 7, init=init_name, random_state=3, split_every=2)
        np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-9)


def test_kmeans_parallel_carrying_nearest_candidates_matches_recomputing_them(blobs):
    # Carried: each round folds in its new candidates only; never: every candidate is measured each round.
    chunked = da.from_array(blobs, chunks=((1000, 1, 999, 600, 400), 5))
    runs = {}
    for carry in ("always", "never"):
        with dask.config.set({"bigdist.kmeans.bounds": carry}):
            runs[carry] = bd.kmeans(chunked, 7, init="k-means||", random_state=5, max_iter=1, split_every=2)
    np.testing.assert_array_equal(runs["always"].centroids, runs["never"].centroids)


def test_bounds_fit_in_what_the_persisted_data_leaves_of_the_budget(blobs, monkeypatch):
    kmeans_module = importlib.import_module("bigdist.kmeans")
    X = np.hstack([blobs] * 4)  # 20 features: the bounds are a tenth of the data
    init = X[10:17]
    fractions = {}
    for name, budget in (("roomy", 100 * X.nbytes), ("full", 1.01 * X.nbytes)):
        monkeypatch.setattr(kmeans_module, "memory_budget", lambda budget=budget: budget)
        result = bd.kmeans(X, 7, init=init, persist=True, tol=0, max_iter=4)
        fractions[name] = [stats["reassigned_fraction"] for stats in result.stats]
    assert min(fractions["roomy"]) < 1.0, "with room to spare, the bounds skip rows"
    assert fractions["full"] == [1.0] * 4, "the persisted data leaves no room for the bounds"


def test_centroids_as_keys_of_their_own_give_the_same_result(blobs, monkeypatch):
    # Centroids too large to copy into every task go in the graph once, as keys.
    from bigdist import reductions

    init = blobs[10:17]
    chunked = da.from_array(blobs, chunks=((1000, 1, 999, 600, 400), 5))
    inline = bd.kmeans(chunked, 7, init=init, split_every=2)
    monkeypatch.setattr(reductions, "INLINE_EXTRA_BYTES", 0)
    as_keys = bd.kmeans(chunked, 7, init=init, split_every=2)
    np.testing.assert_array_equal(as_keys.centroids, inline.centroids)
    assert as_keys.n_iter == inline.n_iter


@pytest.mark.parametrize("init", ["k-means||", "k-means++"])
def test_quality_on_digits(init):
    X = load_digits().data
    best = SkKMeans(10, n_init=10, random_state=0).fit(X).inertia_
    ours = min(bd.kmeans(X, 10, init=init, random_state=seed).inertia for seed in range(3))
    assert ours <= 1.03 * best


def test_n_init_keeps_the_best(blobs):
    single = [bd.kmeans(blobs, 7, init="random", random_state=s).inertia for s in range(3)]
    best = bd.kmeans(blobs, 7, init="random", n_init=4, random_state=11)
    assert best.inertia <= max(single)


def test_checkpoint_resume_equals_uninterrupted(tmp_path, blobs):
    init = blobs[20:27]
    full = bd.kmeans(blobs, 7, init=init, tol=0)
    path = str(tmp_path / "ck.zarr")
    first = bd.kmeans(blobs, 7, init=init, tol=0, max_iter=2, checkpoint=path)
    assert first.n_iter == 2
    resumed = bd.kmeans(blobs, 7, init=init, tol=0, checkpoint=path)
    assert resumed.n_iter == full.n_iter
    np.testing.assert_array_equal(resumed.centroids, full.centroids)
    np.testing.assert_array_equal(resumed.labels.compute(), full.labels.compute())


def test_estimator_matches_scikit_learn(blobs):
    init = blobs[:7]
    ours = bd.KMeans(7, init=init).fit(blobs)
    theirs = _sklearn(blobs, init)
    assert isinstance(ours.labels_, np.ndarray)
    np.testing.assert_array_equal(ours.predict(blobs[:100]), theirs.predict(blobs[:100]))
    np.testing.assert_allclose(ours.transform(blobs[:50]), theirs.transform(blobs[:50]), rtol=1e-9)
    assert ours.score(blobs) == pytest.approx(theirs.score(blobs), rel=1e-9)


def test_transform_holds_a_block_of_distances_not_of_differences():
    # 20,000 x 64 rows against 50 centroids: an (n, k, d) array of differences would take 512 MB.
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20_000, 64)) + 1e3
    centroids = X[:50]
    model = bd.KMeans(50, init=centroids, max_iter=1).fit(X[:1000])
    tracemalloc.start()
    distances = model.transform(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(distances, cdist(X, model.cluster_centers_), rtol=1e-12)
    assert peak < 64 * 2**20, f"transform peaked at {peak / 2**20:.0f} MiB"


def test_predict_graph_carries_the_centroids_not_the_estimator():
    # A fitted estimator holds its labels (1.6 MB here); no task may capture it.
    model = bd.KMeans(3, init="random", random_state=0, max_iter=1).fit(
        np.random.default_rng(7).normal(size=(200_000, 2))
    )
    X = da.ones((200_000, 2), chunks=(10_000, 2))
    labels = model.predict(X)
    size = len(cloudpickle.dumps(dict(labels.__dask_graph__())))
    assert size < 200_000, f"predict's graph takes {size} bytes"
    np.testing.assert_array_equal(labels.compute(), model.predict(np.ones((200_000, 2))))


def test_dataframe_input_is_handled_as_scikit_learn_does(blobs):
    frame = pd.DataFrame(blobs, columns=[f"f{i}" for i in range(blobs.shape[1])])
    init = blobs[:7]
    ours = bd.KMeans(7, init=init).fit(frame)
    theirs = SkKMeans(7, init=init, n_init=1, algorithm="lloyd").fit(frame)
    assert isinstance(ours.labels_, np.ndarray)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_array_equal(ours.feature_names_in_, theirs.feature_names_in_)
    np.testing.assert_array_equal(ours.predict(frame[:100]), theirs.predict(frame[:100]))
    np.testing.assert_allclose(ours.transform(frame[:50]), theirs.transform(frame[:50]), rtol=1e-9)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        ours.predict(blobs[:10])
    with pytest.raises(ValueError, match="feature names"):
        ours.predict(frame[:10].rename(columns={"f0": "other"}))


def test_dask_input_gives_lazy_labels(blobs):
    model = bd.KMeans(3, random_state=0).fit(da.from_array(blobs, chunks=700))
    assert isinstance(model.labels_, da.Array)
    assert model.labels_.compute().shape == (3000,)


def test_kmeans_on_a_distributed_cluster_equals_synchronous(blobs):
    from distributed import Client, LocalCluster

    init = blobs[5:12]
    expected = bd.kmeans(blobs, 7, init=init)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster), dask.config.set(scheduler=None):
            got = bd.kmeans(da.from_array(blobs, chunks=500), 7, init=init)
            labels = got.labels.compute()
    np.testing.assert_allclose(got.centroids, expected.centroids, rtol=1e-12)
    np.testing.assert_array_equal(labels, expected.labels.compute())


def test_kmeans_on_a_client_asks_the_scheduler_for_its_threads_once_per_call_not_per_pass(blobs, monkeypatch):
    from distributed import Client, LocalCluster

    asked = []
    nthreads = Client.nthreads
    monkeypatch.setattr(
        Client, "nthreads", lambda self, *args, **kwargs: asked.append(1) or nthreads(self, *args, **kwargs)
    )
    counts = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster), dask.config.set(scheduler=None):
            for max_iter in (2, 8):
                asked.clear()
                result = bd.kmeans(da.from_array(blobs, chunks=500), 7, init=blobs[5:12], max_iter=max_iter, tol=0)
                counts[result.n_iter] = len(asked)
    assert sorted(counts) == [2, 8]
    assert counts[2] == counts[8] > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_clusters": 0}, ParameterError, "n_clusters=0"),
        ({"n_clusters": 101}, ParameterError, "n_clusters <= 100"),
        ({"n_clusters": 3, "init": np.zeros((2, 4))}, InputShapeError, r"shape \(3, 4\)"),
        ({"n_clusters": 3, "init": "kmeans"}, ParameterError, "unknown init"),
        ({"n_clusters": 3, "max_iter": 0}, ParameterError, "max_iter=0"),
        ({"n_clusters": 3, "tol": -1}, ParameterError, "tol=-1"),
        ({"n_clusters": 3, "split_every": 0}, ParameterError, "split_every=0"),
        ({"n_clusters": 3, "random_state": -1}, ParameterError, "random_state=-1"),
    ],
)
def test_bad_input(kwargs, error, match):
    X = np.random.default_rng(0).standard_normal((100, 4))
    with pytest.raises(error, match=match):
        bd.kmeans(X, **kwargs)


def test_nan_data_is_refused():
    X = np.ones((10, 2))
    X[3, 0] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        bd.kmeans(X, 2)


@pytest.mark.parametrize("init", ["random", "k-means++", "k-means||"])
def test_fewer_distinct_points_than_clusters_warns(init):
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    with pytest.warns(
        ConvergenceWarning, match=r"Number of distinct clusters \(2\) found smaller than n_clusters \(3\)"
    ):
        result = bd.kmeans(X, 3, init=init, random_state=0)
    assert {tuple(c) for c in result.centroids} == {(0.0, 0.0), (1.0, 1.0)}


@estimator_checks([bd.KMeans(n_clusters=3, random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_kmeans_without_a_client_never_imports_distributed(tmp_path):
    # Importing distributed costs ~0.3 s; without it loaded no Client can exist, so a local call needs none.
    path = str(tmp_path / "x.zarr")
    script = f"""
import sys, numpy as np, zarr
import bigdist as bd
from sklearn.cluster import KMeans
X = np.random.default_rng(0).normal(size=(3000, 5)).astype(np.float32)
zarr.create_array({path!r}, data=X, chunks=(500, 5))
result = bd.kmeans({path!r}, 4, init=X[:4], max_iter=5, tol=0, persist=True)
imported = "distributed" in sys.modules
theirs = KMeans(4, init=X[:4], n_init=1, max_iter=5, tol=0, algorithm="lloyd").fit(X)
assert np.array_equal(result.labels.compute(), theirs.labels_), "labels differ from scikit-learn's"
print(imported)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("blocks", "workers", "row_work"),
    [((500_000,), 2, 32_000), ((200_000, 3392), 2, 524_288), ((65_536,) * 5, 8, 524_288),
     ((20_000,), 2, 524_288), ((100_000, 90_000), 3, 65_536)],
)  # fmt: skip
def test_few_blocks_per_worker_are_cut_into_whole_steps_for_every_worker(blocks, workers, row_work):
    from bigdist.kmeans import MIN_PIECE_ROWS, MIN_PIECE_WORK, PIECES_PER_WORKER, STEP_ROWS, _split_blocks

    split = _split_blocks(blocks, workers, row_work)
    assert [sum(pieces) for pieces in split] == list(blocks)
    fewest = max(MIN_PIECE_ROWS, MIN_PIECE_WORK / row_work)
    for pieces in split:
        # Every piece but a block's last starts and ends on a step boundary of its block, and is not tiny.
        assert all(rows % STEP_ROWS == 0 and rows >= fewest for rows in pieces[:-1])
    assert sum(map(len, split)) >= min(PIECES_PER_WORKER * workers, sum(int(n // fewest) for n in blocks))


@pytest.mark.parametrize(
    ("blocks", "workers", "row_work"),
    [((500_000,), 1, 32_000), ((65_536,) * 4, 2, 32_000), ((10_000,), 4, 32_000), ((1_000_000,), 2, 32)],
)
def test_blocks_enough_for_the_workers_or_too_small_to_cut_stay_whole(blocks, workers, row_work):
    from bigdist.kmeans import _split_blocks

    # The last: a million rows of 2 features and 16 centroids are a few milliseconds of work in all.
    assert _split_blocks(blocks, workers, row_work) is None


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_float64_data_through_the_float32_gemm_is_bitwise_the_float64_gemm_run(monkeypatch, offset):
    kernels = importlib.import_module("bigdist.kernels.kmeans")
    X, _ = make_blobs(6000, 12, centers=40, cluster_std=2.0, random_state=4)
    # Far from the origin and at a fine scale: float32 alone cannot tell many of the rows' distances apart.
    X = X * (1e-3 if offset else 1.0) + offset
    init = X[:40].copy()
    used = []
    gemm_inputs = kernels._gemm_inputs
    monkeypatch.setattr(kernels, "_gemm_inputs", lambda c, dtype, *a: used.append(dtype) or gemm_inputs(c, dtype, *a))
    ours = bd.kmeans(X, 40, init=init, max_iter=30, tol=0)
    assert set(used) == {np.dtype(np.float32)}
    monkeypatch.setattr(kernels, "GEMM_DTYPES", (np.dtype(np.float64),))
    float64_gemm = bd.kmeans(X, 40, init=init, max_iter=30, tol=0)
    assert ours.centroids.tobytes() == float64_gemm.centroids.tobytes()
    assert ours.inertia == float64_gemm.inertia
    labels = ours.labels.compute()
    np.testing.assert_array_equal(labels, float64_gemm.labels.compute())
    # And the labels are the exact nearest centroids (ties to the lower index).
    np.testing.assert_array_equal(labels, np.argmin(cdist(X, ours.centroids, "sqeuclidean"), axis=1))
