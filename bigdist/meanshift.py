"""Mean shift over data far bigger than RAM: one pass over the data per iteration, for every seed still moving."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from bigdist import config, display
from bigdist.errors import InputShapeError, ParameterError
from bigdist.execution.passes import PassColumn, run_pass, write_labels
from bigdist.execution.sources import InputRows
from bigdist.execution.waves import ProgressCallback
from bigdist.io import as_array, check_int, check_number, write_group
from bigdist.kernels.kmeans import labels_chunk
from bigdist.kernels.meanshift import (
    KERNELS,
    bin_chunk,
    bin_combine,
    meanshift_agg,
    meanshift_chunk,
    meanshift_combine,
    merge_modes,
)
from bigdist.knn import knn
from bigdist.reductions import kth_neighbour_distance, map_row_blocks
from bigdist.resources import maybe_persist, threads

logger = logging.getLogger(__name__)

# Above this many rows, sampling rows for estimate_bandwidth uses NumPy's
# Generator (O(n_samples) memory) instead of scikit-learn's permutation of all rows.
_PERMUTATION_MAX_ROWS = 2**24
# Up to this k the bandwidth comes from bd.knn's sorted top-k; beyond, from a
# partition-based reduction that keeps only the k smallest distances unsorted
# (bd.knn's sorted lists cost O(k) per insertion: 15x scikit-learn's time at k=3000).
_KNN_MAX_K = 128
_KTH_TILE_ROWS = 8192


@dataclass
class MeanShiftResult:
    """Result of :func:`meanshift`.

    Attributes
    ----------
    cluster_centers : ndarray of shape (n_clusters, n_features), float64
        The modes, by decreasing intensity (rows within the bandwidth).
    labels : dask array of shape (n_samples,), int64, lazy
        Index of the nearest mode; -1 for rows farther than the bandwidth
        from every mode when ``cluster_all=False``.
    intensities : ndarray of shape (n_clusters,), int64
    bandwidth : float
    n_iter : int
        Largest number of completed iterations of a seed, as scikit-learn's
        ``n_iter_`` (a seed that stops after its first pass has 0).
    n_seeds : int
    stats : list of dict, one per pass over the data
        ``iteration``, ``seconds``, ``seeds_moving`` (before the pass),
        ``max_shift`` (largest seed shift), ``still_moving`` (after the pass).
    """

    cluster_centers: np.ndarray
    labels: da.Array
    intensities: np.ndarray
    bandwidth: float
    n_iter: int
    n_seeds: int
    stats: list[dict[str, float]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    data: da.Array | None = field(default=None, repr=False)

    def to_zarr(
        self,
        path: str,
        *,
        overwrite: bool = False,
        attrs: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> str:
        """Write modes, intensities and labels to a Zarr group; stats go in its attributes.

        The labels are computed in bounded waves of tasks that read their own
        row blocks (``bigdist.execution``), each block written and marked; an
        unfinished group of the same run is resumed, its labelled blocks kept.

        Parameters
        ----------
        path : str, local path or fsspec URL
        overwrite : bool
            Replace a finished output (or another run's unfinished one).
        attrs : dict, optional
            More attributes of the run, e.g. the CLI's config.
        progress : callable, optional
            ``progress(done, total, elapsed_seconds)`` after every labelled row block.
        storage_options : dict, optional
            fsspec options of the output URL's filesystem, as for :func:`bigdist.io.write_group`.

        Returns
        -------
        str, the path
        """
        small = {"cluster_centers": self.cluster_centers, "intensities": self.intensities}
        meta = {
            "meanshift": {
                **self.params, "bandwidth": self.bandwidth, "n_iter": self.n_iter, "n_seeds": self.n_seeds,
                "n_clusters": len(self.cluster_centers), "stats": self.stats,
            }
        }  # fmt: skip
        if self.data is None:
            # Made by hand from lazy labels: no data to read, one graph.
            arrays = {name: da.from_array(value, chunks=value.shape) for name, value in small.items()}
            return write_group(path, {**arrays, "labels": self.labels}, attrs={**meta, **(attrs or {})},
                               overwrite=overwrite, storage_options=storage_options)  # fmt: skip
        radius = None if self.params.get("cluster_all", True) else self.bandwidth
        return write_labels(
            path, self.data, partial(labels_chunk, centroids=self.cluster_centers, radius=radius), small,
            fingerprint=tokenize("bigdist-meanshift-labels", self.data.name, self.data.chunks, self.cluster_centers,
                                 radius),
            attrs={**meta, **(attrs or {})}, overwrite=overwrite, what=f"mean-shift labels {path}", progress=progress,
            storage_options=storage_options,
        )  # fmt: skip

    def _rows(self) -> list[tuple[str, Any]]:
        return [
            ("modes", f"{len(self.cluster_centers):,} ({self.cluster_centers.shape[1]:,} features)"),
            ("cluster_centers", display.array_summary(self.cluster_centers)),
            ("labels", display.array_summary(self.labels)),
            ("bandwidth", f"{self.bandwidth:.6g}"),
            ("kernel", self.params.get("kernel", "-")),
            ("seeds", f"{self.n_seeds:,} ({self.params.get('seeds', '-')})"),
            ("iterations", f"{self.n_iter} ({len(self.stats)} passes over the data)"),
            ("seconds", f"{display.seconds(self.stats):.2f} in the passes"),
        ]

    def __repr__(self) -> str:
        return display.text(
            "MeanShiftResult",
            [("n_clusters", len(self.cluster_centers)), ("n_features", self.cluster_centers.shape[1]),
             ("bandwidth", f"{self.bandwidth:.6g}"), ("n_seeds", self.n_seeds), ("n_iter", self.n_iter),
             ("labels", display.array_summary(self.labels))],
        )  # fmt: skip

    def _repr_html_(self) -> str:
        return display.html_table("bigdist MeanShiftResult", self._rows())


def _check_bandwidth(bandwidth: Any) -> float:
    try:
        return check_number("bandwidth", bandwidth, minimum=0, open_minimum=True)
    except ParameterError as error:
        raise ParameterError(
            f"{error}; give a positive bandwidth or bandwidth=None to estimate it with bigdist.estimate_bandwidth"
        ) from None


def _sample_rows(n: int, size: int, random_state: Any) -> np.ndarray:
    """Sorted rows of a sample of ``size`` rows, those scikit-learn's ``estimate_bandwidth`` draws when it can."""
    if n <= _PERMUTATION_MAX_ROWS and not isinstance(random_state, np.random.Generator):
        from sklearn.utils import check_random_state

        rows = check_random_state(random_state).permutation(n)[:size]
    else:
        rows = np.random.default_rng(random_state).choice(n, size=size, replace=False)
    return np.sort(rows)


def estimate_bandwidth(
    X: Any,
    quantile: float = 0.3,
    n_samples: int | None = None,
    random_state: Any = 0,
    *,
    split_every: int | None = None,
) -> float:
    """Bandwidth for mean shift: the mean distance of each row to its ``quantile``-th nearest row.

    scikit-learn's definition (``sklearn.cluster.estimate_bandwidth``): with
    ``k = max(1, int(m * quantile))`` over the m rows used, the mean over the
    rows of the distance to the k-th nearest row, the row itself counted as
    the first. The neighbours come from :func:`bigdist.knn` (for k > 128 from
    a reduction that keeps each row's k smallest distances, unsorted), so the
    rows need not fit in memory; the O(m²) work makes ``n_samples`` wise for big data.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file.
    quantile : float in (0, 1]
    n_samples : int, optional
        Use a random sample of this many rows (the rows scikit-learn samples,
        for the same ``random_state``, up to 2**24 rows).
    random_state : int, RandomState or None, default=0
    split_every : int, optional
        Fan-in of the kNN merges (default from config).

    Returns
    -------
    float
    """
    array = as_array(X, name="X")
    n = array.shape[0]
    quantile = check_number("quantile", quantile, minimum=0, open_minimum=True, maximum=1)
    if n_samples is not None:
        size = check_int("n_samples", n_samples)
        if size < n:
            array = array[_sample_rows(n, size, random_state)]
    m = array.shape[0]
    k = max(1, int(m * quantile))
    split_every = check_int("split_every", config.get("split-every") if split_every is None else split_every, minimum=2)
    if k <= _KNN_MAX_K:
        kth = knn(array, array, k=k, split_every=split_every).distances[:, -1].astype(np.float64)
    else:
        # A tile task holds (rows x (k + tile)) float64 values, a merge split_every partials of (rows x k):
        # keep the larger near chunk-bytes.
        rows = max(1, config.get("chunk-bytes") // (8 * max(k + _KTH_TILE_ROWS, split_every * k)))
        kth = kth_neighbour_distance(array.rechunk({0: rows}), array, k=k, split_every=split_every)
    bandwidth = float(kth.sum().compute()) / m
    logger.info("estimated bandwidth %.6g from %d rows (k=%d)", bandwidth, m, k)
    return bandwidth


def _bin_seeds(rows: InputRows, bandwidth: Any, min_bin_freq: int, split_every: int) -> np.ndarray | None:
    """Centres of the grid cells holding at least ``min_bin_freq`` rows, in order of their first row.

    None when there are as many such cells as rows (binning failed; scikit-learn then seeds with every row).
    """
    # The cells are all held until counted: as many as ten times the seeds a run may have, no more.
    max_bins = 10 * config.get("meanshift.max-seeds")
    column = PassColumn(
        partial(bin_chunk, bin_size=bandwidth, max_bins=max_bins), partial(bin_combine, max_bins=max_bins,
        bin_size=bandwidth),
    )  # fmt: skip
    (state,), _ = run_pass(rows, [column], split_every=split_every, name="bigdist-meanshift-bins",
                           what="mean-shift bins")  # fmt: skip
    keep = state["counts"] >= min_bin_freq
    if not keep.any():
        fullest = int(state["counts"].max())
        raise ParameterError(
            f"no bin of the bandwidth grid holds min_bin_freq={min_bin_freq} rows (the fullest holds {fullest}); "
            f"use min_bin_freq <= {fullest}, a larger bandwidth, or bin_seeding=False"
        )
    if keep.sum() == rows.array.shape[0]:
        warnings.warn(
            f"Binning data failed with provided bin_size={float(bandwidth):f}, using data points as seeds.",
            UserWarning,
            stacklevel=3,
        )
        return None
    order = np.argsort(state["first"][keep], kind="stable")
    # A float32 grid times the bandwidth, as scikit-learn computes it, so the seeds match it bit for bit.
    return np.asarray(state["bins"][keep][order].astype(np.float32) * bandwidth, dtype=np.float64)


def _initial_seeds(
    rows: InputRows,
    seeds: Any,
    bin_seeding: bool,
    bandwidth: Any,
    min_bin_freq: int,
    n_seeds: int | None,
    random_state: Any,
    split_every: int,
) -> np.ndarray:
    X = rows.array
    n, d = X.shape
    if seeds is not None:
        given = np.asarray(seeds, dtype=np.float64)
        if given.ndim != 2 or given.shape[1] != d or given.shape[0] == 0:
            raise InputShapeError(
                f"seeds has shape {given.shape}, but X has {d} features; give an array of shape (n_seeds, {d})"
            )
        if not np.isfinite(given).all():
            raise ParameterError("seeds holds NaN or infinity; give finite seed positions")
        return given
    if bin_seeding:
        binned = _bin_seeds(rows, bandwidth, min_bin_freq, split_every)
        if binned is not None:
            return binned
    limit = n_seeds if n_seeds is not None else config.get("meanshift.max-seeds")
    if n <= limit:
        return X.compute().astype(np.float64)
    rows = np.sort(np.random.default_rng(random_state).choice(n, size=limit, replace=False))
    logger.info("mean shift: %d seeds sampled from the %d rows", limit, n)
    return X[rows].compute().astype(np.float64)


def meanshift(
    X: Any,
    bandwidth: float | None = None,
    *,
    kernel: str = "gaussian",
    seeds: Any = None,
    bin_seeding: bool = False,
    min_bin_freq: int = 1,
    n_seeds: int | None = None,
    cluster_all: bool = True,
    max_iter: int = 300,
    tol: float = 1e-3,
    random_state: Any = None,
    split_every: int | None = None,
    persist: bool | None = None,
) -> MeanShiftResult:
    """Mean-shift clustering of data far bigger than RAM.

    Every seed moves to the kernel-weighted mean of the rows around it until
    it moves less than ``tol * bandwidth``. Each iteration is one pass over
    the data for all the seeds still moving: every row block is reduced at
    once to per-seed weighted sums, which a tree reduction merges; the seeds
    travel in the graph, the data is never gathered. Converged seeds merge
    into modes as in scikit-learn (by intensity, each mode suppressing the
    others within one bandwidth), and rows are labelled by their nearest
    mode (exactly, in float64; one task per block). With ``kernel="flat"`` the result is
    scikit-learn's ``MeanShift``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file.
    bandwidth : float, optional
        Kernel scale: the flat kernel's radius, the Gaussian's standard
        deviation. None estimates it with :func:`estimate_bandwidth` (on a
        sample of ``bigdist.meanshift.bandwidth-samples`` rows for larger data).
    kernel : {"gaussian", "flat"}
        ``gaussian``: weights exp(-d² / (2·bandwidth²)); ``flat``: 1 for
        rows with d <= bandwidth, else 0 (scikit-learn's kernel).
    seeds : array-like of shape (n_seeds, n_features), optional
        Initial positions; otherwise from ``bin_seeding`` or the rows.
    bin_seeding : bool
        Seed at the centres of the cells of a grid of step ``bandwidth``
        holding at least ``min_bin_freq`` rows (counted by a reduction over the blocks).
    min_bin_freq : int
    n_seeds : int, optional
        Without ``seeds`` or ``bin_seeding``: every row seeds when there are
        at most this many rows (default ``bigdist.meanshift.max-seeds``),
        else a random sample of this many rows.
    cluster_all : bool
        False labels -1 the rows farther than ``bandwidth`` from every mode.
    max_iter : int
        A seed stops after ``max_iter`` iterations (``max_iter + 1`` passes) at most.
    tol : float
        A seed has converged when it moves at most ``tol * bandwidth``.
    random_state : int, numpy RandomState or Generator, optional
        Seed of the row sample (``n_seeds``).
    split_every : int, optional
        Fan-in of the reductions (default from config).
    persist : bool, optional
        Keep the data in the cluster's memory between iterations; by default
        when it takes at most half of the workers' memory.

    Returns
    -------
    MeanShiftResult
    """
    array = as_array(X, name="X")
    n, d = array.shape
    if kernel not in KERNELS:
        raise ParameterError(f"unknown kernel {kernel!r}; use one of {', '.join(KERNELS)}")
    max_iter = check_int("max_iter", max_iter)
    min_bin_freq = check_int("min_bin_freq", min_bin_freq)
    if n_seeds is not None:
        n_seeds = check_int("n_seeds", n_seeds)
    tol = check_number("tol", tol, minimum=0)
    split_every = check_int("split_every", config.get("split-every") if split_every is None else split_every, minimum=2)
    estimated = bandwidth is None
    if estimated:
        cap = config.get("meanshift.bandwidth-samples")
        bandwidth = np.float64(estimate_bandwidth(array, n_samples=cap if n > cap else None, split_every=split_every))
    if estimated and bandwidth == 0 and kernel == "flat":
        # An estimate of 0 (most rows repeat exactly): as in scikit-learn, each seed stays on the rows equal
        # to it, the distinct rows are the modes, and bins of width 0 are the rows themselves.
        bandwidth_value, bin_seeding = 0.0, False
    else:
        if estimated and bandwidth == 0:
            raise ParameterError(
                "the estimated bandwidth is 0 (most rows repeat exactly) and the gaussian kernel needs "
                "bandwidth > 0; give a bandwidth or kernel='flat'"
            )
        bandwidth_value = _check_bandwidth(bandwidth)
    array = maybe_persist(array, persist, "mean shift")
    rows = InputRows(array)
    positions = _initial_seeds(rows, seeds, bin_seeding, bandwidth, min_bin_freq, n_seeds, random_state, split_every)
    logger.info(
        "mean shift: %d rows x %d features, %d seeds, %s kernel, bandwidth %.6g",
        n, d, len(positions), kernel, bandwidth_value,
    )  # fmt: skip

    final, intensities, n_iter, stats = _shift(rows, positions, bandwidth_value, kernel, max_iter, tol, split_every)
    modes, mode_intensities = merge_modes(final, intensities, bandwidth_value)
    if len(modes) == 0:
        raise ParameterError(
            f"No point was within bandwidth={bandwidth_value:g} of any seed; give seeds nearer the data or a larger "
            f"bandwidth"
        )
    logger.info("mean shift: %d modes from %d seeds after %d iterations", len(modes), len(positions), n_iter)
    labels = _labels(array, modes, bandwidth_value, cluster_all)
    return MeanShiftResult(
        cluster_centers=modes,
        labels=labels,
        intensities=mode_intensities,
        bandwidth=bandwidth_value,
        n_iter=n_iter,
        n_seeds=len(positions),
        stats=stats,
        data=array,
        params={
            "kernel": kernel, "bin_seeding": bool(bin_seeding), "min_bin_freq": min_bin_freq,
            "cluster_all": bool(cluster_all), "max_iter": max_iter, "tol": float(tol),
            "seeds": "array" if seeds is not None else "bins" if bin_seeding else "rows",
        },
    )  # fmt: skip


def _shift(
    rows: InputRows, positions: np.ndarray, bandwidth: float, kernel: str, max_iter: int, tol: float, split_every: int
) -> tuple[np.ndarray, np.ndarray, int, list[dict[str, float]]]:
    """Move every seed until it converges; return final positions, intensities, n_iter and per-pass stats.

    A seed's life follows scikit-learn's: each pass moves it to the weighted
    mean around it; it stops when that moved it at most ``tol * bandwidth``,
    after ``max_iter`` completed iterations, or (flat kernel) when no row is
    within the bandwidth (intensity 0, dropped at the merge). Its intensity
    is the rows within the bandwidth of the position its last mean came from.
    """
    final = positions.copy()
    intensities = np.zeros(len(positions), dtype=np.int64)
    completed = np.zeros(len(positions), dtype=np.int64)
    moving = np.arange(len(positions))
    threshold = tol * bandwidth
    stats: list[dict[str, float]] = []
    while len(moving):
        began = time.perf_counter()
        current = final[moving]
        result = meanshift_agg(_pass(rows, current, bandwidth, kernel, split_every), current)
        shifts = np.sqrt(((result["means"] - current) ** 2).sum(axis=1))
        intensities[moving] = result["counts"]
        empty = result["weights"] <= 0 if kernel == "gaussian" else result["counts"] == 0
        final[moving[~empty]] = result["means"][~empty]
        done = empty | (shifts <= threshold) | (completed[moving] == max_iter)
        completed[moving[~done]] += 1
        stats.append(
            {"iteration": len(stats) + 1, "seconds": time.perf_counter() - began, "seeds_moving": int(len(moving)),
             "max_shift": float(shifts[~empty].max()) if (~empty).any() else 0.0, "still_moving": int((~done).sum())}
        )  # fmt: skip
        logger.info(
            "mean shift iteration %d: %d seeds, max shift %.3g (tol %.3g), %d still moving, %.2f s",
            stats[-1]["iteration"], len(moving), stats[-1]["max_shift"], threshold, stats[-1]["still_moving"],
            stats[-1]["seconds"],
        )  # fmt: skip
        moving = moving[~done]
    return final, intensities, int(completed.max(initial=0)), stats


def _pass(rows: InputRows, seeds: np.ndarray, bandwidth: float, kernel: str, split_every: int) -> dict[str, np.ndarray]:
    """Merged mean-shift state of every seed: one reduction per block of seeds, all in one pass of waves.

    Each task is one row block against one block of seeds; seed blocks make
    tasks for the workers to share when the data has few blocks.
    """
    # At most seed-block-rows seeds per task, fewer when the data has too few
    # blocks to give every thread of the cluster two tasks.
    tasks_wanted = 2 * threads()
    n_blocks = len(rows.keys)
    size = max(1, min(config.get("meanshift.seed-block-rows"), -(-len(seeds) * n_blocks // tasks_wanted)))
    chunk = partial(meanshift_chunk, bandwidth=bandwidth, kernel=kernel)
    columns = [
        PassColumn(chunk, meanshift_combine, (seeds[start : start + size],)) for start in range(0, len(seeds), size)
    ]
    states, _ = run_pass(rows, columns, split_every=split_every, name="bigdist-meanshift-pass", what="mean-shift pass")
    return {key: np.concatenate([state[key] for state in states]) for key in states[0]}


def _labels(X: da.Array, modes: np.ndarray, bandwidth: float, cluster_all: bool) -> da.Array:
    # One task per block of X (the modes are few): the nearest mode exactly, ties to the lower index.
    chunk = partial(labels_chunk, radius=None if cluster_all else bandwidth)
    return map_row_blocks(X, chunk, dtype=np.int64, name="bigdist-meanshift-labels", extra=(modes,))


__all__ = ["MeanShiftResult", "estimate_bandwidth", "meanshift"]
