"""Benchmark radius neighbours with the direct metrics: bigdist against scikit-learn's brute force, in memory.

For each metric (default manhattan, minkowski p=3, chebyshev, canberra) on
the same float32 data (default 2,000 queries x 50,000 train rows x 32
features, uniform in the unit cube), the radius is set so that a query has
about ``--neighbors`` neighbours on average, then:

- bigdist ``radius_neighbors(Q, X, radius, metric).to_csr()`` and
  scikit-learn ``NearestNeighbors(algorithm="brute").radius_neighbors`` each
  on one core (BLAS and OpenMP limited to 1 thread, dask's synchronous
  scheduler), timed in CPU seconds of the process (best of two), so that
  other jobs on a shared machine do not count: ns per pair and the ratio;
- bigdist on every core (dask's threaded scheduler, the train rows cut into
  two blocks per core), wall seconds.

bigdist's neighbour sets are checked against float64 ``cdist`` on the first
``--check-queries`` queries; the queries where scikit-learn's sets differ are
counted, with how close their differing pairs are to the radius
(scikit-learn's float32 path rounds the coordinate differences to float32).

    python scripts/bench_radius.py --n-queries 200 --n-train 5000        # smoke test
    flock /tmp/bigdist-bench.lock python scripts/bench_radius.py          # full size
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import dask
import dask.array as da
import numpy as np
import sklearn
from bench_common import best_cpu_seconds, best_wall_seconds
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors
from threadpoolctl import threadpool_limits

import bigdist as bd
from bigdist.io import versions

# (bigdist metric, params, SciPy name)
CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "manhattan": ("manhattan", {}, "cityblock"),
    "minkowski3": ("minkowski", {"p": 3}, "minkowski"),
    "chebyshev": ("chebyshev", {}, "chebyshev"),
    "canberra": ("canberra", {}, "canberra"),
    "euclidean": ("euclidean", {}, "euclidean"),
}


def _bigdist(
    queries: np.ndarray, train: Any, radius: float, metric: str, params: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return bd.radius_neighbors(queries, train, radius, metric, **params).to_csr()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-queries", type=int, default=2_000)
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-features", type=int, default=32)
    parser.add_argument("--neighbors", type=float, default=50.0, help="Average neighbours per query.")
    parser.add_argument("--check-queries", type=int, default=200, help="Queries checked against float64 cdist.")
    parser.add_argument("--metrics", default="manhattan,minkowski3,chebyshev,canberra", help=f"Of {', '.join(CASES)}.")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    queries = rng.random((args.n_queries, args.n_features), dtype=np.float32)
    train = rng.random((args.n_train, args.n_features), dtype=np.float32)
    pairs = args.n_queries * args.n_train
    cores = os.cpu_count() or 1
    print(
        f"{args.n_queries:,} queries x {args.n_train:,} train rows x {args.n_features} features, float32; "
        f"scikit-learn {sklearn.__version__}, bigdist {versions()['bigdist']}; "
        f"{cores} cores (shared machine: CPU seconds per core are the comparable figure)"
    )
    for case in args.metrics.split(","):
        metric, params, scipy_name = CASES[case]
        sample = cdist(queries[:50].astype(np.float64), train.astype(np.float64), scipy_name, **params)
        radius = float(np.quantile(sample, args.neighbors / args.n_train))
        with threadpool_limits(1), dask.config.set(scheduler="synchronous"):
            ours_cpu, (indptr, indices, _) = best_cpu_seconds(_bigdist, queries, train, radius, metric, params)
            model = SkNearestNeighbors(radius=radius, metric=metric, algorithm="brute", **params).fit(train)
            theirs_cpu, (_, expected) = best_cpu_seconds(model.radius_neighbors, queries)
        with threadpool_limits(1), dask.config.set(scheduler="threads", num_workers=cores):
            # In memory the train set is one block, one task: cut it so every core has two.
            blocks = da.from_array(train, chunks=(-(-args.n_train // (2 * cores)), -1))
            ours_wall = best_wall_seconds(_bigdist, queries, blocks, radius, metric, params)
        found = [set(indices[indptr[i] : indptr[i + 1]]) for i in range(args.n_queries)]
        check = min(args.check_queries, args.n_queries)
        exact = cdist(queries[:check].astype(np.float64), train.astype(np.float64), scipy_name, **params) <= radius
        oracle_equal = all(found[i] == set(np.flatnonzero(exact[i])) for i in range(check))
        differ = [i for i in range(args.n_queries) if found[i] != set(expected[i])]
        gap = max(
            (
                np.abs(cdist(queries[[i]].astype(np.float64), train[sorted(found[i] ^ set(expected[i]))], scipy_name,
                             **params) - radius).max() / radius
                for i in differ
            ),
            default=0.0,
        )  # fmt: skip
        print(
            f"{case:>11}: radius {radius:.4g}, {indptr[-1] / args.n_queries:.1f} neighbours per query | one core: "
            f"bigdist {ours_cpu:.2f} s ({ours_cpu / pairs * 1e9:.2f} ns/pair), scikit-learn {theirs_cpu:.2f} s "
            f"({theirs_cpu / pairs * 1e9:.2f} ns/pair), scikit-learn / bigdist {theirs_cpu / ours_cpu:.2f}x | "
            f"bigdist on {cores} cores {ours_wall:.2f} s wall\n"
            f"{'':>13}sets equal to float64 cdist (first {check} queries): {oracle_equal}; scikit-learn's differ on "
            f"{len(differ)} queries, by pairs within {gap:.1e} of the radius (relative; its float32 path "
            f"subtracts in float32)"
        )


if __name__ == "__main__":
    main()
