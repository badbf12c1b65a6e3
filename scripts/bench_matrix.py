"""The benchmark matrix: bigdist against its peers the way users run it, cell by cell.

Each cell is one problem (kNN: m queries x n train rows x d features, k; or
k-means: n x d, k clusters) on one kind of data (random normal, Gaussian
blobs, or scikit-learn's digits tiled and jittered) in float32 or float64.
Every contender of a cell runs in a fresh process of its own, on data
written to Zarr with zarr's defaults (zstd; rows in chunks of 65,536, the
features in one chunk), timed from the public call to the result:

- ``bigdist``: ``bd.knn(queries.zarr, train.zarr, k)`` / ``bd.kmeans(data.zarr, ...)``
  without a Client (the threaded scheduler);
- ``bigdist-cluster``: the same inside ``bigdist.runtime.start()`` (a
  LocalCluster of one single-threaded worker per core, started before the clock);
- ``sklearn``: ``NearestNeighbors(algorithm="brute")`` / ``KMeans(algorithm="lloyd")``;
- ``faiss``: ``IndexFlatL2`` / ``faiss.Kmeans``;
- ``dask-ml`` (k-means only): ``dask_ml.cluster.KMeans`` on the Zarr data, no Client;
- ``sgemm``: the bare float32 GEMM of the same shape (queries x train, or
  data x centroids per iteration), streamed in blocks into one buffer: the
  GEMM bound.

The peers get the data in memory (loading it is not timed: that is how they
are used). k-means cells run the same number of Lloyd iterations from the
same initial centroids (rows drawn from the data) with ``tol=0`` and report
seconds per iteration (the whole call divided by the iterations run). Runs
alternate between contenders (the order rotates every round) and the table
shows medians. Before the first timed run every contender runs once on tiny
data, so numba's on-disk cache is warm, as it is for a user after the first
call ever. Per cell it prints the speed of bigdist (no Client) relative to
the best peer (best peer seconds / bigdist seconds: above 1 bigdist is
faster) and to the GEMM bound (sgemm seconds / bigdist seconds), and the
agreement of every contender's neighbours (first queries) with bigdist's.
For k-means it also shows bigdist's iterations alone (the median of the
seconds its ``stats`` give each iteration): the call's figure less the read
of the data, numba's first load in the process and the final pass, which
tells the fixed costs of a fresh process from the cost of an iteration.

    python scripts/bench_matrix.py --quick                      # a minute or two: tiny sizes, no warm-up
    python scripts/bench_matrix.py                              # every cell, 3 rounds
    python scripts/bench_matrix.py --cells 'knn-*' --repeats 5 --markdown matrix.md --json matrix.json
    python scripts/bench_matrix.py --list                       # the cells and their sizes

Where the machine pins OpenBLAS to an older kernel (``OPENBLAS_CORETYPE``,
with ``OPENBLAS_L2_SIZE``: set on some processors because older OpenBLAS
builds misdetect them), ``--blas current`` runs the contenders that use
NumPy's OpenBLAS without the pin, on the kernel a current NumPy picks for
this processor, while faiss (which bundles an older OpenBLAS) keeps it. Every
contender's line shows the OpenBLAS kernel it ran.

    python scripts/bench_matrix.py --blas current --cells 'km-*'

Needs the ``bench`` extra (faiss-cpu, dask-ml, psutil). Data goes to
--workdir (default /tmp/bigdist-matrix) and is reused while its parameters match.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

CHUNK_ROWS = 65_536
N_CHECKED = 100  # queries whose neighbours are compared between contenders
KNN_CONTENDERS = ("bigdist", "bigdist-cluster", "sklearn", "faiss", "sgemm")
KMEANS_CONTENDERS = ("bigdist", "bigdist-cluster", "sklearn", "faiss", "dask-ml", "sgemm")
PEERS = ("sklearn", "faiss", "dask-ml")
# What pins OpenBLAS to one kernel; faiss's bundled (older) OpenBLAS keeps the pin under --blas current.
BLAS_PIN = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
KEEPS_BLAS_PIN = ("faiss",)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One problem of the matrix. ``m`` 0 is the kNN self-join; ``k`` is neighbours or clusters."""

    name: str
    algorithm: str  # "knn" or "kmeans"
    n: int
    d: int
    k: int
    m: int = 0
    data: str = "random"  # "random", "blobs" or "digits"
    dtype: str = "float32"
    iterations: int = 10

    def describe(self) -> str:
        shape = f"{self.n:,} x {self.d}" if self.m == 0 else f"{self.m:,} x {self.n:,} x {self.d}"
        what = "self-join" if self.algorithm == "knn" and self.m == 0 else self.algorithm
        return f"{what} {shape}, k={self.k}, {self.data}, {self.dtype}"

    def shrunk(self, n: int, m: int) -> Cell:
        """The same cell on a tiny size (``--quick`` and the warm-up runs)."""
        return dataclasses.replace(
            self, name=f"{self.name}-tiny{n}", n=n, m=min(self.m, m), k=min(self.k, n // 20), iterations=3
        )


CELLS = [
    # The matrix of issue 12, then more d, k, n, data kinds and dtypes.
    Cell("km-1M-d64-k100-random", "kmeans", 1_000_000, 64, 100),
    Cell("km-1M-d64-k100-blobs", "kmeans", 1_000_000, 64, 100, data="blobs"),
    Cell("km-500k-d32-k1000-random", "kmeans", 500_000, 32, 1000),
    Cell("km-200k-d256-k100-blobs", "kmeans", 200_000, 256, 100, data="blobs"),
    Cell("knn-1M-d128-k10", "knn", 1_000_000, 128, 10, m=2000),
    Cell("knn-200k-d1024-k10", "knn", 200_000, 1024, 10, m=2000),
    Cell("knn-1M-d128-k100", "knn", 1_000_000, 128, 100, m=2000),
    Cell("knn-1M-d16-k10-m20k", "knn", 1_000_000, 16, 10, m=20_000),
    Cell("knn-self-100k-d64-k10", "knn", 100_000, 64, 10),
    Cell("knn-1M-d2-k10-m20k", "knn", 1_000_000, 2, 10, m=20_000),
    Cell("knn-1M-d64-k10-blobs", "knn", 1_000_000, 64, 10, m=5000, data="blobs"),
    Cell("knn-500k-digits-k10", "knn", 500_000, 64, 10, m=5000, data="digits"),
    Cell("knn-200k-d512-k50", "knn", 200_000, 512, 50, m=2000),
    Cell("knn-500k-d128-k10-f64", "knn", 500_000, 128, 10, m=2000, dtype="float64"),
    Cell("km-1M-d2-k16-blobs", "kmeans", 1_000_000, 2, 16, data="blobs"),
    Cell("km-1M-digits-k10", "kmeans", 1_000_000, 64, 10, data="digits"),
    Cell("km-200k-d128-k4096-random", "kmeans", 200_000, 128, 4096, iterations=5),
    Cell("km-500k-d64-k100-blobs-f64", "kmeans", 500_000, 64, 100, data="blobs", dtype="float64"),
    Cell("km-500k-d32-k1000-random-f64", "kmeans", 500_000, 32, 1000, dtype="float64"),
]
QUICK = ["km-1M-d64-k100-blobs", "knn-1M-d128-k10", "knn-self-100k-d64-k10"]


# --------------------------------------------------------------------------- data


def _rows(kind: str, start: int, stop: int, d: int, seed: int, stream: int) -> np.ndarray:
    """Rows [start, stop) of a data set, float64, the same whatever the blocks they are made in."""
    rng = np.random.default_rng([seed, stream, start])
    if kind == "random":
        return rng.standard_normal((stop - start, d))
    if kind == "blobs":
        centres = np.random.default_rng([seed, 0]).uniform(-10, 10, size=(100, d))
        return centres[rng.integers(0, len(centres), stop - start)] + rng.standard_normal((stop - start, d))
    if kind == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits().data  # (1797, 64), values 0..16
        picked = digits[rng.integers(0, len(digits), stop - start)]
        if d != picked.shape[1]:
            picked = np.resize(picked, (stop - start, d))
        return picked + rng.normal(scale=0.5, size=picked.shape)
    raise ValueError(f"unknown data kind {kind!r}; use random, blobs or digits")


def _write(path: str, n: int, d: int, kind: str, dtype: str, stream: int) -> None:
    """Write the array to Zarr with zarr's default codecs, block by block, and mark it finished."""
    import zarr

    wanted = {"n": n, "d": d, "kind": kind, "dtype": dtype, "stream": stream, "complete": True}
    if os.path.exists(os.path.join(path, "zarr.json")):
        try:
            if dict(zarr.open_array(store=path, mode="r").attrs.get("bench_matrix", {})) == wanted:
                return
        except Exception:  # noqa: BLE001 - anything unreadable is written again
            pass
    partial = f"{path}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    array = zarr.create_array(store=partial, shape=(n, d), chunks=(min(CHUNK_ROWS, n), d), dtype=dtype)
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        array[start:stop] = _rows(kind, start, stop, d, seed=12, stream=stream).astype(dtype)
    array.attrs["bench_matrix"] = wanted
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)


