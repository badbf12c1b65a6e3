"""``bigdist classify``: a vote of the k nearest train rows, written to a Zarr group."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from bigdist.cli.options import (
    input_of,
    metric_params,
    planned,
    require,
    resumed_note,
    run_attrs,
    run_options,
    runtime_client,
    started,
)
from bigdist.kernels.registry import get_metric, metric_names


@click.command()
@click.option("--train", type=str, required=False, help="Zarr, .npy, Parquet, HDF5 or AnnData: train rows.")
@click.option("--labels", type=str, required=False, help="Zarr array or .npy of class labels, one per train row.")
@click.option("--queries", type=str, default=None, help="Rows to classify, read as --train; omit to classify --train.")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours that vote.")
@click.option("--weights", type=click.Choice(["uniform", "distance"]), default="uniform", show_default=True)
@click.option("--metric", type=click.Choice(metric_names()), default="euclidean", show_default=True)
@click.option("--p", type=float, default=None, help="Order of the minkowski metric (p > 0; default 2).")
@click.option("--proba/--no-proba", default=True, show_default=True, help="Also write the class probabilities.")
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the tree reductions.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (predictions, probabilities).")
@run_options()
def classify(generate: Any = None, **options: Any) -> None:
    """Predict the class of every query row by a vote of its k nearest train rows, written to a Zarr group.

    Omitting --queries classifies the train rows themselves, each without its own vote.
    """
    import bigdist
    from bigdist.io import update_attrs

    require(options, "train", "labels", "out")
    get_metric(options["metric"], **metric_params(options))  # a bad parameter fails before any cluster starts
    with runtime_client(options) as client:
        started(client, generate, {"train": options["train"], "queries": options["queries"]})
        out = os.path.expanduser(options["out"])
        model = bigdist.KNeighborsClassifier(
            options["k"],
            weights=options["weights"],
            metric=options["metric"],
            p=options["p"],
            split_every=options["split_every"],
        ).fit(input_of(options, "train"), os.path.expanduser(options["labels"]))
        queries = input_of(options, "queries") if options["queries"] else None
        job = {"k": options["k"], "metric": options["metric"], "proba": options["proba"], **metric_params(options)}
        n_classes = sum(len(classes) for classes in (model.classes_ if model.outputs_2d_ else [model.classes_]))
        # Classifying the train rows themselves plans as the self-join of --train.
        train = input_of(options, "train")
        planned_inputs = (train,) if queries is None else (queries, train)
        if planned(options, "classify", *planned_inputs, n_classes=n_classes, **job):
            return
        blocks: dict[str, int] = {}

        def count_blocks(done: int, total: int, elapsed: float) -> None:
            # The first written block tells how many an earlier run had written: rates are over the rest.
            blocks.setdefault("before", done - 1)
            blocks["total"] = total

        start = time.perf_counter()
        # Waves on the client's cluster: one kNN pass for predictions and probabilities, progress in the log.
        model.write_predictions(
            out,
            queries,
            proba=options["proba"],
            overwrite=options["overwrite"],
            attrs={"run": run_attrs(options)},
            progress=count_blocks,
            storage_options=options["storage_options"],
        )
        seconds = time.perf_counter() - start
        share = 1.0 - blocks["before"] / blocks["total"] if blocks else 0.0
    stored = bigdist.io.describe(out, options["storage_options"])["arrays"]
    n_queries = stored["predictions"]["shape"][0]
    rate = n_queries * share / seconds
    update_attrs(
        out,
        timings={"seconds": seconds, "queries_per_second": rate, "computed_share": share},
        storage_options=options["storage_options"],
    )
    click.echo(
        f"classify: {n_queries:,} queries x {model.n_samples_fit_:,} train rows, k={options['k']}, "
        f"{options['weights']} weights, {options['metric']}: {seconds:.1f} s, {rate:,.0f} queries/s"
        f"{resumed_note(share)}\noutput: {out} ({', '.join(sorted(stored))})"
    )
