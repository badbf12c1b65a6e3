"""bd.plan against arithmetic of its own: tasks from the shapes, bytes = rows x features x itemsize, disk checks."""

import json
import math
import shutil
from collections import namedtuple

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

import bigdist as bd
from bigdist.errors import InsufficientSpaceError, ParameterError, PlanError
from bigdist.execution import executors
from bigdist.execution import plan as plan_module
from bigdist.planning import even_blocks

Usage = namedtuple("Usage", "total used free")


def _function_name(task):
    """The name of the function a dask task runs (through partials)."""
    func = getattr(task, "func", None) or (task[0] if isinstance(task, tuple) else task)
    while hasattr(func, "func"):
        func = func.func
    return getattr(func, "__name__", repr(func))


@pytest.fixture
def executed(monkeypatch):
    """The function names of the tasks the waves run on the synchronous scheduler (inline, not through dask)."""
    names = []
    submit = executors.InlineExecutor.submit

    def recorded(executor, func, *args, **kwargs):
        names.append(_function_name(func))
        return submit(executor, func, *args, **kwargs)

    monkeypatch.setattr(executors.InlineExecutor, "submit", recorded)
    return names


@pytest.fixture
def no_calibration(monkeypatch):
    """Plans without the kernel timing, for tests of the counts (fast; the timing has its own tests)."""
    monkeypatch.setattr(plan_module, "calibrate", lambda *args, **kwargs: 1e-9)


@pytest.mark.parametrize("self_join", [False, True])
def test_knn_plan_counts_the_waves_tasks_bytes_and_flops_of_the_shapes(self_join, tmp_path, no_calibration, executed):
    m, n, d, k = 1000, 5000, 7, 4
    rng = np.random.default_rng(0)
    train = da.from_array(rng.random((n, d)).astype(np.float32), chunks=(700, d))
    queries = train if self_join else rng.random((m, d)).astype(np.float32)
    m = n if self_join else m
    # Query blocks of 250 (295 in the self-join) rows: one train block is 700 x 250 x 2d = 2.45e6 FLOPs
    # against one (2.89e6), two are over 4e6, so panels of two blocks.
    settings = {"bigdist.knn.query-block-rows": 300, "bigdist.execution.panel-flops": 4e6, "scheduler": "sync"}
    with dask.config.set(settings):
        plan = bd.plan("knn", queries, None if self_join else train, k=k)
        bd.knn(queries, None if self_join else train, k=k).to_zarr(str(tmp_path / "nn.zarr"))
    query_rows = max(even_blocks(m, 300))
    query_blocks, train_blocks, panels = math.ceil(m / query_rows), math.ceil(n / 700), math.ceil(n / 1400)
    assert plan.job == ("self-join" if self_join else "knn")
    assert (plan.query_blocks, plan.train_blocks, plan.panels) == (query_blocks, train_blocks, panels)
    assert plan.tasks == query_blocks * panels
    assert plan.tasks == executed.count("knn_panel")
    # The synchronous scheduler has one thread: windows of tasks-per-thread tasks.
    window = dask.config.get("bigdist.execution.tasks-per-thread")
    assert plan.threads == 1 and plan.waves == math.ceil(plan.tasks / window)
    assert plan.pairs == m * n
    assert plan.flops == 2 * m * n * d
    # Each task reads its query block and its panel's train rows.
    assert plan.bytes_read == m * d * 4 * panels + n * d * 4 * query_blocks
    assert plan.bytes_written == m * k * (4 + 8)  # float32 distances and int64 indices
    assert plan.output is None and plan.fits is None
    assert plan.seconds == pytest.approx(m * n * 1e-9 / plan.threads)
    # One task per query block merges its panels and writes it.
    assert executed.count("knn_finish") == query_blocks
    assert any(f"{query_blocks:,} tasks that merge" in note for note in plan.notes)


