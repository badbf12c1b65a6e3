"""Write results to Zarr groups that say whether they are finished.

A bigdist output carries ``attrs["bigdist"]["complete"]``: false from the
moment the group is created, true (with the versions and the finishing time)
only once every block is stored. Readers refuse an unfinished output, and
writers never replace a finished one (or anything bigdist did not write)
without ``overwrite=True``.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import logging
import os
import pathlib
import platform
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from zarr.core.sync import sync

from bigdist import config
from bigdist.errors import IncompleteOutputError, OutputExistsError, ParameterError, StoreError, StoreNotFoundError
from bigdist.io.integrity import STORE_ERRORS, ZarrSource, output_codecs

logger = logging.getLogger(__name__)

State = Literal["missing", "complete", "incomplete", "foreign"]


def versions() -> dict[str, str]:
    """Versions of bigdist and the libraries its results depend on.

    Returns
    -------
    dict of str to str
        Keys ``bigdist``, ``dask``, ``distributed``, ``zarr``, ``numpy``, ``python``.
    """

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "bigdist": version("bigdist"),
        "dask": dask.__version__,
        "distributed": version("distributed"),
        "zarr": zarr.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _compressors() -> Any:
    """Codecs of written arrays: ``bigdist.io.compressor``, then a crc32c checksum of every chunk."""
    return output_codecs(config.get("io.compressor"))


# Every chunk is stored, even one equal to the fill value: a missing chunk then always means damage.
WRITE_CONFIG = {"write_empty_chunks": True}


def normalise_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, ``~`` expanded for local paths; URLs (``scheme://...``) unchanged."""
    text = os.fspath(path)
    return text if "://" in text else os.path.expanduser(text)


#: fsspec options of a URL's filesystem (``key``, ``secret``, ``client_kwargs``, ...), as ``s3fs`` takes them.
StorageOptions = Mapping[str, Any] | None


def zarr_options(path: str, storage_options: StorageOptions) -> dict[str, Any] | None:
    """``storage_options`` for ``zarr.open(store=path, ...)``: None for a local path (zarr refuses them there)."""
    return dict(storage_options) if storage_options and "://" in path else None


def _open_node(path: str, storage_options: StorageOptions = None) -> zarr.Array | zarr.Group | None:
    try:
        return zarr.open(store=path, mode="r", storage_options=zarr_options(path, storage_options))
    except FileNotFoundError:
        return None
    except STORE_ERRORS as error:
        if "://" not in path:
            raise
        raise StoreError(
            f"cannot reach the store at {path!r} ({type(error).__name__}: {error}); check the URL and its "
            f"storage_options (credentials, endpoint)"
        ) from error


def _meta(node: zarr.Array | zarr.Group) -> dict[str, Any] | None:
    meta = dict(node.attrs).get("bigdist")
    return dict(meta) if isinstance(meta, Mapping) and "complete" in meta else None


def _state(path: str, storage_options: StorageOptions = None) -> State:
    """What is at ``path``: nothing, a finished or unfinished bigdist output, or something else."""
    node = _open_node(path, storage_options)
    if node is None:
        local = pathlib.Path(path) if "://" not in path else None
        if local is not None and (local.is_file() or (local.is_dir() and any(local.iterdir()))):
            return "foreign"
        return "missing"
    meta = _meta(node)
    if meta is None:
        return "foreign"
    return "complete" if meta["complete"] is True else "incomplete"


def prepare_output(path: str, overwrite: bool, what: str, *, storage_options: StorageOptions = None) -> None:
    """Raise unless ``path`` may be (re)written; never replaces data bigdist did not write unless asked.

    :func:`write_group` calls it; a writer that must compute something
    before it can create the group (e.g. ragged sizes) calls it first too,
    so a refusal comes before the work.

    Parameters
    ----------
    path : str, from :func:`normalise_path`
    overwrite : bool, replace a finished output or foreign Zarr data
    what : str, what is written, for the message (e.g. "result")
    storage_options : dict, optional, fsspec options of a URL's filesystem (credentials, endpoint)

    Raises
    ------
    OutputExistsError
        ``path`` holds a finished output or foreign data and ``overwrite`` is False,
        or ``path`` is an existing file or directory that is not a Zarr store.
    """
    state = _state(path, storage_options)
    if state == "complete" and not overwrite:
        raise OutputExistsError(
            f"{path!r} already holds a finished {what}; pass --overwrite (overwrite=True) to replace it, "
            f"or choose another output path"
        )
    if state == "foreign":
        if _open_node(path, storage_options) is None:
            # Not a Zarr store at all: bigdist deletes no files it cannot recognise, even with overwrite.
            raise OutputExistsError(
                f"{path!r} exists and is not a Zarr store; bigdist will not replace it, choose another output path"
            )
        if not overwrite:
            raise OutputExistsError(
                f"{path!r} already holds Zarr data that bigdist did not write (is it an input?); "
                f"pass --overwrite (overwrite=True) to replace it, or choose another output path"
            )
    if state == "incomplete":
        logger.warning("replacing the unfinished output at %s", path)


