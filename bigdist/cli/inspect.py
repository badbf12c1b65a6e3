"""``bigdist info`` and ``bigdist verify``: what a store holds, and whether every chunk reads back."""

from __future__ import annotations

import os
import sys

import click
import yaml

from bigdist.cli.options import setup_logging
from bigdist.errors import BigdistError


@click.command()
@click.argument("path", type=str)
@click.option("-v", "--verbose", count=True)
def info(path: str, verbose: int) -> None:
    """Describe a Zarr array or a bigdist output group."""
    from bigdist.io import describe

    setup_logging(verbose)
    try:
        click.echo(yaml.safe_dump(describe(path), sort_keys=False, default_flow_style=None).rstrip())
    except BigdistError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


@click.command()
@click.argument("path", type=str)
@click.option("-v", "--verbose", count=True)
def verify(path: str, verbose: int) -> None:
    """Read every chunk of a Zarr array or group; list missing and damaged chunks (exit 1 if any)."""
    from bigdist.io.integrity import verify as verify_store

    setup_logging(verbose)
    try:
        report = verify_store(os.path.expanduser(path))
    except FileNotFoundError:
        click.echo(f"error: no Zarr array or group at {path!r}; check the path", err=True)
        sys.exit(1)
    for problem in report["problems"]:
        click.echo(f"error: {problem}", err=True)
    click.echo(
        f"{path}: {report['chunks']} chunk files in {report['arrays']} array(s) read, "
        f"{report['missing']} missing, {report['damaged']} damaged"
    )
    if not report["ok"]:
        sys.exit(1)
