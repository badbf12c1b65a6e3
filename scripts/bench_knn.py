"""Benchmark exact kNN: bigdist (from Zarr, on a LocalCluster) against its peers.

Measures, in one run and on the same data:

1. bigdist end to end from Zarr (``bd.knn(queries_path, train_path, k).compute()``
   inside ``bigdist.runtime.start()``: a LocalCluster, by default one
   single-threaded worker per core), with the peak RSS summed over all
   processes of the run (this process, which also hosts the scheduler and the
   nannies, plus the worker processes), sampled every 0.1 s;
2. FAISS ``IndexFlatL2`` in memory (data loaded into NumPy first; loading not timed);
3. scikit-learn brute force (``NearestNeighbors(algorithm="brute")``) on a
   subset of the queries;
4. plain float32 sgemm, (min(m, 1000) x d) @ (d x 100000) — the ceiling;

and prints throughput (GFLOP/s = 2·m·n·d / s), the ratios, and the agreement
of bigdist's neighbours with FAISS's and with an exact float64 NumPy brute
force on a few queries (which must be 100%).

    python scripts/bench_knn.py                                        # 10,000 x 1,000,000 x 128
    python scripts/bench_knn.py --n-train 8000000 --n-queries 200 --only-bigdist   # memory

Needs the ``bench`` extra (faiss-cpu, psutil). Data is generated once,
uncompressed, into --workdir (never the repository) and reused while its
parameters match; generation time is reported apart from the measurements.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import logging
import mmap
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import psutil
import yaml
import zarr
from bench_common import PeakRSS, print_command, total_rss
from threadpoolctl import threadpool_limits

import bigdist as bd
from bigdist import runtime
from bigdist.io import make_random

logger = logging.getLogger("bench_knn")

GiB = 2**30


# --------------------------------------------------------------------------- memory


def process_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of this process and of all its descendants, by pid."""
    me = psutil.Process()
    cpu = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            cpu[proc.pid] = times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return cpu


def process_pss() -> int:
    """PSS summed over this process and its descendants: shared pages (libraries) counted once.

    Too slow (milliseconds per process) for the 0.1 s sampler; taken once, on the idle cluster.
    """
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


# --------------------------------------------------------------------------- data


def gflops(m: int, n: int, d: int, seconds: float) -> float:
    return 2.0 * m * n * d / seconds / 1e9


def _cached(path: str, n: int, d: int, seed: int, chunk_rows: int | None) -> str | None:
    """None when ``path`` holds the finished, uncompressed array these parameters give; else why not."""
    if not os.path.exists(os.path.join(path, "zarr.json")):
        return "missing"
    try:
        array = zarr.open_array(store=path, mode="r")
    except Exception as error:  # noqa: BLE001 - anything unreadable is regenerated
        return f"unreadable ({error})"
    meta = dict(array.attrs.get("bigdist", {}))
    generator = meta.get("generator", {})
    wanted = {"kind": "random", "n_samples": n, "n_features": d, "distribution": "normal", "random_state": seed}
    if not meta.get("complete"):
        return "unfinished"
    if any(generator.get(key) != value for key, value in wanted.items()) or array.dtype != np.float32:
        return f"other parameters ({generator})"
    if chunk_rows and array.chunks[0] != chunk_rows:
        return f"other chunks ({array.chunks})"
    if array.compressors:
        return f"compressed ({array.compressors})"
    return None


def make_data(args: argparse.Namespace) -> tuple[str, str, dict[str, float | None]]:
    """Generate (or reuse) the train and query arrays; return their paths and generation seconds (None: cached)."""
    os.makedirs(args.workdir, exist_ok=True)
    suffix = f"-c{args.chunk_rows}" if args.chunk_rows else ""
    train = os.path.join(args.workdir, f"train-{args.n_train}x{args.d}{suffix}.zarr")
    queries = os.path.join(args.workdir, f"queries-{args.n_queries}x{args.d}.zarr")
    todo = []
    for name, path, n, seed in (("train", train, args.n_train, 0), ("queries", queries, args.n_queries, 1)):
        reason = (
            "--regenerate"
            if args.regenerate
            else _cached(path, n, args.d, seed, args.chunk_rows if name == "train" else None)
        )
        if reason is None:
            logger.info("reusing %s", path)
        else:
            logger.info("generating %s (%s)", path, reason)
            todo.append((name, path, n, seed))
    seconds: dict[str, float | None] = {"train": None, "queries": None}
    if todo:
        with dask.config.set({"bigdist.io.compressor": "none"}), runtime.start():
            for name, path, n, seed in todo:
                start = time.perf_counter()
                chunk_rows = args.chunk_rows if name == "train" else None
                make_random(path, n, args.d, random_state=seed, chunk_rows=chunk_rows, overwrite=True)
                seconds[name] = time.perf_counter() - start
                logger.info("generated %s in %.1f s", path, seconds[name])
    return train, queries, seconds


