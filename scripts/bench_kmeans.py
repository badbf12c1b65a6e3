"""Benchmark k-means: bigdist (from Zarr, on a LocalCluster) against its peers.

Runs the same number of Lloyd iterations from the same initial centroids with
bigdist, scikit-learn KMeans (lloyd and elkan), faiss.Kmeans and dask-ml's
KMeans, on the same data, and prints seconds per iteration, the ratio to the
GEMM bound (2·n·k·d flops per iteration at the measured 2-thread sgemm rate)
and the peak RSS of all processes during bigdist's run. bigdist's first
iteration assigns every row through the GEMM; later ones skip the rows that
Hamerly's bounds prove stay (the fraction is printed), so both are shown.
The compiled kernels are loaded in every worker before the timed run.
With ``--init``, it also times the initialisation plus one Lloyd iteration:
bigdist's and dask-ml's k-means|| on the same persisted data, and
scikit-learn's k-means++ in memory, with the inertia each reaches.

    python scripts/bench_kmeans.py                     # 1,000,000 x 64, k=100, 10 iterations
    python scripts/bench_kmeans.py --init --only-bigdist   # k-means|| against dask-ml's, no Lloyd peers
    python scripts/bench_kmeans.py --n-samples 16000000 --only-bigdist --persist never   # memory

Needs the ``bench`` extra (faiss-cpu, dask-ml, psutil). Data goes to --workdir.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import dask
import dask.array as da
import numpy as np
from bench_common import PeakRSS, print_command, total_rss
from bench_knn import bench_sgemm
from distributed import wait

import bigdist as bd
from bigdist import runtime
from bigdist.io import make_blobs


def _per_iteration(seconds: float, iterations: int) -> float:
    return seconds / max(iterations, 1)


def warm_kernels() -> None:
    """Call every compiled k-means kernel once on a tiny float32 block, in this process."""
    from bigdist.kernels.kmeans import bound_updates, kmeans_bounded_chunk, kmeans_chunk

    rows = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    centroids = rows[:3].astype(np.float64)
    _, carried = kmeans_bounded_chunk(rows, 0, None, centroids, np.zeros(3), np.zeros(3), n_far=3, with_moments=True)
    kmeans_bounded_chunk(rows, 0, carried, centroids, *bound_updates(centroids, centroids), n_far=3)
    kmeans_chunk(rows, 0, centroids, n_far=3)


def run_bigdist(args: argparse.Namespace, path: str, init: np.ndarray) -> tuple[bd.KMeansResult, float, int, int]:
    persist = {"auto": None, "always": True, "never": False}[args.persist]
    with dask.config.set({"bigdist.kmeans.bounds": args.bounds}):
        baseline = total_rss()
        with PeakRSS() as rss:
            start = time.perf_counter()
            result = bd.kmeans(path, args.k, init=init, max_iter=args.iterations, tol=0, persist=persist)
            total = time.perf_counter() - start
    return result, total, baseline, rss.peak


def run_init(X: da.Array, data: np.ndarray, k: int) -> list[tuple[str, float, float | None]]:
    """(name, seconds for the initialisation and one Lloyd iteration, inertia), same seed for all."""
    from dask_ml.cluster import KMeans as DaskKMeans
    from sklearn.cluster import KMeans as SkKMeans

    rows = []
    chunked = X.persist()
    wait(chunked)
    start = time.perf_counter()
    ours = bd.kmeans(chunked, k, init="k-means||", max_iter=1, random_state=0)
    rows.append(("bigdist k-means||", time.perf_counter() - start, ours.inertia))
    start = time.perf_counter()
    DaskKMeans(n_clusters=k, init="k-means||", max_iter=1, oversampling_factor=2, random_state=0).fit(chunked)
    # dask-ml's inertia_ sums the distances, not their squares, so it is not shown.
    rows.append(("dask-ml k-means|| (same cluster)", time.perf_counter() - start, None))
    start = time.perf_counter()
    model = SkKMeans(k, init="k-means++", n_init=1, max_iter=1, random_state=0).fit(data)
    rows.append(("scikit-learn k-means++", time.perf_counter() - start, model.inertia_))
    return rows


def run_peers(data: np.ndarray, init: np.ndarray, iterations: int) -> list[tuple[str, float, float | None]]:
    """(name, seconds per iteration, inertia) of scikit-learn, FAISS and dask-ml on in-memory data."""
    from dask_ml.cluster import KMeans as DaskKMeans
    from sklearn.cluster import KMeans as SkKMeans

    rows = []
    k, d = init.shape
    for algorithm in ("lloyd", "elkan"):
        start = time.perf_counter()
        model = SkKMeans(k, init=init, n_init=1, max_iter=iterations, tol=0, algorithm=algorithm).fit(data)
        rows.append(
            (f"scikit-learn KMeans ({algorithm})", _per_iteration(time.perf_counter() - start, model.n_iter_),
             model.inertia_)
        )  # fmt: skip

    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    model = faiss.Kmeans(d, k, niter=iterations, verbose=False, max_points_per_centroid=len(data))
    start = time.perf_counter()
    model.train(data, init_centroids=init.astype(np.float32))
    rows.append(("faiss.Kmeans", _per_iteration(time.perf_counter() - start, iterations), float(model.obj[-1])))

    # dask-ml on the ambient LocalCluster, the data persisted in it as bigdist's is.
    chunked = da.from_array(data, chunks=(262_144, d)).persist()
    start = time.perf_counter()
    model = DaskKMeans(n_clusters=k, init=init, max_iter=iterations, tol=0, oversampling_factor=2).fit(chunked)
    # dask-ml's inertia_ sums the distances, not their squares, so it is not shown.
    rows.append(("dask-ml KMeans (same cluster)", _per_iteration(time.perf_counter() - start, model.n_iter_), None))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--workdir", default="/tmp/bigdist-bench")
    parser.add_argument("--only-bigdist", action="store_true", help="Skip the peers (e.g. to measure memory).")
    parser.add_argument("--persist", choices=["auto", "always", "never"], default="auto")
    parser.add_argument("--bounds", choices=["auto", "always", "never"], default="auto")
    parser.add_argument("--init", action="store_true", help="Also time k-means|| initialisation.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    print_command()

    n, d, k = args.n_samples, args.d, args.k
    path = os.path.join(args.workdir, f"blobs-{n}x{d}-{k}.zarr")
    with dask.config.set({"bigdist.io.compressor": "none"}), runtime.start() as client:
        if not os.path.exists(os.path.join(path, "zarr.json")):
            make_blobs(path, n, d, centers=k, random_state=0, overwrite=True)
        X = bd.open_array(path)
        rng = np.random.default_rng(0)
        init = X[np.sort(rng.choice(n, k, replace=False))].compute().astype(np.float64)
        # numba loads its cached machine code at the first call; FAISS's is loaded at import.
        client.run(warm_kernels)

        ours, total, baseline, peak = run_bigdist(args, path, init)
        seconds = [s["seconds"] for s in ours.stats]
        fractions = [s["reassigned_fraction"] for s in ours.stats]
        print(f"\nbigdist: {total:.1f} s in all for {ours.n_iter} iterations (with persisting and the final pass)")
        print("bigdist seconds per iteration:", " ".join(f"{s:.3f}" for s in seconds))
        print("rows assigned through the GEMM:", " ".join(f"{f:.2f}" for f in fractions))
        print(
            f"RSS of all processes: idle {baseline / 2**30:.2f} GiB, peak {peak / 2**30:.2f} GiB; "
            f"data {X.nbytes / 2**30:.2f} GiB"
        )
        later = float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0]
        rows = [
            ("bigdist, mean of all iterations", float(np.mean(seconds)), ours.inertia),
            ("bigdist, first (full) iteration", seconds[0], ours.inertia),
            ("bigdist, mean of later ones", later, ours.inertia),
        ]
        if not args.only_bigdist or args.init:
            data = X.compute()
        if not args.only_bigdist:
            rows += run_peers(data, init, args.iterations)
        init_rows = run_init(X, data, k) if args.init else []

    _, sgemm_seconds = bench_sgemm(1000, d, threads=2)
    sgemm = 2 * 1000 * 100_000 * d / sgemm_seconds / 1e9
    bound = 2 * n * k * d / (sgemm * 1e9)
    print(f"\n{'method':34s} {'s/iter':>8s} {'vs GEMM bound':>14s} {'vs bigdist':>11s} {'inertia':>14s}")
    for name, seconds_per_iter, inertia in rows:
        print(
            f"{name:34s} {seconds_per_iter:8.3f} {seconds_per_iter / bound:14.2f} "
            f"{seconds_per_iter / rows[0][1]:11.2f} {'-' if inertia is None else format(inertia, '14.6g'):>14s}"
        )
    print(f"\nGEMM bound {bound:.3f} s/iter at {sgemm:.0f} GFLOP/s (2 threads)")
    if init_rows:
        print(f"\n{'initialisation + 1 iteration':34s} {'seconds':>8s} {'vs bigdist':>11s} {'inertia':>14s}")
        for name, seconds, inertia in init_rows:
            shown = "-" if inertia is None else format(inertia, "14.6g")
            print(f"{name:34s} {seconds:8.2f} {seconds / init_rows[0][1]:11.2f} {shown:>14s}")


if __name__ == "__main__":
    main()
