"""Count, per Lloyd pass, what Hamerly's bounds and the group bounds (Yinyang) leave to compute.

Runs the same Lloyd iterations on one block with both kernels (checking that
their partial states are bitwise equal) and prints, per pass, the share of
rows that go through the GEMM and the share of row-centroid distances
computed (k per GEMM row, plus the group filters' exact comparisons). Counts,
not seconds: they do not depend on the machine's load.

    python scripts/kmeans_bound_counts.py --kind random --n 50000 --d 64 --k 100 --passes 15
    python scripts/kmeans_bound_counts.py --kind blobs --k 1000
"""

from __future__ import annotations

import argparse

import numpy as np

from bigdist.kernels import kmeans as kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["random", "blobs"], default="random")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--passes", type=int, default=15)
    args = parser.parse_args()
    n, d, k = args.n, args.d, args.k
    rng = np.random.default_rng(0)
    if args.kind == "random":
        data = rng.standard_normal((n, d))
    else:
        centres = rng.standard_normal((k, d)) * 3
        data = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    data = data.astype(np.float32)
    centroids = data[rng.choice(n, k, replace=False)].astype(np.float64)
    n_groups = kernels.bound_groups(k, kernels.MAX_GROUPS)
    if not n_groups:
        raise SystemExit(f"k={k}: under {kernels.MIN_GROUPED_CLUSTERS} centroids, Hamerly's bounds only")
    groups = kernels.centroid_groups(centroids, n_groups)
    t = int(groups.max()) + 1
    hamerly = grouped = previous = None
    print(f"{args.kind} n={n} d={d} k={k}, {t} groups; per pass, GEMM rows and distances computed (shares):")
    print("pass   Hamerly rows  pairs    groups rows  pairs")
    for step in range(args.passes):
        if previous is None:
            single, per_group = (np.zeros(k), np.zeros(k)), (np.zeros(k), np.zeros(t), np.zeros(k))
        else:
            single = kernels.bound_updates(previous, centroids)
            per_group = kernels.group_bound_updates(previous, centroids, groups)
        one, hamerly = kernels.kmeans_bounded_chunk(data, 0, hamerly, centroids, *single, n_far=k)
        two, grouped = kernels.kmeans_grouped_chunk(data, 0, grouped, centroids, groups, *per_group, n_far=k)
        if not (np.array_equal(one["sums"], two["sums"]) and one["inertia"] == two["inertia"]):
            raise SystemExit(f"pass {step + 1}: the two kernels' states differ")
        print(
            f"{step + 1:4d}   {one['full_rows'] / n:12.3f} {one['pairs'] / n / k:6.3f}"
            f"   {two['full_rows'] / n:11.3f} {two['pairs'] / n / k:6.3f}"
        )
        previous, centroids = centroids, kernels.update_centroids(one, centroids)[0]


if __name__ == "__main__":
    main()
