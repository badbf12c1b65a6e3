"""kNN graphs for the tools downstream: scikit-learn, scanpy / AnnData, UMAP and HDBSCAN.

A kNN result (a :class:`bigdist.KNNResult` or the Zarr group its
``to_zarr`` wrote) becomes

- a SciPy CSR matrix in scikit-learn's ``kneighbors_graph`` convention
  (:func:`knn_graph`, :func:`kneighbors_graph`; read block by block from a
  stored group with :func:`read_knn_graph` and :func:`iter_knn_graph`),
  which ``sklearn.cluster.HDBSCAN(metric="precomputed")`` takes;
- UMAP's ``(knn_indices, knn_dists)`` with each row itself first
  (:func:`umap_knn`), for ``umap.UMAP(precomputed_knn=...)``;
- scanpy's ``obsp["distances"]``, ``obsp["connectivities"]`` and
  ``uns["neighbors"]`` written into an ``.h5ad`` or AnnData ``.zarr`` store
  (:func:`write_anndata_neighbors`), the connectivities computed the way
  scanpy's ``method="umap"`` does (:func:`umap_connectivities`).

Each graph has a row per query and a column per train row; UMAP and AnnData
outputs need the self-join (``bd.knn(X, None, k)``), whose neighbours exclude
each row itself, so ``k`` neighbours plus the row itself make scanpy's and
UMAP's ``n_neighbors = k + 1``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse
import zarr

from bigdist.errors import InputShapeError, OutputExistsError, ParameterError, StoreNotFoundError
from bigdist.io import as_array, check_int
from bigdist.io.formats import require
from bigdist.io.store import normalise_path, read_group
from bigdist.kernels.graphs import membership_strengths, smooth_knn_dist
from bigdist.knn import KNNResult, knn
from bigdist.resources import compute

logger = logging.getLogger(__name__)

MODES = ("connectivity", "distance")


@dataclass
class _Graph:
    """The arrays and facts of a kNN result, however it was given."""

    distances: da.Array
    indices: da.Array
    n_train: int | None
    self_join: bool
    metric: str
    label: str


def _check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ParameterError(f"mode must be 'connectivity' or 'distance', got mode={mode!r}")
    return str(mode)


def _as_graph(graph: Any, n_train: int | None = None) -> _Graph:
    """A KNNResult or the path of a group written by ``KNNResult.to_zarr``."""
    if isinstance(graph, KNNResult):
        return _Graph(graph.distances, graph.indices, graph.n_train, graph.self_join, graph.metric, "the kNN result")
    if not isinstance(graph, (str, os.PathLike)):
        raise ParameterError(
            f"expected a bigdist.KNNResult or the path of a group written by KNNResult.to_zarr, got {type(graph)}"
        )
    path = normalise_path(graph)
    arrays = read_group(path)
    if not {"distances", "indices"} <= set(arrays):
        raise InputShapeError(
            f"{path!r} holds {', '.join(sorted(arrays)) or 'no arrays'}, not a kNN graph (arrays 'distances' and "
            f"'indices', as bigdist knn --out or KNNResult.to_zarr write them)"
        )
    params = dict(zarr.open_group(path, mode="r").attrs).get("knn") or {}
    self_join = bool(params.get("self_join", False))
    stored = params.get("n_train")
    n_rows = arrays["indices"].shape[0]
    return _Graph(
        arrays["distances"],
        arrays["indices"],
        int(stored) if stored is not None else (n_rows if self_join else n_train),
        self_join,
        str(params.get("metric", "euclidean")),
        repr(path),
    )


def _n_columns(graph: _Graph, n_train: int | None) -> int:
    if n_train is not None:
        return int(n_train)
    if graph.n_train is None:
        raise ParameterError(
            f"{graph.label} does not record how many train rows it was searched in; pass n_train= "
            f"(the number of columns of the graph)"
        )
    return graph.n_train


def _need_self_join(graph: _Graph, what: str) -> None:
    if not graph.self_join:
        raise ParameterError(
            f"{what} needs the neighbours of a set within itself, and {graph.label} holds queries against a "
            f"separate train set; compute the self-join, bd.knn(X, None, k) or bigdist knn --train X (no --queries)"
        )


def _csr(
    distances: np.ndarray, indices: np.ndarray, *, start: int, n_columns: int, mode: str, include_self: bool
) -> scipy.sparse.csr_matrix:
    """CSR of rows ``start...`` of a kNN result, neighbours in their order, optionally each row itself first."""
    n_rows, k = indices.shape
    if include_self:
        own = np.arange(start, start + n_rows, dtype=indices.dtype)[:, None]
        indices = np.hstack([own, indices])
        distances = np.hstack([np.zeros((n_rows, 1), dtype=distances.dtype), distances])
        k += 1
    # Explicit zeros (the row itself, exact duplicates) are kept, as scikit-learn keeps them.
    data = np.ones(n_rows * k) if mode == "connectivity" else np.ascontiguousarray(distances).ravel()
    indptr = np.arange(0, n_rows * k + 1, k, dtype=np.int64)
    return scipy.sparse.csr_matrix((data, np.ascontiguousarray(indices).ravel(), indptr), shape=(n_rows, n_columns))


def _symmetric(matrix: scipy.sparse.csr_matrix, graph: _Graph) -> scipy.sparse.csr_matrix:
    """Each edge in both directions, as HDBSCAN(metric="precomputed") requires of a sparse graph."""
    _need_self_join(graph, "symmetric=True")
    # Where both directions exist the two distances are the same pair's; an edge at distance 0 is
    # dropped by the maximum, as in scikit-learn's sparse maximum.
    return matrix.maximum(matrix.T).tocsr()


def knn_graph(
    graph: Any,
    *,
    mode: str = "connectivity",
    include_self: bool = False,
    symmetric: bool = False,
    n_train: int | None = None,
) -> scipy.sparse.csr_matrix:
    """A kNN result as a sparse matrix, scikit-learn's ``kneighbors_graph`` convention.

    Parameters
    ----------
    graph : KNNResult or str or PathLike
        A result of :func:`bigdist.knn`, or the path/URL of the group its
        ``to_zarr`` (or ``bigdist knn --out``) wrote.
    mode : {"connectivity", "distance"}
        Entries 1.0, or the distances (the result's dtype; inner products
        for ``metric="inner_product"``).
    include_self : bool
        For a self-join: each row itself first (at distance 0), as
        ``sklearn.neighbors.kneighbors_graph(..., include_self=True)``
        counts it (k + 1 entries per row).
    symmetric : bool
        For a self-join: each edge in both directions (``G.maximum(G.T)``),
        which ``sklearn.cluster.HDBSCAN(metric="precomputed")`` requires;
        rows then hold k or more entries, in column order, and edges at
        distance 0 (exact duplicates) are dropped.
    n_train : int, optional
        Columns of the matrix, for a stored group that does not record it.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_queries, n_train)
        Each row's entries in neighbour order, nearest first; explicit zeros kept.
    """
    mode = _check_mode(mode)
    resolved = _as_graph(graph, n_train)
    if include_self:
        _need_self_join(resolved, "include_self=True")
    distances, indices = compute(resolved.distances, resolved.indices)
    matrix = _csr(
        distances, indices, start=0, n_columns=_n_columns(resolved, n_train), mode=mode, include_self=include_self
    )
    return _symmetric(matrix, resolved) if symmetric else matrix


def kneighbors_graph(
    X: Any,
    n_neighbors: int,
    *,
    mode: str = "connectivity",
    metric: str = "euclidean",
    include_self: bool = False,
    symmetric: bool = False,
    split_every: int | None = None,
    **params: Any,
) -> scipy.sparse.csr_matrix:
    """The kNN graph of ``X`` within itself, as ``sklearn.neighbors.kneighbors_graph`` computes it, exactly.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Anything :func:`bigdist.open_array` opens.
    n_neighbors : int
        Entries per row, the row itself included when ``include_self``.
    mode : {"connectivity", "distance"}
    metric : str
        Any metric of :func:`bigdist.knn`.
    include_self : bool
        Whether each row is its own first neighbour (at distance 0).
    symmetric : bool
        Each edge in both directions, as :func:`knn_graph`.
    split_every : int, optional
        Fan-in of the top-k reduction.
    **params
        Parameters of the metric (``p`` for ``minkowski``).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_samples, n_samples)
    """
    _check_mode(mode)
    if include_self and n_neighbors == 1 and not symmetric:
        # Only the row itself: no search.
        n_rows = int(as_array(X, name="X", check_finite=False).shape[0])
        empty = np.empty((n_rows, 0))
        return _csr(empty, empty.astype(np.int64), start=0, n_columns=n_rows, mode=mode, include_self=True)
    k = check_int("n_neighbors", n_neighbors) - (1 if include_self else 0)
    result = knn(X, None, k, metric, split_every=split_every, **params)
    return knn_graph(result, mode=mode, include_self=include_self, symmetric=symmetric)


def iter_knn_graph(
    graph: Any,
    *,
    mode: str = "distance",
    include_self: bool = False,
    block_rows: int | None = None,
    n_train: int | None = None,
) -> Iterator[tuple[int, scipy.sparse.csr_matrix]]:
    """The rows of a kNN graph as CSR blocks, one block of rows in memory at a time.

    Parameters
    ----------
    graph : KNNResult or str or PathLike
        As :func:`knn_graph`; a stored group is read one block of rows at a time.
    mode, include_self, n_train
        As :func:`knn_graph`.
    block_rows : int, optional
        Rows per block (default: the stored chunks of ``indices``).

    Yields
    ------
    start : int
        Global row of the block's first row.
    block : scipy.sparse.csr_matrix of shape (rows, n_train)
    """
    mode = _check_mode(mode)
    resolved = _as_graph(graph, n_train)
    if include_self:
        _need_self_join(resolved, "include_self=True")
    n_columns = _n_columns(resolved, n_train)
    n_rows = resolved.indices.shape[0]
    bounds = np.cumsum((0, *resolved.indices.chunks[0])) if block_rows is None else None
    starts = list(bounds[:-1]) if bounds is not None else list(range(0, n_rows, int(block_rows)))
    for position, start in enumerate(starts):
        stop = int(bounds[position + 1]) if bounds is not None else min(n_rows, start + int(block_rows))
        distances, indices = compute(resolved.distances[start:stop], resolved.indices[start:stop])
        yield (
            int(start),
            _csr(distances, indices, start=int(start), n_columns=n_columns, mode=mode, include_self=include_self),
        )


def read_knn_graph(
    path: str | os.PathLike[str],
    *,
    mode: str = "distance",
    include_self: bool = False,
    symmetric: bool = False,
    rows: slice | None = None,
    n_train: int | None = None,
) -> scipy.sparse.csr_matrix:
    """Read a stored kNN group (``KNNResult.to_zarr``, ``bigdist knn --out``) as a CSR matrix.

    Only the chunks of the rows asked for are read; the CSR is assembled from
    one block of rows at a time, never from the whole dense (n, k) arrays.

    Parameters
    ----------
    path : str or PathLike
        Local path or fsspec URL of the group.
    mode : {"connectivity", "distance"}
    include_self : bool
        For a self-join, each row itself first at distance 0 (k + 1 entries per row).
    symmetric : bool
        Each edge in both directions, as :func:`knn_graph` (all rows only).
    rows : slice, optional
        Rows to read (default all); the matrix has one row per row read.
    n_train : int, optional
        Columns, for a group that does not record it (results of queries
        against a train set written by older versions).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (rows, n_train)
    """
    mode = _check_mode(mode)
    resolved = _as_graph(path, n_train)
    n_rows = resolved.indices.shape[0]
    start, stop, step = (rows or slice(None)).indices(n_rows)
    if step != 1:
        raise ParameterError(f"rows must be a slice with step 1, got rows={rows!r}")
    n_columns = _n_columns(resolved, n_train)
    if include_self:
        _need_self_join(resolved, "include_self=True")
    if symmetric and (start, stop) != (0, n_rows):
        raise ParameterError(f"symmetric=True needs every row of the graph, got rows={rows!r}")
    sub = _Graph(
        resolved.distances[start:stop],
        resolved.indices[start:stop],
        n_columns,
        resolved.self_join,
        resolved.metric,
        resolved.label,
    )
    blocks = []
    offset = start
    for size in sub.indices.chunks[0]:
        local = offset - start
        distances, indices = compute(sub.distances[local : local + size], sub.indices[local : local + size])
        blocks.append(_csr(distances, indices, start=offset, n_columns=n_columns, mode=mode, include_self=include_self))
        offset += size
    if not blocks:
        return scipy.sparse.csr_matrix((0, n_columns))
    matrix = scipy.sparse.vstack(blocks, format="csr")
    return _symmetric(matrix, resolved) if symmetric else matrix


def umap_knn(graph: Any) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's precomputed kNN: each row itself first, then its neighbours.

    Parameters
    ----------
    graph : KNNResult or str or PathLike
        A self-join (``bd.knn(X, None, k)``) or the group it wrote.

    Returns
    -------
    knn_indices : ndarray of shape (n_samples, k + 1), int64
    knn_dists : ndarray of shape (n_samples, k + 1)
        For ``umap.UMAP(n_neighbors=k + 1, precomputed_knn=(knn_indices, knn_dists))``.
    """
    resolved = _as_graph(graph)
    _need_self_join(resolved, "UMAP's precomputed_knn")
    _need_distance(resolved, "UMAP's precomputed_knn")
    distances, indices = compute(resolved.distances, resolved.indices)
    n_rows = len(indices)
    indices = np.hstack([np.arange(n_rows, dtype=np.int64)[:, None], indices.astype(np.int64, copy=False)])
    distances = np.hstack([np.zeros((n_rows, 1), dtype=distances.dtype), distances])
    return indices, distances