def regular_chunks(array: da.Array) -> tuple[da.Array, tuple[int, ...]]:
    """Rechunk only the axes whose chunks zarr cannot store (zarr needs equal chunks, the last one smaller)."""
    fixes = {
        axis: max(sizes)
        for axis, sizes in enumerate(array.chunks)
        if any(size != sizes[0] for size in sizes[:-1]) or sizes[-1] > sizes[0]
    }
    if fixes:
        array = array.rechunk(fixes)
    return array, tuple(max(1, sizes[0]) if sizes else 1 for sizes in array.chunks)


PROGRESS_GROUP = "bigdist_progress"


def _key(array: zarr.Array, region: tuple[Any, ...]) -> str:
    """The store key of the chunk holding the start of ``region`` of ``array``."""
    starts = [(item.start or 0) if isinstance(item, slice) else int(item) for item in region]
    coords = tuple(start // size for start, size in zip(starts, array.chunks, strict=False))
    coords += (0,) * (array.ndim - len(coords))
    key = array.metadata.encode_chunk_key(coords)
    return f"{array.path}/{key}" if array.path else key


def store_region(array: zarr.Array, region: tuple[Any, ...], value: Any) -> None:
    """``array[region] = value``; a store that keeps failing raises StoreError naming the chunk and the store."""
    # The filesystem has retried already (s3fs, botocore): an error here is one the store kept giving.
    try:
        array[region] = value
    except STORE_ERRORS as error:
        store = str(array.store_path.store).removeprefix("file://")
        raise StoreError(
            f"writing the chunk {_key(array, region)!r} to {store} failed ({type(error).__name__}: {error}) after "
            f"the filesystem's retries; every block written before it is kept and marked: once the store works "
            f"again, run the same command (same arguments, no --overwrite) to resume"
        ) from error


def store_block(
    block: np.ndarray, target: zarr.Array, region: tuple[slice, ...], done: zarr.Array, index: tuple[int, ...]
) -> int:
    """Store one block, then mark it done: a marker always stands for a block already written."""
    store_region(target, region, block)
    store_region(done, index, 1)
    return 1


def mark_complete(path: str, *_stored: Any, storage_options: StorageOptions = None) -> str:
    """Flag the group finished, then drop the per-block markers; runs only after every store task."""
    group = zarr.open_group(store=path, mode="r+", storage_options=zarr_options(path, storage_options))
    meta = dict(group.attrs.get("bigdist", {}))
    meta.update(complete=True, versions=versions(), finished_at=_now())
    group.attrs["bigdist"] = meta
    # After the flag: if this is interrupted, the output is complete with stale markers, which is harmless.
    # The whole prefix, not only the group: markers written by a concurrent run after another run deleted
    # the group's metadata are bare chunk files that zarr warns about on every read.
    sync(group.store.delete_dir(f"{group.path}/{PROGRESS_GROUP}".lstrip("/")))
    logger.info("wrote %s", path)
    return path


def output_fingerprint(sources: Mapping[str, da.Array]) -> str:
    """Token of what is being written: dask names hash the inputs, parameters and chunking."""
    return tokenize(sorted((name, a.name, a.shape, str(a.dtype), a.chunks) for name, a in sources.items()))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The attributes that differ between two runs, as 'key: old -> new' (at most five)."""
    before, after = (
        _flatten(json.loads(json.dumps(old, default=str))),
        _flatten(json.loads(json.dumps(new, default=str))),
    )
    before.pop("bigdist", None)
    keys = sorted(
        key
        for key in set(before) | set(after)
        if not key.startswith(("bigdist.", "timings.")) and before.get(key) != after.get(key)
    )
    shown = [f"{key}: {before.get(key)!r} -> {after.get(key)!r}" for key in keys[:5]]
    return "; ".join(shown) + (f"; and {len(keys) - 5} more" if len(keys) > 5 else "")


def _stored_fingerprint(path: str, storage_options: StorageOptions = None) -> str | None:
    node = _open_node(path, storage_options)
    meta = _meta(node) if node is not None else None
    return None if meta is None else meta.get("fingerprint")


def _resume_group(
    path: str,
    sources: Mapping[str, da.Array],
    fingerprint: str,
    attrs: Mapping[str, Any],
    storage_options: StorageOptions = None,
) -> tuple[zarr.Group, dict[str, np.ndarray]] | None:
    """Open an unfinished output of the same run for resuming (None: nothing to resume), or refuse another run's."""
    group = zarr.open_group(store=path, mode="r+", storage_options=zarr_options(path, storage_options))
    meta = _meta(group) or {}
    if meta.get("fingerprint") != fingerprint:
        differences = _differences(dict(group.attrs), attrs)
        raise OutputExistsError(
            f"{path!r} holds an unfinished output of a different run ("
            f"{differences or 'same parameters, but other input data, chunking or random seed'}); rerun with the "
            f"arguments of that run to resume it, or pass --overwrite (overwrite=True) to replace it"
        )
    if not all(name in group and f"{PROGRESS_GROUP}/{name}" in group for name in sources):
        # Killed while the arrays were being created, before any block was computed: start afresh.
        return None
    done = {name: np.asarray(group[f"{PROGRESS_GROUP}/{name}"][...]).astype(bool) for name in sources}
    finished, total = sum(int(d.sum()) for d in done.values()), sum(d.size for d in done.values())
    meta["resumed_at"] = [*meta.get("resumed_at", []), _now()]
    group.attrs["bigdist"] = meta
    if not done:
        # A writer that keeps its own markers (radius neighbours' staging) says what it kept.
        logger.warning("resuming the unfinished output at %s", path)
    else:
        logger.warning(
            "resuming the unfinished output at %s: %d of %d blocks already written are kept", path, finished, total
        )
    return group, done


def _create_group(
    path: str,
    sources: Mapping[str, da.Array],
    fingerprint: str,
    attrs: dict[str, Any],
    storage_options: StorageOptions = None,
) -> tuple[zarr.Group, dict[str, np.ndarray]]:
    meta = {
        **dict(attrs.pop("bigdist", None) or {}),
        "complete": False,
        "arrays": list(sources),
        "fingerprint": fingerprint,
        "started_at": _now(),
    }
    group = zarr.open_group(store=path, mode="w", zarr_format=3, storage_options=zarr_options(path, storage_options))
    # Written before any block: a crash from here on leaves an output that says it is unfinished.
    group.attrs.update({**attrs, "bigdist": meta})
    return group, create_arrays(group, sources)


def create_arrays(group: zarr.Group, sources: Mapping[str, Any], *, overwrite: bool = False) -> dict[str, np.ndarray]:
    """Create the result arrays of an unfinished output and their per-block markers (none set).

    For writers whose arrays' shapes are only known after a first phase (radius
    neighbours' pairs); :func:`open_output` creates its arrays through it.

    Parameters
    ----------
    group : zarr.Group, an unfinished output
    sources : dict of str to array-like, as for :func:`open_output`
    overwrite : bool, replace arrays of these names left by an interrupted creation

    Returns
    -------
    dict of str to bool ndarray of shape ``numblocks``, all False
    """
    progress = group.require_group(PROGRESS_GROUP)
    for name, source in sources.items():
        chunks = tuple(max(1, sizes[0]) if sizes else 1 for sizes in source.chunks)
        group.create_array(
            name,
            shape=source.shape,
            dtype=source.dtype,
            chunks=chunks,
            compressors=_compressors(),
            config=WRITE_CONFIG,
            overwrite=overwrite,
        )
        # One marker chunk per block: tasks never write the same file.
        progress.create_array(
            name,
            shape=source.numblocks,
            dtype="uint8",
            chunks=(1,) * source.ndim,
            fill_value=0,
            compressors=None,
            overwrite=overwrite,
        )
    return {name: np.zeros(source.numblocks, dtype=bool) for name, source in sources.items()}


def open_output(
    path: str | os.PathLike[str],
    arrays: Mapping[str, Any],
    *,
    fingerprint: str,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    storage_options: StorageOptions = None,
) -> tuple[zarr.Group, dict[str, np.ndarray]]:
    """Create the unfinished output group for ``arrays``, or reopen an unfinished one of the same run to resume it.

    :func:`write_group` and the execution layer's waves write through it.

    Parameters
    ----------
    path : str or PathLike
    arrays : dict of str to array-like
        Anything with ``shape``, ``dtype``, dask-style ``chunks``, ``numblocks``
        and ``ndim`` (a dask array, a ``bigdist.execution.jobs.OutputArray``);
        each becomes a Zarr array chunked by its first chunk along every axis.
    fingerprint : str
        Token of the run (inputs, parameters, chunking): an unfinished output
        with another fingerprint is refused unless ``overwrite``.
    attrs, overwrite, storage_options
        As for :func:`write_group`.

    Returns
    -------
    (zarr.Group, dict of str to bool ndarray of shape ``numblocks``)
        The group, and for each array which blocks are already written.
    """
    path = normalise_path(path)
    attrs = dict(attrs or {})
    state = _state(path, storage_options)
    # The same run resumes even with overwrite: its blocks would be written again byte for byte.
    resumed = None
    if state == "incomplete" and (not overwrite or _stored_fingerprint(path, storage_options) == fingerprint):
        resumed = _resume_group(path, arrays, fingerprint, attrs, storage_options)
    if resumed is not None:
        return resumed
    prepare_output(path, overwrite, "result", storage_options=storage_options)
    return _create_group(path, arrays, fingerprint, attrs, storage_options)


def write_group(
    path: str | os.PathLike[str],
    arrays: Mapping[str, Any],
    *,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    compute: bool = True,
    storage_options: StorageOptions = None,
) -> Any:
    """Write dask arrays into a Zarr v3 group, block by block, marked complete last; resume an unfinished one.

    The group's ``attrs["bigdist"]["complete"]`` is false until the last
    block is stored, so an interrupted run is never taken for a finished one.
    Each stored block is recorded by a marker; a later call that writes the
    same arrays (same inputs, parameters and chunking, checked by a
    fingerprint of their dask graphs) to an unfinished group skips the
    blocks already written, so the finished arrays are byte-identical to
    those of an uninterrupted run. Every chunk is stored, with a crc32c
    checksum after ``bigdist.io.compressor``. Blocks are stored on the
    ambient scheduler (a ``dask.distributed`` Client if one is active).

    Parameters
    ----------
    path : str or PathLike
        Local path or fsspec URL of the group.
    arrays : dict of str to dask array of any shape, e.g. (n_samples, k)
        Each array is stored under its key with the dask array's chunks
        (axes with irregular chunks are first rechunked to their largest
        chunk, as zarr needs regular chunks). NumPy arrays are accepted too.
    attrs : dict, optional
        JSON-serialisable attributes of the run (parameters, config). A
        ``"bigdist"`` entry is merged into bigdist's own bookkeeping.
    overwrite : bool
        Replace a finished output, an unfinished output of a different run,
        or a Zarr node bigdist did not write, at ``path`` (an unfinished
        output of the same run is resumed all the same).
    compute : bool
        Write now. With False, create (or reopen) the unfinished group and
        return a dask Delayed whose computation writes the missing blocks
        and then marks the group complete.
    storage_options : dict, optional
        fsspec options of the URL's filesystem (e.g. ``key``, ``secret``,
        ``client_kwargs={"endpoint_url": ...}`` for s3fs), used by the client
        and, inside the pickled store, by the workers that write the blocks.
        Retries of failed requests are the filesystem's (s3fs retries
        throttling and dropped connections; botocore's own retries are set by
        ``config_kwargs={"retries": {"max_attempts": ...}}``).

    Returns
    -------
    str or dask.delayed.Delayed
        The path when ``compute`` is True, else the Delayed (which computes to the path).

    Raises
    ------
    OutputExistsError
        ``path`` holds a finished output, an unfinished output of a different
        run, or foreign data, and ``overwrite`` is False; or ``path`` is an
        existing file or directory that is not a Zarr store.
    StoreError
        The store kept failing to write a chunk (named in the message); the
        blocks written before are kept, and the same call resumes.
    """
    path = normalise_path(path)
    for key in arrays:
        if not isinstance(key, str) or not key or "/" in key or key.startswith(".") or key == PROGRESS_GROUP:
            raise ParameterError(f"array names must be non-empty strings without '/', got {key!r}")
    sources = {
        name: regular_chunks(value if isinstance(value, da.Array) else da.asarray(value))[0]
        for name, value in arrays.items()
    }
    group, done = open_output(
        path,
        sources,
        fingerprint=output_fingerprint(sources),
        attrs=attrs,
        overwrite=overwrite,
        storage_options=storage_options,
    )

    # Optimised together, so blocks shared by several arrays (e.g. distances and indices) are computed once.
    optimised = dask.optimize(*sources.values())
    token = uuid.uuid4().hex
    layers: dict[str, dict[Any, Any]] = {}
    dependencies: dict[str, set[str]] = {}
    stored: list[tuple[Any, ...]] = []
    for (name, source), array in zip(sources.items(), optimised, strict=True):
        target, markers = group[name].with_config(WRITE_CONFIG), group[f"{PROGRESS_GROUP}/{name}"]
        starts = [np.concatenate([[0], np.cumsum(sizes)]).astype(int) for sizes in source.chunks]
        # One layer per array, built directly: a delayed call per block made the graph quadratic to build.
        layer_name = f"bigdist-store-{name}-{token}"
        tasks = {}
        for index in np.ndindex(*source.numblocks):
            if done[name][index]:
                continue
            region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index, strict=True))
            # Dask blocks match zarr chunks one to one, so no two tasks write one chunk and no lock is needed.
            tasks[(layer_name, *index)] = (store_block, (array.name, *index), target, region, markers, index)
        if not tasks:
            continue
        graph = HighLevelGraph.from_collections(layer_name, tasks, dependencies=[array])
        layers.update(graph.layers)
        dependencies.update(graph.dependencies)
        stored.extend(tasks)
    finish_name = f"bigdist-finish-output-{token}"
    finish = functools.partial(mark_complete, storage_options=storage_options)
    layers[finish_name] = {finish_name: (finish, path, stored)}
    dependencies[finish_name] = {key[0] for key in stored}
    finished = Delayed(finish_name, HighLevelGraph(layers, dependencies), layer=finish_name)
    return finished.compute() if compute else finished


