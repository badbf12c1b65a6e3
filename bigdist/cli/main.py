"""The ``bigdist`` command line: parse, start the runtime, call the API, report.

One module per command (``bigdist.cli.knn``, ...) over the shared helpers of ``bigdist.cli.options``.
"""

from __future__ import annotations

import click

from bigdist.cli.classify import classify
from bigdist.cli.export import export
from bigdist.cli.generate import generate
from bigdist.cli.inspect import info, verify
from bigdist.cli.kmeans import kmeans
from bigdist.cli.knn import knn
from bigdist.cli.meanshift import meanshift
from bigdist.cli.pairwise import pairwise
from bigdist.cli.radius import radius


@click.group()
@click.version_option(package_name="bigdist")
def main() -> None:
    """Exact nearest neighbours over matrices far bigger than RAM, on Dask and Zarr."""


for command in (generate, knn, kmeans, classify, radius, meanshift, info, pairwise, verify, export):
    main.add_command(command)
