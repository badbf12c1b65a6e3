"""Benchmark k-means: bigdist (from Zarr, on a LocalCluster) against its peers.

Runs the same number of Lloyd iterations from the same initial centroids with
bigdist, scikit-learn KMeans, faiss.Kmeans and dask-ml's KMeans, on the same
data, and prints seconds per iteration, the ratio to the GEMM bound
(2·n·k·d flops per iteration at the measured sgemm rate) and the peak RSS of
all processes during bigdist's run.

    python scripts/bench_kmeans.py                     # 1,000,000 x 64, k=100, 10 iterations

Needs the ``bench`` extra (faiss-cpu, dask-ml, psutil). Data goes to --workdir.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import dask
import dask.array as da
import numpy as np
from bench_knn import PeakRSS, bench_sgemm, total_rss

import bigdist as bd
from bigdist import runtime
from bigdist.io import make_blobs

logger = logging.getLogger("bench_kmeans")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--workdir", default="/tmp/bigdist-bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))

    n, d, k, iters = args.n_samples, args.d, args.k, args.iterations
    path = os.path.join(args.workdir, f"blobs-{n}x{d}-{k}.zarr")
    rows: list[tuple[str, float]] = []
    with dask.config.set({"bigdist.io.compressor": "none"}), runtime.start() as client:
        if not os.path.exists(os.path.join(path, "zarr.json")):
            make_blobs(path, n, d, centers=k, random_state=0, overwrite=True)
        data = bd.open_array(path).compute()
        init = data[np.random.default_rng(0).choice(n, k, replace=False)].astype(np.float64)

        client.run(lambda: __import__("bigdist.kernels.kmeans"))
        baseline = total_rss()
        with PeakRSS() as rss:
            start = time.perf_counter()
            ours = bd.kmeans(path, k, init=init, max_iter=iters, tol=0)
            total = time.perf_counter() - start
        per_iter = float(np.median([s["seconds"] for s in ours.stats]))
        rows.append(("bigdist (Zarr, LocalCluster)", per_iter))
        print(f"bigdist: {total:.1f} s in all for {ours.n_iter} iterations (incl. persisting and the final pass)")
        print(
            f"RSS of all processes: idle {baseline / 2**30:.2f} GiB, peak {rss.peak / 2**30:.2f} GiB; "
            f"data {data.nbytes / 2**30:.2f} GiB"
        )

        from dask_ml.cluster import KMeans as DaskKMeans

        chunked = da.from_array(data, chunks=(262_144, d)).persist()
        start = time.perf_counter()
        DaskKMeans(n_clusters=k, init=init, max_iter=iters, tol=0, oversampling_factor=2).fit(chunked)
        rows.append(("dask-ml KMeans (same cluster)", (time.perf_counter() - start) / iters))

    from sklearn.cluster import KMeans as SkKMeans

    start = time.perf_counter()
    theirs = SkKMeans(k, init=init, n_init=1, max_iter=iters, tol=0, algorithm="lloyd").fit(data)
    rows.append(("scikit-learn KMeans", (time.perf_counter() - start) / theirs.n_iter_))

    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    model = faiss.Kmeans(d, k, niter=iters, verbose=False, max_points_per_centroid=n)
    start = time.perf_counter()
    model.train(data, init_centroids=init.astype(np.float32))
    rows.append(("faiss.Kmeans", (time.perf_counter() - start) / iters))

    sgemm = bench_sgemm(1000, d)
    bound = 2 * n * k * d / (sgemm * 1e9)
    faiss_rate = rows[3][1]
    print(f"\n{'method':32s} {'s/iter':>8s} {'vs GEMM bound':>14s} {'vs faiss':>9s}")
    for name, seconds in rows:
        print(f"{name:32s} {seconds:8.3f} {seconds / bound:14.1f} {seconds / faiss_rate:9.2f}")
    print(f"\nGEMM bound {bound:.3f} s/iter at {sgemm:.0f} GFLOP/s; bigdist inertia {ours.inertia:.6g}, "
          f"scikit-learn {theirs.inertia_:.6g}; dask-ml / bigdist: {rows[1][1] / rows[0][1]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
