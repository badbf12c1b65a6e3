"""Scale by simulation: how the self-join's graph grows with n, what one task costs the scheduler, and one real run.

1. For the self-join ``bd.knn(X, None, k)`` of a lazy synthetic n x d float32
   array (nothing is computed over it), for each n: time to build the lazy
   result, to materialise its graph (and the graph's pickled bytes), time
   from the submission to the first task running, the tasks the scheduler
   then holds, and the client's peak RSS; then the same written through the
   waves (``to_zarr``), watched for a few seconds after its first task. Each
   n runs in a fresh process on a fresh LocalCluster, stopped after
   ``--timeout`` seconds (reported as such: the single graph does not reach
   its first task at 1e8 rows).
2. The scheduler's own overhead per task: many no-op tasks on a LocalCluster.
3. One real run of ``bigdist knn`` (self-join) at ``--real-rows`` rows, on
   data generated first, with the peak RSS of every process of the run.
4. Worker memory against n (``--worker-train``): the same block of queries
   against lazy synthetic train sets of growing n, written through the
   waves on a LocalCluster; the peak RSS of each worker, which should not
   grow with n (each task generates its own train panel).

Run from the repository root: ``python scripts/bench_scale.py --quick`` (well under a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import print_command  # noqa: E402

SIZES = (10**6, 10**7, 10**8, 10**9)
QUICK_SIZES = (10**4, 10**5)


def _emit(**values: Any) -> None:
    print(json.dumps(values), flush=True)


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _cluster(processes: bool) -> Any:
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None)


def child_graph(n_rows: int, n_features: int, k: int, chunk_rows: int, processes: bool) -> None:
    """One size, in this (fresh) process: phases printed as JSON lines as they finish."""
    import threading

    import dask.array as da
    import numpy as np
    from distributed import Client

    import bigdist as bd

    peak = [_rss()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], _rss())

    with _cluster(processes) as cluster, Client(cluster) as client:
        threading.Thread(target=sample, daemon=True).start()
        _emit(phase="cluster", rss=_rss())
        start = time.perf_counter()
        X = da.random.default_rng(0).standard_normal((n_rows, n_features), chunks=(chunk_rows, n_features))
        X = X.astype(np.float32)
        result = bd.knn(X, None, k=k)
        collections = (result.distances, result.indices)
        _emit(phase="lazy", seconds=time.perf_counter() - start, rss=_rss())
        graph = dict(result.distances.__dask_graph__())
        graph.update(result.indices.__dask_graph__())
        _emit(phase="materialised", seconds=time.perf_counter() - start, tasks=len(graph), rss=_rss())
        graph_bytes = len(pickle.dumps(graph, protocol=pickle.HIGHEST_PROTOCOL))
        del graph
        _emit(phase="pickled", seconds=time.perf_counter() - start, graph_bytes=graph_bytes, rss=_rss())
        submitted = time.perf_counter()
        futures = client.compute(list(collections))
        while True:
            state = client.run_on_scheduler(_scheduler_state)
            if state["started"]:
                break
            time.sleep(0.02)
        _emit(
            phase="first-task",
            seconds=time.perf_counter() - start,
            from_submission=time.perf_counter() - submitted,
            scheduler_tasks=state["tasks"],
            threads=sum(client.nthreads().values()),
            client_peak_rss=max(peak[0], _rss()),
        )
        client.cancel(futures)
        stop.set()


def child_waves(n_rows: int, n_features: int, k: int, chunk_rows: int, processes: bool, watch: float) -> None:
    """One size written through the waves (``to_zarr``): first task, tasks the scheduler holds, client RSS.

    The write is left running; after ``watch`` seconds of sampling this process exits at once and the
    parent stops what is left of its cluster.
    """
    import threading

    import dask.array as da
    import numpy as np
    from distributed import Client

    import bigdist as bd

    peak = [_rss()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], _rss())

    workdir = tempfile.mkdtemp(prefix="bigdist-scale-waves-")
    with _cluster(processes) as cluster, Client(cluster) as client:
        threading.Thread(target=sample, daemon=True).start()
        _emit(phase="cluster", rss=_rss())
        start = time.perf_counter()
        X = da.random.default_rng(0).standard_normal((n_rows, n_features), chunks=(chunk_rows, n_features))
        result = bd.knn(X.astype(np.float32), None, k=k)
        writer = threading.Thread(target=result.to_zarr, args=(os.path.join(workdir, "nn.zarr"),), daemon=True)
        writer.start()
        while not client.run_on_scheduler(_scheduler_state)["started"]:
            time.sleep(0.02)
        first = time.perf_counter() - start
        most = 0
        until = time.monotonic() + watch
        while time.monotonic() < until and writer.is_alive():
            most = max(most, client.run_on_scheduler(_scheduler_state)["tasks"])
            time.sleep(0.05)
        _emit(
            phase="first-task",
            seconds=first,
            from_submission=first,
            scheduler_tasks=most,
            threads=sum(client.nthreads().values()),
            client_peak_rss=max(peak[0], _rss()),
            workdir=workdir,
        )
        os._exit(0)


def child_workers(n_rows: int, args: argparse.Namespace) -> None:
    """``--worker-queries`` queries against n_rows lazy train rows, to Zarr; peak RSS of every worker."""
    import threading

    import dask.array as da
    import numpy as np
    from distributed import Client

    import bigdist as bd

    peaks: dict[str, int] = {}
    stop = threading.Event()
    workdir = tempfile.mkdtemp(prefix="bigdist-scale-workers-")
    with _cluster(processes=True) as cluster, Client(cluster) as client:
        baseline = client.run(_rss)

        def sample() -> None:
            while not stop.wait(0.2):
                for worker, rss in client.run(_rss).items():
                    peaks[worker] = max(peaks.get(worker, 0), rss)

        queries = np.random.default_rng(0).random((args.worker_queries, args.features), dtype=np.float32)
        train = da.random.default_rng(1).random((n_rows, args.features), chunks=(args.chunk_rows, args.features))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        bd.knn(queries, train.astype(np.float32), k=args.k).to_zarr(os.path.join(workdir, "nn.zarr"))
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
    _emit(phase="workers", n=n_rows, seconds=seconds, baseline=list(baseline.values()), peaks=list(peaks.values()))
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)


def worker_memory(sizes: tuple[int, ...], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each train size in a fresh process; the workers' peak RSS printed per size."""
    rows = []
    for n_rows in sizes:
        command = [sys.executable, __file__, "--child", str(n_rows), "--mode", "workers",
                   "--features", str(args.features), "--k", str(args.k), "--chunk-rows", str(args.chunk_rows),
                   "--worker-queries", str(args.worker_queries)]  # fmt: skip
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = next(json.loads(line) for line in output.splitlines() if line.startswith("{"))
        rows.append(row)
        print(
            f"workers: {args.worker_queries:,} queries x {n_rows:.0e} train rows x {args.features}, k={args.k}: "
            f"{row['seconds']:.1f} s; worker peak RSS {', '.join(_mb(rss) for rss in sorted(row['peaks']))} "
            f"(idle {', '.join(_mb(rss) for rss in sorted(row['baseline']))})",
            flush=True,
        )
    return rows


