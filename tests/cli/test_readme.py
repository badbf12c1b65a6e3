"""The README's examples run as written, at small sizes: its Python blocks, and its ``bigdist`` commands.

Blocks after a ``<!-- full size ... -->`` comment (installing, the whole test suite, million-row configs)
or an ``<!-- illustrative ... -->`` one (reading files of the user's own) are not run. Sizes above a few
thousand rows are shrunk; commands run on a test cluster.
"""

import pathlib
import re
import shlex

import dask
import numpy as np
import pytest
from click.testing import CliRunner

import bigdist as bd
from bigdist.cli.main import main

README = pathlib.Path(__file__).parent.parent.parent / "README.md"
MAX_ROWS = 2000
NOT_RUN = ("<!-- full size", "<!-- illustrative")


def _blocks():
    """(language, code) of every fenced block not marked full size or illustrative, in order."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"(?P<before>[^\n]*)\n[ ]*```(?P<lang>\w*)\n(?P<code>.*?)\n[ ]*```", text, re.S):
        if not match["before"].startswith(NOT_RUN):
            blocks.append((match["lang"], match["code"]))
    return blocks


def _commands():
    """Each ``bigdist ...`` line of the shell blocks (continuations joined, comments dropped), as argv lists."""
    commands = []
    for lang, code in _blocks():
        if lang not in ("", "bash"):
            continue
        for line in code.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["bigdist"]:
                commands.append(words[1:])
    return commands


def _small(argv):
    """The command at a small size: --n-samples capped at MAX_ROWS."""
    argv = list(argv)
    for position, word in enumerate(argv[:-1]):
        if word == "--n-samples":
            argv[position + 1] = str(min(int(argv[position + 1]), MAX_ROWS))
    return argv


def test_the_readme_has_examples_to_run():
    languages = [lang for lang, _ in _blocks()]
    assert languages.count("python") >= 5 and len(_commands()) >= 10


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_examples_run_as_written(workdir):
    rng = np.random.default_rng(0)
    with dask.config.set(scheduler="synchronous"):
        # Non-negative data, so that the chi2 example applies; labels of 3 classes.
        bd.io.make_random("train.zarr", 400, 8, distribution="uniform", random_state=0)
        bd.io.make_random("queries.zarr", 30, 8, distribution="uniform", random_state=1)
        y = rng.integers(0, 3, 400)
        np.save("labels.npy", y)
        import zarr

        zarr.create_array(store="labels.zarr", data=y, chunks=(100,))
        namespace = {"Q": bd.open_array("queries.zarr").compute(), "y": y, "y_true": rng.integers(0, 3, 30)}
        ran = 0
        for lang, code in _blocks():
            if lang == "python":
                exec(compile(code, f"README.md python block {ran + 1}", "exec"), namespace)
                ran += 1
    assert ran >= 5
    assert bd.io.describe("neighbours.zarr")["complete"] and bd.io.describe("clusters.zarr")["complete"]


def test_shell_examples_run_as_written(workdir, scheduler):
    import zarr

    commands = [_small(argv) for argv in _commands()]
    # The commands that make data come first: the README shows them where they are explained.
    makers = [argv for argv in commands if argv[0] == "generate"]
    for argv in [*makers, None, *[argv for argv in commands if argv[0] != "generate"]]:
        if argv is None:
            # The inputs the README's commands read but do not make: queries q.zarr, labels of data.zarr.
            with dask.config.set(scheduler="synchronous"):
                bd.io.make_random("q.zarr", 50, 64, random_state=3)
            rows = zarr.open_array(str(workdir / "data.zarr"), mode="r").shape[0]
            zarr.create_array(store=str(workdir / "labels.zarr"), data=np.arange(rows) % 5, chunks=(500,))
            continue
        if argv[0] not in ("info", "verify"):
            argv = [*argv, "--scheduler", scheduler]
        result = CliRunner().invoke(main, argv, catch_exceptions=False)
        assert result.exit_code == 0, f"bigdist {shlex.join(argv)}\n{result.output}"
    assert bd.io.describe("ms.zarr")["complete"] and bd.io.describe("nn.zarr")["complete"]
