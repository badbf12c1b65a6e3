"""Benchmark distance matrices: bigdist against SciPy ``cdist`` and scikit-learn, then a matrix far bigger than RAM.

1. In memory, per metric family, on the same float32 data (default 5,000 x
   20,000 x 64): bigdist ``pairwise_distances(Q, X, metric).compute()``,
   SciPy ``cdist`` and scikit-learn ``pairwise_distances``. Each runs on one
   core (BLAS limited to 1 thread, dask's synchronous scheduler) and is timed
   in CPU seconds of the process (other jobs on a shared machine do not
   count), so the figures are per core: GFLOP/s (2·m·n·d / s) for the GEMM
   family, ns per pair for the direct metrics. bigdist is also timed in wall
   seconds on every core (threaded scheduler, one BLAS thread per dask thread). The slow peers run
   on the first ``--peer-queries`` query rows only (per-pair figures do not
   depend on m). bigdist's first 200 rows are checked against ``cdist``'s float64 values.
2. Streaming (``--stream-rows``, default 50,000): the self-join matrix of
   that many float32 rows (10 GB at 50,000) computed on a LocalCluster (one
   single-threaded worker per core) and written to an uncompressed Zarr group
   under ``--workdir``, reporting GB/s written and the peak RSS summed over
   all processes of the run (client, scheduler, nannies and workers), which
   must stay far below the matrix size. The output is deleted afterwards
   unless ``--keep``.

    python scripts/bench_pairwise.py --n-queries 500 --n-train 2000 --stream-rows 5000   # smoke test
    flock /tmp/bigdist-bench.lock python scripts/bench_pairwise.py                        # full size
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from typing import Any

import dask
import numpy as np
import sklearn
import zarr
from bench_common import PeakRSS, best_cpu_seconds, best_wall_seconds, print_command
from scipy.spatial.distance import cdist
from sklearn.metrics import pairwise_distances as sk_pairwise_distances
from threadpoolctl import threadpool_limits

import bigdist as bd
from bigdist import runtime
from bigdist.io import make_random, write_group

GB = 1e9

# (bigdist metric, params, SciPy name or None, scikit-learn name or None, boolean data)
CASES: list[tuple[str, dict[str, Any], str | None, str | None, bool]] = [
    ("euclidean", {}, "euclidean", "euclidean", False),
    ("sqeuclidean", {}, "sqeuclidean", "sqeuclidean", False),
    ("cosine", {}, "cosine", "cosine", False),
    ("correlation", {}, "correlation", "correlation", False),
    ("inner_product", {}, None, None, False),
    ("manhattan", {}, "cityblock", "manhattan", False),
    ("chebyshev", {}, "chebyshev", "chebyshev", False),
    ("minkowski", {"p": 3}, "minkowski", "minkowski", False),
    ("minkowski", {"p": 1.5}, "minkowski", "minkowski", False),
    ("canberra", {}, "canberra", "canberra", False),
    ("braycurtis", {}, "braycurtis", "braycurtis", False),
    ("chi2", {}, None, None, False),
    ("hamming", {}, "hamming", "hamming", True),
    ("jaccard", {}, "jaccard", "jaccard", True),
]
GEMM_FAMILY = ("euclidean", "sqeuclidean", "cosine", "correlation", "inner_product")


def _bigdist(queries: np.ndarray, train: np.ndarray, metric: str, params: dict[str, Any]) -> np.ndarray:
    return bd.pairwise_distances(queries, train, metric, **params).compute()


def _rate(metric: str, m: int, n: int, d: int, seconds: float) -> str:
    if metric in GEMM_FAMILY:
        return f"{2.0 * m * n * d / seconds / 1e9:7.1f} GFLOP/s"
    return f"{seconds / (m * n) * 1e9:7.2f} ns/pair"


def in_memory(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    queries = rng.random((args.n_queries, args.d), dtype=np.float32)
    train = rng.random((args.n_train, args.d), dtype=np.float32)
    cores = os.cpu_count() or 1
    peer_rows = min(args.peer_queries, args.n_queries)
    print(
        f"\n== in memory: {args.n_queries:,} x {args.n_train:,} x {args.d} float32; per core in CPU time unless said; "
        f"peers on {peer_rows:,} query rows for direct metrics; SciPy {__import__('scipy').__version__}, "
        f"scikit-learn {sklearn.__version__}, {cores} cores (shared machine) =="
    )
    print(f"{'metric':<16}{'bigdist 1 core':>22}{f'bigdist {cores} threads':>22}{'SciPy cdist':>22}"
          f"{'scikit-learn':>22}{'vs cdist':>10}{'vs sklearn':>11}  max |err|")  # fmt: skip
    # The first pass over a fresh 0.4-0.8 GB output pays its page faults (about 1 s here);
    # one untimed full-size run lets every library start from a warm heap.
    with threadpool_limits(1), dask.config.set(scheduler="synchronous"):
        cdist(queries, train, "sqeuclidean")
        _bigdist(queries, train, "sqeuclidean", {})
    for metric, params, scipy_name, sklearn_name, boolean in CASES:
        if args.metrics and metric not in args.metrics:
            continue
        q, x = (queries > 0.5, train > 0.5) if boolean else (queries, train)
        _bigdist(q[:10], x[:10], metric, params)  # loads the compiled kernels: not timed
        if metric == "minkowski" and float(params["p"]) != int(params["p"]):
            q = q[:peer_rows]  # a pow per coordinate for everyone: too slow for the full matrix
        m, n, d = len(q), args.n_train, args.d
        # Each result is dropped before the next run, so no run pays for another's memory.
        with threadpool_limits(1), dask.config.set(scheduler="synchronous"):
            one, ours = best_cpu_seconds(_bigdist, q, x, metric, params)
        error = "-"
        if scipy_name:
            reference = cdist(q[:200], x, scipy_name, **params)
            error = f"{np.abs(ours[:200].astype(np.float64) - reference).max():.1e}"
        del ours
        with threadpool_limits(1), dask.config.set(scheduler="threads", num_workers=cores):
            many = best_wall_seconds(_bigdist, q, x, metric, params)
        rows = m if metric in GEMM_FAMILY else peer_rows
        theirs = {}
        with threadpool_limits(1):
            if scipy_name:
                theirs["cdist"] = best_cpu_seconds(cdist, q[:rows], x, scipy_name, **params)[0]
            if sklearn_name:
                theirs["sklearn"] = best_cpu_seconds(
                    sk_pairwise_distances, q[:rows], x, metric=sklearn_name, n_jobs=1, **params
                )[0]
        cells = [_rate(metric, m, n, d, one), f"{many:.2f} s wall"]
        ratios = []
        for peer in ("cdist", "sklearn"):
            if peer in theirs:
                seconds = theirs[peer]
                cells.append(_rate(metric, rows, n, d, seconds))
                ratios.append(f"{seconds / rows / (one / m):.1f}x")
            else:
                cells.append("-")
                ratios.append("-")
        label = metric + (f" p={params['p']}" if params else "")
        print(f"{label:<16}" + "".join(f"{c:>22}" for c in cells) + f"{ratios[0]:>10}{ratios[1]:>11}  {error}")


def streaming(args: argparse.Namespace) -> None:
    os.makedirs(args.workdir, exist_ok=True)
    data = os.path.join(args.workdir, f"pairwise-{args.stream_rows}x{args.d}.zarr")
    out = os.path.join(args.workdir, f"pairwise-{args.stream_rows}-matrix.zarr")
    matrix_bytes = 4 * args.stream_rows**2
    with dask.config.set({"bigdist.io.compressor": "none"}), runtime.start() as client:
        if not os.path.exists(os.path.join(data, "zarr.json")):
            make_random(data, args.stream_rows, args.d, random_state=0, overwrite=True)
        workers = len(client.scheduler_info()["workers"])
        matrix = bd.pairwise_distances(data, metric=args.stream_metric)
        print(
            f"\n== streaming: {args.stream_rows:,} x {args.stream_rows:,} {args.stream_metric} float32 "
            f"({matrix_bytes / GB:.1f} GB) to {out}, blocks of {matrix.chunks[0][0]:,} x {matrix.chunks[1][0]:,}, "
            f"{workers} workers =="
        )
        with PeakRSS() as idle_probe:
            time.sleep(0.5)
        idle = idle_probe.peak
        # The same blocks reduced instead of written: the compute throughput without the disk.
        # Wall seconds: the work runs in the worker processes, not in this one.
        compute_seconds = best_wall_seconds(lambda: client.compute(matrix.sum()).result())
        print(f"compute only (blocks summed, not written): {compute_seconds:.1f} s, "
              f"{matrix_bytes / GB / compute_seconds:.2f} GB/s of matrix, "
              f"{2.0 * args.stream_rows**2 * args.d / compute_seconds / 1e9:.1f} GFLOP/s")  # fmt: skip
        with PeakRSS() as peak:
            writing = write_group(out, {"distances": matrix}, overwrite=True, compute=False)
            seconds = best_wall_seconds(lambda: client.compute(writing).result())
    written = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(out) for name in names)
    print(
        f"time {seconds:.1f} s, {matrix_bytes / GB / seconds:.2f} GB/s of matrix written "
        f"({written / GB:.1f} GB on disk)"
    )
    print(
        f"peak RSS summed over all processes {peak.peak / 2**20:,.0f} MiB (idle cluster {idle / 2**20:,.0f} MiB) "
        f"= {peak.peak / matrix_bytes:.1%} of the matrix"
    )
    rows = zarr.open_array(os.path.join(out, "distances"), mode="r")[:3]
    source = np.asarray(bd.open_array(data).compute())
    reference = cdist(source[:3].astype(np.float64), source.astype(np.float64), args.stream_metric)
    print(f"rows 0-2 against cdist: max |err| {np.abs(rows - reference).max():.1e}")
    if not args.keep:
        shutil.rmtree(out)
        print(f"deleted {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-queries", type=int, default=5000)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--peer-queries", type=int, default=500, help="Query rows the peers run on (direct metrics).")
    parser.add_argument("--metrics", nargs="*", help="Only these metrics (default: all).")
    parser.add_argument("--stream-rows", type=int, default=50000, help="0 skips the streaming run.")
    parser.add_argument("--stream-metric", default="euclidean")
    parser.add_argument("--skip-in-memory", action="store_true")
    parser.add_argument("--workdir", default="/tmp/bigdist-bench")
    parser.add_argument("--keep", action="store_true", help="Keep the streamed matrix.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print_command()
    if not args.skip_in_memory:
        in_memory(args)
    if args.stream_rows:
        streaming(args)


if __name__ == "__main__":
    main()