def _scheduler_state(dask_scheduler: Any) -> dict[str, Any]:
    started = any(ts.state in ("processing", "memory") for ts in dask_scheduler.tasks.values())
    return {"started": started, "tasks": len(dask_scheduler.tasks)}


def run_graph_sizes(sizes: tuple[int, ...], args: argparse.Namespace, mode: str) -> list[dict[str, Any]]:
    import shutil

    import psutil

    rows = []
    for n_rows in sizes:
        command = [sys.executable, __file__, "--child", str(n_rows), "--features", str(args.features),
                   "--k", str(args.k), "--chunk-rows", str(args.chunk_rows), "--cluster", args.cluster,
                   "--mode", mode, "--watch", str(args.watch)]  # fmt: skip
        phases: dict[str, Any] = {"n": n_rows}
        with tempfile.TemporaryFile("w+") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.DEVNULL, text=True)
            deadline = time.monotonic() + args.timeout
            peak_rss = 0
            descendants: dict[int, Any] = {}
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    parent = psutil.Process(process.pid)
                    peak_rss = max(peak_rss, parent.memory_info().rss)
                    descendants.update((child.pid, child) for child in parent.children(recursive=True))
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.1)
            timed_out = process.poll() is None
            if timed_out:
                process.kill()
            process.wait()
            # Its LocalCluster's processes too (a waves child exits without stopping them).
            for child in descendants.values():
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            log.seek(0)
            buffer = log.read()
        for line in buffer.splitlines():
            if line.startswith("{"):
                values = json.loads(line)
                phases[values.pop("phase")] = values
        phases["timed_out"] = timed_out
        phases["client_peak_rss_sampled"] = peak_rss
        if "workdir" in phases.get("first-task", {}):
            shutil.rmtree(phases["first-task"].pop("workdir"), ignore_errors=True)
        rows.append(phases)
        print_graph_row(phases, args.timeout, mode)
    return rows


