"""``bigdist meanshift``: mean-shift clustering written to a Zarr group."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from bigdist.cli.options import input_of, planned, require, run_attrs, run_options, runtime_client, started


@click.command()
@click.option("--data", type=str, required=False, help="Zarr, .npy, Parquet, HDF5 or AnnData: the rows to cluster.")
@click.option("--bandwidth", type=click.FloatRange(min=0, min_open=True), default=None, help="Default: estimated.")
@click.option("--kernel", type=click.Choice(["gaussian", "flat"]), default="gaussian", show_default=True)
@click.option("--bin-seeding", is_flag=True, default=False, help="Seed at the cells of a grid of the bandwidth.")
@click.option("--min-bin-freq", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--n-seeds", type=click.IntRange(min=1), default=None, help="Rows sampled as seeds (big data).")
@click.option(
    "--cluster-all/--no-cluster-all", default=True, show_default=True, help="Label far rows -1 with --no-cluster-all."
)
@click.option("--max-iter", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0), default=1e-3, show_default=True, help="Relative to the bandwidth.")
@click.option("--random-state", type=int, default=None)
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the tree reductions.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (cluster_centers, labels).")
@run_options()
def meanshift(generate: Any = None, **options: Any) -> None:
    """Mean-shift clustering, one pass over the data per iteration, written to a Zarr group."""
    import bigdist
    from bigdist.io import update_attrs

    require(options, "data", "out")
    with runtime_client(options) as client:
        started(client, generate, {"data": options["data"]})
        out = os.path.expanduser(options["out"])
        job = {"bandwidth": options["bandwidth"], "kernel": options["kernel"], "max_iter": options["max_iter"]}
        if planned(options, "meanshift", input_of(options, "data"), n_seeds=options["n_seeds"], **job):
            return
        start = time.perf_counter()
        result = bigdist.meanshift(
            input_of(options, "data"),
            options["bandwidth"],
            kernel=options["kernel"],
            bin_seeding=options["bin_seeding"],
            min_bin_freq=options["min_bin_freq"],
            n_seeds=options["n_seeds"],
            cluster_all=options["cluster_all"],
            max_iter=options["max_iter"],
            tol=options["tol"],
            random_state=options["random_state"],
            split_every=options["split_every"],
        )
        # Labels in waves on the client's cluster: progress goes to the log every few seconds.
        result.to_zarr(
            out,
            overwrite=options["overwrite"],
            attrs={"run": run_attrs(options)},
            storage_options=options["storage_options"],
        )
        seconds = time.perf_counter() - start
    update_attrs(out, timings={"seconds": seconds}, storage_options=options["storage_options"])
    click.echo(
        f"meanshift: {result.labels.shape[0]:,} rows, {result.n_seeds:,} seeds, {len(result.cluster_centers)} modes, "
        f"{result.n_iter} iterations ({len(result.stats)} passes over the data), bandwidth {result.bandwidth:.6g}: "
        f"{seconds:.1f} s\n"
        f"output: {out} (cluster_centers, intensities, labels)"
    )
