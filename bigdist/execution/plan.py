"""A plan before the work: what a job costs (tasks, waves, FLOPs, bytes, disk, time), without running it.

:func:`plan` reads only the inputs' metadata (shapes, dtypes, chunks), asks the
ambient cluster for its threads, measures the job's own kernel on one small
random tile (on a worker when a ``distributed`` Client is active; cached per
process) and, for a local output, the free space of its disk. Nothing is
computed over the data and nothing is written.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from bigdist import config
from bigdist.errors import BigdistError, InsufficientSpaceError, ParameterError, PlanError
from bigdist.io.arrays import check_int, open_array, rows_per_block
from bigdist.io.integrity import STORE_ERRORS
from bigdist.kernels.registry import get_metric
from bigdist.planning import even_blocks

logger = logging.getLogger(__name__)

JOBS = ("knn", "classify", "radius", "pairwise", "kmeans", "meanshift")

# Calibration tiles aim at about this many floating-point operations (GEMM family) or distance
# terms (direct metrics): long enough to time, short enough to take well under a second.
_CALIBRATION_FLOPS = 2e9
_CALIBRATION_TERMS = 2e7
_CALIBRATION_QUERY_ROWS = 1024

_calibrations: dict[tuple[Any, ...], float] = {}


@dataclass
class Plan:
    """What a job will cost, made before it runs (see :func:`plan`).

    Attributes
    ----------
    job : str
        ``knn``, ``self-join``, ``classify``, ``radius``, ``pairwise``, ``kmeans`` or ``meanshift``.
    shapes : dict of str to (int, int)
        The inputs' (rows, features), e.g. ``{"queries": (m, d), "train": (n, d)}``.
    dtype : str
        The dtype the job computes in.
    params : dict
        The job's parameters as planned (k, metric, n_clusters, passes, ...).
    query_blocks, train_blocks : int
        Row blocks the work is cut into (train blocks: 0 for k-means and mean shift).
    panels : int
        Groups of train blocks one task scores against a query block (a job written through the
        execution layer's waves; otherwise each train block is a task's own, so ``train_blocks``).
    tasks : int
        Compute tasks over all passes (each a query block against a panel or a train block, or one
        row block of a pass); the merges of the partial results and the writes come on top.
    waves : int
        Windows of tasks in flight (``bigdist.execution``) the job takes; for a job still run as one
        graph, 1 per pass.
    passes : int
        Passes over the data (k-means and mean shift: at most ``max_iter``; otherwise 1).
    pairs : float
        Distances evaluated, over all passes.
    flops : float
        Floating-point operations: 2 per feature and pair for the GEMM family, about 3 for the direct metrics.
    bytes_read : int
        Bytes of input read, over all passes.
    bytes_written : int
        Bytes of output written (as stored uncompressed); for radius neighbours only what is known
        before the run (the row pointers), see ``notes``.
    output : str or None
        Where the output goes.
    free_bytes : int or None
        Free space of the output's disk; None when it cannot be known (fsspec URLs, no output).
    threads : int
        Threads of the cluster the estimate is for.
    cluster : str
        The cluster the estimate is for (the scheduler's address, or "local scheduler").
    seconds_per_pair : float or None
        The calibrated kernel time of one distance on one thread.
    seconds : float or None
        Estimated time: pairs x seconds_per_pair / threads (kernel time, perfectly shared).
    notes : list of str
        What the figures do not cover, in words.
    """

    job: str
    shapes: dict[str, tuple[int, int]]
    dtype: str
    params: dict[str, Any]
    query_blocks: int
    train_blocks: int
    panels: int
    tasks: int
    waves: int
    passes: int
    pairs: float
    flops: float
    bytes_read: int
    bytes_written: int
    output: str | None
    free_bytes: int | None
    threads: int
    cluster: str
    seconds_per_pair: float | None
    seconds: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        """Whether the output fits in the free space of its disk (None when that is unknown)."""
        if self.free_bytes is None or self.output is None:
            return None
        return self.bytes_written <= self.free_bytes

    def check_space(self, *, force: bool = False) -> None:
        """Raise InsufficientSpaceError when the output is bigger than its disk's free space, unless ``force``."""
        if self.fits is False and not force:
            raise InsufficientSpaceError(
                f"the output {self.output!r} needs {_size(self.bytes_written)} but its disk has "
                f"{_size(self.free_bytes or 0)} free; free some space, choose another --out, or pass --force "
                f"to run anyway"
            )

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-serialisable values (with ``fits``)."""
        values = asdict(self)
        values["shapes"] = {name: list(shape) for name, shape in self.shapes.items()}
        values["fits"] = self.fits
        return values

    def __str__(self) -> str:
        shapes = ", ".join(f"{name} {rows:,} x {cols}" for name, (rows, cols) in self.shapes.items())
        params = ", ".join(f"{key}={value}" for key, value in self.params.items())
        lines = [
            f"plan of {self.job}: {shapes} ({self.dtype}); {params}",
            f"  tasks:    {self.tasks:,} ({self.query_blocks:,} {'row' if not self.train_blocks else 'query'} blocks"
            + (
                f" x {self.train_blocks:,} train blocks"
                if self.train_blocks and self.panels == self.train_blocks
                else ""
            )
            + (
                f" x {self.panels:,} panels of the {self.train_blocks:,} train blocks"
                if self.panels != self.train_blocks
                else ""
            )
            + (f", {self.passes} passes" if self.passes > 1 else "")
            + f"), in {self.waves:,} wave{'s' if self.waves != 1 else ''}",
            f"  work:     {self.pairs:.3g} distances, {self.flops / 1e9:,.1f} GFLOP",
            f"  read:     {_size(self.bytes_read)}",
        ]
        if self.output is None:
            lines.append(f"  output:   {_size(self.bytes_written)} (not written)")
        else:
            free = "free space unknown" if self.free_bytes is None else f"{_size(self.free_bytes)} free"
            verdict = {True: "fits", False: "DOES NOT FIT", None: "cannot check"}[self.fits]
            lines.append(f"  output:   {_size(self.bytes_written)} to {self.output} ({free}: {verdict})")
        if self.seconds is None:
            lines.append(f"  time:     unknown (no calibration) on {self.threads} threads of {self.cluster}")
        else:
            lines.append(
                f"  time:     about {_duration(self.seconds)} on {self.threads} threads of {self.cluster} "
                f"(kernel {self.seconds_per_pair * 1e9:.3g} ns per distance per thread)"
            )
        lines.extend(f"  note:     {note}" for note in self.notes)
        return "\n".join(lines)


def _size(n_bytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{int(n_bytes)} B"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _open(data: Any, role: str, storage_options: dict[str, Any] | None) -> Any:
    """The input as bigdist reads it (metadata only), or PlanError saying why it cannot be planned."""
    shape = getattr(data, "shape", None)
    if shape is not None and any(not isinstance(size, (int, np.integer)) or size < 0 for size in shape):
        raise PlanError(
            f"cannot plan: the {role} rows are unknown (shape {tuple(shape)}); compute the chunk sizes first, "
            f"e.g. {role} = {role}.compute_chunk_sizes()"
        )
    try:
        return open_array(data, name=role, storage_options=storage_options)
    except BigdistError as error:
        raise PlanError(f"cannot plan: the {role} cannot be opened: {error}") from None
    except STORE_ERRORS as error:
        raise PlanError(
            f"cannot plan: the {role} store {data!r} is unreachable ({error}); check it and retry"
        ) from None


def _cluster() -> tuple[int, str, Any]:
    """(threads, description, client or None) of the cluster a job would run on now, as the waves see it."""
    from bigdist.execution.waves import ambient_client, local_threads

    client = ambient_client()
    if client is None:
        return local_threads(), "the local scheduler", None
    return sum(client.nthreads().values()), f"the cluster at {client.scheduler.address}", client


def _knn_job(queries: Any, train: Any, k: int, metric: str, params: dict[str, Any]) -> Any:
    """The execution layer's description of the kNN that writing runs (no data is read)."""
    from bigdist.knn import knn

    return knn(queries, train, k=k, metric=metric, **params).job


def _radius_job(queries: Any, train: Any, radius: float, metric: str, params: dict[str, Any]) -> Any:
    """The execution layer's description of the radius neighbours that writing runs; None for one graph."""
    from bigdist.radius import radius_neighbors

    result = radius_neighbors(queries, train, radius=radius, metric=metric, **params)
    return result.job if result._waves else None


def _free_space(path: str | None, storage_options: dict[str, Any] | None = None) -> tuple[int | None, str | None]:
    """Free bytes where ``path`` would be written, or None and why not; PlanError when a URL's store is unreachable."""
    if path is None:
        return None, None
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        import fsspec

        try:
            fs, root = fsspec.core.url_to_fs(text, **(storage_options or {}))
            fs.exists(root)
        except Exception as error:  # any filesystem's own error: the plan says why it stops
            raise PlanError(
                f"cannot plan: the output store {text!r} cannot be reached ({type(error).__name__}: {error}); "
                f"check the URL and its storage_options (credentials, endpoint)"
            ) from error
        return None, f"the free space of {text.split('://')[0]}:// storage is unknown: the output size is not checked"
    local = os.path.abspath(os.path.expanduser(text.removeprefix("file://")))
    while not os.path.exists(local):
        parent = os.path.dirname(local)
        if parent == local:
            break
        local = parent
    try:
        return int(shutil.disk_usage(local).free), None
    except OSError as error:
        return None, f"the free space at {local!r} cannot be read ({error.strerror})"


def _tile_rows(n_features: int, gemm: bool, other_rows: int) -> int:
    """Train (or data) rows of the calibration tile against ``other_rows`` rows, for a tile of a fixed cost."""
    work = _CALIBRATION_FLOPS / 2 if gemm else _CALIBRATION_TERMS
    return int(max(4096 if gemm else 512, min(16384, work // max(1, other_rows * n_features))))


def _time_kernel(kernel: Any, arrays: tuple[np.ndarray, ...], pairs: int) -> float:
    """Seconds per pair of ``kernel(*arrays)``: the faster of two timed runs after a warm-up (caches, compilation)."""
    kernel(*arrays)
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        kernel(*arrays)
        best = min(best, time.perf_counter() - start)
    return best / pairs


def _calibration(job: str, n_features: int, dtype: np.dtype, spec: dict[str, Any]) -> tuple[Any, tuple[Any, ...], int]:
    """The job's kernel on a random tile: (callable, arguments, pairs it evaluates)."""
    rng = np.random.default_rng(0)
    metric = get_metric(spec.get("metric", "euclidean"), **spec.get("metric_params", {}))
    rows = _CALIBRATION_QUERY_ROWS

    def sample(n_rows: int, scale: float = 1.0) -> np.ndarray:
        block = rng.standard_normal((n_rows, n_features)) * scale
        # Non-negative data: chi2 needs it, and a boolean-valued draw for hamming/jaccard.
        if metric.name in ("chi2", "jaccard", "hamming"):
            block = (block > 0).astype(np.float64) if metric.name != "chi2" else np.abs(block)
        return block.astype(dtype)

    tiles = {"tile_query_rows": config.get("knn.tile-query-rows"), "tile_train_rows": config.get("knn.tile-train-rows")}
    if job in ("knn", "classify", "pairwise", "radius"):
        train_rows = _tile_rows(n_features, metric.gemm, rows)
        queries, train = sample(rows), sample(train_rows)
        query_index, train_index = np.arange(rows, dtype=np.int64), np.arange(train_rows, dtype=np.int64)
        if job == "pairwise":
            from bigdist.kernels.pairwise import pairwise_chunk

            kernel = partial(pairwise_chunk, metric=metric.name, p=metric.p, gemm=metric.gemm, self_join=False)
            return kernel, (queries, train, query_index, train_index), rows * train_rows
        if job == "radius":
            from bigdist.kernels.radius import radius_chunk

            # Data spread far beyond the radius, so the tile finds few pairs: the cost of scoring and filtering.
            spread = 10.0 * spec["radius"] / math.sqrt(n_features)
            queries, train = sample(rows, spread), sample(train_rows, spread)
            kernel = partial(
                radius_chunk,
                radius=spec["radius"],
                metric=metric.name,
                p=metric.p,
                exclude_self=False,
                max_neighbors=config.get("radius.max-neighbors"),
                **tiles,
            )
            return kernel, (queries, train, 0, 0), rows * train_rows
        from bigdist.kernels.knn import knn_chunk

        kernel = partial(
            knn_chunk, k=min(spec["k"], train_rows), metric=metric.name, p=metric.p, exclude_self=False, **tiles
        )
        return kernel, (queries, train, query_index, train_index), rows * train_rows
    centres = spec["n_clusters"] if job == "kmeans" else spec["seed_rows"]
    data_rows = _tile_rows(n_features, True, centres)
    block, centroids = sample(data_rows), sample(centres).astype(np.float64)
    if job == "kmeans":
        from bigdist.kernels.kmeans import kmeans_chunk

        return partial(kmeans_chunk, n_far=centres), (block, 0, centroids), data_rows * centres
    from bigdist.kernels.meanshift import meanshift_chunk

    kernel = partial(meanshift_chunk, bandwidth=spec["bandwidth"], kernel=spec["kernel"])
    return kernel, (block, 0, centroids), data_rows * centres


def _run_calibration(job: str, n_features: int, dtype_name: str, spec: dict[str, Any]) -> float:
    kernel, arguments, pairs = _calibration(job, n_features, np.dtype(dtype_name), spec)
    return _time_kernel(kernel, arguments, pairs)


def _kmeans_pieces(block_rows: tuple[int, ...], client: Any, row_work: int) -> list[list[int]] | None:
    """The pieces k-means would cut the row blocks of persisted data into on ``client`` (None: none)."""
    if client is None:
        return None
    from bigdist.kmeans import _split_blocks

    return _split_blocks(block_rows, len(client.nthreads()), row_work)


def calibrate(job: str, n_features: int, dtype: Any, client: Any = None, **spec: Any) -> float:
    """Seconds per distance of the job's kernel on one thread, measured on a small random tile.

    On a worker of ``client`` when one is given (so the worker's BLAS and
    thread settings count), else in this process; cached per process and cluster.

    Parameters
    ----------
    job : str, one of ``JOBS``
    n_features : int
    dtype : numpy dtype the job computes in
    client : distributed.Client, optional
    **spec
        ``metric`` and ``metric_params``; ``k`` (knn, classify); ``radius``; ``n_clusters`` (kmeans);
        ``seed_rows``, ``bandwidth``, ``kernel`` (meanshift).

    Returns
    -------
    float
    """
    dtype_name = np.dtype(dtype).name
    if client is not None and not client.scheduler_info().get("workers"):
        # No worker to time it on (yet): the run itself reports the missing workers, not the plan.
        client = None
    where = client.scheduler.address if client is not None else "local"
    cached = (job, n_features, dtype_name, where, tuple(sorted((name, repr(value)) for name, value in spec.items())))
    if cached not in _calibrations:
        if client is not None:
            key = f"bigdist-calibrate-{job}-{uuid.uuid4().hex}"
            future = client.submit(_run_calibration, job, n_features, dtype_name, spec, key=key)
            _calibrations[cached] = float(future.result())
        else:
            _calibrations[cached] = _run_calibration(job, n_features, dtype_name, spec)
        logger.debug("calibrated %s at d=%d %s on %s: %.3g ns per distance", job, n_features, dtype_name, where,
                     _calibrations[cached] * 1e9)  # fmt: skip
    return _calibrations[cached]


def plan(
    job: str,
    data: Any,
    train: Any = None,
    *,
    out: str | os.PathLike[str] | None = None,
    k: int = 10,
    metric: str = "euclidean",
    radius: float | None = None,
    max_neighbors: int | None = None,
    n_classes: int | None = None,
    proba: bool = True,
    n_clusters: int = 8,
    max_iter: int = 300,
    bandwidth: float | None = None,
    kernel: str = "gaussian",
    n_seeds: int | None = None,
    persist: bool | None = None,
    storage_options: dict[str, Any] | None = None,
    calibrate_kernel: bool = True,
    **params: Any,
) -> Plan:
    """What a job will cost, without running it: tasks, waves, FLOPs, bytes read and written, disk, time.

    Only metadata is read (shapes, dtypes, chunks); the kernel is timed on one
    small random tile of the job's features, dtype, metric and k (on a worker
    of the ambient ``distributed`` Client, else in this process; cached per
    process); the free space is that of the output's local disk.

    Parameters
    ----------
    job : str
        ``"knn"`` (the self-join when ``train`` is None), ``"classify"``, ``"radius"``,
        ``"pairwise"``, ``"kmeans"`` or ``"meanshift"``.
    data : array-like of shape (n_queries, n_features) or path/URL
        The queries (knn, classify, radius, pairwise) or the rows to cluster (kmeans, meanshift).
    train : array-like of shape (n_train, n_features), path/URL, or None
        The train rows; None for the self-join (or the rows themselves, for classify).
    out : str or PathLike, optional
        Where the output would be written: its size is checked against that disk's free space.
    k, metric, radius, max_neighbors, n_classes, proba
        As for :func:`bigdist.knn`, :func:`bigdist.radius_neighbors` and ``bigdist classify``
        (``n_classes`` sizes the probabilities; unknown, they are left out of the bytes written).
    n_clusters, max_iter, bandwidth, kernel, n_seeds, persist
        As for :func:`bigdist.kmeans` and :func:`bigdist.meanshift`; passes are planned at
        ``max_iter`` (an upper bound: runs stop when they converge).
    storage_options : dict, optional
        fsspec options for the inputs and the output given as URLs; an output
        store that cannot be reached with them is a PlanError.
    calibrate_kernel : bool
        Time the kernel for an estimate (False: ``seconds`` is None).
    **params
        Parameters of the metric (``p`` for ``minkowski``).

    Returns
    -------
    Plan

    Raises
    ------
    PlanError
        An input cannot be opened or its size is unknown, or the output's store cannot be reached.
    ParameterError
        An unknown job, metric or parameter.
    """
    if job not in JOBS:
        raise ParameterError(f"unknown job {job!r}; plan one of {', '.join(JOBS)}")
    resolved = get_metric(metric, **params) if job not in ("kmeans", "meanshift") else get_metric("sqeuclidean")
    clustering = job in ("kmeans", "meanshift")
    if clustering and train is not None:
        raise ParameterError(f"{job} takes one input (the rows to cluster); got train={train!r}")
    self_join = train is None and not clustering
    query_array = _open(data, "data" if clustering else "queries", storage_options)
    train_array = query_array if train is None else _open(train, "train", storage_options)
    if query_array.shape[1] != train_array.shape[1]:
        raise PlanError(
            f"cannot plan: the queries have {query_array.shape[1]} features, the train rows "
            f"{train_array.shape[1]}; both need the same columns"
        )
    m, d = (int(size) for size in query_array.shape)
    n = int(train_array.shape[0])
    dtype = np.result_type(query_array.dtype, train_array.dtype)
    itemsize = dtype.itemsize
    input_bytes = m * d * query_array.dtype.itemsize
    train_bytes = n * d * train_array.dtype.itemsize
    threads, cluster, client = _cluster()
    notes: list[str] = []
    output = None if out is None else os.fspath(out)
    shapes = (
        {"data": (m, d)} if clustering else {"queries": (m, d)} if self_join else {"queries": (m, d), "train": (n, d)}
    )
    spec: dict[str, Any] = {"metric": resolved.name, "metric_params": dict(resolved.params)}
    passes = 1
    flops_per_term = 2.0 if resolved.gemm else 3.0
    waves_job = None

    if job in ("knn", "classify", "radius"):
        k = check_int("k", k)
        query_rows = min(config.get("knn.query-block-rows"), rows_per_block(d, itemsize))
        query_blocks, train_blocks = len(even_blocks(m, query_rows)), len(train_array.chunks[0])
        pairs = float(m) * n
        bytes_read = train_bytes if self_join else input_bytes + train_bytes
        panels = train_blocks
        if job == "knn":
            bytes_written = m * k * (itemsize + 8)
            spec["k"] = k
            job_params: dict[str, Any] = {"k": k, "metric": resolved.name}
            waves_job = _knn_job(query_array, None if self_join else train_array, k, resolved.name, params)
        elif job == "classify":
            bytes_written = m * 8 + (m * n_classes * 8 if proba and n_classes else 0)
            if proba and not n_classes:
                notes.append("the class probabilities are not counted in the output (the number of classes is unknown)")
            spec["k"] = k
            job_params = {"k": k, "metric": resolved.name, **({"n_classes": n_classes} if n_classes else {})}
            # The kNN's tasks (the train rows themselves are queried as queries, asking k + 1: the same tasks).
            waves_job = _knn_job(query_array, None if self_join else train_array, k, resolved.name, params)
            notes.append(
                "the panel tasks also read their train rows' labels (8 bytes per row and output, per query block), "
                "not counted in the bytes read"
            )
        else:
            if radius is None:
                raise ParameterError("radius neighbours need radius=; give the radius to plan for")
            cap = (
                config.get("radius.max-neighbors")
                if max_neighbors is None
                else check_int("max_neighbors", max_neighbors)
            )
            bytes_written = (m + 1) * 8
            notes.append(
                f"radius neighbours write 8 + {itemsize} bytes per pair found, up to {_size(m * cap * (8 + itemsize))} "
                f"at the cap of {cap:,} per query; only the row pointers are counted"
            )
            spec["radius"] = float(radius)
            job_params = {"radius": float(radius), "metric": resolved.name}
            radius_params = {**params, **({"max_neighbors": cap} if max_neighbors is not None else {})}
            waves_job = _radius_job(query_array, None if self_join else train_array, radius, resolved.name,
                                    radius_params)  # fmt: skip
            if waves_job is not None:
                notes.append(
                    "the pairs are staged in the output group, then copied into the CSR arrays by one task per "
                    "chunk: the disk holds them twice until the run ends"
                )
        tasks = query_blocks * train_blocks
        calibrated_job = job
        if waves_job is not None:
            # Written through the execution layer's waves: its job description has the exact counts.
            from bigdist.execution.waves import window_size

            query_blocks, panels, tasks = len(waves_job.query_blocks), len(waves_job.panels), waves_job.n_tasks
            waves = waves_job.n_waves(window_size(client))
            bytes_read = waves_job.bytes_read
            if job == "knn":
                bytes_written = waves_job.bytes_written
            notes.append(
                f"{query_blocks:,} tasks that merge each query block's panels and write it come on top, "
                f"in windows of {window_size(client):,} tasks in flight"
            )
    elif job == "pairwise":
        from bigdist.kernels.pairwise import out_dtype
        from bigdist.pairwise import block_shape

        dtype = out_dtype(query_array.dtype, train_array.dtype)
        itemsize = dtype.itemsize
        rows, cols = block_shape(m, n, itemsize, config.get("chunk-bytes"))
        input_rows = rows_per_block(d, max(query_array.dtype.itemsize, train_array.dtype.itemsize))
        # The rule of bigdist.pairwise: regular blocks of the largest even block within both limits.
        block_rows, block_cols = even_blocks(m, min(rows, input_rows))[0], even_blocks(n, min(cols, input_rows))[0]
        query_blocks, train_blocks = -(-m // block_rows), -(-n // block_cols)
        # Written in waves (bigdist.execution.blocks.write_blocks): a task computes a run of consecutive
        # blocks of one row, as many as make about panel-flops, reading its query block and their train rows.
        per_task = max(1, int(config.get("execution.panel-flops") // (block_rows * block_cols * flops_per_term * d)))
        panels = -(-train_blocks // per_task)
        tasks = query_blocks * panels
        pairs = float(m) * n
        bytes_read = input_bytes * panels + train_bytes * query_blocks
        bytes_written = m * n * itemsize
        from bigdist.execution.waves import window_size

        waves = -(-tasks // window_size(client))
        job_params = {"metric": resolved.name}
        calibrated_job = job
    else:
        from bigdist.resources import memory_budget

        passes = check_int("max_iter", max_iter)
        kept = input_bytes <= memory_budget() if persist is None else bool(persist)
        bytes_read = input_bytes if kept else input_bytes * passes
        query_blocks, train_blocks, panels = len(query_array.chunks[0]), 0, 0
        if job == "kmeans":
            n_clusters = check_int("n_clusters", n_clusters)
            centres = n_clusters
            spec["n_clusters"] = n_clusters
            bytes_written = n_clusters * d * 8 + m * 8
            tasks = query_blocks * passes
            job_params = {"n_clusters": n_clusters, "max_iter": passes}
            split = _kmeans_pieces(query_array.chunks[0], client, n_clusters * d) if kept else None
            if split is not None:
                pieces = sum(map(len, split))
                tasks = 2 * pieces * passes
                notes.append(
                    f"on this Client the {query_blocks:,} row blocks are kept in {pieces:,} pieces: each Lloyd pass "
                    f"labels them all at once and sums them block by block (two tasks a piece)"
                )
            notes.append("the initialisation (k-means|| rounds or k-means++) comes on top of the Lloyd passes")
        else:
            if bandwidth is None:
                # The kernel's cost barely depends on the bandwidth; the estimate itself is a pass of its own.
                notes.append("the bandwidth is estimated at run time, in a kNN pass over a sample, not counted here")
            max_seeds = config.get("meanshift.max-seeds")
            centres = check_int("n_seeds", n_seeds) if n_seeds is not None else min(m, max_seeds)
            seed_rows = config.get("meanshift.seed-block-rows")
            seed_blocks = -(-centres // seed_rows)
            spec.update(seed_rows=min(centres, seed_rows), bandwidth=float(bandwidth or 1.0), kernel=kernel)
            # Modes are at most the seeds; labels one int64 per row.
            bytes_written = m * 8 + centres * (d + 1) * 8
            tasks = seed_blocks * query_blocks * passes
            if not kept:
                bytes_read *= seed_blocks  # each task of a pass reads its row block for its block of seeds
            job_params = {
                "bandwidth": "estimated" if bandwidth is None else float(bandwidth),
                "seeds": centres,
                "max_iter": passes,
                "kernel": kernel,
            }
            notes.append("seeds stop moving at different passes: later passes cost less than the first")
        notes.append(f"passes planned at max_iter={passes}, an upper bound: the run stops when it converges")
        # Each pass runs as waves of its tasks (bigdist.execution.passes), one row block each; then the labels.
        from bigdist.execution.waves import window_size

        window = window_size(client)
        # The window counts row blocks (k-means in pieces: a block's tasks in flight count as one).
        blocks_per_pass = query_blocks if job == "kmeans" else tasks // passes
        waves = passes * -(-blocks_per_pass // window) + -(-query_blocks // window)
        notes.append(
            f"each pass runs in waves of {window:,} tasks in flight, its partial results merged on the client; "
            f"then {query_blocks:,} tasks write the labels, one row block each"
        )
        if not kept:
            notes.append("the data does not fit the cluster's memory budget, so it is re-read every pass")
        pairs = float(m) * centres * passes
        calibrated_job = job
        flops_per_term = 2.0

    free, free_note = _free_space(output, storage_options)
    if free_note:
        notes.append(free_note)
    seconds_per_pair = None
    if calibrate_kernel:
        seconds_per_pair = calibrate(calibrated_job, d, dtype, client, **spec)
    seconds = None if seconds_per_pair is None else pairs * seconds_per_pair / max(1, threads)
    result = Plan(
        job="self-join" if job == "knn" and self_join else job,
        shapes=shapes,
        dtype=dtype.name,
        params=job_params,
        query_blocks=query_blocks,
        train_blocks=train_blocks,
        panels=panels,
        tasks=tasks,
        waves=waves if waves_job is not None or job in ("pairwise", "kmeans", "meanshift") else passes,
        passes=passes,
        pairs=pairs,
        flops=flops_per_term * pairs * d,
        bytes_read=int(bytes_read),
        bytes_written=int(bytes_written),
        output=output,
        free_bytes=free,
        threads=threads,
        cluster=cluster,
        seconds_per_pair=seconds_per_pair,
        seconds=seconds,
        notes=notes,
    )
    logger.debug("plan: %s", result.to_dict())
    return result


__all__ = ["JOBS", "Plan", "calibrate", "plan"]
