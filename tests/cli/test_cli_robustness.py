"""The command line as a user meets it: early refusals, Ctrl-C, worker noise, locks, honest summaries."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import dask
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

import bigdist
from bigdist.cli.main import main
from tests.oracle import knn_oracle


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def _write(path, array):
    zarr.create_array(store=str(path), data=np.asarray(array), chunks=(max(1, len(array) // 4), array.shape[1]))


@pytest.fixture
def no_cluster(monkeypatch):
    """Fail any attempt to start or join a cluster: what is refused must be refused before one starts."""
    import bigdist.runtime

    def start(**_):
        raise AssertionError("a cluster was started before the bad argument was refused")

    monkeypatch.setattr(bigdist.runtime, "start", start)


def _bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "x.zarr", rng.random((40, 3)))
    _write(tmp_path / "x5.zarr", rng.random((40, 5)))
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w").create_array("points", shape=(4, 2), dtype="f8")
    (tmp_path / "data.h5x").write_bytes(b"not an array")
    np.save(tmp_path / "labels.npy", np.arange(7))
    return {
        "a file no reader opens": (["knn", "--train", tmp_path / "data.h5x"], "data.h5x"),
        "a group, not an array": (["kmeans", "--data", tmp_path / "group.zarr"], "group.zarr/points"),
        "queries of other width": (
            ["knn", "--train", tmp_path / "x.zarr", "--queries", tmp_path / "x5.zarr"],
            "x5.zarr",
        ),
        "labels of other length": (
            ["classify", "--train", tmp_path / "x.zarr", "--labels", tmp_path / "labels.npy"],
            "labels.npy",
        ),
        "output is the input": (["meanshift", "--data", tmp_path / "x.zarr", "--out", tmp_path / "x.zarr"], "--data"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "a file no reader opens",
        "a group, not an array",
        "queries of other width",
        "labels of other length",
        "output is the input",
    ],
)
def test_bad_inputs_and_outputs_are_refused_before_any_cluster_starts(tmp_path, no_cluster, case):
    args, named = _bad_inputs(tmp_path)[case]
    if "--out" not in args:
        args = [*args, "--out", tmp_path / "out.zarr"]
    began = time.perf_counter()
    code, output = _run(*args)
    assert code == 1 and output.startswith("error: ") and named in output, output
    assert time.perf_counter() - began < 5  # no 10-15 s of LocalCluster start (loose: the machine is shared)
    assert not (tmp_path / "out.zarr").exists() and not (tmp_path / "out.zarr.lock").exists()


def test_a_finished_output_is_refused_before_any_cluster_starts(tmp_path, no_cluster):
    _write(tmp_path / "x.zarr", np.random.default_rng(0).random((40, 3)))
    out = tmp_path / "nn.zarr"
    with dask.config.set(scheduler="synchronous"):
        bigdist.knn(str(tmp_path / "x.zarr"), None, k=2).to_zarr(str(out))
    code, output = _run("knn", "--train", tmp_path / "x.zarr", "--out", out)
    assert code == 1 and "already holds a finished result" in output


def test_kmeans_help_shows_its_init_choices_readably():
    code, output = _run("kmeans", "--help")
    assert code == 0
    assert "[k-means||, k-means++, random]" in output and "|||" not in output


def _lock(out, pid, host=None):
    holder = {"host": host or socket.gethostname(), "pid": pid, "started_at": "2026-01-01T00:00:00+00:00",
              "command": "bigdist knn --train x.zarr --out nn.zarr", "token": "theirs"}  # fmt: skip
    pathlib.Path(f"{out}.lock").write_text(json.dumps(holder))


def test_a_second_run_into_the_same_output_refuses_naming_the_first(tmp_path, no_cluster):
    _write(tmp_path / "x.zarr", np.random.default_rng(0).random((40, 3)))
    out = tmp_path / "nn.zarr"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as running:
        try:
            _lock(out, running.pid)
            code, output = _run("knn", "--train", tmp_path / "x.zarr", "--out", out)
        finally:
            running.kill()
    assert code == 1, output
    assert f"pid {running.pid} on host {socket.gethostname()}" in output and "2026-01-01T00:00:00" in output
    assert f"{out}.lock" in output
    # A lock of another host cannot be checked, so it is not taken over either.
    _lock(out, 1, host="elsewhere.example")
    code, output = _run("knn", "--train", tmp_path / "x.zarr", "--out", out)
    assert code == 1 and "host elsewhere.example" in output


def test_a_lock_left_by_a_killed_run_is_taken_over_and_removed_at_the_end(tmp_path, scheduler):
    train = np.random.default_rng(0).random((60, 3))
    _write(tmp_path / "x.zarr", train)
    out = tmp_path / "nn.zarr"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _lock(out, gone.pid)
    code, output = _run("knn", "--train", tmp_path / "x.zarr", "--k", 3, "--out", out, "--scheduler", scheduler)
    assert code == 0, output
    assert not pathlib.Path(f"{out}.lock").exists()
    np.testing.assert_array_equal(zarr.open_group(str(out))["indices"][:], knn_oracle(train, None, 3)[1])


def test_the_lock_is_held_while_the_run_computes(tmp_path, scheduler, monkeypatch):
    _write(tmp_path / "x.zarr", np.random.default_rng(0).random((60, 3)))
    out = tmp_path / "nn.zarr"
    from bigdist.knn import KNNResult

    seen = []
    real_to_zarr = KNNResult.to_zarr

    def to_zarr(result, *args, **kwargs):
        seen.append(json.loads(pathlib.Path(f"{out}.lock").read_text()))
        return real_to_zarr(result, *args, **kwargs)

    monkeypatch.setattr(KNNResult, "to_zarr", to_zarr)
    code, output = _run("knn", "--train", tmp_path / "x.zarr", "--k", 3, "--out", out, "--scheduler", scheduler)
    assert code == 0, output
    assert seen[0]["pid"] == os.getpid() and seen[0]["host"] == socket.gethostname()
    assert not pathlib.Path(f"{out}.lock").exists()


def test_info_names_a_kmeans_checkpoint(tmp_path):
    _write(tmp_path / "x.zarr", np.random.default_rng(0).random((200, 2)))
    checkpoint = tmp_path / "km-checkpoint.zarr"
    with dask.config.set(scheduler="synchronous"):
        result = bigdist.kmeans(str(tmp_path / "x.zarr"), 3, random_state=0, checkpoint=str(checkpoint))
    code, output = _run("info", checkpoint)
    assert code == 0, output
    assert "not written by bigdist" not in output
    assert f"k-means checkpoint written by bigdist: the centroids after {result.n_iter} iteration(s)" in output


def _cli(*args, env=None, **popen):
    """``bigdist ARGS`` in a fresh process (its own process group, as a shell runs a foreground job)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from bigdist.cli.main import main; main()", *map(str, args)],
        env={**os.environ, "PYTHONPATH": os.getcwd(), "DASK_BIGDIST__RUNTIME__N_WORKERS": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Ctrl-C's default, as a terminal's foreground job has it: a shell's background job (a CI runner's
        # `cmd &`) starts with SIGINT ignored, and its children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )


def test_ctrl_c_exits_130_keeps_what_was_written_and_the_same_command_resumes(tmp_path, scheduler):
    rng = np.random.default_rng(0)
    queries, train = rng.random((4000, 16), dtype=np.float32), rng.random((100_000, 16), dtype=np.float32)
    _write(tmp_path / "q.zarr", queries)
    _write(tmp_path / "x.zarr", train)
    out = tmp_path / "nn.zarr"
    args = ["knn", "--queries", tmp_path / "q.zarr", "--train", tmp_path / "x.zarr", "--k", 5, "--out", out]
    blocks = {"DASK_BIGDIST__KNN__QUERY_BLOCK_ROWS": "100"}  # 40 query blocks
    markers = out / "bigdist_progress" / "distances" / "c"
    with _cli(*args, env=blocks) as run:  # on its own LocalCluster, whose workers share the terminal
        deadline = time.monotonic() + 600
        while run.poll() is None and time.monotonic() < deadline and not any(markers.rglob("0")):
            time.sleep(0.02)
        assert run.poll() is None, run.communicate()
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        _, stderr = run.communicate(timeout=300)
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr and "CancelledError" not in stderr and "KeyboardInterrupt" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last == f"interrupted: the blocks already written to {out} are kept; run the same command again to resume"
    info = bigdist.io.describe(str(out))
    assert info["complete"] is False and not pathlib.Path(f"{out}.lock").exists()
    written = int(info["progress"]["distances"].split()[0])
    assert 0 < written < 40

    with dask.config.set({"bigdist.knn.query-block-rows": 100}):
        code, output = _run(*args, "--scheduler", scheduler)
    assert code == 0, output
    share = 1 - written / 40
    assert f"(resumed: {1 - share:.0%} was written by an earlier run; rates are over the {share:.0%}" in output
    timings = zarr.open_group(str(out)).attrs["timings"]
    assert timings["computed_share"] == pytest.approx(share)
    assert timings["gflops"] == pytest.approx(2 * 4000 * 100_000 * 16 * share / timings["seconds"] / 1e9)
    rows = np.arange(0, 4000, 37)  # rows of every block, those written before Ctrl-C and after
    expected = knn_oracle(queries[rows].astype(np.float64), train.astype(np.float64), 5)[1]
    np.testing.assert_array_equal(zarr.open_group(str(out))["indices"][:][rows], expected)


def test_worker_tracebacks_stay_out_of_the_terminal_unless_verbose(tmp_path):
    data = np.random.default_rng(0).random((400, 3))
    data[123, 1] = np.nan
    _write(tmp_path / "x.zarr", data)
    runs = {
        verbose: _cli("knn", "--train", tmp_path / "x.zarr", "--out", tmp_path / f"nn{len(verbose)}.zarr", *verbose)
        for verbose in ((), ("-v",))
    }
    stderr = {verbose: run.communicate(timeout=600)[1] for verbose, run in runs.items()}
    quiet, verbose = stderr[()], stderr[("-v",)]
    assert runs[()].returncode == 1 and runs[("-v",)].returncode == 1
    assert "error: " in quiet and "NaN at row 123, column 1" in quiet
    assert "Compute Failed" not in quiet and "Traceback" not in quiet
    assert "Compute Failed" in verbose  # -v shows what the workers logged


def test_dask_scheduler_address_is_honoured_and_the_flag_wins(tmp_path):
    from distributed import LocalCluster

    train = np.random.default_rng(0).random((50, 3))
    _write(tmp_path / "x.zarr", train)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address=None
    ) as cluster:  # tcp, so that the command's own process can reach it
        address = cluster.scheduler_address
        with _cli("knn", "--train", tmp_path / "x.zarr", "--k", 2, "--out", tmp_path / "a.zarr",
                  env={"DASK_SCHEDULER_ADDRESS": address}) as run:  # fmt: skip
            stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        assert f"dashboard: {cluster.dashboard_link}" in stdout  # this cluster's, not a LocalCluster of its own
        ran_here = set(cluster.scheduler.task_prefixes)
        assert any(prefix.startswith("bigdist-") for prefix in ran_here), ran_here
        with _cli("knn", "--train", tmp_path / "x.zarr", "--k", 2, "--out", tmp_path / "b.zarr",
                  "--scheduler", address, env={"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1"}) as run:  # fmt: skip
            _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    expected = knn_oracle(train, None, 2)[1]
    for name in ("a.zarr", "b.zarr"):
        np.testing.assert_array_equal(zarr.open_group(str(tmp_path / name))["indices"][:], expected)
