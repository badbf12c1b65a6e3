"""Predictions written through the waves: scikit-learn's votes, the bytes of the lazy write, resumable."""

import logging
import pathlib

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.neighbors import KNeighborsClassifier as SkClassifier

import bigdist as bd
import bigdist.execution.labelled as execution_labelled
from bigdist.io import make_random, read_group, write_group
from tests.execution.helpers import chunk_digests, counting


def _lazy_write(model, X, path):
    """Today's single-graph write of the lazy predictions: the reference the waves must match byte for byte."""
    classes = model.classes_ if model.outputs_2d_ else [model.classes_]
    suffixes = [f"_{i}" for i in range(len(classes))] if model.outputs_2d_ else [""]
    probabilities = model.predict_proba(X)
    arrays = {"predictions": model.predict(X)}
    for output, suffix in enumerate(suffixes):
        arrays[f"classes{suffix}"] = da.from_array(classes[output])
        arrays[f"probabilities{suffix}"] = probabilities[output] if model.outputs_2d_ else probabilities
    write_group(path, arrays)


@pytest.fixture
def stores(tmp_path):
    train = str(tmp_path / "train.zarr")
    make_random(train, 900, 5, chunk_rows=97, random_state=3)
    points = zarr.open_array(train, mode="r")[:]
    # Labels that follow the rows, so votes are not all ties, in chunks of their own size.
    labels = (points[:, 0] > 0).astype(np.int64) + 2 * (points[:, 1] > 0.5)
    path = str(tmp_path / "labels.zarr")
    zarr.create_array(store=path, shape=labels.shape, chunks=(250,), dtype=labels.dtype)[:] = labels
    return train, path, points, labels


SETTINGS = [
    # (query-block-rows, panel-flops, split_every)
    (60, 1.0, 2),  # one train block per panel, three levels of merges
    (130, 2e5, 3),  # panels of several blocks
    (1000, 1e12, 8),  # one panel holds the whole train set
]


@pytest.mark.usefixtures("synchronous")
@pytest.mark.parametrize(("query_rows", "panel_flops", "split_every"), SETTINGS)
@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("own_rows", [False, True])
def test_predictions_equal_scikit_learn_and_the_lazy_write(tmp_path, stores, monkeypatch, query_rows, panel_flops,
                                                            split_every, weights, own_rows):  # fmt: skip
    train, labels, points, y = stores
    queries = None if own_rows else np.random.default_rng(1).random((230, 5))
    settings = {"bigdist.chunk-bytes": 100 * 5 * 4, "bigdist.knn.query-block-rows": query_rows,
                "bigdist.execution.panel-flops": panel_flops}  # fmt: skip
    waves, graph = str(tmp_path / "waves.zarr"), str(tmp_path / "graph.zarr")
    calls: dict[str, int] = {}
    counting(monkeypatch, execution_labelled, "labelled_panel", calls)
    with dask.config.set(settings):
        model = bd.KNeighborsClassifier(5, weights=weights, split_every=split_every).fit(train, labels)
        model.write_predictions(waves, queries)
        _lazy_write(model, None if queries is None else da.from_array(queries, chunks=100), graph)
    query_blocks = len(read_group(waves)["predictions"].chunks[0])
    assert calls["labelled_panel"] >= query_blocks * (2 if panel_flops < 1e12 else 1)
    digests = chunk_digests(waves)
    assert len(digests) >= 3 and digests == chunk_digests(graph)
    expected = SkClassifier(5, weights=weights, algorithm="brute").fit(points, y)
    out = read_group(waves)
    np.testing.assert_array_equal(out["predictions"].compute(), expected.predict(queries))
    # float32 rows: distance weights within float32 rounding of scikit-learn's.
    np.testing.assert_allclose(out["probabilities"].compute(), expected.predict_proba(queries), rtol=1e-6)
    np.testing.assert_array_equal(out["classes"].compute(), expected.classes_)


@pytest.mark.usefixtures("synchronous")
def test_several_outputs_and_no_probabilities(tmp_path):
    rng = np.random.default_rng(4)
    points, queries = rng.random((400, 3)), rng.random((120, 3))
    y = np.stack([(points[:, 0] > 0.5).astype(int), np.where(points[:, 1] > 0.3, "b", "a")], axis=1)
    waves, graph = str(tmp_path / "waves.zarr"), str(tmp_path / "graph.zarr")
    with dask.config.set({"bigdist.knn.query-block-rows": 50, "bigdist.execution.panel-flops": 1e4}):
        model = bd.KNeighborsClassifier(4).fit(da.from_array(points, chunks=90), y)
        model.write_predictions(waves, queries)
        model.write_predictions(str(tmp_path / "bare.zarr"), queries, proba=False)
        _lazy_write(model, da.from_array(queries, chunks=50), graph)
    assert chunk_digests(waves) == chunk_digests(graph)
    expected = SkClassifier(4, algorithm="brute").fit(points, y)
    np.testing.assert_array_equal(read_group(waves)["predictions"].compute(), expected.predict(queries))
    assert sorted(read_group(str(tmp_path / "bare.zarr"))) == ["classes_0", "classes_1", "predictions"]


