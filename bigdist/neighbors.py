"""scikit-learn style estimators on top of :func:`bigdist.knn`."""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from bigdist.errors import ParameterError
from bigdist.io import as_array, in_memory
from bigdist.io.sparse import sparse_or_dense
from bigdist.knn import check_metric, knn
from bigdist.radius import RadiusResult, radius_neighbors


def metric_kwargs(metric: str, p: float | None, metric_params: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword parameters of ``metric``: ``metric_params``, plus ``p`` for ``minkowski``.

    The other metrics ignore ``p``, as in scikit-learn.
    """
    kwargs = dict(metric_params or {})
    if metric == "minkowski" and p is not None:
        kwargs.setdefault("p", p)
    return kwargs


class NearestNeighbors(BaseEstimator):
    """Exact nearest neighbours of data far bigger than RAM.

    Fitting only records the train set (a lazy dask array); every query is a
    :func:`bigdist.knn` run on the ambient Dask scheduler. NumPy inputs give
    NumPy results; dask, Zarr or ``.npy`` inputs give lazy dask arrays.

    Parameters
    ----------
    n_neighbors : int, default=5
        Neighbours returned by :meth:`kneighbors` when it is not given one.
    radius : float, default=1.0
        Radius of :meth:`radius_neighbors` when it is not given one.
    metric : str, default="euclidean"
        Any metric of :func:`bigdist.knn` (names and aliases of ``bigdist.kernels.registry``).
    p : float, default=2
        Order of the ``minkowski`` metric (ignored by the others, as in scikit-learn).
    metric_params : dict, optional
        Other keyword parameters of the metric.
    split_every : int, optional
        Fan-in of the reduction across train blocks (default from config).

    Attributes
    ----------
    n_features_in_ : int
    n_samples_fit_ : int
    """

    def __init__(
        self,
        n_neighbors: int = 5,
        *,
        radius: float = 1.0,
        metric: str = "euclidean",
        p: float = 2,
        metric_params: dict[str, Any] | None = None,
        split_every: int | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.split_every = split_every

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # scipy.sparse rows are read in CSR blocks (bigdist.io.sparse)
        return tags

    def _metric_params(self) -> dict[str, Any]:
        return metric_kwargs(self.metric, self.p, self.metric_params)

    def fit(self, X: Any, y: Any = None) -> NearestNeighbors:
        """Record the train set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file.
        y : ignored
        """
        check_metric(self.metric, **self._metric_params())
        self._fit_X = sparse_or_dense(X, as_array, name="X", check_finite=self.metric != "nan_euclidean")
        self._fit_in_memory = in_memory(X)
        self.n_samples_fit_, self.n_features_in_ = self._fit_X.shape
        return self

    def kneighbors(self, X: Any = None, n_neighbors: int | None = None, return_distance: bool = True) -> Any:
        """Find the k nearest neighbours of each query row.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            Query rows. None means the train rows themselves, each excluding itself.
        n_neighbors : int, optional
            Defaults to the constructor's ``n_neighbors``.
        return_distance : bool, default=True

        Returns
        -------
        neigh_dist : ndarray or dask array of shape (n_queries, n_neighbors)
            Only when ``return_distance`` is True.
        neigh_ind : ndarray or dask array of shape (n_queries, n_neighbors), int64
        """
        check_is_fitted(self, "_fit_X")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if X is None:
            result = knn(self._fit_X, None, k, self.metric, split_every=self.split_every, **self._metric_params())
            numpy_out = self._fit_in_memory
        else:
            result = knn(X, self._fit_X, k, self.metric, split_every=self.split_every, **self._metric_params())
            numpy_out = in_memory(X) and self._fit_in_memory
        if numpy_out:
            distances, indices = result.compute()
        else:
            distances, indices = result.distances, result.indices
        return (distances, indices) if return_distance else indices

    def kneighbors_graph(
        self, X: Any = None, n_neighbors: int | None = None, mode: str = "connectivity"
    ) -> scipy.sparse.csr_matrix:
        """The k-neighbours graph as a sparse matrix of shape (n_queries, n_samples_fit).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            None means the train rows, each excluding itself.
        n_neighbors : int, optional
        mode : {"connectivity", "distance"}
            Entries are 1 or the distance to the neighbour.
        """
        if mode not in ("connectivity", "distance"):
            raise ParameterError(f"mode must be 'connectivity' or 'distance', got mode={mode!r}")
        distances, indices = self.kneighbors(X, n_neighbors, return_distance=True)
        distances, indices = dask.compute(distances, indices)
        n_queries, k = indices.shape
        data = np.ones(indices.size) if mode == "connectivity" else np.asarray(distances, dtype=np.float64).ravel()
        indptr = np.arange(0, n_queries * k + 1, k)
        return scipy.sparse.csr_matrix((data, indices.ravel(), indptr), shape=(n_queries, self.n_samples_fit_))

    def _radius_result(self, X: Any, radius: float | None, sort_results: bool) -> tuple[RadiusResult, bool]:
        check_is_fitted(self, "_fit_X")
        radius = self.radius if radius is None else radius
        options = {"sort_results": sort_results, "split_every": self.split_every, **self._metric_params()}
        if X is None:
            return radius_neighbors(self._fit_X, None, radius, self.metric, **options), self._fit_in_memory
        result = radius_neighbors(X, self._fit_X, radius, self.metric, **options)
        return result, in_memory(X) and self._fit_in_memory

    def radius_neighbors(
        self, X: Any = None, radius: float | None = None, return_distance: bool = True, sort_results: bool = False
    ) -> Any:
        """Find every train row within ``radius`` of each query row.

        A query with more neighbours than the ``bigdist.radius.max-neighbors``
        config raises :class:`bigdist.errors.TooManyNeighborsError` (see
        :func:`bigdist.radius_neighbors`).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            Query rows. None means the train rows themselves, each excluding itself.
        radius : float, optional
            Defaults to the constructor's ``radius``; distances <= radius count.
        return_distance : bool, default=True
        sort_results : bool, default=False
            Each query's neighbours nearest first; otherwise in increasing train index.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries,) of dtype object, each an array of distances
            Only when ``return_distance`` is True. A dask array of objects for lazy inputs.
        neigh_ind : ndarray of shape (n_queries,) of dtype object, each an int64 array of train rows
        """
        if sort_results and not return_distance:
            raise ParameterError("return_distance must be True if sort_results is True.")
        result, numpy_out = self._radius_result(X, radius, sort_results)
        distances, indices = result.compute() if numpy_out else result.to_dask()
        return (distances, indices) if return_distance else indices

    def radius_neighbors_graph(
        self, X: Any = None, radius: float | None = None, mode: str = "connectivity", sort_results: bool = False
    ) -> scipy.sparse.csr_matrix:
        """The radius-neighbours graph as a sparse matrix of shape (n_queries, n_samples_fit).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            None means the train rows, each excluding itself.
        radius : float, optional
        mode : {"connectivity", "distance"}
            Entries are 1 or the distance to the neighbour.
        sort_results : bool, default=False
            Each row's entries nearest first.
        """
        if mode not in ("connectivity", "distance"):
            raise ParameterError(f"mode must be 'connectivity' or 'distance', got mode={mode!r}")
        result, _ = self._radius_result(X, radius, sort_results)
        indptr, indices, distances = result.to_csr()
        data = np.ones(len(indices)) if mode == "connectivity" else distances.astype(np.float64)
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(result.n_queries, self.n_samples_fit_))