def _need_distance(graph: _Graph, what: str) -> None:
    if graph.metric == "inner_product":
        raise ParameterError(
            f"{what} needs distances (smaller is nearer), and {graph.label} holds inner products; use "
            f"metric='cosine' (or normalise the rows and use 'euclidean')"
        )


def umap_connectivities(
    knn_indices: np.ndarray,
    knn_dists: np.ndarray,
    *,
    n_neighbors: int | None = None,
    set_op_mix_ratio: float = 1.0,
    local_connectivity: float = 1.0,
) -> scipy.sparse.csr_matrix:
    """UMAP's fuzzy simplicial set of a kNN graph: scanpy's ``obsp["connectivities"]`` for ``method="umap"``.

    Parameters
    ----------
    knn_indices : ndarray of shape (n_samples, n_neighbors), int
        Each row itself first (as :func:`umap_knn` gives).
    knn_dists : ndarray of shape (n_samples, n_neighbors)
    n_neighbors : int, optional
        The memberships of each row sum to ``log2(n_neighbors)``; default ``knn_indices.shape[1]``.
    set_op_mix_ratio : float
        1 for the fuzzy union of the two directions of each edge, 0 for their intersection.
    local_connectivity : float
        Nearest neighbours counted as fully connected.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_samples, n_samples), float32, symmetric
    """
    knn_indices = np.asarray(knn_indices)
    n_rows, width = knn_indices.shape
    sigmas, rhos = smooth_knn_dist(knn_dists, float(n_neighbors or width), local_connectivity=float(local_connectivity))
    values = membership_strengths(knn_indices, knn_dists, sigmas, rhos)
    rows = np.repeat(np.arange(n_rows), width)
    directed = scipy.sparse.coo_matrix((values.ravel(), (rows, knn_indices.ravel())), shape=(n_rows, n_rows)).tocsr()
    directed.eliminate_zeros()
    transpose = directed.T.tocsr()
    both = directed.multiply(transpose)
    union = directed + transpose - both
    result = (set_op_mix_ratio * union + (1.0 - set_op_mix_ratio) * both).tocsr().astype(np.float32)
    result.eliminate_zeros()
    return result