def _mb(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 1e6:,.1f} MB"


def print_graph_row(row: dict[str, Any], timeout: float, mode: str) -> None:
    first = row.get("first-task")
    materialised = row.get("materialised", {})
    pickled = row.get("pickled", {})
    if first:
        outcome = f"first task at {first['seconds']:.1f} s ({first['from_submission']:.1f} s after submission)"
        held = "at most " if mode == "waves" else ""
        tasks = f"{held}{first['scheduler_tasks']:,} tasks in the scheduler ({first['threads']} threads)"
    else:
        reached = [phase for phase in ("cluster", "lazy", "materialised", "pickled") if phase in row]
        outcome = f"no first task within {timeout:.0f} s (stopped after: {reached[-1] if reached else 'start'})"
        tasks = f"{materialised['tasks']:,} tasks in the graph" if materialised else "graph not materialised"
    print(
        f"n={row['n']:.0e}: {'waves' if mode == 'waves' else 'single graph'}: {outcome}; {tasks}; "
        + (f"graph {_mb(pickled.get('graph_bytes'))} pickled; " if mode == "graph" else "")
        + "client peak RSS "
        f"{_mb(first['client_peak_rss'] if first else row['client_peak_rss_sampled'])}",
        flush=True,
    )


def _noop(i: int) -> int:
    return i


