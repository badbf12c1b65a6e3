"""``bigdist export``: a stored kNN graph as a SciPy CSR file, UMAP's precomputed kNN, or scanpy's neighbours."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import click

from bigdist.cli.options import setup_logging
from bigdist.errors import BigdistError, OutputExistsError, ParameterError

FORMATS = ("csr", "umap", "anndata")


@click.command()
@click.argument("graph", type=str)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="csr: scipy.sparse .npz (scikit-learn's kneighbors_graph); umap: .npz of knn_indices, knn_dists (self "
    "first); anndata: obsp/uns of an existing .h5ad or AnnData .zarr, as scanpy.pp.neighbors writes them.",
)
@click.option("--out", type=str, required=True, help="The .npz to write, or the AnnData store to write into.")
@click.option(
    "--mode",
    type=click.Choice(("distance", "connectivity")),
    default="distance",
    show_default=True,
    help="csr: entries are distances or 1.0.",
)
@click.option("--include-self", is_flag=True, default=False, help="csr of a self-join: each row itself first.")
@click.option("--symmetric", is_flag=True, default=False, help="csr of a self-join: each edge both ways (for HDBSCAN).")
@click.option("--key-added", default=None, help="anndata: obsp[KEY_distances], uns[KEY] instead of 'neighbors'.")
@click.option("--use-rep", default=None, help="anndata: the representation the kNN ran on (e.g. X_pca), recorded.")
@click.option("--overwrite", is_flag=True, default=False, help="Replace an existing output (or AnnData entries).")
@click.option("-v", "--verbose", count=True, help="More logging (-vv: debug, tracebacks).")
def export(graph: str, fmt: str, out: str, verbose: int, **options: Any) -> None:
    """Export the kNN group GRAPH (written by bigdist knn --out) for scikit-learn, UMAP, HDBSCAN or scanpy.

    \b
    bigdist export nn.zarr --format csr --out graph.npz       # scipy.sparse.load_npz
    bigdist export nn.zarr --format umap --out knn.npz        # UMAP(precomputed_knn=...)
    bigdist export nn.zarr --format anndata --out cells.h5ad  # then sc.tl.umap
    """
    setup_logging(verbose)
    try:
        summary = _export(os.path.expanduser(graph), fmt, os.path.expanduser(out), **options)
    except BigdistError as error:
        if verbose >= 2:
            raise
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(summary)


def _export(graph: str, fmt: str, out: str, **options: Any) -> str:
    import numpy as np
    import scipy.sparse

    import bigdist

    if fmt == "anndata":
        bigdist.write_anndata_neighbors(
            out, graph, key_added=options["key_added"], use_rep=options["use_rep"], overwrite=options["overwrite"]
        )
        key = options["key_added"] or "neighbors"
        return f"export: {graph} -> {out} (obsp distances and connectivities, uns[{key!r}])"
    if not out.endswith(".npz"):
        raise ParameterError(f"--out {out!r}: the {fmt} format writes a NumPy .npz file; give a path ending in .npz")
    if os.path.exists(out) and not options["overwrite"]:
        raise OutputExistsError(f"{out!r} exists; pass --overwrite to replace it, or choose another output path")
    if fmt == "csr":
        matrix = bigdist.read_knn_graph(
            graph, mode=options["mode"], include_self=options["include_self"], symmetric=options["symmetric"]
        )
        what = f"{matrix.shape[0]:,} x {matrix.shape[1]:,} CSR, {matrix.nnz:,} entries ({options['mode']})"
        _atomic(out, lambda f: scipy.sparse.save_npz(f, matrix))
    else:
        indices, distances = bigdist.umap_knn(graph)
        what = f"knn_indices and knn_dists of shape {indices.shape}, each row itself first"
        _atomic(out, lambda f: np.savez(f, knn_indices=indices, knn_dists=distances))
    return f"export: {graph} -> {out} ({what})"


def _atomic(out: str, write: Any) -> None:
    """Write to a temporary file beside ``out``, then rename: a half-written file never has ``out``'s name."""
    folder = os.path.dirname(os.path.abspath(out))
    handle, temporary = tempfile.mkstemp(prefix=".bigdist-export-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(temporary, out)
    except BaseException:
        os.unlink(temporary)
        raise
