"""How much of a Lloyd pass Hamerly's bound and Yinyang's group bounds would leave, simulated exactly in float64.

For one cell (n x d, k, random or clustered data, as ``bench_kmeans_kernel.py``
makes them) it runs Lloyd iterations and prints, per pass: the share of rows
Hamerly's test (as ``kmeans_bounded_chunk`` applies it) sends through the
GEMM; the share Yinyang's global filter would send (one lower bound per group
of centroids, each lowered by its group's largest move); the share of
centroid distances left after Yinyang's group filter (only the groups whose
bound does not exceed the row's distance to its centroid); and the rows that
change cluster. Rows that fail a test get exact bounds, as a full GEMM gives
them. Counts only, no timing: it runs on a loaded machine.

    python scripts/sim_kmeans_bounds.py --cell 65536x64x100 --kind random --groups 10
    python scripts/sim_kmeans_bounds.py --cell 32768x32x1000 --kind random --groups 100
"""

from __future__ import annotations

import argparse

import numpy as np
from bench_kmeans_kernel import make_data
from sklearn.cluster import KMeans


def distances(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum((X * X).sum(1)[:, None] - 2 * X @ C.T + (C * C).sum(1)[None], 0))


def group_lower(D: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Each row's distance to the nearest centroid of each group, its own centroid left out."""
    others = D.copy()
    others[np.arange(len(D)), labels] = np.inf
    return np.stack([others[:, groups == g].min(1) for g in range(n_groups)], 1)


def simulate(n: int, d: int, k: int, kind: str, n_groups: int, passes: int) -> None:
    X, C = make_data(n, d, k, kind)
    X = X.astype(np.float64)
    groups = KMeans(n_groups, n_init=1, random_state=0).fit(C).labels_
    sizes = np.bincount(groups, minlength=n_groups)
    D = distances(X, C)
    labels = D.argmin(1)
    hamerly = np.sort(D, 1)[:, 1]
    yinyang = group_lower(D, labels, groups, n_groups)
    for it in range(2, passes + 2):
        counts = np.bincount(labels, minlength=k)
        new = np.array([X[labels == c].mean(0) if counts[c] else C[c] for c in range(k)])
        drift = np.linalg.norm(new - C, axis=1)
        C = new
        order = np.argsort(drift)
        drift_other = np.full(k, drift[order[-1]])
        drift_other[order[-1]] = drift[order[-2]]
        gaps = distances(C, C)
        np.fill_diagonal(gaps, np.inf)
        half_gap = gaps.min(1) / 2
        D = distances(X, C)
        u = D[np.arange(n), labels]
        keep_h = u < np.maximum(hamerly - drift_other[labels], half_gap[labels])
        yinyang = yinyang - np.array([drift[groups == g].max() for g in range(n_groups)])[None]
        keep_y = u < np.maximum(yinyang.min(1), half_gap[labels])
        open_groups = (yinyang <= u[:, None]) & ~keep_y[:, None]
        work = (open_groups * sizes[None]).sum() / (n * k)
        moved = D.argmin(1)
        print(
            f"pass {it:2d}: Hamerly: {1 - keep_h.mean():.0%} of rows through the GEMM; Yinyang ({n_groups} groups): "
            f"{1 - keep_y.mean():.0%} of rows, {work:.0%} of the centroid distances; "
            f"{np.mean(moved != labels):.1%} of rows change cluster",
            flush=True,
        )
        labels = moved
        hamerly = np.where(keep_h, np.maximum(hamerly - drift_other[labels], 0), np.sort(D, 1)[:, 1])
        yinyang = np.where(keep_y[:, None], yinyang, group_lower(D, labels, groups, n_groups))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", default="65536x64x100", help="n x d x k")
    parser.add_argument("--kind", choices=["random", "blobs"], default="random")
    parser.add_argument("--groups", type=int, default=10, help="Yinyang's groups of centroids (k-means of the init)")
    parser.add_argument("--passes", type=int, default=12)
    args = parser.parse_args()
    n, d, k = (int(part) for part in args.cell.split("x"))
    simulate(n, d, k, args.kind, args.groups, args.passes)


if __name__ == "__main__":
    main()