@pytest.mark.usefixtures("synchronous")
def test_interrupted_write_resumes_without_recomputing_finished_blocks(tmp_path, stores, monkeypatch, caplog):
    train, labels, _, _ = stores
    settings = {"bigdist.chunk-bytes": 100 * 5 * 4, "bigdist.knn.query-block-rows": 100,
                "bigdist.execution.panel-flops": 1e5}  # fmt: skip
    out, clean = str(tmp_path / "pred.zarr"), str(tmp_path / "clean.zarr")
    calls: dict[str, int] = {}
    real = counting(monkeypatch, execution_labelled, "labelled_finish", calls, fail_at=4)
    with dask.config.set(settings), pytest.raises(KeyboardInterrupt):
        bd.KNeighborsClassifier(3).fit(train, labels).write_predictions(out)
    assert zarr.open_group(out, mode="r").attrs["bigdist"]["complete"] is False
    monkeypatch.setattr(execution_labelled, "labelled_finish", real)
    calls.clear()
    counting(monkeypatch, execution_labelled, "labelled_panel", calls)
    seen = []
    with dask.config.set(settings), caplog.at_level(logging.INFO, logger="bigdist"):
        model = bd.KNeighborsClassifier(3).fit(train, labels)
        plan = bd.plan("classify", train, k=3, calibrate_kernel=False)
        model.write_predictions(out, progress=lambda *a: seen.append(a))
    assert plan.query_blocks == 9 and plan.panels >= 2
    # 3 of 9 blocks were written (with their 3 arrays and the classes): only the other 6 were scored again.
    assert "7 of 19 blocks already written are kept" in caplog.text
    assert calls["labelled_panel"] == (9 - 3) * plan.panels
    assert [done for done, _, _ in seen] == list(range(4, 10)) and {total for _, total, _ in seen} == {9}
    with dask.config.set(settings):
        bd.KNeighborsClassifier(3).fit(train, labels).write_predictions(clean)
    assert chunk_digests(out) == chunk_digests(clean)
    assert not (pathlib.Path(out) / "bigdist_progress").exists()


@pytest.mark.usefixtures("synchronous")
def test_plan_counts_the_tasks_that_run(tmp_path, stores, monkeypatch):
    train, labels, _, _ = stores
    queries = str(tmp_path / "queries.zarr")
    make_random(queries, 333, 5, chunk_rows=70, random_state=2)
    calls: dict[str, int] = {}
    counting(monkeypatch, execution_labelled, "labelled_panel", calls)
    settings = {"bigdist.chunk-bytes": 100 * 5 * 4, "bigdist.knn.query-block-rows": 100,
                "bigdist.execution.panel-flops": 1e5}  # fmt: skip
    with dask.config.set(settings):
        plan = bd.plan("classify", queries, train, k=4, n_classes=4, calibrate_kernel=False)
        bd.KNeighborsClassifier(4).fit(train, labels).write_predictions(str(tmp_path / "p.zarr"), queries)
    assert plan.tasks == calls["labelled_panel"] == plan.query_blocks * plan.panels and plan.panels >= 2
    assert plan.bytes_written == 333 * 8 + 333 * 4 * 8


def test_cluster_write_equals_the_synchronous_one(tmp_path, stores, cluster_client):
    train, labels, points, y = stores
    settings = {"bigdist.chunk-bytes": 100 * 5 * 4, "bigdist.execution.panel-flops": 1e5}
    with dask.config.set(settings):
        model = bd.KNeighborsClassifier(5, weights="distance").fit(train, labels)
        model.write_predictions(str(tmp_path / "cluster.zarr"))
        with dask.config.set(scheduler="synchronous"):
            model.write_predictions(str(tmp_path / "sync.zarr"))
        # Labels in memory: persisted once on the cluster.
        bd.KNeighborsClassifier(5).fit(da.from_array(points, chunks=200), y).write_predictions(
            str(tmp_path / "memory.zarr"), points[:150]
        )
    assert chunk_digests(str(tmp_path / "cluster.zarr")) == chunk_digests(str(tmp_path / "sync.zarr"))
    expected = SkClassifier(5, algorithm="brute").fit(points, y).predict(points[:150])
    np.testing.assert_array_equal(read_group(str(tmp_path / "memory.zarr"))["predictions"].compute(), expected)