def store_files(path: str) -> list[str]:
    return sorted(os.path.join(root, f) for root, _, files in os.walk(path) for f in files)


def store_bytes(path: str) -> int:
    return sum(os.path.getsize(f) for f in store_files(path))


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def _resident_bytes(path: str) -> int:
    """Bytes of ``path`` in the OS page cache (mincore on a read-only mapping)."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            pages = -(-size // mmap.PAGESIZE)
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
            return int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1)) * mmap.PAGESIZE
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def page_cache_fraction(path: str) -> float:
    """Fraction of the store's bytes that sit in the OS page cache (reads from RAM, not disk)."""
    files = store_files(path)
    total = sum(os.path.getsize(f) for f in files)
    return sum(_resident_bytes(f) for f in files) / total if total else 1.0


def set_page_cache(path: str, mode: str) -> None:
    """``warm``: read every file of the store once; ``cold``: drop its pages (POSIX_FADV_DONTNEED); ``asis``: nothing.

    Only this store's pages are touched, never the machine's whole cache.
    """
    if mode == "asis":
        return
    for name in store_files(path):
        fd = os.open(name, os.O_RDONLY)
        try:
            if mode == "cold":
                os.fsync(fd)  # dirty pages cannot be dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            else:
                while os.read(fd, 1 << 24):
                    pass
        finally:
            os.close(fd)


def load(path: str) -> np.ndarray:
    return np.asarray(zarr.open_array(store=path, mode="r")[...])


# --------------------------------------------------------------------------- methods


def task_breakdown(records: Sequence[dict[str, Any]]) -> list[tuple[str, int, float, float, float, float]]:
    """Per key prefix: tasks, compute seconds summed, mean and max ms, transfer seconds summed."""
    from distributed.utils import key_split

    stats: dict[str, list[Any]] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for record in records:
        entry = stats[key_split(record["key"])]
        entry[0] += 1
        for startstop in record.get("startstops", ()):
            duration = startstop["stop"] - startstop["start"]
            if startstop["action"] == "compute":
                entry[1] += duration
                entry[2] = max(entry[2], duration)
            elif startstop["action"] == "transfer":
                entry[3] += duration
    return sorted(
        (
            (prefix, n, total, 1e3 * total / n, 1e3 * longest, transfer)
            for prefix, (n, total, longest, transfer) in stats.items()
        ),
        key=lambda row: -row[2],
    )


def bench_bigdist(args: argparse.Namespace, train: str, queries: str) -> dict[str, Any]:
    from distributed import get_task_stream

    out: dict[str, Any] = {}
    with runtime.start(performance_report=args.performance_report) as client:
        workers = client.scheduler_info()["workers"]
        out["workers"] = len(workers)
        out["threads"] = sum(w["nthreads"] for w in workers.values())
        out["worker_pids"] = set(client.run(os.getpid).values())
        # Warm-up (not timed in the result): workers import the kernels and load the compiled scan.
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        tiny_q, tiny_x = (rng.standard_normal((rows, args.d), dtype=np.float32) for rows in (64, 256))
        bd.knn(tiny_q, tiny_x, k=args.k).compute()
        out["warmup"] = time.perf_counter() - start
        start = time.perf_counter()
        for path in (train, queries):
            set_page_cache(path, args.cache)
        out["cache_seconds"] = time.perf_counter() - start
        out["cached_before"] = page_cache_fraction(train)
        out["baseline"] = total_rss()
        out["baseline_pss"] = process_pss()
        cpu_before = process_cpu()
        with PeakRSS() as rss, get_task_stream(client) as stream:
            start, wall_start = time.perf_counter(), time.time()
            result = bd.knn(queries, train, k=args.k)
            built = time.time()
            distances, indices = result.compute()
            out["seconds"] = time.perf_counter() - start
            wall_end = time.time()
            cpu_after = process_cpu()
        out["cpu"] = {pid: cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after}
        out["flops"] = result.flops
        out["tasks"] = task_breakdown(stream.data)
        spans = [ss for record in stream.data for ss in record.get("startstops", ()) if ss["action"] == "compute"]
        first = min((ss["start"] for ss in spans), default=built)
        last = max((ss["stop"] for ss in spans), default=wall_end)
        out["phases"] = [
            ("build the graph (bd.knn)", built - wall_start),
            ("submit until the first task starts", first - built),
            ("first task start to last task end", last - first),
            ("last task end until the result is here", wall_end - last),
        ]
    out["cached_after"] = page_cache_fraction(train)
    out.update(distances=distances, indices=indices, rss=rss)
    return out


