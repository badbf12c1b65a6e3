"""Benchmark labelled and radius neighbours: bigdist (from Zarr, on a LocalCluster) against scikit-learn.

Times, on the same Gaussian blobs: bigdist's kNN alone, then
``KNeighborsClassifier.predict`` + ``predict_proba`` (one kNN pass for both),
so the cost of the label lookup and vote shows as the difference; and
``radius_neighbors`` on a subset of the queries, with the radius set to the
median distance to the 10th neighbour. scikit-learn's brute force runs on the
same data in memory. Prints seconds, ratios, agreement of the predictions and
the radius sets, and the peak RSS of all processes during bigdist's runs.

    python scripts/bench_classify.py                    # 10,000 queries x 500,000 train x 64, k=10

Needs the ``bench`` extra (psutil). Data goes to --workdir.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import dask
import numpy as np
import zarr
from bench_common import PeakRSS, print_command, total_rss
from sklearn.neighbors import KNeighborsClassifier as SkClassifier
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import bigdist as bd
from bigdist import runtime
from bigdist.io import make_blobs


def _timed(label: str, rows: list[tuple[str, float]], func, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = func(*args, **kwargs)
    rows.append((label, time.perf_counter() - start))
    print(f"{label:<46s} {rows[-1][1]:8.2f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=500_000)
    parser.add_argument("--n-queries", type=int, default=10_000)
    parser.add_argument("--radius-queries", type=int, default=2_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--centers", type=int, default=50)
    parser.add_argument("--cluster-std", type=float, default=8.0)
    parser.add_argument("--workdir", default="/tmp/bigdist-bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print_command()

    n, m, d, k = args.n_train, args.n_queries, args.d, args.k
    stem = os.path.join(args.workdir, f"classify-{n}x{d}-{args.centers}-{args.cluster_std}")
    paths = {name: f"{stem}-{name}.zarr" for name in ("train", "labels", "queries", "query-labels")}
    rows: list[tuple[str, float]] = []
    with dask.config.set({"bigdist.io.compressor": "none"}), runtime.start():
        if not os.path.exists(os.path.join(paths["queries"], "zarr.json")):
            common = {"centers": args.centers, "cluster_std": args.cluster_std, "random_state": 0, "overwrite": True}
            make_blobs(paths["train"], n, d, labels_path=paths["labels"], **common)
            make_blobs(paths["queries"], m, d, sample_seed=1, labels_path=paths["query-labels"], **common)
        # Warm up: every worker loads the compiled kernels before anything is timed.
        warm = bd.open_array(paths["queries"])[:64]
        bd.knn(warm, paths["train"], k).compute()
        bd.radius_neighbors(warm, paths["train"], 1.0).to_csr()
        baseline = total_rss()
        with PeakRSS() as rss:
            distances, _ = _timed("bigdist knn", rows, bd.knn(paths["queries"], paths["train"], k).compute)
            model = bd.KNeighborsClassifier(k, weights="distance").fit(paths["train"], paths["labels"])
            predicted, proba = _timed(
                "bigdist classifier predict + predict_proba",
                rows,
                dask.compute,
                model.predict(paths["queries"]),
                model.predict_proba(paths["queries"]),
            )
            radius = float(np.median(distances[:, -1]))
            queries = bd.open_array(paths["queries"])[: args.radius_queries]
            indptr, indices, _ = _timed(
                f"bigdist radius_neighbors ({args.radius_queries} queries)",
                rows,
                bd.radius_neighbors(queries, paths["train"], radius).to_csr,
            )
    train = bd.open_array(paths["train"]).compute()
    labels = np.asarray(zarr.open_array(paths["labels"], mode="r")[:])
    query_rows = bd.open_array(paths["queries"]).compute()
    truth = np.asarray(zarr.open_array(paths["query-labels"], mode="r")[:])
    theirs = SkClassifier(k, weights="distance", algorithm="brute").fit(train, labels)
    expected = _timed("scikit-learn predict", rows, theirs.predict, query_rows)
    _timed("scikit-learn predict_proba", rows, theirs.predict_proba, query_rows)
    nn = SkNearestNeighbors(radius=radius, algorithm="brute").fit(train)
    _, expected_indices = _timed(
        f"scikit-learn radius_neighbors ({args.radius_queries} queries)",
        rows,
        nn.radius_neighbors,
        query_rows[: args.radius_queries],
    )
    times = dict(rows)
    ours_both = times["bigdist classifier predict + predict_proba"]
    print(f"\nradius {radius:.4g}: {indptr[-1] / args.radius_queries:.1f} neighbours per query on average")
    agreement, accuracy = np.mean(predicted == expected), np.mean(predicted == truth)
    print(f"predictions equal to scikit-learn: {agreement:.6f}; accuracy {accuracy:.4f}")
    same = all(set(indices[indptr[i] : indptr[i + 1]]) == set(expected_indices[i]) for i in range(args.radius_queries))
    print(f"radius sets equal to scikit-learn: {same}")
    print(f"vote overhead over kNN alone: {ours_both / times['bigdist knn']:.2f}x")
    sk_both = times["scikit-learn predict"] + times["scikit-learn predict_proba"]
    print(f"scikit-learn predict + predict_proba / bigdist: {sk_both / ours_both:.2f}x")
    print(f"scikit-learn predict / bigdist (both outputs): {times['scikit-learn predict'] / ours_both:.2f}x")
    radius_key = f"radius_neighbors ({args.radius_queries} queries)"
    radius_ratio = times["scikit-learn " + radius_key] / times["bigdist " + radius_key]
    print(f"scikit-learn radius / bigdist radius: {radius_ratio:.2f}x")
    peak, idle = rss.peak / 2**30, baseline / 2**30
    print(f"peak RSS of all processes during bigdist: {peak:.2f} GiB (idle cluster {idle:.2f} GiB)")


if __name__ == "__main__":
    main()