def prepare(cell: Cell, workdir: str) -> dict[str, str]:
    """Write (or reuse) the cell's arrays; the paths of train, queries (kNN) and initial centroids (k-means)."""
    base = os.path.join(workdir, f"{cell.data}-{cell.dtype}-{cell.n}x{cell.d}")
    paths = {"train": f"{base}.zarr"}
    _write(paths["train"], cell.n, cell.d, cell.data, cell.dtype, stream=1)
    if cell.algorithm == "knn" and cell.m:
        paths["queries"] = os.path.join(workdir, f"{cell.data}-{cell.dtype}-{cell.m}x{cell.d}-queries.zarr")
        _write(paths["queries"], cell.m, cell.d, cell.data, cell.dtype, stream=2)
    if cell.algorithm == "kmeans":
        import zarr

        paths["init"] = f"{base}-init{cell.k}.npy"
        if not os.path.exists(paths["init"]):
            rows = np.sort(np.random.default_rng(0).choice(cell.n, cell.k, replace=False))
            centroids = zarr.open_array(store=paths["train"], mode="r").get_orthogonal_selection((rows, slice(None)))
            np.save(paths["init"], np.asarray(centroids, dtype=np.float64))
    return paths


# --------------------------------------------------------------------------- contenders (in the child process)


def _load(path: str) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_array(store=path, mode="r")[...])


