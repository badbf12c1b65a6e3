"""scripts/example.ipynb runs from top to bottom in a fresh kernel of this environment (as CI runs it)."""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the test extra: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the test extra: pip install -e '.[test]'")

NOTEBOOK = pathlib.Path(__file__).parent.parent / "scripts" / "example.ipynb"


def test_example_notebook_runs_without_errors(tmp_path, monkeypatch):
    # The kernel is a child process: it finds this checkout of bigdist and writes its data under tmp_path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NOTEBOOK.parent.parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("BIGDIST_EXAMPLE_DIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the cell when any cell fails
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    html = "".join(output.get("data", {}).get("text/html", "") for output in outputs)
    for name in ("KNNResult", "KMeansResult", "MeanShiftResult"):
        assert f"bigdist {name}" in html  # the results showed themselves as tables
    logs = "".join(output.get("text", "") for output in outputs if output.get("output_type") == "stream")
    # bigdist's log lines, and the bar of the blocks the waves wrote (tqdm's text without ipywidgets).
    assert "k-means iteration 1:" in logs and "blocks written: 100%" in logs
    assert "Sending large graph" not in logs
    assert (tmp_path / "neighbours.zarr").is_dir() and (tmp_path / "modes.zarr").is_dir()