def _anndata_n_obs(handle: Any) -> int:
    obs = handle["obs"]
    index = obs.attrs.get("_index", "_index")
    return int(obs[index].shape[0])


def write_anndata_neighbors(
    store: str | os.PathLike[str],
    graph: Any,
    *,
    key_added: str | None = None,
    use_rep: str | None = None,
    random_state: int = 0,
    overwrite: bool = False,
) -> None:
    """Write a self-join's kNN graph into an AnnData store the way ``scanpy.pp.neighbors`` does.

    Writes ``obsp["distances"]`` (each row's k neighbours, itself excluded),
    ``obsp["connectivities"]`` (UMAP's fuzzy simplicial set, scanpy's
    ``method="umap"``) and ``uns["neighbors"]`` (keys and parameters, with
    ``n_neighbors = k + 1`` as scanpy counts the row itself), so that
    ``sc.tl.umap``, ``sc.tl.leiden`` and the like use them. Only those
    entries are touched; ``X`` and the rest of the store are not read.

    Parameters
    ----------
    store : str or PathLike
        An ``.h5ad`` file or an AnnData ``.zarr`` store whose ``n_obs`` rows
        are the rows the kNN was computed on, in order.
    graph : KNNResult or str or PathLike
        A self-join (``bd.knn(X, None, k)``) or the group it wrote.
    key_added : str, optional
        As scanpy's: ``obsp[key_added + "_distances"]``, ``uns[key_added]``.
    use_rep : str, optional
        The representation the kNN was computed on (e.g. ``"X_pca"``),
        recorded in ``uns["neighbors"]["params"]`` as scanpy does; ``sc.tl.umap``
        initialises from it.
    random_state : int
        Recorded as scanpy records it (the kNN is exact, so nothing random).
    overwrite : bool
        Replace entries of those names already in the store (otherwise OutputExistsError).
    """
    anndata_io = require("anndata", "writing into an AnnData store")
    write_elem = anndata_io.io.write_elem if hasattr(anndata_io, "io") else anndata_io.experimental.write_elem
    resolved = _as_graph(graph)
    _need_self_join(resolved, "an AnnData neighbours graph")
    _need_distance(resolved, "scanpy's connectivities")
    text = os.path.expanduser(os.fspath(store))
    knn_indices, knn_dists = umap_knn(graph)
    n_neighbors = knn_indices.shape[1]
    n_rows = len(knn_indices)
    distances = _csr(
        knn_dists[:, 1:], knn_indices[:, 1:], start=0, n_columns=n_rows, mode="distance", include_self=False
    )
    connectivities = umap_connectivities(knn_indices, knn_dists, n_neighbors=n_neighbors)
    params: dict[str, Any] = {
        "n_neighbors": n_neighbors,
        "method": "umap",
        "random_state": random_state,
        "metric": resolved.metric,
    }
    if use_rep is not None:
        params["use_rep"] = use_rep
    prefix = f"{key_added}_" if key_added else ""
    entry = {"connectivities_key": f"{prefix}connectivities", "distances_key": f"{prefix}distances", "params": params}
    with _open_anndata(text) as handle:
        n_obs = _anndata_n_obs(handle)
        if n_obs != n_rows:
            raise InputShapeError(
                f"the AnnData store {text!r} has {n_obs} observations and the kNN graph {n_rows} rows; write the "
                f"graph of that store's own rows (e.g. bd.knn('{text}#obsm/X_pca', None, k))"
            )
        obsp = handle.require_group("obsp")
        uns = handle.require_group("uns")
        writes = (
            (obsp, entry["distances_key"], distances),
            (obsp, entry["connectivities_key"], connectivities),
            (uns, key_added or "neighbors", entry),
        )
        present = [f"{group.name.strip('/')}/{name}" for group, name, _ in writes if name in group]
        if present and not overwrite:
            raise OutputExistsError(
                f"the AnnData store {text!r} already holds {', '.join(present)}; pass overwrite=True (--overwrite) "
                f"to replace them, or key_added= (--key-added) to write beside them"
            )
        for group, name, value in writes:
            if name in group:
                del group[name]
            write_elem(group, name, value)
    logger.info(
        "wrote obsp[%r], obsp[%r] and uns[%r] into %s", *list(entry.values())[:2], key_added or "neighbors", text
    )