def _knn(contender: str, cell: Cell, paths: dict[str, str]) -> tuple[float, np.ndarray | None]:
    """Seconds of one kNN call and the neighbours of the first queries (None for sgemm)."""
    k = cell.k
    if contender in ("bigdist", "bigdist-cluster"):
        import dask

        import bigdist as bd

        start = time.perf_counter()
        result = bd.knn(paths.get("queries"), paths["train"], k=k) if cell.m else bd.knn(paths["train"], None, k=k)
        _, indices = dask.compute(result.distances, result.indices)
        return time.perf_counter() - start, indices[:N_CHECKED]
    train = _load(paths["train"])
    queries = _load(paths["queries"]) if cell.m else train
    if contender == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        start = time.perf_counter()
        model = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(train)
        # The self-join asks for k neighbours besides each row itself, as bigdist's does.
        indices = model.kneighbors(queries if cell.m else None, return_distance=False)
        return time.perf_counter() - start, indices[:N_CHECKED]
    if contender == "faiss":
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)
        start = time.perf_counter()
        index = faiss.IndexFlatL2(cell.d)
        index.add(np.ascontiguousarray(train, dtype=np.float32))
        _, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), k if cell.m else k + 1)
        if not cell.m:  # drop each row itself (first, unless a duplicate ties with it)
            own = indices == np.arange(len(indices))[:, None]
            indices = np.array([row[~mask][:k] for row, mask in zip(indices, own, strict=True)])
        return time.perf_counter() - start, indices[:N_CHECKED]
    if contender == "sgemm":
        a, b = queries.astype(np.float32), train.astype(np.float32)
        return _streamed_gemm(a, b, repeats=1), None
    raise ValueError(f"{contender!r} does not run kNN cells")


