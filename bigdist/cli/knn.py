"""``bigdist knn``: exact k nearest neighbours written to a Zarr group."""

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
    "--queries", type=str, default=None, help="Query rows, read as --train; omit for the self-join of --train."
)
@click.option("--train", type=str, required=False, help="Zarr, .npy, Parquet, HDF5 or AnnData: train rows.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--metric", type=click.Choice(metric_names()), default="euclidean", show_default=True)
@click.option("--p", type=float, default=None, help="Order of the minkowski metric (p > 0; default 2).")
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the top-k tree reduction.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (distances, indices).")
@run_options()
def knn(generate: Any = None, **options: Any) -> None:
    """Exact k nearest neighbours of every query row, written to a Zarr group."""
    import bigdist
    from bigdist.io import update_attrs

    require(options, "train", "out")
    get_metric(options["metric"], **metric_params(options))  # a bad parameter fails before any cluster starts
    with runtime_client(options) as client:
        started(client, generate, {"train": options["train"], "queries": options["queries"]})
        out = os.path.expanduser(options["out"])
        job = {"k": options["k"], "metric": options["metric"], **metric_params(options)}
        if planned(options, "knn", *queries_and_train(options), **job):
            return
        result = bigdist.knn(
            *queries_and_train(options),
            k=options["k"],
            metric=options["metric"],
            split_every=options["split_every"],
            **metric_params(options),
        )
        blocks: dict[str, int] = {}

        def count_blocks(done: int, total: int, elapsed: float) -> None:
            # The first written block tells how many an earlier run had written: rates are over the rest.
            blocks.setdefault("before", done - 1)
            blocks["total"] = total

        start = time.perf_counter()
        # Waves on the client's cluster: progress goes to the log every few seconds.
        result.to_zarr(
            out,
            overwrite=options["overwrite"],
            attrs={"run": run_attrs(options)},
            progress=count_blocks,
            storage_options=options["storage_options"],
        )
        seconds = time.perf_counter() - start
        share = 1.0 - blocks["before"] / blocks["total"] if blocks else 0.0
    rate = result.n_queries * share / seconds
    timings = {"seconds": seconds, "queries_per_second": rate, "computed_share": share}
    if get_metric(result.metric).gemm:  # the direct metrics run no GEMM, so no GFLOP/s
        timings["gflops"] = result.flops * share / seconds / 1e9
    update_attrs(out, timings=timings, storage_options=options["storage_options"])
    click.echo(
        f"knn: {result.n_queries:,} queries x {result.n_train:,} train rows x {result.n_features} features, "
        f"k={result.k}, {result.metric}: {seconds:.1f} s, {rate:,.0f} queries/s, "
        f"{_knn_rate(result, share, seconds)}{resumed_note(share)}\noutput: {out} (distances, indices)"
    )


def _knn_rate(result: Any, share: float, seconds: float) -> str:
    """GFLOP/s for the GEMM family (the direct metrics have no GEMM: pairs per second), over ``share`` of the work."""
    if get_metric(result.metric).gemm:
        return f"{result.flops * share / seconds / 1e9:.1f} GFLOP/s"
    return f"{result.n_queries * result.n_train * share / seconds / 1e6:,.0f} million pairs/s"
