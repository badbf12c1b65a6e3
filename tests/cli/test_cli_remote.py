"""``--storage-options``: inputs and outputs on an S3 server with no AWS environment, and bad values refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

import bigdist as bd
from bigdist.cli.main import main
from tests.oracle import distances
from tests.s3 import FaultyMotoServer, new_url, s3_options


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def server():
    started = FaultyMotoServer()
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def options(server, monkeypatch):
    with s3_options(server, monkeypatch) as opts:
        yield opts


@pytest.fixture
def train(options):
    """200 x 4 float32 rows in a Zarr array on the server, and its URL."""
    rows = np.random.default_rng(1).random((200, 4)).astype(np.float32)
    path = new_url("train")
    zarr.create_array(path, storage_options=options, data=rows, chunks=(50, 4))
    return rows, path


def test_knn_reads_and_writes_s3_with_storage_options_from_the_flag(scheduler, options, train):
    rows, path = train
    out = new_url("nn")
    code, output = _run(
        "knn",
        "--train",
        path,
        "--k",
        3,
        "--out",
        out,
        "--scheduler",
        scheduler,
        "--storage-options",
        json.dumps(options),
    )
    assert code == 0, output
    result = bd.io.read_group(out, options)
    expected = distances(rows, rows, "euclidean")
    np.fill_diagonal(expected, np.inf)
    order = np.argsort(expected, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(np.asarray(result["indices"]), order)
    np.testing.assert_allclose(
        np.asarray(result["distances"]), np.take_along_axis(expected, order, axis=1), rtol=1e-5, atol=1e-6
    )
    # The credentials are not kept in the output's attributes.
    assert options["secret"] not in json.dumps(bd.io.describe(out, options)["attrs"], default=str)


def test_storage_options_in_a_run_file(tmp_path, scheduler, options, train):
    rows, path = train
    out = new_url("km")
    run_file = tmp_path / "run.yaml"
    run_file.write_text(json.dumps({"data": path, "out": out, "n-clusters": 3, "storage-options": options}))
    code, output = _run("kmeans", "--config", run_file, "--max-iter", 3, "--scheduler", scheduler)
    assert code == 0, output
    labels = np.asarray(bd.io.read_group(out, options)["labels"])
    centroids = np.asarray(bd.io.read_group(out, options)["centroids"])
    # Each row's label is its nearest stored centroid.
    np.testing.assert_array_equal(labels, np.argmin(distances(rows, centroids, "sqeuclidean"), axis=1))


@pytest.mark.parametrize("value", ["[1, 2]", "just-a-string", "{a: [}"])
def test_a_value_that_is_not_a_mapping_is_refused_naming_it(tmp_path, value):
    code, output = _run("knn", "--train", tmp_path / "t.npy", "--out", tmp_path / "o.zarr", "--storage-options", value)
    assert code != 0
    assert "--storage-options" in output and repr(value) in output and "mapping" in output


def test_a_run_file_value_that_is_not_a_mapping_is_refused(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text("storage-options: [1, 2]\n")
    code, output = _run("knn", "--config", run_file)
    assert code == 1
    assert "storage-options" in output and "[1, 2]" in output and "mapping" in output


@pytest.mark.parametrize("plan", [True, False])
def test_an_unreachable_output_store_is_named(tmp_path, scheduler, options, plan):
    np.save(tmp_path / "t.npy", np.zeros((10, 2), dtype=np.float32))
    out = new_url("nn")
    unreachable = {**options, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}
    code, output = _run(
        "knn", "--train", tmp_path / "t.npy", "--out", out, "--scheduler", scheduler,
        "--storage-options", json.dumps(unreachable), *(["--plan"] if plan else []),
    )  # fmt: skip
    assert code == 1
    assert f"{out!r}" in output and "127.0.0.1:9" in output and "storage_options" in output
