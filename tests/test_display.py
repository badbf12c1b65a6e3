"""Result objects in a notebook: short plain reprs, HTML tables, nothing of the data, user names escaped."""

import html

import dask
import dask.array as da
import numpy as np
import pytest

import bigdist as bd
from bigdist.knn import KNNResult

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(centre, 0.3, (100, 3)) for centre in (0, 5, 10)])


def _results(data):
    X = da.from_array(data, chunks=75)
    return {
        "KNNResult": bd.knn(X[:20], X, k=4, metric="minkowski", p=3),
        "RadiusResult": bd.radius_neighbors(X, None, 0.5),
        "KMeansResult": bd.kmeans(X, 3, random_state=0, max_iter=40),
        "MeanShiftResult": bd.meanshift(X, 2.0, kernel="flat"),
    }


def test_every_result_has_a_short_plain_repr_and_an_html_table(data):
    for name, result in _results(data).items():
        text, table = repr(result), result._repr_html_()
        assert text.startswith(f"{name}(") and "\n" not in text and len(text) < 250, text
        assert table.startswith("<div>") and f"bigdist {name}" in table and "<table>" in table
        assert "lazy" in text or "lazy" in table  # the labels or pairs are not computed by showing them


def test_the_reprs_say_the_shapes_metric_iterations_and_timings(data):
    results = _results(data)
    knn = results["KNNResult"]
    assert "n_queries=20" in repr(knn) and "metric='minkowski'" in repr(knn)
    assert "dask float64 (20, 4), lazy, 1 block" in repr(knn) and "minkowski (p=3.0)" in knn._repr_html_()
    km = results["KMeansResult"]
    assert f"n_iter={km.n_iter}" in repr(km) and f"inertia={km.inertia:.6g}" in repr(km)
    assert "numpy float64 (3, 3)" in km._repr_html_()
    seconds = sum(step["seconds"] for step in km.stats)
    assert f"{seconds:.2f} in the iterations" in km._repr_html_()
    ms = results["MeanShiftResult"]
    assert f"{ms.n_iter} ({len(ms.stats)} passes over the data)" in ms._repr_html_()


def test_the_kmeans_repr_no_longer_dumps_centroids_or_stats(data):
    km = _results(data)["KMeansResult"]
    for text in (repr(km), km._repr_html_()):
        assert "stats" not in text and "array(" not in text
        for value in km.centroids.ravel():
            assert f"{value:.4f}" not in text


def test_names_from_users_are_escaped_in_html():
    nasty = "<script>alert('x')</script>"
    result = KNNResult(
        k=1, metric=nasty, n_queries=2, n_train=3, n_features=1, self_join=False, params={"w": nasty},
        precomputed=(da.zeros((2, 1)), da.zeros((2, 1), dtype=np.int64)),
    )  # fmt: skip
    table = result._repr_html_()
    assert "<script>" not in table and html.escape(nasty) in table


def test_persisted_arrays_are_not_called_lazy(data):
    km = _results(data)["KMeansResult"]
    km.labels = km.labels.persist()
    assert "persisted" in repr(km) and "lazy" not in repr(km)


def test_the_dashboard_link_shows_when_there_is_a_client(data):
    from distributed import Client

    result = _results(data)["KNNResult"]
    assert "dashboard" not in result._repr_html_()
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0") as client:
        table = result._repr_html_()
        assert f"<a href='{client.dashboard_link}'" in table


def test_log_progress_shows_bigdist_info_lines_once(data):
    import io
    import logging

    stream = io.StringIO()
    bd.log_progress(stream=io.StringIO())
    handler = bd.log_progress(stream=stream)  # replaces the first: every line shows once
    try:
        km = bd.kmeans(data, 3, random_state=0, max_iter=40)
    finally:
        logging.getLogger("bigdist").removeHandler(handler)
    lines = stream.getvalue().splitlines()
    iterations = [line for line in lines if "k-means iteration" in line]
    assert len(iterations) == km.n_iter and "k-means iteration 1:" in iterations[0]
    assert sum(getattr(h, "_bigdist_progress", False) for h in logging.getLogger("bigdist").handlers) == 0


def test_progress_computes_with_a_bar_locally_and_on_a_client(data, tmp_path, capsys):
    from distributed import Client

    from tests.oracle import knn_oracle

    X = da.from_array(data, chunks=50)
    result = bd.knn(X, None, k=2)
    distances, indices = bd.progress((result.distances, result.indices))
    np.testing.assert_array_equal(indices, knn_oracle(data, None, 2)[1])
    assert "100% Completed" in capsys.readouterr().out
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0"):
        labels = bd.progress(X.sum(axis=1))
    assert "100%" in capsys.readouterr().out
    np.testing.assert_allclose(labels, data.sum(axis=1), rtol=1e-6)


def test_progress_bar_of_the_blocks_written(data, tmp_path, capsys):
    from tests.oracle import knn_oracle

    X = da.from_array(data, chunks=50)
    with dask.config.set({"bigdist.knn.query-block-rows": 40}):
        result = bd.knn(X, None, k=2)
    bar = bd.progress()
    path = result.to_zarr(str(tmp_path / "nn.zarr"), progress=bar)
    blocks = result.job.query_blocks
    assert f"{len(blocks)}/{len(blocks)}" in capsys.readouterr().err
    np.testing.assert_array_equal(bd.io.read_group(path)["indices"].compute(), knn_oracle(data, None, 2)[1])
