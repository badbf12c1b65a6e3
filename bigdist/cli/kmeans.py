"""``bigdist kmeans``: k-means clustering written to a Zarr group."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from bigdist.cli.options import input_of, planned, require, run_attrs, run_options, runtime_client, started


@click.command()
@click.option("--data", type=str, required=False, help="Zarr, .npy, Parquet, HDF5 or AnnData: the rows to cluster.")
@click.option("--n-clusters", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--init",
    type=click.Choice(["k-means||", "k-means++", "random"]),
    # click joins choices with "|", which runs into the name k-means||.
    metavar="[k-means||, k-means++, random]",
    default="k-means||",
    show_default=True,
)
@click.option("--n-init", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-iter", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--random-state", type=int, default=None)
@click.option(
    "--checkpoint", type=str, default=None, help="Zarr group to save centroids to each iteration and resume from."
)
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the tree reductions.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (centroids, labels).")
@run_options()
def kmeans(generate: Any = None, **options: Any) -> None:
    """K-means clustering, one pass over the data per iteration, written to a Zarr group."""
    import bigdist
    from bigdist.io import update_attrs

    require(options, "data", "out")
    with runtime_client(options) as client:
        started(client, generate, {"data": options["data"]})
        out = os.path.expanduser(options["out"])
        job = {"n_clusters": options["n_clusters"], "max_iter": options["max_iter"]}
        if planned(options, "kmeans", input_of(options, "data"), **job):
            return
        start = time.perf_counter()
        result = bigdist.kmeans(
            input_of(options, "data"),
            options["n_clusters"],
            init=options["init"],
            n_init=options["n_init"],
            max_iter=options["max_iter"],
            tol=options["tol"],
            random_state=options["random_state"],
            checkpoint=os.path.expanduser(options["checkpoint"]) if options["checkpoint"] else None,
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
        f"kmeans: {result.labels.shape[0]:,} rows, {options['n_clusters']} clusters, {result.n_iter} iterations, "
        f"inertia {result.inertia:.6g}: {seconds:.1f} s\noutput: {out} (centroids, labels)"
    )