def read_group(path: str | os.PathLike[str], storage_options: StorageOptions = None) -> dict[str, da.Array]:
    """Open a finished bigdist output group as dask arrays.

    Parameters
    ----------
    path : str or PathLike
        Local path or fsspec URL of a group written by :func:`write_group`.
    storage_options : dict, optional
        fsspec options of the URL's filesystem.

    Returns
    -------
    dict of str to dask array
        Its arrays, chunked like the stored chunks; reading a block raises
        MissingChunkError or CorruptChunkError when its chunk file was
        deleted, truncated or changed.

    Raises
    ------
    StoreNotFoundError
        Nothing (or an array, not a group) at ``path``.
    IncompleteOutputError
        The run that wrote it did not finish, or bigdist did not write it.
    """
    path = normalise_path(path)
    node = _open_node(path, storage_options)
    if node is None:
        raise StoreNotFoundError(f"no Zarr group at {path!r}; check the path")
    if not isinstance(node, zarr.Group):
        raise StoreNotFoundError(f"{path!r} is a Zarr array, not an output group; open it with bigdist.open_array")
    meta = _meta(node)
    if meta is None:
        raise IncompleteOutputError(
            f"{path!r} was not written by bigdist (no 'bigdist' attributes), so it cannot be known to be finished"
        )
    if meta["complete"] is not True:
        raise IncompleteOutputError(
            f"{path!r} is unfinished (its run stopped before the last block, started at "
            f"{meta.get('started_at', 'an unknown time')}); run it again with the same arguments to finish it"
        )
    return {
        name: da.from_array(ZarrSource(array, f"{path}/{name}"), chunks=array.chunks, asarray=True)
        for name, array in node.arrays()
    }


