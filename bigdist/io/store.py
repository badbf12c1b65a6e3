"""Write results to Zarr groups that say whether they are finished."""

from __future__ import annotations

import datetime
import logging
import os
import platform
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
import zarr.codecs

from bigdist import config
from bigdist.errors import IncompleteOutputError, OutputExistsError, StoreNotFoundError

logger = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    """Versions of bigdist and the libraries its results depend on."""
    import distributed

    import bigdist

    return {
        "bigdist": bigdist.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "zarr": zarr.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _compressors() -> Any:
    codec = config.get("io.compressor")
    if codec == "none":
        return None
    if codec == "zstd":
        return zarr.codecs.ZstdCodec()
    return zarr.codecs.BloscCodec(cname="lz4", shuffle=zarr.codecs.BloscShuffle.shuffle)


def _is_complete(path: str) -> bool | None:
    """True/False for a bigdist output, None when nothing is there."""
    try:
        node = zarr.open(store=path, mode="r")
    except FileNotFoundError:
        return None
    return bool(dict(node.attrs).get("bigdist", {}).get("complete", False))


def _mark_complete(path: str, *_written: Any) -> str:
    group = zarr.open_group(store=path, mode="r+")
    meta = dict(group.attrs["bigdist"])
    meta.update(
        complete=True,
        versions=versions(),
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    group.attrs["bigdist"] = meta
    logger.info("wrote %s", path)
    return path


def write_group(
    path: str | os.PathLike[str],
    arrays: dict[str, da.Array],
    *,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    compute: bool = True,
) -> Any:
    """Write dask arrays into a new Zarr group, block by block.

    The group's ``bigdist.complete`` attribute is false until the last block
    is stored, so an interrupted run is never taken for a finished one.

    Parameters
    ----------
    path : str or PathLike
        Local path or URL of the group.
    arrays : dict of str to dask array
        Each array is stored under its key, chunked along rows like the dask array.
    attrs : dict, optional
        JSON-serialisable attributes of the run (parameters, config).
    overwrite : bool
        Replace a finished group at ``path``. An unfinished one is always replaced.
    compute : bool
        Write now on the ambient scheduler; with False, return a dask Delayed
        whose computation writes every block and then marks the group complete.

    Returns
    -------
    str (the path) when ``compute`` is True, else a dask Delayed
    """
    path = os.path.expanduser(os.fspath(path))
    state = _is_complete(path)
    if state and not overwrite:
        raise OutputExistsError(
            f"{path!r} already holds a finished result; pass --overwrite (overwrite=True) to replace it"
        )
    if state is False:
        logger.warning("replacing the unfinished output at %s", path)
    group = zarr.open_group(store=path, mode="w")
    group.attrs.update({**(attrs or {}), "bigdist": {"complete": False}})
    targets, sources = [], []
    for name, array in arrays.items():
        rows = array.chunks[0][0] if array.chunks[0] else 1
        regular = array.rechunk({0: rows, **{axis: -1 for axis in range(1, array.ndim)}})
        targets.append(
            group.create_array(
                name,
                shape=array.shape,
                dtype=array.dtype,
                chunks=(rows, *array.shape[1:]),
                compressors=_compressors(),
            )
        )
        sources.append(regular)
    stored = da.store(sources, targets, lock=False, compute=False)
    finished = dask.delayed(_mark_complete, pure=False)(path, stored)
    return finished.compute() if compute else finished


def read_group(path: str | os.PathLike[str]) -> dict[str, da.Array]:
    """Open a finished bigdist output group as dask arrays.

    Raises IncompleteOutputError when the run that wrote it did not finish.
    """
    path = os.path.expanduser(os.fspath(path))
    state = _is_complete(path)
    if state is None:
        raise StoreNotFoundError(f"no Zarr group at {path!r}; check the path")
    if not state:
        raise IncompleteOutputError(f"{path!r} is unfinished (its run stopped before the last block); run it again")
    group = zarr.open_group(store=path, mode="r")
    return {name: da.from_zarr(array) for name, array in group.arrays()}


def update_attrs(path: str | os.PathLike[str], **attrs: Any) -> None:
    """Merge ``attrs`` into the attributes of the group at ``path``."""
    group = zarr.open_group(store=os.path.expanduser(os.fspath(path)), mode="r+")
    group.attrs.update(attrs)


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Arrays (shape, dtype, chunks, codecs), attributes and completeness of a Zarr node."""
    path = os.path.expanduser(os.fspath(path))
    try:
        node = zarr.open(store=path, mode="r")
    except FileNotFoundError:
        raise StoreNotFoundError(f"no Zarr array or group at {path!r}; check the path") from None
    members = dict(node.arrays()) if isinstance(node, zarr.Group) else {"": node}
    return {
        "path": path,
        "kind": "group" if isinstance(node, zarr.Group) else "array",
        "complete": bool(dict(node.attrs).get("bigdist", {}).get("complete", False)),
        "arrays": {
            name: {
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "chunks": list(array.chunks),
                "compressors": [type(c).__name__ for c in array.compressors],
            }
            for name, array in members.items()
        },
        "attrs": dict(node.attrs),
    }