def test_pairwise_plan_matches_the_blocks_and_tasks_of_its_waves(tmp_path, no_calibration, executed):
    from bigdist.execution.blocks import write_blocks

    rng = np.random.default_rng(1)
    queries, train = rng.random((900, 5)), rng.random((1300, 5)).astype(np.float32)
    with dask.config.set({"bigdist.chunk-bytes": 40_000, "scheduler": "sync"}):
        matrix = bd.pairwise_distances(queries, train, "cosine")
        rows, cols = matrix.chunks[0][0], matrix.chunks[1][0]
        # Work of two blocks (2 x features FLOPs per element): tasks of two blocks of a row each.
        with dask.config.set({"bigdist.execution.panel-flops": 2 * rows * cols * 2 * 5}):
            plan = bd.plan("pairwise", queries, train, metric="cosine")
            write_blocks(str(tmp_path / "d.zarr"), {"distances": matrix}, flops_per_element=2 * 5)
    query_blocks, train_blocks = matrix.numblocks
    runs = math.ceil(train_blocks / 2)
    assert (plan.query_blocks, plan.train_blocks, plan.panels) == (query_blocks, train_blocks, runs)
    assert plan.tasks == query_blocks * runs == executed.count("compute_and_store")
    assert plan.waves == math.ceil(plan.tasks / dask.config.get("bigdist.execution.tasks-per-thread"))
    assert plan.bytes_written == 900 * 1300 * 8  # float64: one input is float64
    # Each task reads its query block and the train blocks of its run.
    assert plan.bytes_read == 900 * 5 * 8 * runs + 1300 * 5 * 4 * query_blocks
    assert plan.dtype == "float64"


def test_radius_and_classify_plans_count_what_is_known(no_calibration):
    X = np.random.default_rng(2).random((600, 3))
    with dask.config.set({"bigdist.knn.query-block-rows": 250, "bigdist.radius.max-neighbors": 50}):
        radius = bd.plan("radius", X, radius=0.1)
        classify = bd.plan("classify", X, k=3, n_classes=4)
        unknown_classes = bd.plan("classify", X, k=3)
    assert radius.tasks == 3 and radius.bytes_written == 601 * 8
    assert any("600 x 50" in note or "at the cap of 50" in note for note in radius.notes)
    assert classify.bytes_written == 600 * 8 + 600 * 4 * 8
    assert unknown_classes.bytes_written == 600 * 8
    assert any("probabilities are not counted" in note for note in unknown_classes.notes)
    with pytest.raises(ParameterError, match="radius="):
        bd.plan("radius", X)


@pytest.mark.parametrize("persist", [False, True])
def test_kmeans_plan_reads_the_data_once_per_pass_unless_kept(persist, no_calibration):
    X = da.from_array(np.zeros((1000, 6), dtype=np.float32), chunks=(300, 6))
    plan = bd.plan("kmeans", X, n_clusters=5, max_iter=7, persist=persist)
    assert plan.passes == 7 and plan.tasks == 4 * 7 and plan.train_blocks == 0
    assert plan.bytes_read == 1000 * 6 * 4 * (1 if persist else 7)
    assert plan.pairs == 1000 * 5 * 7 and plan.flops == 2 * 1000 * 5 * 7 * 6
    assert plan.bytes_written == 5 * 6 * 8 + 1000 * 8


def test_meanshift_plan_seeds_from_config(no_calibration):
    X = da.from_array(np.zeros((3000, 2)), chunks=(1000, 2))
    with dask.config.set({"bigdist.meanshift.max-seeds": 1000, "bigdist.meanshift.seed-block-rows": 300}):
        plan = bd.plan("meanshift", X, bandwidth=0.5, max_iter=3)
        estimated = bd.plan("meanshift", X, max_iter=3)
    # 1000 seeds in 4 seed blocks, against 3 row blocks, per pass.
    assert plan.tasks == 4 * 3 * 3 and plan.pairs == 3000 * 1000 * 3
    assert plan.bytes_written == 3000 * 8 + 1000 * 3 * 8
    assert estimated.params["bandwidth"] == "estimated" and any("estimated" in note for note in estimated.notes)


def test_output_bigger_than_the_free_space_is_refused_naming_both_sizes(tmp_path, monkeypatch, no_calibration):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 5000, 5000))
    X = np.zeros((100, 4), dtype=np.float32)
    plan = bd.plan("pairwise", X, out=tmp_path / "missing" / "deeper" / "d.zarr")
    assert plan.free_bytes == 5000 and plan.bytes_written == 100 * 100 * 4 and plan.fits is False
    with pytest.raises(InsufficientSpaceError, match=r"needs 40.00 kB.*has 5.00 kB free.*--force"):
        plan.check_space()
    plan.check_space(force=True)
    assert "DOES NOT FIT" in str(plan)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 0, 10**9))
    fitting = bd.plan("pairwise", X, out=tmp_path / "d.zarr")
    assert fitting.fits is True
    fitting.check_space()