@contextlib.contextmanager
def _open_anndata(path: str) -> Iterator[Any]:
    """An AnnData store opened for writing: zarr for a directory or URL, h5py for an .h5ad file."""
    consolidated = False
    if os.path.isdir(path) or "://" in path:
        try:
            consolidated = zarr.open_group(path, mode="r").metadata.consolidated_metadata is not None
            # anndata refuses to edit through consolidated metadata; it is made again after the writes.
            handle = zarr.open_group(path, mode="r+", use_consolidated=False)
        except FileNotFoundError:
            raise StoreNotFoundError(f"no AnnData store at {path!r}; check the path") from None
    else:
        h5py = require("h5py", "writing into an .h5ad file")
        if not os.path.isfile(path):
            raise StoreNotFoundError(f"no AnnData file at {path!r}; check the path")
        handle = h5py.File(path, "r+")
    try:
        if dict(handle.attrs).get("encoding-type") != "anndata":
            raise InputShapeError(
                f"{path!r} is not an AnnData store (no encoding-type 'anndata'); write it with "
                f"adata.write_h5ad or adata.write_zarr first"
            )
        yield handle
        if consolidated:
            zarr.consolidate_metadata(handle.store)
    finally:
        if hasattr(handle, "close"):
            handle.close()


__all__ = [
    "iter_knn_graph",
    "kneighbors_graph",
    "knn_graph",
    "read_knn_graph",
    "umap_connectivities",
    "umap_knn",
    "write_anndata_neighbors",
]