# Most float32 values of the sgemm contender's output buffer (512 MiB): a self-join's queries go in blocks.
GEMM_BUFFER_VALUES = 2**27


def _streamed_gemm(a: np.ndarray, b: np.ndarray, repeats: int) -> float:
    """Seconds of ``repeats`` times a @ b.T in blocks (train: CHUNK_ROWS) into one buffer (no selection)."""
    columns = min(CHUNK_ROWS, len(b))
    rows = min(len(a), max(1, GEMM_BUFFER_VALUES // columns))
    out = np.empty((rows, columns), dtype=np.float32)
    np.matmul(a[:rows], b[:columns].T, out=out)  # BLAS threads started (and the buffer touched) before the clock
    start = time.perf_counter()
    for _ in range(repeats):
        for first in range(0, len(a), rows):
            queries = a[first : first + rows]
            for begin in range(0, len(b), CHUNK_ROWS):
                block = b[begin : begin + CHUNK_ROWS]
                np.matmul(queries, block.T, out=out[: len(queries), : len(block)])
    return time.perf_counter() - start


def _kmeans(contender: str, cell: Cell, paths: dict[str, str]) -> tuple[float, float | None]:
    """Seconds per Lloyd iteration from the shared initial centroids (the whole call / iterations).

    For bigdist also the median of its own iterations' seconds (its ``stats``): the
    iterations alone, without the read, numba's first load and the final pass.
    """
    init = np.load(paths["init"])
    iterations = cell.iterations
    if contender in ("bigdist", "bigdist-cluster"):
        import bigdist as bd

        start = time.perf_counter()
        result = bd.kmeans(paths["train"], cell.k, init=init, max_iter=iterations, tol=0)
        seconds = time.perf_counter() - start
        return seconds / max(result.n_iter, 1), statistics.median(stat["seconds"] for stat in result.stats)
    if contender == "dask-ml":
        import dask.array as da
        from dask_ml.cluster import KMeans

        X = da.from_zarr(paths["train"])
        start = time.perf_counter()
        model = KMeans(n_clusters=cell.k, init=init, max_iter=iterations, tol=0, oversampling_factor=2).fit(X)
        return (time.perf_counter() - start) / max(model.n_iter_, 1), None
    data = _load(paths["train"])
    if contender == "sklearn":
        from sklearn.cluster import KMeans

        start = time.perf_counter()
        model = KMeans(cell.k, init=init, n_init=1, max_iter=iterations, tol=0, algorithm="lloyd").fit(data)
        return (time.perf_counter() - start) / max(model.n_iter_, 1), None
    if contender == "faiss":
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)
        data32 = np.ascontiguousarray(data, dtype=np.float32)
        model = faiss.Kmeans(cell.d, cell.k, niter=iterations, verbose=False, max_points_per_centroid=len(data))
        start = time.perf_counter()
        model.train(data32, init_centroids=init.astype(np.float32))
        return (time.perf_counter() - start) / iterations, None
    if contender == "sgemm":
        return _streamed_gemm(init.astype(np.float32), data.astype(np.float32), repeats=iterations) / iterations, None
    raise ValueError(f"{contender!r} does not run k-means cells")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one contender on one cell in this (fresh) process."""
    cell = Cell(**spec["cell"])
    contender = spec["contender"]
    run = _knn if cell.algorithm == "knn" else _kmeans
    if contender == "bigdist-cluster":
        from bigdist import runtime

        with runtime.start(dashboard_address=None):
            seconds, detail = run(contender, cell, spec["paths"])
    else:
        seconds, detail = run(contender, cell, spec["paths"])
    # kNN: the first queries' neighbours; k-means: bigdist's median iteration.
    indices = np.asarray(detail).tolist() if cell.algorithm == "knn" and detail is not None else None
    iteration = detail if cell.algorithm == "kmeans" else None
    return {"seconds": seconds, "indices": indices, "iteration": iteration, "blas": _blas_kernel(contender)}


def _blas_kernel(contender: str) -> str:
    """The kernel of the OpenBLAS that did the contender's arithmetic (faiss's own for faiss, else NumPy's)."""
    from threadpoolctl import threadpool_info

    libraries = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    mine = [i for i in libraries if ("faiss" in i["filepath"]) == (contender == "faiss")]
    return str((mine or libraries or [{}])[0].get("architecture", "?"))


# --------------------------------------------------------------------------- the parent


def _child_env(contender: str, blas: str) -> dict[str, str]:
    """The child's environment: this one, without the OpenBLAS pin under ``--blas current`` (but for faiss)."""
    env = dict(os.environ)
    if blas == "current" and contender not in KEEPS_BLAS_PIN:
        for name in BLAS_PIN:
            env.pop(name, None)
    return env


def _run_child(cell: Cell, contender: str, paths: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    spec = {"cell": dataclasses.asdict(cell), "contender": contender, "paths": paths}
    timeout, env = args.timeout, _child_env(contender, args.blas)
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec), "--child-out", out.name]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return {"error": lines[-1] if lines else f"exit code {done.returncode}"}
        return json.load(out)


