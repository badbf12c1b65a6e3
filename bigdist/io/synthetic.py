"""Synthetic data written to Zarr block by block, so any size can be made in bounded memory.

Each row block is one dask task that draws its rows from its own generator,
``np.random.SeedSequence(seed, spawn_key=(1, block))`` — the child that
``SeedSequence(seed).spawn(2)[1].spawn(block + 1)[block]`` would give — so
the data depend only on the parameters and ``chunk_rows``, never on the
scheduler or the order blocks run in. Blob centres come from the stream
``spawn_key=(0,)`` of ``random_state``, apart from the points, so a query set
drawn with another ``sample_seed`` sits around the same centres.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import os
import uuid
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from bigdist.errors import ParameterError
from bigdist.io.arrays import check_int, rows_per_block
from bigdist.io.store import WRITE_CONFIG, _compressors, _now, normalise_path, prepare_output, versions

logger = logging.getLogger(__name__)

_CENTRES, _POINTS = 0, 1  # spawn keys of the two streams of a seed


@functools.lru_cache(maxsize=8)
def _cached_centers(random_state: int, centers: int, n_features: int, center_box: tuple[float, float]) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(random_state, spawn_key=(_CENTRES,)))
    array = rng.uniform(center_box[0], center_box[1], size=(centers, n_features))
    array.flags.writeable = False  # shared by every block of a worker
    return array


def blob_centers(
    random_state: int, centers: int, n_features: int, center_box: tuple[float, float] = (-10.0, 10.0)
) -> np.ndarray:
    """The blob centres :func:`make_blobs` uses for these parameters.

    Parameters
    ----------
    random_state : int
    centers : int
    n_features : int
    center_box : (float, float)

    Returns
    -------
    ndarray of shape (centers, n_features), float64
        Uniform in ``center_box``; independent of ``sample_seed`` and ``n_samples``.
    """
    return _cached_centers(int(random_state), int(centers), int(n_features), _box(center_box)).copy()


def _block_seed(sample_seed: int, block_info: Any) -> np.random.SeedSequence:
    block = block_info[0]["chunk-location"][0]
    return np.random.SeedSequence(sample_seed, spawn_key=(_POINTS, block))


def _blob_streams(sample_seed: int, block_info: Any) -> tuple[np.random.Generator, np.random.Generator]:
    # Labels and noise from separate children, so the labels task draws the
    # same labels as the points task without drawing the noise.
    labels_seed, noise_seed = _block_seed(sample_seed, block_info).spawn(2)
    return np.random.default_rng(labels_seed), np.random.default_rng(noise_seed)


def _blob_labels_block(rows: np.ndarray, *, n_centers: int, sample_seed: int, block_info: Any = None) -> np.ndarray:
    labels_rng, _ = _blob_streams(sample_seed, block_info)
    return labels_rng.integers(0, n_centers, size=len(rows), dtype=np.int64)


def _blobs_block(
    rows: np.ndarray,
    *,
    random_state: int,
    n_centers: int,
    n_features: int,
    center_box: tuple[float, float],
    cluster_std: float,
    sample_seed: int,
    out_dtype: str,
    block_info: Any = None,
) -> np.ndarray:
    # The centres are re-made (and cached) on the worker rather than shipped in every task.
    centres = _cached_centers(random_state, n_centers, n_features, center_box)
    labels_rng, noise_rng = _blob_streams(sample_seed, block_info)
    labels = labels_rng.integers(0, n_centers, size=len(rows), dtype=np.int64)
    points = noise_rng.standard_normal((len(rows), n_features), dtype=np.dtype(out_dtype))
    points *= cluster_std
    points += centres.astype(out_dtype)[labels]
    return points


def _random_block(
    rows: np.ndarray, *, n_features: int, distribution: str, sample_seed: int, out_dtype: str, block_info: Any = None
) -> np.ndarray:
    rng = np.random.default_rng(_block_seed(sample_seed, block_info))
    if distribution == "normal":
        return rng.standard_normal((len(rows), n_features), dtype=np.dtype(out_dtype))
    return rng.random((len(rows), n_features), dtype=np.dtype(out_dtype))


def _box(center_box: Any) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in center_box)
    except (TypeError, ValueError):
        raise ParameterError(f"center_box must be two numbers (low, high), got center_box={center_box!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ParameterError(f"center_box must be finite with low < high, got center_box={center_box!r}")
    return low, high


def _seed(name: str, value: Any) -> int:
    # SeedSequence takes non-negative integers only.
    return check_int(name, value, minimum=0)


def _output_dtype(dtype: Any) -> str:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"dtype must be 'float32' or 'float64', got dtype={dtype!r}")
    return str(resolved)


def _rows_chunk(chunk_rows: Any, n_features: int, dtype: str) -> int:
    if chunk_rows is None:
        return rows_per_block(n_features, np.dtype(dtype).itemsize)
    return check_int("chunk_rows", chunk_rows)


def _blocks(
    index: da.Array, function: Callable[..., np.ndarray], kind: str, dtype: str, width: int | None, **kwargs: Any
) -> da.Array:
    """One task per block of ``index``: (rows, width) blocks of ``dtype``, or (rows,) when width is None."""
    token = dask.base.tokenize(index, kind, dtype, width, kwargs)
    if width is None:
        return index.map_blocks(
            function, dtype=dtype, chunks=index.chunks, meta=np.empty((0,), dtype=dtype),
            name=f"bigdist-generate-{kind}-{token}", **kwargs,
        )  # fmt: skip
    return index.map_blocks(
        function, dtype=dtype, chunks=(index.chunks[0], (width,)), new_axis=1, meta=np.empty((0, 0), dtype=dtype),
        name=f"bigdist-generate-{kind}-{token}", **kwargs,
    )  # fmt: skip


def _write(outputs: list[tuple[str, da.Array, dict[str, Any]]], overwrite: bool, compute: bool) -> Any:
    """Store each (path, array, generator attrs) as a Zarr array, marked complete after every block of all."""
    for path, _, _ in outputs:
        prepare_output(path, overwrite, "generated array")
    targets = []
    for path, array, params in outputs:
        target = zarr.create_array(
            store=path,
            shape=array.shape,
            dtype=array.dtype,
            chunks=tuple(sizes[0] for sizes in array.chunks),
            compressors=_compressors(),
            config=WRITE_CONFIG,
            overwrite=True,
            zarr_format=3,
        )
        # Before any block: an interrupted run leaves an array that says it is unfinished.
        target.attrs["bigdist"] = {"complete": False, "generator": params, "started_at": _now()}
        targets.append(target)
    stored = da.store([array for _, array, _ in outputs], targets, lock=False, compute=False)
    # Only paths travel with the finishing task, not the arrays' graphs.
    paths = [path for path, _, _ in outputs]
    finished = dask.delayed(_finish, pure=False)(
        stored, paths, dask_key_name=f"bigdist-generate-finish-{uuid.uuid4().hex}"
    )
    return finished.compute() if compute else finished


def _finish(_stored: Any, paths: list[str]) -> str:
    """Mark generated arrays complete, the data array (first) last, so it being complete implies the labels are."""
    for path in reversed(paths):
        node = zarr.open_array(store=path, mode="r+")
        node.attrs["bigdist"] = {
            **dict(node.attrs["bigdist"]),
            "complete": True,
            "versions": versions(),
            "finished_at": _now(),
        }
        logger.info("generated %s at %s", " x ".join(map(str, node.shape)), path)
    return paths[0]


def make_blobs(
    path: str | os.PathLike[str],
    n_samples: int,
    n_features: int,
    *,
    centers: int = 8,
    cluster_std: float = 1.0,
    center_box: tuple[float, float] = (-10.0, 10.0),
    random_state: int = 0,
    sample_seed: int | None = None,
    chunk_rows: int | None = None,
    dtype: str = "float32",
    labels_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    compute: bool = True,
) -> Any:
    """Write isotropic Gaussian blobs to a Zarr array at ``path``, one task per row block.

    Parameters
    ----------
    path : str or PathLike
        Local path or URL of the Zarr array to write.
    n_samples, n_features : int
        Shape of the array, (n_samples, n_features).
    centers : int
        Number of blobs; each row belongs to one drawn uniformly.
    cluster_std : float
        Standard deviation of every blob along every feature (0 gives exact duplicates).
    center_box : (float, float)
        The centres are uniform in this box; see :func:`blob_centers`.
    random_state : int
        Seed of the centres, and of the points unless ``sample_seed`` is given.
    sample_seed : int, optional
        Seed of the points: give another one to draw another set (e.g.
        queries) around the same centres. Default: ``random_state``.
    chunk_rows : int, optional
        Rows per stored chunk and per task (default: ``bigdist.chunk-bytes``).
        The data depend on it, as each block has its own generator.
    dtype : {"float32", "float64"}
    labels_path : str or PathLike, optional
        Also write the true blob of each row, int64 of shape (n_samples,), here.
    overwrite : bool
        Replace a finished array at ``path`` (and ``labels_path``).
    compute : bool
        Write now; with False, return a dask Delayed that does the writing.

    Returns
    -------
    str or dask.delayed.Delayed
        ``path`` once written, or the Delayed that writes it.

    Examples
    --------
    >>> make_blobs("train.zarr", 1_000_000, 64, centers=100)  # doctest: +SKIP
    >>> make_blobs("queries.zarr", 10_000, 64, centers=100, sample_seed=1)  # doctest: +SKIP
    """
    n_samples = check_int("n_samples", n_samples)
    n_features = check_int("n_features", n_features)
    n_centers = check_int("centers", centers)
    if (
        isinstance(cluster_std, bool)
        or not isinstance(cluster_std, numbers.Real)
        or not math.isfinite(cluster_std)
        or cluster_std < 0
    ):
        raise ParameterError(f"cluster_std must be a finite number >= 0, got cluster_std={cluster_std!r}")
    box = _box(center_box)
    random_state = _seed("random_state", random_state)
    seed = random_state if sample_seed is None else _seed("sample_seed", sample_seed)
    dtype = _output_dtype(dtype)
    rows = _rows_chunk(chunk_rows, n_features, dtype)
    path = normalise_path(path)
    params = {
        "kind": "blobs",
        "n_samples": n_samples,
        "n_features": n_features,
        "centers": n_centers,
        "cluster_std": float(cluster_std),
        "center_box": list(box),
        "random_state": random_state,
        "sample_seed": seed,
        "chunk_rows": rows,
        "dtype": dtype,
        "labels_path": None if labels_path is None else normalise_path(labels_path),
    }
    index = da.arange(n_samples, chunks=rows)
    points = _blocks(
        index, _blobs_block, "blobs", dtype, n_features,
        random_state=random_state, n_centers=n_centers, n_features=n_features, center_box=box,
        cluster_std=float(cluster_std), sample_seed=seed, out_dtype=dtype,
    )  # fmt: skip
    outputs = [(path, points, params)]
    if labels_path is not None:
        labels = _blocks(index, _blob_labels_block, "blob-labels", "int64", None, n_centers=n_centers, sample_seed=seed)
        outputs.append((normalise_path(labels_path), labels, {**params, "labels_of": path}))
    return _write(outputs, overwrite, compute)


def make_random(
    path: str | os.PathLike[str],
    n_samples: int,
    n_features: int,
    *,
    distribution: str = "normal",
    random_state: int = 0,
    chunk_rows: int | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    compute: bool = True,
) -> Any:
    """Write standard normal or uniform [0, 1) data to a Zarr array at ``path``, one task per row block.

    Parameters
    ----------
    path : str or PathLike
        Local path or URL of the Zarr array to write.
    n_samples, n_features : int
        Shape of the array, (n_samples, n_features).
    distribution : {"normal", "uniform"}
    random_state : int
        Seed; block ``i`` draws from ``SeedSequence(random_state, spawn_key=(1, i))``.
    chunk_rows : int, optional
        Rows per stored chunk and per task (default: ``bigdist.chunk-bytes``).
    dtype : {"float32", "float64"}
    overwrite : bool
        Replace a finished array at ``path``.
    compute : bool
        Write now; with False, return a dask Delayed that does the writing.

    Returns
    -------
    str or dask.delayed.Delayed
        ``path`` once written, or the Delayed that writes it.
    """
    n_samples = check_int("n_samples", n_samples)
    n_features = check_int("n_features", n_features)
    if distribution not in ("normal", "uniform"):
        raise ParameterError(f"distribution must be 'normal' or 'uniform', got distribution={distribution!r}")
    random_state = _seed("random_state", random_state)
    dtype = _output_dtype(dtype)
    rows = _rows_chunk(chunk_rows, n_features, dtype)
    path = normalise_path(path)
    params = {
        "kind": "random",
        "n_samples": n_samples,
        "n_features": n_features,
        "distribution": distribution,
        "random_state": random_state,
        "chunk_rows": rows,
        "dtype": dtype,
    }
    points = _blocks(
        da.arange(n_samples, chunks=rows), _random_block, "random", dtype, n_features,
        n_features=n_features, distribution=distribution, sample_seed=random_state, out_dtype=dtype,
    )  # fmt: skip
    return _write([(path, points, params)], overwrite, compute)