def bench_faiss(train: np.ndarray, queries: np.ndarray, k: int, threads: int) -> tuple[float, np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatL2(train.shape[1])
    index.add(train)
    start = time.perf_counter()
    _, indices = index.search(queries, k)
    return time.perf_counter() - start, indices


def bench_sklearn(train: np.ndarray, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(train)
    start = time.perf_counter()
    _, indices = model.kneighbors(queries)
    return time.perf_counter() - start, indices


def bench_sgemm(m: int, d: int, threads: int, repeats: int = 7) -> tuple[tuple[int, int, int], float]:
    """Median seconds of (m x d) @ (d x 100000) float32 with ``threads`` BLAS threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, d), dtype=np.float32)
    b = rng.standard_normal((d, 100_000), dtype=np.float32)
    c = np.empty((m, 100_000), dtype=np.float32)
    with threadpool_limits(threads, user_api="blas"):
        np.matmul(a, b, out=c)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=c)
            times.append(time.perf_counter() - start)
    return (m, b.shape[1], d), float(np.median(times))


def brute_force(
    train_path: str, queries: np.ndarray, k: int, block: int = 131072, sub: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours in float64 from differences (no expansion trick), ties by the lower index.

    Streams the train array from Zarr block by block, so any size works in bounded memory.
    """
    train = zarr.open_array(store=train_path, mode="r")
    n, d = train.shape
    q64 = queries.astype(np.float64)
    squared = np.empty((len(q64), n), dtype=np.float64)
    diff = np.empty((sub, d), dtype=np.float64)
    for start in range(0, n, block):
        x = np.asarray(train[start : start + block], dtype=np.float64)
        for s in range(0, len(x), sub):
            xs = x[s : s + sub]
            buf = diff[: len(xs)]
            for i, q in enumerate(q64):
                np.subtract(xs, q, out=buf)
                squared[i, start + s : start + s + len(xs)] = np.einsum("ij,ij->i", buf, buf)
    indices = np.empty((len(q64), k), dtype=np.int64)
    for i, row in enumerate(squared):
        # Every row tied with the k-th smallest is a candidate; sort them by (distance, index).
        candidates = np.flatnonzero(row <= np.partition(row, k - 1)[k - 1])
        indices[i] = candidates[np.lexsort((candidates, row[candidates]))][:k]
    return np.sqrt(np.take_along_axis(squared, indices, axis=1)), indices


# --------------------------------------------------------------------------- report


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header], *[[c if isinstance(c, str) else f"{c}" for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for r, row in enumerate(cells):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
        if r == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--n-queries", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--sklearn-queries", type=int, default=1000, help="queries scikit-learn runs on (it is slow)")
    parser.add_argument("--check-queries", type=int, default=50, help="queries checked against a float64 brute force")
    parser.add_argument("--threads", type=int, default=2, help="threads for FAISS and sgemm")
    parser.add_argument("--only-bigdist", action="store_true", help="skip FAISS and scikit-learn (memory runs)")
    parser.add_argument(
        "--chunk-rows", type=int, default=None, help="rows per stored chunk of the train array (default: bigdist's)"
    )
    parser.add_argument("--workdir", default="/tmp/bigdist-bench", help="where the data is generated and cached")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the data even if cached")
    parser.add_argument(
        "--cache",
        choices=("warm", "cold", "asis"),
        default="warm",
        help="the data's OS page cache before the bigdist run: read once (warm), dropped for these files (cold), "
        "or left as it is (asis); reported either way",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dask config for the bigdist run, e.g. --set bigdist.knn.tile-train-rows=1024 (repeatable)",
    )
    parser.add_argument("--performance-report", default=None, help="write Dask's HTML performance report here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("distributed").setLevel(logging.WARNING)
    print_command()
    print("cwd:", os.getcwd(), flush=True)

    m, n, d, k = args.n_queries, args.n_train, args.d, args.k
    train_path, queries_path, generated = make_data(args)

    # 1. bigdist, first: nothing is loaded in this process yet, so its RSS is the cluster's own.
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    logger.info("bigdist: %s x %s x %s, k=%s%s", m, n, d, k, f", config {overrides}" if overrides else "")
    with dask.config.set(overrides):
        ours = bench_bigdist(args, train_path, queries_path)
    logger.info("bigdist: %.1f s", ours["seconds"])
    rows: list[list[Any]] = []
    rates: dict[str, float] = {}
    rates["bigdist"] = gflops(m, n, d, ours["seconds"])
    assert ours["flops"] == 2.0 * m * n * d, ours["flops"]

    # 4. sgemm, cheap, always.
    sg_shape, sg_seconds = bench_sgemm(min(m, 1000), d, args.threads)
    rates["sgemm"] = gflops(*sg_shape, sg_seconds)
    logger.info("sgemm %s: %.1f GFLOP/s", sg_shape, rates["sgemm"])

    check = min(args.check_queries, m)
    exact = None
    if check:
        start = time.perf_counter()
        exact = brute_force(train_path, load(queries_path)[:check], k)
        logger.info("float64 brute force on %d queries: %.1f s", check, time.perf_counter() - start)

    faiss_indices = sk_indices = None
    load_seconds = faiss_seconds = sk_seconds = None
    sk_m = min(args.sklearn_queries, m)
    if not args.only_bigdist:
        start = time.perf_counter()
        train, queries = load(train_path), load(queries_path)
        load_seconds = time.perf_counter() - start
        logger.info("loaded the data into NumPy in %.1f s", load_seconds)
        faiss_seconds, faiss_indices = bench_faiss(train, queries, k, args.threads)
        rates["faiss"] = gflops(m, n, d, faiss_seconds)
        logger.info("FAISS: %.1f s", faiss_seconds)
        if sk_m:
            sk_seconds, sk_indices = bench_sklearn(train, queries[:sk_m], k)
            rates["sklearn"] = gflops(sk_m, n, d, sk_seconds)
            logger.info("scikit-learn: %.1f s", sk_seconds)
        del train, queries

    # ------------------------------------------------------------------ tables
    faiss_rate = rates.get("faiss")

    def ratios(rate: float) -> list[str]:
        return [fmt(rate / faiss_rate, ".2f") if faiss_rate else "-", fmt(rate / rates["sgemm"], ".2f")]

    rows.append(
        [f"bigdist (Zarr, LocalCluster {ours['workers']}w x {ours['threads'] // ours['workers']}t)", f"{m:,}",
         fmt(ours["seconds"]), fmt(rates["bigdist"]), *ratios(rates["bigdist"])]
    )  # fmt: skip
    if faiss_rate:
        rows.append([f"FAISS IndexFlatL2 (RAM, {args.threads} threads)", f"{m:,}", fmt(faiss_seconds),
                     fmt(faiss_rate), *ratios(faiss_rate)])  # fmt: skip
    if "sklearn" in rates:
        rows.append(["scikit-learn brute (RAM, subset)", f"{sk_m:,}", fmt(sk_seconds), fmt(rates["sklearn"]),
                     *ratios(rates["sklearn"])])  # fmt: skip
    rows.append([f"sgemm {sg_shape[0]}x{sg_shape[2]} @ {sg_shape[2]}x{sg_shape[1]} ({args.threads} BLAS threads)",
                 "-", fmt(sg_seconds, ".4f"), fmt(rates["sgemm"]), *ratios(rates["sgemm"])])  # fmt: skip

    print()
    print(f"kNN, {m:,} queries x {n:,} train x {d} features, float32, k={k}; GFLOP/s = 2*m*n*d / s")
    print(
        f"bigdist read the train store with {100 * ours['cached_before']:.0f}% of it in the OS page cache at the start "
        f"(--cache {args.cache}; {100 * ours['cached_after']:.0f}% at the end)"
        + (f"; config {overrides}" if overrides else "")
    )
    print(table(["method", "queries", "seconds", "GFLOP/s", "vs FAISS", "vs sgemm"], rows))
    if faiss_rate:
        print(
            f"\nbigdist / FAISS: {rates['bigdist'] / faiss_rate:.2f}   bigdist / sgemm: "
            f"{rates['bigdist'] / rates['sgemm']:.2f}   FAISS / sgemm: {faiss_rate / rates['sgemm']:.2f}"
        )
    else:
        print(f"\nbigdist / sgemm: {rates['bigdist'] / rates['sgemm']:.2f}")

    exact_ok = True
    print("\nagreement of bigdist's neighbours")
    agree = []
    if exact is not None:
        exact_d, exact_i = exact
        equal = float((ours["indices"][:check] == exact_i).mean())
        exact_ok = equal == 1.0
        rel = np.abs(ours["distances"][:check].astype(np.float64) - exact_d) / np.maximum(exact_d, 1e-300)
        agree.append([f"float64 NumPy brute force (exact), {check} queries", f"{100 * equal:.3f}%",
                      f"{rel.max():.2e}", "OK" if exact_ok else "MISMATCH"])  # fmt: skip
    if faiss_indices is not None:
        equal = float((ours["indices"] == faiss_indices).mean())
        recall = np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(ours["indices"], faiss_indices, strict=True)])
        agree.append(
            [
                f"FAISS (float32, not exact), {m:,} queries",
                f"{100 * equal:.3f}%",
                "-",
                f"set overlap {100 * recall:.3f}%",
            ]
        )
    if sk_indices is not None:
        equal = float((ours["indices"][:sk_m] == sk_indices).mean())
        agree.append([f"scikit-learn (float32, not exact), {sk_m:,} queries", f"{100 * equal:.3f}%", "-", ""])
    print(table(["against", "indices equal", "max rel dist err", ""], agree))

    rss = ours["rss"]
    train_bytes = n * d * 4
    print(
        f"\nmemory: RSS summed over this process (client, scheduler, nannies) and its children "
        f"({len(ours['worker_pids'])} workers, ...), sampled every 0.1 s"
    )

    def role(pid: int) -> str:
        if pid == os.getpid():
            return "client+scheduler+nannies"
        return "workers" if pid in ours["worker_pids"] else "other children"

    by_role: collections.Counter[str] = collections.Counter()
    for pid, value in rss.peak_breakdown.items():
        by_role[role(pid)] += value
    cpu_by_role: collections.Counter[str] = collections.Counter()
    for pid, value in ours["cpu"].items():
        cpu_by_role[role(pid)] += value
    mem_rows = [
        ["train set (n*d*4)", f"{train_bytes:,}", f"{train_bytes / GiB:.2f}"],
        ["train store on disk", f"{store_bytes(train_path):,}", f"{store_bytes(train_path) / GiB:.2f}"],
        ["idle cluster before the run", f"{ours['baseline']:,}", f"{ours['baseline'] / GiB:.2f}"],
        ["  idle, as PSS (shared pages once)", f"{ours['baseline_pss']:,}", f"{ours['baseline_pss'] / GiB:.2f}"],
        [f"peak during the run (at {rss.peak_at:.1f} s)", f"{rss.peak:,}", f"{rss.peak / GiB:.2f}"],
        *[[f"  of which {role}", f"{value:,}", f"{value / GiB:.2f}"] for role, value in sorted(by_role.items())],
        ["peak - idle", f"{rss.peak - ours['baseline']:,}", f"{(rss.peak - ours['baseline']) / GiB:.2f}"],
    ]
    print(table(["", "bytes", "GiB"], mem_rows))
    print(f"peak RSS / train size: {rss.peak / train_bytes:.2f}")
    print("RSS during the run (s: GiB): " + ", ".join(f"{t:.0f}: {v / GiB:.2f}" for t, v in rss.timeline()))

    print("\nbigdist tasks (from the task stream)")
    busy = sum(row[2] for row in ours["tasks"])
    print(table(
        ["key prefix", "tasks", "compute s", "mean ms", "max ms", "transfer s"],
        [[p, t, f"{c:.1f}", f"{a:.0f}", f"{x:.0f}", f"{tr:.2f}"] for p, t, c, a, x, tr in ours["tasks"]],
    ))  # fmt: skip
    print(f"worker threads busy {busy:.1f} s of {ours['threads'] * ours['seconds']:.1f} s available "
          f"({100 * busy / (ours['threads'] * ours['seconds']):.0f}%)")  # fmt: skip

    print(
        "CPU seconds during the run: "
        + ", ".join(f"{name} {value:.1f}" for name, value in sorted(cpu_by_role.items()))
        + f" (of {psutil.cpu_count()} x {ours['seconds']:.1f} s)"
    )
    print("phases of the bigdist run: " + "; ".join(f"{name} {value:.2f} s" for name, value in ours["phases"]))

    print("\nnot measured (setup)")
    setup = [
        ["generate train", fmt(generated["train"]) if generated["train"] is not None else "cached"],
        ["generate queries", fmt(generated["queries"]) if generated["queries"] is not None else "cached"],
        ["bigdist warm-up (workers load kernels)", fmt(ours["warmup"])],
        [f"page cache --cache {args.cache}", fmt(ours["cache_seconds"])],
    ]
    if load_seconds is not None:
        setup.append(["load Zarr into NumPy for FAISS/scikit-learn", fmt(load_seconds)])
    print(table(["step", "seconds"], setup))
    if not exact_ok:
        print("\nERROR: bigdist's neighbours differ from the float64 brute force", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
