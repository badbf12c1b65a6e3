"""Benchmark kNN on sparse rows: bigdist against scikit-learn's brute force, both on scipy.sparse CSR input.

Random CSR data (default 2,000 queries x 100,000 train rows x 50,000
features, 0.1% non-zero, float64), k=10, for ``euclidean``, ``cosine`` and
``manhattan`` (the metrics scikit-learn's brute force takes on sparse data).
Each library runs on one core (BLAS limited to one thread, dask's
synchronous scheduler) and is timed in CPU seconds of the process, best of
two; ``manhattan`` runs on the first ``--manhattan-queries`` query rows only
(it is computed pair by pair in both libraries). Then bigdist alone on every
core (threaded scheduler), in wall seconds. The neighbours are checked
against scikit-learn's (ties aside: the distances must match to 1e-9).

    python scripts/bench_sparse.py --n-queries 200 --n-train 5000 --n-features 2000   # smoke test
    flock /tmp/bigdist-bench.lock python scripts/bench_sparse.py                      # full size
"""

from __future__ import annotations

import argparse

import dask
import numpy as np
import scipy.sparse as sp
from bench_common import best_cpu_seconds, best_wall_seconds, print_command
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

import bigdist as bd


def _data(n: int, d: int, density: float, seed: int) -> sp.csr_matrix:
    return sp.random(n, d, density=density, format="csr", random_state=np.random.default_rng(seed))


def _bigdist(queries: sp.csr_matrix, train: sp.csr_matrix, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    return bd.knn(queries, train, k=k, metric=metric).compute()


def _sklearn(queries: sp.csr_matrix, train: sp.csr_matrix, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    return NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(train).kneighbors(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-queries", type=int, default=2000)
    parser.add_argument("--n-train", type=int, default=100_000)
    parser.add_argument("--n-features", type=int, default=50_000)
    parser.add_argument("--density", type=float, default=0.001)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--manhattan-queries", type=int, default=100)
    args = parser.parse_args()
    print_command()
    queries = _data(args.n_queries, args.n_features, args.density, 0)
    train = _data(args.n_train, args.n_features, args.density, 1)
    print(f"data: {args.n_queries} x {args.n_train} x {args.n_features}, {train.nnz} stored train values, k={args.k}")
    for metric in ("euclidean", "cosine", "manhattan"):
        q = queries[: args.manhattan_queries] if metric == "manhattan" else queries
        with threadpool_limits(1), dask.config.set(scheduler="synchronous"):
            ours_s, (ours_d, _) = best_cpu_seconds(_bigdist, q, train, args.k, metric)
            theirs_s, (theirs_d, _) = best_cpu_seconds(_sklearn, q, train, args.k, metric)
        np.testing.assert_allclose(ours_d, theirs_d, rtol=1e-9, atol=1e-9)
        with dask.config.set(scheduler="threads"):
            wall = best_wall_seconds(_bigdist, q, train, args.k, metric)
        print(
            f"{metric:10s} {q.shape[0]:6d} queries: bigdist {ours_s:8.2f} CPU s, scikit-learn {theirs_s:8.2f} CPU s "
            f"(one core); bigdist on every core {wall:8.2f} s wall"
        )


if __name__ == "__main__":
    main()
