"""``KNeighborsTransformer``: scikit-learn's kNN-graph transformer on bigdist's exact, out-of-core kNN."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from bigdist.errors import InputShapeError, ParameterError
from bigdist.graphs import MODES, knn_graph
from bigdist.io import as_array, check_int
from bigdist.knn import check_metric, knn
from bigdist.neighbors import metric_kwargs


class KNeighborsTransformer(TransformerMixin, BaseEstimator):
    """The kNN graph of data far bigger than RAM, as ``sklearn.neighbors.KNeighborsTransformer`` gives it.

    For pipelines whose next step takes a precomputed sparse graph:
    ``sklearn.cluster.HDBSCAN(metric="precomputed")``, ``TSNE``, ``Isomap``,
    ``SpectralClustering(affinity="precomputed_nearest_neighbors")``, and
    ``scanpy.pp.neighbors(adata, transformer=KNeighborsTransformer(n_neighbors=15))``.

    Parameters
    ----------
    n_neighbors : int, default=5
        Neighbours of each row. In ``mode="distance"`` each row of the graph
        holds ``n_neighbors + 1`` entries, the extra one for the row itself
        when the queries are the fitted rows (scikit-learn's convention);
        in ``mode="connectivity"``, ``n_neighbors`` entries.
    mode : {"distance", "connectivity"}, default="distance"
        Entries are distances, or 1.0.
    metric : str, default="euclidean"
        Any metric of :func:`bigdist.knn`.
    p : float, default=2
        Order of ``minkowski`` (ignored by the others).
    metric_params : dict, optional
        Other parameters of the metric.
    split_every : int, optional
        Fan-in of the top-k reduction (default from config).

    Attributes
    ----------
    n_features_in_ : int
    n_samples_fit_ : int
    effective_metric_ : str
    effective_metric_params_ : dict
    """

    def __init__(
        self,
        *,
        mode: str = "distance",
        n_neighbors: int = 5,
        metric: str = "euclidean",
        p: float = 2,
        metric_params: dict[str, Any] | None = None,
        split_every: int | None = None,
    ) -> None:
        self.mode = mode
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.split_every = split_every

    def _check_params(self) -> tuple[int, dict[str, Any]]:
        if self.mode not in MODES:
            raise ParameterError(f"mode must be 'connectivity' or 'distance', got mode={self.mode!r}")
        n_neighbors = check_int("n_neighbors", self.n_neighbors)
        params = metric_kwargs(self.metric, self.p, self.metric_params)
        check_metric(self.metric, **params)
        return n_neighbors, params

    def _width(self, n_neighbors: int) -> int:
        return n_neighbors + 1 if self.mode == "distance" else n_neighbors

    def fit(self, X: Any, y: Any = None) -> KNeighborsTransformer:
        """Record the rows to search in.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Anything :func:`bigdist.open_array` opens (NumPy, dask, Zarr, Parquet, HDF5, AnnData, ...).
        y : ignored
        """
        _, params = self._check_params()
        self._fit_X = as_array(X, name="X")
        self.n_samples_fit_, self.n_features_in_ = (int(size) for size in self._fit_X.shape)
        self.effective_metric_ = check_metric(self.metric, **params)
        self.effective_metric_params_ = params
        return self

    def transform(self, X: Any) -> scipy.sparse.csr_matrix:
        """The graph of ``X``'s rows to their nearest fitted rows.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_queries, n_samples_fit)
            ``n_neighbors + 1`` entries per row in ``mode="distance"``, else
            ``n_neighbors``; nearest first, explicit zeros kept.
        """
        check_is_fitted(self, "_fit_X")
        n_neighbors, params = self._check_params()
        queries = as_array(X, name="X")
        if queries.shape[1] != self.n_features_in_:
            # scikit-learn's wording, which its checks and users look for.
            raise InputShapeError(
                f"X has {queries.shape[1]} features, but KNeighborsTransformer is expecting "
                f"{self.n_features_in_} features as input"
            )
        result = knn(
            queries, self._fit_X, self._width(n_neighbors), self.metric, split_every=self.split_every, **params
        )
        return knn_graph(result, mode=self.mode)

    def fit_transform(self, X: Any, y: Any = None) -> scipy.sparse.csr_matrix:
        """Fit on ``X`` and return the graph of ``X`` within itself, each row itself first.

        The same graph as ``fit(X).transform(X)``, computed as a self-join so
        that each row's first entry is the row itself even where exact
        duplicates tie with it (scanpy and UMAP expect that).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_samples, n_samples)
        """
        self.fit(X)
        n_neighbors, params = self._check_params()
        others = self._width(n_neighbors) - 1
        if others == 0:
            n_rows = self.n_samples_fit_
            return scipy.sparse.csr_matrix(
                (np.ones(n_rows), np.arange(n_rows), np.arange(n_rows + 1)), shape=(n_rows, n_rows)
            )
        result = knn(self._fit_X, None, others, self.metric, split_every=self.split_every, **params)
        return knn_graph(result, mode=self.mode, include_self=True)
