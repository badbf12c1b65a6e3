"""Benchmark exact kNN: bigdist (from Zarr, on a LocalCluster) against its peers.

Measures, in one run and on the same data: bigdist end to end from Zarr,
FAISS IndexFlatL2 in memory, scikit-learn brute force (on a subset of the
queries), and plain sgemm of the same shape family; prints throughput
(GFLOP/s = 2·m·n·d / s), the ratios, the agreement of the results and the
peak RSS summed over all processes of the run.

    python scripts/bench_knn.py                                   # 10,000 x 1,000,000 x 128
    python scripts/bench_knn.py --n-train 8000000 --n-queries 200 --only-bigdist   # memory

Needs the ``bench`` extra (faiss-cpu, psutil). Data goes to --workdir (not the repo).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

import dask
import numpy as np
import psutil
from threadpoolctl import threadpool_limits

import bigdist as bd
from bigdist import runtime
from bigdist.io import make_random

logger = logging.getLogger("bench_knn")


def total_rss() -> int:
    """RSS summed over this process and all its children (scheduler, nannies, workers)."""
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakRSS:
    """Peak of ``total_rss``, sampled in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, total_rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def gflops(m: int, n: int, d: int, seconds: float) -> float:
    return 2.0 * m * n * d / seconds / 1e9


def make_data(args: argparse.Namespace) -> tuple[str, str]:
    os.makedirs(args.workdir, exist_ok=True)
    train = os.path.join(args.workdir, f"train-{args.n_train}x{args.d}.zarr")
    queries = os.path.join(args.workdir, f"queries-{args.n_queries}x{args.d}.zarr")
    with dask.config.set({"bigdist.io.compressor": "none"}), runtime.start():
        for path, n, seed in ((train, args.n_train, 0), (queries, args.n_queries, 1)):
            if not os.path.exists(os.path.join(path, "zarr.json")):
                start = time.perf_counter()
                make_random(path, n, args.d, random_state=seed, overwrite=True)
                logger.info("generated %s in %.1f s", path, time.perf_counter() - start)
    return train, queries


def bench_bigdist(args: argparse.Namespace, train: str, queries: str) -> tuple[float, np.ndarray, np.ndarray, int, int]:
    with runtime.start() as client:
        logger.info("dashboard: %s", client.dashboard_link)
        # Workers import the kernels (and load the compiled scan) before the baseline is taken.
        client.run(lambda: __import__("bigdist.kernels.knn"))
        baseline = total_rss()
        with PeakRSS() as rss:
            start = time.perf_counter()
            distances, indices = bd.knn(queries, train, k=args.k).compute()
            seconds = time.perf_counter() - start
    return seconds, distances, indices, baseline, rss.peak


def bench_faiss(train: np.ndarray, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    index = faiss.IndexFlatL2(train.shape[1])
    index.add(train)
    start = time.perf_counter()
    _, indices = index.search(queries, k)
    return time.perf_counter() - start, indices


def bench_sklearn(train: np.ndarray, queries: np.ndarray, k: int) -> float:
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(train)
    start = time.perf_counter()
    model.kneighbors(queries)
    return time.perf_counter() - start


def bench_sgemm(m: int, d: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((min(m, 1000), d), dtype=np.float32)
    b = rng.standard_normal((d, 100_000), dtype=np.float32)
    with threadpool_limits(os.cpu_count() or 1, user_api="blas"):
        a @ b
        start = time.perf_counter()
        repeats = 5
        for _ in range(repeats):
            a @ b
        seconds = (time.perf_counter() - start) / repeats
    return gflops(a.shape[0], b.shape[1], d, seconds)


def brute_force(train: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact float64 neighbours (SciPy's cdist, block by block), ties by the lower index."""
    from scipy.spatial.distance import cdist

    keys = np.concatenate(
        [
            cdist(queries.astype(np.float64), train[s : s + 100_000].astype(np.float64), "sqeuclidean")
            for s in range(0, len(train), 100_000)
        ],
        axis=1,
    )
    return np.argsort(keys, axis=1, kind="stable")[:, :k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--n-queries", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--sklearn-queries", type=int, default=1000)
    parser.add_argument("--check-queries", type=int, default=50, help="queries checked against a float64 brute force")
    parser.add_argument("--only-bigdist", action="store_true", help="skip the peers (memory runs)")
    parser.add_argument("--workdir", default="/tmp/bigdist-bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))

    train_path, queries_path = make_data(args)
    m, n, d = args.n_queries, args.n_train, args.d
    seconds, distances, indices, baseline, peak = bench_bigdist(args, train_path, queries_path)
    rows = [("bigdist (Zarr, LocalCluster)", m, seconds, gflops(m, n, d, seconds))]
    print(f"\nbigdist: {m:,} x {n:,} x {d}, k={args.k}: {seconds:.1f} s, {gflops(m, n, d, seconds):.1f} GFLOP/s")
    print(
        f"RSS of all processes: idle cluster {baseline / 2**30:.2f} GiB, peak during the run {peak / 2**30:.2f} GiB "
        f"(+{(peak - baseline) / 2**30:.2f} GiB); train set: {n * d * 4 / 2**30:.2f} GiB"
    )
    if args.only_bigdist:
        return

    train = bd.open_array(train_path).compute()
    queries = bd.open_array(queries_path).compute()
    check = min(args.check_queries, m)
    exact = brute_force(train, queries[:check], args.k)
    faiss_seconds, faiss_indices = bench_faiss(train, queries, args.k)
    rows.append(("FAISS IndexFlatL2 (RAM)", m, faiss_seconds, gflops(m, n, d, faiss_seconds)))
    sk_m = min(args.sklearn_queries, m)
    sk_seconds = bench_sklearn(train, queries[:sk_m], args.k)
    rows.append((f"scikit-learn brute ({sk_m:,} queries)", sk_m, sk_seconds, gflops(sk_m, n, d, sk_seconds)))
    rows.append(("sgemm ceiling", 0, float("nan"), bench_sgemm(m, d)))

    ours, faiss_rate, sgemm = rows[0][3], rows[1][3], rows[3][3]
    print(f"\n{'method':38s} {'queries':>9s} {'seconds':>9s} {'GFLOP/s':>9s} {'vs FAISS':>9s} {'vs sgemm':>9s}")
    for name, queries_run, secs, rate in rows:
        print(f"{name:38s} {queries_run:9,d} {secs:9.1f} {rate:9.1f} {rate / faiss_rate:9.2f} {rate / sgemm:9.2f}")
    print(
        f"\nbigdist vs float64 brute force on {check} queries: "
        f"{(indices[:check] == exact).mean() * 100:.2f}% of neighbours equal"
    )
    print(f"bigdist vs FAISS (float32, not exact): {(indices == faiss_indices).mean() * 100:.2f}% of neighbours equal")
    print(
        f"bigdist / FAISS throughput: {ours / faiss_rate:.2f}; bigdist / sgemm: {ours / sgemm:.2f}; "
        f"FAISS / sgemm: {faiss_rate / sgemm:.2f}"
    )


if __name__ == "__main__":
    main()