def _available(contender: str) -> bool:
    module = {"faiss": "faiss", "dask-ml": "dask_ml", "sklearn": "sklearn"}.get(contender)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _agreement(ours: list[list[int]] | None, theirs: list[list[int]] | None) -> float | None:
    """Fraction of the checked queries' neighbour sets that are equal (ties may order them differently)."""
    if not ours or not theirs:
        return None
    same = [set(a) == set(b) for a, b in zip(ours, theirs, strict=False)]
    return sum(same) / len(same)


def bench_cell(cell: Cell, contenders: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then alternate the contenders for ``args.repeats`` rounds; medians and ratios."""
    os.makedirs(args.workdir, exist_ok=True)
    began = time.perf_counter()
    paths = prepare(cell, args.workdir)
    logging.info("%s: data ready in %.1f s", cell.name, time.perf_counter() - began)
    if not args.quick:  # numba's on-disk cache and the OS's page cache warm (--quick only checks the script)
        tiny = cell.shrunk(n=2000, m=50)
        tiny_paths = prepare(tiny, args.workdir)
        for contender in contenders:
            _run_child(tiny, contender, tiny_paths, args)
    runs: dict[str, list[float]] = {c: [] for c in contenders}
    iterations: dict[str, list[float]] = {c: [] for c in contenders}
    errors: dict[str, str] = {}
    indices: dict[str, Any] = {}
    kernels: dict[str, str] = {}
    for round_ in range(args.repeats):
        order = contenders[round_ % len(contenders) :] + contenders[: round_ % len(contenders)]
        for contender in order:
            if contender in errors:
                continue
            result = _run_child(cell, contender, paths, args)
            if "error" in result:
                errors[contender] = result["error"]
                logging.warning("%s / %s failed: %s", cell.name, contender, result["error"])
                continue
            runs[contender].append(result["seconds"])
            if result.get("iteration") is not None:
                iterations[contender].append(result["iteration"])
            indices.setdefault(contender, result["indices"])
            kernels.setdefault(contender, result["blas"])
            logging.info("%s / %s: %.3f s", cell.name, contender, result["seconds"])
    medians = {c: statistics.median(t) for c, t in runs.items() if t}
    peers = {c: s for c, s in medians.items() if c in PEERS}
    best_peer = min(peers, key=peers.get) if peers else None
    ours = medians.get("bigdist")
    summary = {
        "cell": dataclasses.asdict(cell),
        "describe": cell.describe(),
        "unit": "s" if cell.algorithm == "knn" else "s/iter",
        "medians": medians,
        # bigdist's k-means iterations alone (medians of each run's median iteration).
        "iteration_medians": {c: statistics.median(t) for c, t in iterations.items() if t},
        "runs": runs,
        "errors": errors,
        "blas": kernels,
        "best_peer": best_peer,
        "vs_best_peer": peers[best_peer] / ours if ours and best_peer else None,
        "vs_sgemm": medians["sgemm"] / ours if ours and "sgemm" in medians else None,
        "no_client_vs_cluster": medians["bigdist-cluster"] / ours if ours and "bigdist-cluster" in medians else None,
        "agreement": {c: _agreement(indices.get("bigdist"), i) for c, i in indices.items() if c != "bigdist"},
    }
    _print_cell(summary, contenders)
    return summary


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _print_cell(summary: dict[str, Any], contenders: list[str]) -> None:
    print(f"\n{summary['cell']['name']}: {summary['describe']} ({summary['unit']}, median)", flush=True)
    for contender in contenders:
        agree = summary["agreement"].get(contender)
        shown = summary["errors"].get(contender) or _fmt(summary["medians"].get(contender))
        kernel = summary["blas"].get(contender)
        iteration = summary["iteration_medians"].get(contender)
        print(
            f"  {contender:16s} {shown:>10s}"
            + ("" if kernel is None else f"  [{kernel}]")
            + ("" if agree is None else f"   neighbours agree {agree:.0%}")
            + ("" if iteration is None else f"   its iterations alone {iteration:.3f}")
        )
    print(
        f"  bigdist vs best peer ({summary['best_peer']}): {_fmt(summary['vs_best_peer'], '.2f')}x;  "
        f"vs sgemm: {_fmt(summary['vs_sgemm'], '.2f')}x;  no Client vs LocalCluster: "
        f"{_fmt(summary['no_client_vs_cluster'], '.2f')}x",
        flush=True,
    )


def markdown(summaries: list[dict[str, Any]]) -> str:
    """The matrix as a Markdown table (speeds above 1: bigdist faster)."""
    lines = [
        "| cell | bigdist, no Client | bigdist, LocalCluster | best peer | sgemm | vs best peer | vs sgemm "
        "| bigdist's iterations alone, no Client |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        m, unit = s["medians"], s["unit"]
        peer = f"{s['best_peer']} {m[s['best_peer']]:.3f}" if s["best_peer"] else "-"
        lines.append(
            f"| {s['describe']} ({unit}) | {_fmt(m.get('bigdist'))} | {_fmt(m.get('bigdist-cluster'))} | {peer} | "
            f"{_fmt(m.get('sgemm'))} | {_fmt(s['vs_best_peer'], '.2f')}x | {_fmt(s['vs_sgemm'], '.2f')}x | "
            f"{_fmt(s['iteration_medians'].get('bigdist'))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="*", default=None, help="Cell names or shell patterns (default: all).")
    parser.add_argument("--contenders", nargs="*", default=None, help="Subset of the contenders (default: all).")
    parser.add_argument("--repeats", type=int, default=3, help="Rounds of alternated runs (median shown).")
    parser.add_argument("--quick", action="store_true", help="A few cells on tiny sizes, one round.")
    parser.add_argument("--workdir", default="/tmp/bigdist-matrix")
    parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds one run may take before it fails.")
    parser.add_argument(
        "--blas",
        choices=("inherit", "current"),
        default="inherit",
        help="inherit: every run gets this environment; current: runs on NumPy's OpenBLAS drop the OpenBLAS pin "
        "(OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) so it picks its own kernel (faiss keeps it).",
    )
    parser.add_argument("--markdown", help="Write the table to this Markdown file.")
    parser.add_argument("--json", help="Write every run and summary to this JSON file.")
    parser.add_argument("--list", action="store_true", help="List the cells and exit.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        with open(args.child_out, "w", encoding="utf-8") as out:
            json.dump(child(json.loads(args.child)), out)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_common import print_command

    print_command()
    if args.list:
        for cell in CELLS:
            print(f"{cell.name:30s} {cell.describe()}")
        return
    patterns = args.cells or (QUICK if args.quick else ["*"])
    cells = [c for c in CELLS if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not cells:
        parser.error(f"no cell matches {patterns}; see --list")
    if args.quick:
        cells = [c.shrunk(n=20_000, m=500) for c in cells]
        args.repeats = 1 if args.repeats == 3 else args.repeats
    summaries = []
    for cell in cells:
        contenders = KNN_CONTENDERS if cell.algorithm == "knn" else KMEANS_CONTENDERS
        wanted = [c for c in contenders if (args.contenders is None or c in args.contenders) and _available(c)]
        summaries.append(bench_cell(cell, wanted, args))
    table = markdown(summaries)
    print("\n" + table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as out:
            out.write(table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(summaries, out, indent=1)


if __name__ == "__main__":
    main()
