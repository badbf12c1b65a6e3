"""Waves against the single graph: the same kNN written both ways, each in a fresh process.

Writes (or reuses) a random float32 train set in Zarr, then, per scheduler
(the threaded scheduler without a Client, and a LocalCluster), times
``res.to_zarr`` (waves of fused panel tasks) and ``write_group`` of the lazy
``res.distances`` / ``res.indices`` (today's single graph), each in its own
process, checks that both outputs are byte-identical, and prints the seconds,
the ratio, the client's peak RSS and the time to the first written block.

    python scripts/bench_waves.py --n-train 20000 --features 32             # quick
    python scripts/bench_waves.py                                            # self-join of 1,000,000 x 128, k=10
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import dask
import bigdist as bd
from bigdist.io import write_group

args = json.loads(sys.argv[1])
client = None
if args["scheduler"] == "local":
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=args["workers"], threads_per_worker=1, dashboard_address=None)
    client = Client(cluster)
first = []
start = time.perf_counter()
res = bd.knn(args["queries"] or args["train"], args["train"] if args["queries"] else None, k=args["k"])
if args["mode"] == "waves":
    res.to_zarr(args["out"], progress=lambda done, total, elapsed: first or first.append(elapsed))
else:
    write_group(args["out"], {"distances": res.distances, "indices": res.indices}, attrs={"knn": res.params})
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "first_block": first[0] if first else None,
                  "client_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _digest(path: str) -> str:
    files = sorted(f for f in glob.glob(f"{path}/*/c/**", recursive=True) if os.path.isfile(f))
    h = hashlib.md5()
    for f in files:
        h.update(os.path.relpath(f, path).encode())
        with open(f, "rb") as handle:
            h.update(handle.read())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--n-queries", type=int, default=0, help="0: the self-join of the train set")
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (one thread each)")
    parser.add_argument("--schedulers", default="threads,local")
    parser.add_argument("--workdir", default="/tmp/bigdist-bench/waves")
    args = parser.parse_args()

    from bigdist.io import make_random

    os.makedirs(args.workdir, exist_ok=True)
    train = os.path.join(args.workdir, f"train-{args.n_train}x{args.features}.zarr")
    if not os.path.exists(train):
        make_random(train, args.n_train, args.features, random_state=0)
    queries = None
    if args.n_queries:
        queries = os.path.join(args.workdir, f"queries-{args.n_queries}x{args.features}.zarr")
        if not os.path.exists(queries):
            make_random(queries, args.n_queries, args.features, random_state=1)
    print(f"command: {' '.join(sys.argv)}")
    for scheduler in args.schedulers.split(","):
        results, digests = {}, {}
        for mode in ("graph", "waves"):
            out = os.path.join(args.workdir, f"out-{scheduler}-{mode}.zarr")
            shutil.rmtree(out, ignore_errors=True)
            spec = {"scheduler": scheduler, "workers": args.workers, "mode": mode, "out": out, "train": train,
                    "queries": queries, "k": args.k}  # fmt: skip
            started = time.perf_counter()
            run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"{scheduler}/{mode} failed:\n{run.stderr[-3000:]}")
            results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
            results[mode]["process_seconds"] = time.perf_counter() - started
            digests[mode] = _digest(out)
        ratio = results["waves"]["seconds"] / results["graph"]["seconds"]
        same = "byte-identical" if digests["waves"] == digests["graph"] else "DIFFERENT OUTPUTS"
        for mode, result in results.items():
            first = result["first_block"]
            print(f"{scheduler:8s} {mode:6s} {result['seconds']:9.2f} s  client peak RSS "
                  f"{result['client_rss_mb']:8.0f} MB" + (f"  first block {first:.2f} s" if first else ""))  # fmt: skip
        print(f"{scheduler:8s} waves / graph = {ratio:.3f}  ({same})")


if __name__ == "__main__":
    main()
