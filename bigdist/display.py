"""How results and progress show themselves: short reprs, HTML tables, progress bars and log lines.

Both say what a user asks first — shapes, dtypes, metric, whether the arrays
are still lazy, timings — and never print the data (a k-means result's repr
once dumped every centroid and every iteration's stats). Everything shown is
escaped: metric names, paths and parameters come from users.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import dask
import numpy as np

from bigdist.resources import current_client

Rows = Sequence[tuple[str, Any]]


def array_summary(array: Any) -> str:
    """``dask float32 (1,000, 10), lazy, 4 blocks``; ``numpy float64 (8, 3)``; for anything else its type."""
    shape = getattr(array, "shape", None)
    dtype = getattr(array, "dtype", None)
    if shape is None or dtype is None:
        return type(array).__name__
    dims = "(" + ", ".join(f"{int(size):,}" for size in shape) + ("," if len(shape) == 1 else "") + ")"
    if isinstance(array, np.ndarray):
        return f"numpy {dtype} {dims}"
    numblocks = getattr(array, "numblocks", None)
    blocks = int(np.prod(numblocks)) if numblocks is not None else None
    state = "persisted" if _persisted(array) else "lazy"
    return f"dask {dtype} {dims}, {state}" + (f", {blocks:,} block{'s' * (blocks != 1)}" if blocks else "")


def _persisted(array: Any) -> bool:
    """Whether a dask collection's blocks are computed already (in memory or held by the cluster)."""
    graph = array.__dask_graph__()
    if len(getattr(graph, "layers", ())) != 1:
        return False  # a persisted array is one layer of results; anything more still has work to do
    # Without distributed loaded there are no futures (and importing it costs ~0.3 s).
    distributed = sys.modules.get("distributed")
    futures = (distributed.Future,) if distributed is not None else ()
    return all(isinstance(value, (np.ndarray, *futures)) for value in dict(graph).values())


def dashboard_link() -> str | None:
    """The dashboard of the ambient Dask client, if there is one."""
    client = current_client()
    return (client.dashboard_link or None) if client is not None else None


def seconds(stats: Sequence[dict[str, Any]]) -> float:
    """Total of the per-iteration ``seconds`` of a result's stats."""
    return float(sum(step.get("seconds", 0.0) for step in stats))


def text(name: str, fields: Rows) -> str:
    """``Name(key=value, ...)`` on one line."""
    return f"{name}(" + ", ".join(f"{key}={value}" for key, value in fields) + ")"


def html_table(name: str, rows: Rows) -> str:
    """An HTML table of ``rows`` (label, value) under ``name``, with the dashboard link when there is a client."""
    link = dashboard_link()
    if link:
        rows = [*rows, ("dashboard", _Link(link))]
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(label))}</th>"
        f"<td style='text-align:left'>{value.html() if isinstance(value, _Link) else html.escape(str(value))}</td></tr>"
        for label, value in rows
    )
    return f"<div><strong>{html.escape(name)}</strong><table>{cells}</table></div>"


class _Link:
    def __init__(self, url: str) -> None:
        self.url = url

    def html(self) -> str:
        url = html.escape(self.url, quote=True)
        if not self.url.startswith(("http://", "https://")):
            return url  # only a web address becomes a link
        return f"<a href='{url}' target='_blank'>{url}</a>"


def log_progress(level: int | str = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Show bigdist's progress lines (iterations, blocks, resumes) in a notebook or script.

    bigdist logs with :mod:`logging` under the ``"bigdist"`` logger and, as a
    library, adds no handler: without one, Python shows warnings only. This
    adds one handler (replacing one added by an earlier call) at ``level``.

    Parameters
    ----------
    level : int or str
        ``logging.INFO`` (default): one line per k-means or mean-shift
        iteration and per written output; ``logging.DEBUG`` for more.
    stream : file-like, optional
        Where the lines go; default ``sys.stdout``, which a notebook shows
        under the cell.

    Returns
    -------
    logging.Handler
        The handler; ``logging.getLogger("bigdist").removeHandler(handler)`` undoes the call.
    """
    logger = logging.getLogger("bigdist")
    for handler in [h for h in logger.handlers if getattr(h, "_bigdist_progress", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    handler._bigdist_progress = True  # type: ignore[attr-defined]
    handler.setLevel(level)
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > handler.level:
        logger.setLevel(handler.level)
    return handler


class BlockProgress:
    """``progress(done, total, elapsed_seconds)`` for the waves of ``to_zarr``: a bar of written blocks.

    tqdm's: a widget in a notebook (with ipywidgets), text in a terminal. A
    resumed run starts the bar at the blocks an earlier run had written.
    """

    def __init__(self, description: str = "blocks written") -> None:
        self.description = description
        self._bar: Any = None

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=done - 1, desc=self.description, unit="block")
        self._bar.update(done - self._bar.n)
        if done >= total:
            self._bar.close()


def progress(work: Any = None) -> Any:
    """A progress bar: for the waves of ``to_zarr`` (no argument), or while ``work`` is computed.

    ``res.to_zarr(path, progress=bd.progress())`` draws the blocks written as
    they come (:class:`BlockProgress`). ``bd.progress(work)`` computes a dask
    collection (e.g. ``km.labels``) with a bar: on the ambient distributed
    Client ``distributed.progress``'s (a widget in a notebook when ipywidgets
    is installed, else text), without a client ``dask.diagnostics.ProgressBar``.

    Parameters
    ----------
    work : dask collection or Delayed, optional

    Returns
    -------
    BlockProgress when ``work`` is None, else the computed value, as ``dask.compute(work)[0]``.
    """
    if work is None:
        return BlockProgress()
    client = current_client()
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return dask.compute(work)[0]
    from distributed import progress as show

    future = client.compute(work)
    widgets = _in_kernel() and importlib.util.find_spec("ipywidgets") is not None
    show(future, notebook=widgets)
    return future.result()


def _in_kernel() -> bool:
    """Whether this runs in a Jupyter (IPython) kernel."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None  # type: ignore[attr-defined]
    return ip is not None and getattr(ip, "kernel", None) is not None
