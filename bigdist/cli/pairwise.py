"""``bigdist pairwise``: a full distance matrix streamed to a Zarr group."""

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
    resumed_note,
    run_attrs,
    run_options,
    runtime_client,
    started,
)
from bigdist.kernels.registry import get_metric, metric_names


@click.command()
@click.option(
    "--queries", type=str, default=None, help="Query rows, read as --train; omit for the matrix within --train."
)
@click.option("--train", type=str, required=False, help="Zarr, .npy, Parquet, HDF5, AnnData: train rows (columns).")
@click.option("--metric", type=click.Choice(metric_names()), default="euclidean", show_default=True)
@click.option("--p", type=float, default=None, help="Order of the minkowski metric (p > 0; default 2).")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (array 'distances').")
@run_options()
def pairwise(generate: Any = None, **options: Any) -> None:
    """The full distance matrix of query rows x train rows, streamed block by block to a Zarr group."""
    import bigdist
    from bigdist.execution.blocks import write_blocks
    from bigdist.execution.knn import flops_per_pair
    from bigdist.io import update_attrs

    require(options, "train", "out")
    get_metric(options["metric"], **metric_params(options))  # a bad parameter fails before any cluster starts
    with runtime_client(options) as client:
        started(client, generate, {"train": options["train"], "queries": options["queries"]})
        out = os.path.expanduser(options["out"])
        queries, train = queries_and_train(options)
        if planned(options, "pairwise", queries, train, metric=options["metric"], **metric_params(options)):
            return
        matrix = bigdist.pairwise_distances(queries, train, options["metric"], **metric_params(options))
        params = {"metric": options["metric"], **metric_params(options), "self_join": train is None}
        n_features = bigdist.open_array(queries if train is None else train).shape[1]
        rows: dict[str, int] = {}

        def count_rows(done: int, total: int, elapsed: float) -> None:
            # The first written row of blocks tells how many an earlier run had written: rates are over the rest.
            rows.setdefault("before", done - 1)
            rows["total"] = total

        start = time.perf_counter()
        # Waves on the client's cluster, each task reading its own query and train blocks.
        write_blocks(
            out,
            {"distances": matrix},
            attrs={"pairwise": params, "run": run_attrs(options)},
            overwrite=options["overwrite"],
            flops_per_element=flops_per_pair(get_metric(options["metric"]).name, n_features),
            progress=count_rows,
            storage_options=options["storage_options"],
        )
        seconds = time.perf_counter() - start
        share = 1.0 - rows["before"] / rows["total"] if rows else 0.0
    n_queries, n_train = matrix.shape
    gigabytes = matrix.nbytes / 1e9
    rate = gigabytes * share / seconds
    update_attrs(
        out,
        timings={"seconds": seconds, "gigabytes_per_second": rate, "computed_share": share},
        storage_options=options["storage_options"],
    )
    click.echo(
        f"pairwise: {n_queries:,} x {n_train:,} {options['metric']} matrix ({gigabytes:.2f} GB, {matrix.dtype}, "
        f"blocks of {matrix.chunks[0][0]:,} x {matrix.chunks[1][0]:,}): {seconds:.1f} s, "
        f"{rate:.2f} GB/s{resumed_note(share)}\noutput: {out} (distances)"
    )