def update_attrs(path: str | os.PathLike[str], *, storage_options: StorageOptions = None, **attrs: Any) -> None:
    """Merge ``attrs`` into the attributes of the Zarr group or array at ``path``.

    Top-level keys are replaced, e.g. ``update_attrs(out, timings={"seconds": 1.5})``
    after a run; the ``"bigdist"`` entry is merged key by key so its
    completeness flag is kept.
    """
    path = normalise_path(path)
    try:
        node = zarr.open(store=path, mode="r+", storage_options=zarr_options(path, storage_options))
    except FileNotFoundError:
        raise StoreNotFoundError(f"no Zarr array or group at {path!r}; check the path") from None
    if "bigdist" in attrs:
        attrs["bigdist"] = {**dict(node.attrs.get("bigdist", {})), **dict(attrs["bigdist"])}
    node.attrs.update(attrs)


def _codec_names(array: zarr.Array) -> list[str]:
    names = []
    for codec in array.compressors:
        label = type(codec).__name__
        cname = getattr(codec, "cname", None)
        names.append(f"{label}({getattr(cname, 'value', cname)})" if cname is not None else label)
    return names


def _describe_array(array: zarr.Array) -> dict[str, Any]:
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "chunks": list(array.chunks),
        "shards": list(array.shards) if array.shards else None,
        "compressors": _codec_names(array) or ["none"],
        "nbytes": int(np.prod(array.shape, dtype=np.int64)) * array.dtype.itemsize,
    }


