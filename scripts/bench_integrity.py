"""What the integrity checks cost: crc32c per chunk on write and read, chunk-existence checks per block.

Writes one float32 array (default 256 MB in 64 chunks) to a work directory,
twice: as bigdist writes outputs (crc32c, every chunk stored) and as plain
Zarr (no codec). Then reads them back on the synchronous scheduler with
plain ``dask.array.from_zarr``, and the checksummed one with
``bigdist.open_array`` (which also checks NaN/inf in the same pass) with the
missing-chunk check on and off. Prints seconds, GB/s and the ratios.

    python scripts/bench_integrity.py --rows 524288 --features 128 --chunk-rows 8192
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

import bigdist as bd
from bigdist.io.integrity import output_codecs


def _best(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=524288)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--chunk-rows", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/bigdist-bench")
    args = parser.parse_args()

    # A directory of its own, deleted at the end: never the work directory the other benchmarks cache data in.
    work = Path(args.workdir) / "integrity"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = np.random.default_rng(0).standard_normal((args.rows, args.features), dtype=np.float32)
    gigabytes = data.nbytes / 1e9
    results = {}

    def write(path: Path, codecs: list) -> None:
        array = zarr.create_array(
            str(path), shape=data.shape, dtype=data.dtype, chunks=(args.chunk_rows, args.features),
            compressors=codecs, overwrite=True, config={"write_empty_chunks": True},
        )  # fmt: skip
        array[...] = data

    results["write plain"] = _best(lambda: write(work / "plain.zarr", None), args.repeat)
    results["write crc32c"] = _best(lambda: write(work / "crc.zarr", output_codecs("none")), args.repeat)
    with dask.config.set(scheduler="synchronous"):
        da.from_zarr(str(work / "plain.zarr"))[: args.chunk_rows].sum().compute()  # warm-up: imports, first calls
        results["read plain from_zarr"] = _best(
            lambda: da.from_zarr(str(work / "plain.zarr")).sum().compute(), args.repeat
        )
        results["read crc32c from_zarr"] = _best(
            lambda: da.from_zarr(str(work / "crc.zarr")).sum().compute(), args.repeat
        )
        results["read crc32c, checks on"] = _best(lambda: bd.open_array(work / "crc.zarr").sum().compute(), args.repeat)
        with dask.config.set({"bigdist.io.missing-chunks": "fill"}):
            results["read crc32c, checks off"] = _best(
                lambda: bd.open_array(work / "crc.zarr").sum().compute(), args.repeat
            )
    print(f"{args.rows} x {args.features} float32 ({gigabytes:.2f} GB), chunks of {args.chunk_rows} rows")
    for name, seconds in results.items():
        print(f"{name:28s} {seconds:7.3f} s  {gigabytes / seconds:6.2f} GB/s")
    checksum_ratio = results["read crc32c from_zarr"] / results["read plain from_zarr"]
    print(f"read: crc32c / plain (both from_zarr) = {checksum_ratio:.2f}")
    print(f"write: crc32c / plain = {results['write crc32c'] / results['write plain']:.2f}")
    ratio = results["read crc32c, checks on"] / results["read plain from_zarr"]
    print(f"read: bigdist (crc32c + checks) / plain = {ratio:.2f}")
    print(
        f"read: existence checks on / off = "
        f"{results['read crc32c, checks on'] / results['read crc32c, checks off']:.2f}"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