def scheduler_overhead(n_tasks: int, processes: bool) -> dict[str, float]:
    """Seconds per task of the scheduler itself: independent no-op tasks, then a chain of them."""
    import dask
    from distributed import Client

    with _cluster(processes) as cluster, Client(cluster) as client:
        client.gather(client.map(_noop, range(100)))  # warm the workers and the connections
        start = time.perf_counter()
        client.gather(client.map(_noop, range(n_tasks), pure=False))
        independent = (time.perf_counter() - start) / n_tasks
        chain = dask.delayed(0)
        for _ in range(n_tasks // 10):
            chain = dask.delayed(_noop)(chain)
        start = time.perf_counter()
        client.compute(chain).result()
        chained = (time.perf_counter() - start) / (n_tasks // 10)
    print(
        f"scheduler overhead: {independent * 1e3:.2f} ms per independent no-op task ({n_tasks:,} tasks), "
        f"{chained * 1e3:.2f} ms per task of a chain ({n_tasks // 10:,} tasks)",
        flush=True,
    )
    return {"independent_seconds": independent, "chained_seconds": chained}


def _role(process: Any) -> str:
    try:
        text = " ".join(process.cmdline())
    except Exception:  # noqa: BLE001  (a process may end while it is read)
        return "?"
    if "bigdist" in text and " knn" in text:
        return "bigdist knn (client, scheduler)"
    if "resource_tracker" in text:
        return "multiprocessing resource tracker"
    if "multiprocessing" in text or "spawn" in text:
        return "worker"
    return text[:60]


def real_run(n_rows: int, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """Generate n_rows x d, then ``bigdist knn`` on it (self-join), sampling the RSS of every process."""
    import psutil

    bigdist = os.path.join(os.path.dirname(sys.executable), "bigdist")
    data, out = os.path.join(workdir, f"data-{n_rows}.zarr"), os.path.join(workdir, f"nn-{n_rows}.zarr")
    generate = [bigdist, "generate", "random", "--n-samples", str(n_rows), "--n-features", str(args.features),
                "--out", data, "--overwrite"]  # fmt: skip
    subprocess.run(generate, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command = [bigdist, "knn", "--train", data, "--k", str(args.k), "--out", out, "--overwrite"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    peaks: dict[int, tuple[str, int]] = {}
    while process.poll() is None:
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in members:
            try:
                rss = member.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            role, before = peaks.get(member.pid, (_role(member), 0))
            peaks[member.pid] = (role, max(before, rss))
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"the real run failed:\n{stderr[-2000:]}")
    print(f"real run: {n_rows:,} x {args.features} self-join, k={args.k}: {seconds:.1f} s (bigdist knn)", flush=True)
    for pid, (role, rss) in sorted(peaks.items()):
        print(f"  peak RSS pid {pid} {role}: {_mb(rss)}", flush=True)
    print("  " + stdout.strip().replace("\n", "\n  "), flush=True)
    return {"n": n_rows, "seconds": seconds, "peak_rss": {str(pid): rss for pid, (_, rss) in peaks.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Small sizes, a short timeout: a smoke check.")
    parser.add_argument("--sizes", type=float, nargs="*", help="Rows of the simulated self-joins (default 1e6..1e9).")
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=65536, help="Row chunks of the lazy input.")
    parser.add_argument("--timeout", type=float, default=300, help="Seconds each size may take to its first task.")
    parser.add_argument("--overhead-tasks", type=int, default=5000)
    parser.add_argument("--real-rows", type=float, default=None, help="Rows of the real run (0: none).")
    parser.add_argument("--workdir", default=None, help="Where the real run's data go (default: a temporary dir).")
    parser.add_argument("--json", default=None, help="Also write every figure to this JSON file.")
    parser.add_argument(
        "--cluster",
        choices=("processes", "threads"),
        default=None,
        help="LocalCluster workers as processes (default) or threads (the --quick default: starts faster).",
    )
    parser.add_argument(
        "--watch", type=float, default=5.0, help="Seconds the waves are watched after their first task."
    )
    parser.add_argument(
        "--worker-train", type=float, nargs="*", default=None,
        help="Train rows of the worker-memory runs, e.g. 1e6 1e7 1e8 (default: none; --quick: 1e4 1e5).",
    )  # fmt: skip
    parser.add_argument("--worker-queries", type=int, default=256, help="Queries of the worker-memory runs.")
    parser.add_argument("--mode", choices=("graph", "waves", "workers"), default="graph", help=argparse.SUPPRESS)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        processes = args.cluster == "processes"
        if args.mode == "workers":
            child_workers(args.child, args)
        elif args.mode == "waves":
            child_waves(args.child, args.features, args.k, args.chunk_rows, processes, args.watch)
        else:
            child_graph(args.child, args.features, args.k, args.chunk_rows, processes)
        return
    print_command()
    if args.quick:
        sizes, args.timeout, args.overhead_tasks = QUICK_SIZES, min(args.timeout, 60), min(args.overhead_tasks, 500)
        args.watch = min(args.watch, 1.0)
        args.chunk_rows = min(args.chunk_rows, 8192)
        real_rows = 5_000 if args.real_rows is None else int(args.real_rows)
        args.cluster = args.cluster or "threads"
        args.features = min(args.features, 32)
        worker_train = QUICK_SIZES if args.worker_train is None else args.worker_train
    else:
        sizes = SIZES
        real_rows = 0 if args.real_rows is None else int(args.real_rows)
        worker_train = args.worker_train or ()
    args.cluster = args.cluster or "processes"
    if args.sizes is not None:
        sizes = tuple(int(size) for size in args.sizes)
    figures: dict[str, Any] = {mode: run_graph_sizes(sizes, args, mode) for mode in ("graph", "waves") if sizes}
    figures["scheduler_overhead"] = scheduler_overhead(args.overhead_tasks, args.cluster == "processes")
    if real_rows:
        with tempfile.TemporaryDirectory(prefix="bigdist-scale-", dir=args.workdir) as workdir:
            figures["real_run"] = real_run(real_rows, args, workdir)
    if worker_train:
        figures["worker_memory"] = worker_memory(tuple(int(n) for n in worker_train), args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