def _progress(group: zarr.Group) -> dict[str, str]:
    """Blocks written so far by an unfinished run, per array."""
    if PROGRESS_GROUP not in group:
        return {}
    markers = group[PROGRESS_GROUP]
    return {
        name: f"{int(np.asarray(array[...]).astype(bool).sum())} of {array.size} blocks written"
        for name, array in markers.arrays()
    }


def written_fraction(path: str | os.PathLike[str], name: str, storage_options: StorageOptions = None) -> float:
    """Share of the elements of array ``name`` in blocks already written to an unfinished output.

    0 for an output with no markers (new, or finished); a run that resumes reports its rates over the
    rest, the part it computes itself.
    """
    path = normalise_path(path)
    node = _open_node(path, storage_options)
    if not isinstance(node, zarr.Group) or f"{PROGRESS_GROUP}/{name}" not in node or name not in node:
        return 0.0
    array, done = node[name], np.asarray(node[f"{PROGRESS_GROUP}/{name}"][...]).astype(bool)
    if array.size == 0:
        return 0.0
    # Elements of each block along each axis (the last block may be short).
    sizes = [
        np.minimum(chunk, length - chunk * np.arange(blocks))
        for chunk, length, blocks in zip(array.chunks, array.shape, done.shape, strict=True)
    ]
    elements = functools.reduce(np.multiply.outer, sizes) if sizes else np.ones(())
    return float(elements[done].sum() / array.size)


