"""Time one k-means pass of the compiled kernel against a bare GEMM of the same shape.

For each cell (n, d, k, random or clustered data) it times, in this process
and on one thread with one BLAS thread, alternating runs: the bare sgemm of
the rows against the centroids (in steps of 1,024 rows and tiles of
centroids, as the kernel makes it), a full pass (``kmeans_chunk``: every row through the GEMM) and the
bounded passes of later iterations (``kmeans_bounded_chunk``, Hamerly's
bounds), and prints medians of the thread CPU time and their ratio to the
GEMM. The ratio, not the seconds, is what to compare on a loaded machine.

    python scripts/bench_kmeans_kernel.py                        # the default cells
    python scripts/bench_kmeans_kernel.py --cells 262144x64x100 131072x32x1000 --kind blobs --repeats 7
    python scripts/bench_kmeans_kernel.py --cells 16384x16x65536 --repeats 3   # large k: centroid tiles
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from bigdist.kernels.kmeans import (
    STEP_ROWS,
    TILE_VALUES,
    bound_updates,
    kmeans_bounded_chunk,
    kmeans_chunk,
    update_centroids,
)

DEFAULT_CELLS = ["262144x64x100", "131072x32x1000", "65536x256x100", "32768x32x10000"]


def make_data(n: int, d: int, k: int, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows and float64 initial centroids (drawn rows), random or in k blobs."""
    rng = np.random.default_rng(seed)
    if kind == "blobs":
        centres = rng.standard_normal((k, d)) * 3
        X = (centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)
    else:
        X = rng.standard_normal((n, d)).astype(np.float32)
    return X, X[rng.choice(n, k, replace=False)].astype(np.float64)


def median_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Medians of the thread CPU time of each function, runs alternated."""
    for function in functions.values():
        function()  # compile, fault in scratch
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            began = time.thread_time()
            function()
            times[name].append(time.thread_time() - began)
    return {name: float(np.median(values)) for name, values in times.items()}


def bench_cell(n: int, d: int, k: int, kind: str, repeats: int, iterations: int) -> None:
    X, centroids = make_data(n, d, k, kind)
    centres = centroids.astype(np.float32)
    tile = max(1, TILE_VALUES // STEP_ROWS)
    products = np.empty((min(k, tile), STEP_ROWS), dtype=np.float32)

    def gemm() -> None:
        for start in range(0, n - STEP_ROWS + 1, STEP_ROWS):
            for low in range(0, k, tile):
                high = min(low + tile, k)
                np.dot(centres[low:high], X[start : start + STEP_ROWS].T, products[: high - low])

    # Later iterations' bounded passes: run the iterations once, then time the last pass again and again.
    carried, previous, current = None, None, centroids
    for _ in range(iterations):
        updates = (np.zeros(k), np.zeros(k)) if carried is None else bound_updates(previous, current)
        state, carried = kmeans_bounded_chunk(X, 0, carried, current, *updates, n_far=k)
        previous, current = current, update_centroids(state, current)[0]
    updates, last = bound_updates(previous, current), carried
    bounded_state = kmeans_bounded_chunk(X, 0, last, current, *updates, n_far=k)[0]
    seconds = median_seconds(
        {
            "gemm": gemm,
            "full": lambda: kmeans_chunk(X, 0, centroids, n_far=k),
            "bounded": lambda: kmeans_bounded_chunk(X, 0, last, current, *updates, n_far=k),
        },
        repeats,
    )
    bound = seconds["gemm"]
    print(
        f"{n:>8} x {d:<4} k={k:<6} {kind:<6}  gemm {bound:.4f} s  "
        f"full {seconds['full']:.4f} s ({seconds['full'] / bound:.2f}x gemm)  "
        f"bounded pass {iterations + 1} {seconds['bounded']:.4f} s ({seconds['bounded'] / bound:.2f}x gemm, "
        f"{bounded_state['full_rows'] / n:.0%} rows through the GEMM)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=DEFAULT_CELLS, help="n x d x k, e.g. 262144x64x100")
    parser.add_argument("--kind", choices=["random", "blobs", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=6, help="Lloyd iterations before the bounded pass timed")
    args = parser.parse_args()
    kinds = ["random", "blobs"] if args.kind == "both" else [args.kind]
    with threadpool_limits(1):
        for cell in args.cells:
            n, d, k = (int(part) for part in cell.split("x"))
            if k > n:
                parser.error(f"cell {cell}: k={k} exceeds n={n} rows (the initial centroids are drawn rows)")
            for kind in kinds:
                bench_cell(n, d, k, kind, args.repeats, args.iterations)


if __name__ == "__main__":
    main()
