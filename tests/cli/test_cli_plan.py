"""``--plan`` prints and writes nothing; every run logs its plan; an output too big for its disk needs ``--force``."""

import logging
import shutil
from collections import namedtuple

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from bigdist.cli.main import main
from tests.oracle import distances

Usage = namedtuple("Usage", "total used free")


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    paths = {name: tmp_path / f"{name}.npy" for name in ("train", "queries", "labels")}
    np.save(paths["train"], rng.random((400, 5)).astype(np.float32))
    np.save(paths["queries"], rng.random((60, 5)).astype(np.float32))
    np.save(paths["labels"], rng.integers(0, 3, 400))
    return paths


COMMANDS = {
    "knn": ["--train", "train", "--k", 3],
    "pairwise": ["--queries", "queries", "--train", "train"],
    "radius": ["--train", "train", "--radius", 0.3],
    "classify": ["--train", "train", "--labels", "labels", "--k", 3],
    "kmeans": ["--data", "train", "--n-clusters", 4, "--max-iter", 5],
    "meanshift": ["--data", "train", "--bandwidth", 0.5, "--max-iter", 5],
}


def _args(command, inputs):
    return [command, *(inputs[value] if value in inputs else value for value in COMMANDS[command])]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_plan_prints_the_plan_and_writes_nothing(tmp_path, scheduler, inputs, command):
    out = tmp_path / "out.zarr"
    code, output = _run(*_args(command, inputs), "--out", out, "--plan", "--scheduler", scheduler)
    assert code == 0, output
    assert f"plan of {'self-join' if command == 'knn' else command}" in output
    assert "tasks:" in output and "read:" in output and "time:" in output and str(out) in output
    assert not out.exists()


def test_plan_does_not_generate_missing_inputs(tmp_path, scheduler):
    data, out = tmp_path / "made.zarr", tmp_path / "nn.zarr"
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"train: {data}\nout: {out}\ngenerate:\n  train: {{n-samples: 100, n-features: 3}}\n")
    code, output = _run("knn", "--config", run_file, "--plan", "--scheduler", scheduler)
    assert code == 1 and "cannot plan" in output and str(data) in output
    assert not data.exists() and not out.exists()


def test_a_run_logs_its_plan_first(tmp_path, scheduler, inputs, caplog):
    caplog.set_level(logging.INFO, logger="bigdist")
    code, output = _run(*_args("knn", inputs), "--out", tmp_path / "nn.zarr", "--scheduler", scheduler)
    assert code == 0, output
    plans = [record.getMessage() for record in caplog.records if record.getMessage().startswith("plan of")]
    assert plans and "self-join" in plans[0] and "tasks:" in plans[0]


def test_output_over_the_free_space_is_refused_unless_forced(tmp_path, scheduler, inputs, monkeypatch):
    # 60 x 400 float32 distances: 96,000 bytes, against 50,000 free.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 50_000, 50_000))
    out = tmp_path / "d.zarr"
    args = [*_args("pairwise", inputs), "--out", out, "--scheduler", scheduler]
    code, output = _run(*args)
    assert code == 1
    assert "needs 96.00 kB" in output and "50.00 kB free" in output and "--force" in output
    assert not out.exists()
    code, output = _run(*args, "--force")
    assert code == 0, output
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["bigdist"]["complete"] is True
    assert "force" not in group.attrs["run"]
    expected = distances(np.load(inputs["queries"]), np.load(inputs["train"]), "euclidean")
    np.testing.assert_allclose(group["distances"][:], expected, rtol=1e-5, atol=1e-6)


def test_generate_has_no_plan_option(tmp_path):
    code, output = _run("generate", "blobs", "--n-samples", 10, "--n-features", 2, "--out", tmp_path / "x", "--plan")
    assert code == 2 and "No such option" in output