def describe(path: str | os.PathLike[str], storage_options: StorageOptions = None) -> dict[str, Any]:
    """Arrays (shape, dtype, chunks, codecs), attributes and completeness of a Zarr group or array.

    Parameters
    ----------
    path : str or PathLike
        Local path or URL of a group (e.g. a bigdist output) or of one array.
    storage_options : dict, optional
        fsspec options of the URL's filesystem.

    Returns
    -------
    dict
        ``path``; ``kind`` ("group" or "array"); ``complete`` (True/False
        for bigdist outputs, None for data bigdist did not write);
        ``status`` in words; ``arrays`` mapping each array path ("" for an
        array node) to its ``shape``, ``dtype``, ``chunks``, ``shards``,
        ``compressors`` and ``nbytes``; ``attrs``; for an unfinished output,
        ``progress``: the blocks written so far per array.
    """
    path = normalise_path(path)
    node = _open_node(path, storage_options)
    if node is None:
        raise StoreNotFoundError(f"no Zarr array or group at {path!r}; check the path")
    if isinstance(node, zarr.Group):
        members = {
            name: item
            for name, item in node.members(max_depth=None)
            if isinstance(item, zarr.Array) and not name.startswith(f"{PROGRESS_GROUP}/")
        }
    else:
        members = {"": node}
    meta = _meta(node)
    complete = None if meta is None else meta["complete"] is True
    status = {None: "not written by bigdist", True: "complete", False: "incomplete (the run did not finish)"}[complete]
    checkpoint = dict(node.attrs).get("bigdist_checkpoint")
    if meta is None and isinstance(checkpoint, Mapping):
        status = (
            f"k-means checkpoint written by bigdist: the centroids after {checkpoint.get('n_iter', '?')} "
            f"iteration(s), in {checkpoint.get('array', '?')}; a run given it as --checkpoint resumes from there"
        )
    return {
        "path": path,
        "kind": "group" if isinstance(node, zarr.Group) else "array",
        "complete": complete,
        "status": status,
        "arrays": {name: _describe_array(array) for name, array in sorted(members.items())},
        **({"progress": _progress(node)} if complete is False and isinstance(node, zarr.Group) else {}),
        "attrs": dict(node.attrs),
    }
