"""Synthetic data written to Zarr block by block, so any size can be made."""

from __future__ import annotations

import logging
import os
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from bigdist.errors import OutputExistsError, ParameterError
from bigdist.io.arrays import _rows_per_block, check_int
from bigdist.io.store import _compressors, _is_complete

logger = logging.getLogger(__name__)


def _blob_centers(random_state: int, centers: int, n_features: int, center_box: tuple[float, float]) -> np.ndarray:
    # A stream of its own, so train and query sets made with the same
    # random_state share their centres whatever their sample_seed.
    rng = np.random.default_rng(np.random.SeedSequence([random_state, 0]))
    return rng.uniform(center_box[0], center_box[1], size=(centers, n_features))


def _block_rng(sample_seed: int, block_id: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([sample_seed, 1, block_id]))


def _blobs_block(
    rows: np.ndarray,
    *,
    centers: np.ndarray,
    cluster_std: float,
    sample_seed: int,
    out_dtype: str,
    block_info: Any = None,
) -> np.ndarray:
    rng = _block_rng(sample_seed, block_info[0]["chunk-location"][0])
    labels = rng.integers(0, len(centers), size=len(rows))
    points = centers[labels] + rng.standard_normal((len(rows), centers.shape[1])) * cluster_std
    return points.astype(out_dtype)


def _random_block(
    rows: np.ndarray, *, n_features: int, distribution: str, sample_seed: int, out_dtype: str, block_info: Any = None
) -> np.ndarray:
    rng = _block_rng(sample_seed, block_info[0]["chunk-location"][0])
    if distribution == "normal":
        return rng.standard_normal((len(rows), n_features), dtype=np.dtype(out_dtype))
    return rng.random((len(rows), n_features), dtype=np.dtype(out_dtype))


def _write(path: str | os.PathLike[str], array: da.Array, attrs: dict[str, Any], overwrite: bool, compute: bool) -> Any:
    path = os.path.expanduser(os.fspath(path))
    if _is_complete(path) and not overwrite:
        raise OutputExistsError(
            f"{path!r} already holds generated data; pass --overwrite (overwrite=True) to replace it"
        )
    target = zarr.create_array(
        store=path,
        shape=array.shape,
        dtype=array.dtype,
        chunks=(array.chunks[0][0], array.shape[1]),
        compressors=_compressors(),
        overwrite=True,
    )
    target.attrs["bigdist"] = {"complete": False, "generator": attrs}
    stored = da.store(array, target, lock=False, compute=False)

    def finish(_: Any) -> str:
        zarr.open_array(store=path, mode="r+").attrs["bigdist"] = {"complete": True, "generator": attrs}
        logger.info("generated %s rows x %s features at %s", *array.shape, path)
        return path

    finished = dask.delayed(finish, pure=False)(stored)
    return finished.compute() if compute else finished


def _generate(
    path: str | os.PathLike[str],
    block_function: Any,
    attrs: dict[str, Any],
    chunk_rows: int | None,
    overwrite: bool,
    compute: bool,
    **block_kwargs: Any,
) -> Any:
    """Map ``block_function`` over row blocks (one task each) and write the result to ``path``."""
    n_samples, n_features, dtype = attrs["n_samples"], attrs["n_features"], attrs["dtype"]
    rows = check_int("chunk_rows", chunk_rows or _rows_per_block(n_features, np.dtype(dtype).itemsize))
    index = da.arange(n_samples, chunks=rows)
    array = index.map_blocks(
        block_function,
        out_dtype=dtype,
        dtype=dtype,
        chunks=(index.chunks[0], (n_features,)),
        new_axis=1,
        meta=np.empty((0, 0), dtype=dtype),
        name=f"bigdist-generate-{attrs['kind']}-{dask.base.tokenize(attrs, rows)}",
        **block_kwargs,
    )
    return _write(path, array, attrs, overwrite, compute)


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
    overwrite: bool = False,
    compute: bool = True,
) -> Any:
    """Write isotropic Gaussian blobs to a Zarr array at ``path``, one task per block.

    Parameters
    ----------
    path : str or PathLike
    n_samples, n_features : int
    centers : int
        Number of blobs; their centres are uniform in ``center_box`` and depend
        on ``random_state`` only.
    cluster_std : float
    random_state : int
        Seed of the centres (and of the points unless ``sample_seed`` is given).
    sample_seed : int, optional
        Seed of the points: give a different one to draw another set (e.g.
        queries) around the same centres.
    chunk_rows : int, optional
        Rows per stored chunk (default from ``bigdist.chunk-bytes``).
    dtype : str
    overwrite : bool
    compute : bool
        With False, return a dask Delayed that does the writing.
    """
    n_samples = check_int("n_samples", n_samples)
    n_features = check_int("n_features", n_features)
    centers = check_int("centers", centers)
    if not cluster_std > 0:
        raise ParameterError(f"cluster_std must be positive, got cluster_std={cluster_std!r}")
    seed = random_state if sample_seed is None else sample_seed
    center_array = _blob_centers(random_state, centers, n_features, center_box)
    attrs = {
        "kind": "blobs",
        "n_samples": n_samples,
        "n_features": n_features,
        "centers": centers,
        "cluster_std": float(cluster_std),
        "center_box": list(center_box),
        "random_state": random_state,
        "sample_seed": seed,
        "dtype": dtype,
    }
    return _generate(
        path, _blobs_block, attrs, chunk_rows, overwrite, compute,
        centers=center_array, cluster_std=float(cluster_std), sample_seed=seed,
    )  # fmt: skip


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
    """Write standard normal or uniform [0, 1) data to a Zarr array at ``path``, one task per block.

    Parameters are as for :func:`make_blobs`; ``distribution`` is "normal" or "uniform".
    """
    n_samples = check_int("n_samples", n_samples)
    n_features = check_int("n_features", n_features)
    if distribution not in ("normal", "uniform"):
        raise ParameterError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")
    attrs = {
        "kind": "random",
        "n_samples": n_samples,
        "n_features": n_features,
        "distribution": distribution,
        "random_state": random_state,
        "dtype": dtype,
    }
    return _generate(
        path, _random_block, attrs, chunk_rows, overwrite, compute,
        n_features=n_features, distribution=distribution, sample_seed=random_state,
    )  # fmt: skip