def test_plan_is_printable_and_json_serialisable(tmp_path, no_calibration):
    plan = bd.plan("knn", np.zeros((50, 3)), np.ones((80, 3)), k=2, out=tmp_path / "o.zarr")
    values = json.loads(json.dumps(plan.to_dict()))
    assert values["tasks"] == 1 and values["shapes"] == {"queries": [50, 3], "train": [80, 3]}
    assert values["fits"] is True and values["bytes_written"] == 50 * 2 * 16
    text = str(plan)
    assert "plan of knn" in text and "50 x 3" in text and "fits" in text and "tasks" in text


def test_plan_that_cannot_be_made_says_why(tmp_path):
    with pytest.raises(PlanError, match="cannot be opened.*no such file"):
        bd.plan("knn", tmp_path / "nothing.zarr")
    unknown = da.from_array(np.zeros((10, 2)), chunks=(5, 2))
    unknown = unknown[unknown[:, 0] >= 0]  # rows known only after computing
    with pytest.raises(PlanError, match="rows are unknown.*compute_chunk_sizes"):
        bd.plan("knn", unknown)
    with pytest.raises(PlanError, match="3 features.*2"):
        bd.plan("knn", np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ParameterError, match="unknown job 'sort'"):
        bd.plan("sort", np.zeros((4, 3)))


def test_plan_reads_a_zarr_store_without_reading_its_chunks(tmp_path, no_calibration):
    path = tmp_path / "x.zarr"
    array = zarr.create_array(str(path), shape=(2000, 8), chunks=(500, 8), dtype="float32")
    array[:] = 1.0
    # A plan needs only the metadata: with every chunk deleted it still plans (reading would fail).
    for chunk in (path / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()
    plan = bd.plan("knn", str(path), k=5)
    assert plan.shapes == {"queries": (2000, 8)} and plan.train_blocks == math.ceil(2000 / (2000 // 500 * 500))


def test_calibration_runs_the_kernel_once_per_process_and_spec(monkeypatch):
    calls = []
    real = plan_module._run_calibration

    def counted(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(plan_module, "_run_calibration", counted)
    monkeypatch.setattr(plan_module, "_calibrations", {})
    X = np.random.default_rng(3).random((300, 4)).astype(np.float32)
    first = bd.plan("knn", X, k=3)
    second = bd.plan("knn", X[:100], k=3)
    other = bd.plan("knn", X, k=3, metric="manhattan")
    assert len(calls) == 2
    assert first.seconds_per_pair == second.seconds_per_pair > 0
    assert other.seconds_per_pair > 0
    assert first.seconds == pytest.approx(300 * 300 * first.seconds_per_pair / first.threads)


@pytest.mark.parametrize(
    ("job", "kwargs"),
    [
        ("pairwise", {"metric": "chebyshev"}),
        ("radius", {"radius": 0.2}),
        ("classify", {"k": 2}),
        ("kmeans", {"n_clusters": 3, "max_iter": 2}),
        ("meanshift", {"bandwidth": 0.3, "max_iter": 2}),
    ],
)
def test_every_job_calibrates_its_own_kernel(job, kwargs, monkeypatch):
    monkeypatch.setattr(plan_module, "_calibrations", {})
    X = np.random.default_rng(4).random((200, 3))
    plan = bd.plan(job, X, **kwargs)
    assert plan.seconds_per_pair > 0 and plan.seconds == pytest.approx(
        plan.pairs * plan.seconds_per_pair / plan.threads
    )


def test_calibration_runs_on_a_worker_of_the_ambient_client(monkeypatch):
    from distributed import Client, LocalCluster

    monkeypatch.setattr(plan_module, "_calibrations", {})
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            plan = bd.plan("knn", np.random.default_rng(5).random((100, 3)), k=2)
            # The kernel ran as a task of the cluster, which the scheduler remembers.
            assert "bigdist-calibrate-knn" in client.run_on_scheduler(_task_prefixes)
    assert plan.threads == 3 and cluster.scheduler_address in plan.cluster
    assert plan.seconds_per_pair > 0


def _task_prefixes(dask_scheduler):
    return list(dask_scheduler.task_prefixes)
