"""``bigdist radius``: radius neighbours written to a Zarr group as CSR arrays."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from bigdist.cli.options import (
    metric_params,
    planned,
    queries_and_train,
    require,
    run_attrs,
    run_options,
    runtime_client,
    started,
)
from bigdist.kernels.registry import get_metric, metric_names


@click.command()
@click.option(
    "--queries", type=str, default=None, help="Query rows, read as --train; omit for the self-join of --train."
)
@click.option("--train", type=str, required=False, help="Zarr, .npy, Parquet, HDF5 or AnnData: train rows.")
@click.option("--radius", type=float, required=False, help="Neighbours are the rows at distance <= radius.")
@click.option("--metric", type=click.Choice(metric_names()), default="euclidean", show_default=True)
@click.option("--p", type=float, default=None, help="Order of the minkowski metric (p > 0; default 2).")
@click.option("--sort-results", is_flag=True, default=False, help="Each query's neighbours nearest first.")
@click.option("--max-neighbors", type=click.IntRange(min=1), default=None, help="Cap per query (default from config).")
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the merge across blocks.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (indptr, indices, distances).")
@run_options()
def radius(generate: Any = None, **options: Any) -> None:
    """Every train row within --radius of each query row, written to a Zarr group as CSR arrays."""
    import bigdist
    from bigdist.io import update_attrs

    require(options, "train", "radius", "out")
    get_metric(options["metric"], **metric_params(options))  # a bad parameter fails before any cluster starts
    with runtime_client(options) as client:
        started(client, generate, {"train": options["train"], "queries": options["queries"]})
        out = os.path.expanduser(options["out"])
        job = {"radius": options["radius"], "metric": options["metric"], "max_neighbors": options["max_neighbors"]}
        if planned(options, "radius", *queries_and_train(options), **job, **metric_params(options)):
            return
        result = bigdist.radius_neighbors(
            *queries_and_train(options),
            options["radius"],
            options["metric"],
            sort_results=options["sort_results"],
            max_neighbors=options["max_neighbors"],
            split_every=options["split_every"],
            **metric_params(options),
        )
        start = time.perf_counter()
        result.to_zarr(
            out,
            overwrite=options["overwrite"],
            attrs={"run": run_attrs(options)},
            storage_options=options["storage_options"],
        )
        seconds = time.perf_counter() - start
    pairs = int(bigdist.io.read_group(out, options["storage_options"])["indptr"][-1].compute())
    update_attrs(
        out,
        timings={"seconds": seconds, "queries_per_second": result.n_queries / seconds},
        storage_options=options["storage_options"],
    )
    click.echo(
        f"radius: {result.n_queries:,} queries x {result.n_train:,} train rows, radius {result.radius:g}, "
        f"{result.metric}: {pairs:,} pairs ({pairs / result.n_queries:.1f} per query), {seconds:.1f} s"
        f"\noutput: {out} (indptr, indices, distances)"
    )
