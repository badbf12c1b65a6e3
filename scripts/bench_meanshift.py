"""Benchmark mean shift: scikit-learn's MeanShift against bigdist, then bigdist alone on 10x the data.

1. Blobs of --n-samples rows (default 50,000 x 8) in memory: scikit-learn's
   ``MeanShift(bin_seeding=True, n_jobs=<cores>)`` and ``bd.meanshift(...,
   kernel="flat", bin_seeding=True)`` from a Zarr copy on a LocalCluster,
   same bandwidth and ``min_bin_freq``; the modes (within 1e-3 x bandwidth)
   and labels are checked equal.
2. bigdist alone on a Zarr dataset --scale times larger (same blob centres),
   re-read from Zarr every pass (``persist=False``), to show the memory stays
   flat in n.

Prints seconds per pass (bigdist's median; scikit-learn's total over its
number of passes, ``n_iter_ + 1``) and the peak RSS summed over all processes
(client, scheduler, workers; scikit-learn's joblib workers) of each run.

    python scripts/bench_meanshift.py                       # 50,000 x 8, then 500,000 x 8
    python scripts/bench_meanshift.py --chunk-bytes 2MiB    # the larger set in 8 blocks: memory flat in n
    python scripts/bench_meanshift.py --n-samples 5000 --scale 2   # smoke test

Needs the ``bench`` extra (psutil). Data goes to --workdir.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import dask
import numpy as np
from bench_common import PeakRSS, print_command, total_rss

import bigdist as bd
from bigdist import runtime
from bigdist.io import make_blobs


def _blobs(workdir: str, n: int, d: int, centers: int) -> str:
    path = os.path.join(workdir, f"meanshift-blobs-{n}x{d}-{centers}.zarr")
    if not os.path.exists(os.path.join(path, "zarr.json")):
        # One stored chunk per 64k rows, so the larger set is many blocks.
        make_blobs(path, n, d, centers=centers, random_state=0, chunk_rows=65_536, overwrite=True)
    return path


def _bigdist(path: str, args: argparse.Namespace, persist: bool | None) -> tuple[bd.MeanShiftResult, np.ndarray, dict]:
    baseline = total_rss()
    with PeakRSS() as rss:
        start = time.perf_counter()
        result = bd.meanshift(
            path, args.bandwidth, kernel="flat", bin_seeding=True, min_bin_freq=args.min_bin_freq, persist=persist
        )
        labels = result.labels.compute()
        total = time.perf_counter() - start
    per_pass = [s["seconds"] for s in result.stats]
    return (
        result,
        labels,
        {
            "total": total,
            "passes": len(per_pass),
            "median_pass": float(np.median(per_pass)),
            "first_pass": per_pass[0],
            "baseline": baseline,
            "peak": rss.peak,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-samples", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--centers", type=int, default=10)
    parser.add_argument("--bandwidth", type=float, default=4.0)
    parser.add_argument("--min-bin-freq", type=int, default=1)
    parser.add_argument("--scale", type=int, default=10, help="size of the bigdist-only run, in multiples")
    parser.add_argument(
        "--chunk-bytes", default=None, help="bigdist.chunk-bytes of the runs (e.g. 2MiB: the larger set in many blocks)"
    )
    parser.add_argument("--workdir", default="/tmp/bigdist-bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    print_command()
    n, d = args.n_samples, args.d
    cores = os.cpu_count() or 1

    settings = {"bigdist.io.compressor": "none"}
    if args.chunk_bytes:
        settings["bigdist.chunk-bytes"] = args.chunk_bytes
    with dask.config.set(settings), runtime.start() as client:
        small = _blobs(args.workdir, n, d, args.centers)
        large = _blobs(args.workdir, n * args.scale, d, args.centers)
        data = bd.open_array(small).compute()
        client.run(lambda: __import__("bigdist.kernels.meanshift"))
        # Compile the numba kernels in the workers before timing.
        bd.meanshift(data[:2000], args.bandwidth, kernel="flat", bin_seeding=True)
        ours, labels, small_run = _bigdist(small, args, persist=None)
        big, _, large_run = _bigdist(large, args, persist=False)

    from sklearn.cluster import MeanShift

    baseline = total_rss()
    with PeakRSS() as rss:
        start = time.perf_counter()
        theirs = MeanShift(
            bandwidth=args.bandwidth, bin_seeding=True, min_bin_freq=args.min_bin_freq, n_jobs=cores
        ).fit(data)
        sk_total = time.perf_counter() - start
    sk_passes = theirs.n_iter_ + 1

    same_shape = ours.cluster_centers.shape == theirs.cluster_centers_.shape
    gap = float(np.abs(ours.cluster_centers - theirs.cluster_centers_).max()) if same_shape else float("inf")
    agree = float(np.mean(labels == theirs.labels_))
    print(
        f"\n{n:,} x {d}, {args.centers} blobs, flat kernel, bandwidth {args.bandwidth}, bin seeding "
        f"(min_bin_freq {args.min_bin_freq}): {ours.n_seeds} seeds, {len(ours.cluster_centers)} modes"
    )
    print(
        f"equal results: modes {same_shape and gap <= 1e-3 * args.bandwidth} (largest gap {gap:.2e}), "
        f"labels {agree:.4%} equal, n_iter {ours.n_iter} vs {theirs.n_iter_}"
    )
    header = f"{'run':44s} {'rows':>10s} {'passes':>6s} {'s/pass':>8s} {'total s':>8s} {'peak GiB':>9s} {'+idle':>7s}"
    print("\n" + header)
    sk_row = ("scikit-learn MeanShift (n_jobs=%d)" % cores, n, sk_passes, sk_total / sk_passes, sk_total,
              rss.peak, rss.peak - baseline)  # fmt: skip
    rows = [
        sk_row,
        ("bigdist, Zarr, LocalCluster (persisted)", n, small_run["passes"], small_run["median_pass"],
         small_run["total"], small_run["peak"], small_run["peak"] - small_run["baseline"]),
        (f"bigdist, Zarr x{args.scale}, re-read each pass", n * args.scale, large_run["passes"],
         large_run["median_pass"], large_run["total"], large_run["peak"], large_run["peak"] - large_run["baseline"]),
    ]  # fmt: skip
    for name, rows_, passes, per_pass, total, peak, above in rows:
        print(
            f"{name:44s} {rows_:10,d} {passes:6d} {per_pass:8.3f} {total:8.2f} {peak / 2**30:9.2f} {above / 2**30:7.2f}"
        )
    print(
        f"\nscikit-learn / bigdist, total time: {sk_total / small_run['total']:.1f}x; "
        f"bigdist x{args.scale} rows: {large_run['median_pass'] / small_run['median_pass']:.1f}x the time per pass, "
        f"{big.n_seeds} seeds, {len(big.cluster_centers)} modes; peak RSS above idle "
        f"{(small_run['peak'] - small_run['baseline']) / 2**20:.0f} MiB -> "
        f"{(large_run['peak'] - large_run['baseline']) / 2**20:.0f} MiB "
        f"(data {data.nbytes / 2**20:.0f} MiB -> {data.nbytes * args.scale / 2**20:.0f} MiB, "
        f"blocks of {dask.config.get('bigdist.chunk-bytes') if not args.chunk_bytes else args.chunk_bytes})"
    )


if __name__ == "__main__":
    main()
