"""``bigdist generate``: synthetic data written to Zarr block by block."""

from __future__ import annotations

import time
from typing import Any

import click

from bigdist.cli.options import generate_data, require, run_options, runtime_client, wait


@click.command()
@click.argument("kind", type=click.Choice(["blobs", "random"]))
@click.option("--n-samples", type=click.IntRange(min=1), required=False)
@click.option("--n-features", type=click.IntRange(min=1), required=False)
@click.option("--centers", type=click.IntRange(min=1), default=8, show_default=True, help="blobs: number of centres.")
@click.option("--cluster-std", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option(
    "--center-box", type=(float, float), default=(-10.0, 10.0), show_default=True, help="blobs: box of the centres."
)
@click.option(
    "--distribution",
    type=click.Choice(["normal", "uniform"]),
    default="normal",
    show_default=True,
    help="random: the distribution.",
)
@click.option("--random-state", type=int, default=0, show_default=True, help="Seed (of the centres, for blobs).")
@click.option(
    "--sample-seed", type=int, default=None, help="blobs: seed of the points (another set around the same centres)."
)
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None, help="Rows per stored chunk.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--out", type=click.Path(), required=False, help="Zarr array to write.")
@run_options(generate_section=False, planning=False, remote=False)
def generate(**options: Any) -> None:
    """Write synthetic data to a Zarr array, block by block (any size)."""
    require(options, "n_samples", "n_features", "out")
    with runtime_client(options) as client:
        start = time.perf_counter()
        wait(client, generate_data(options["kind"], options["out"], options, overwrite=options["overwrite"]))
    click.echo(
        f"generated {options['n_samples']:,} x {options['n_features']} {options['kind']} at {options['out']} "
        f"in {time.perf_counter() - start:.1f} s"
    )
