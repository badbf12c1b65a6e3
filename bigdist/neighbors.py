"""scikit-learn style estimators on top of :func:`bigdist.knn`."""

from __future__ import annotations

import os
import warnings
from numbers import Integral, Real
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator
from sklearn.metrics import DistanceMetric
from sklearn.neighbors import VALID_METRICS, BallTree, KDTree
from sklearn.neighbors._base import KNeighborsMixin, RadiusNeighborsMixin
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted

from bigdist.errors import EstimatorParameterError, ParameterError
from bigdist.io import as_array, in_memory
from bigdist.io.sparse import sparse_or_dense
from bigdist.kernels.topk import drop_columns, own_columns
from bigdist.knn import check_metric, knn
from bigdist.precomputed import check_graph_format
from bigdist.radius import RadiusResult, radius_neighbors
from bigdist.resources import compute

ALGORITHMS = ("auto", "ball_tree", "kd_tree", "brute")


def metric_kwargs(metric: str, p: float | None, metric_params: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword parameters of ``metric``: ``metric_params``, plus ``p`` for ``minkowski``.

    The other metrics ignore ``p``, as in scikit-learn.
    """
    kwargs = dict(metric_params or {})
    if metric == "minkowski" and p is not None:
        kwargs.setdefault("p", p)
    return kwargs


def effective_metric(metric: Any, p: float | None, metric_params: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The metric and parameters a neighbour search runs with, scikit-learn's rule.

    ``minkowski`` takes its ``p`` from ``metric_params`` before the ``p``
    argument (warning when both are given, as scikit-learn does); unweighted,
    p=1 is ``manhattan``, p=2 ``euclidean`` (bigdist's GEMM path) and p=inf
    ``chebyshev``. Other metrics ignore ``p`` and get ``metric_params`` as they are.
    """
    params = dict(metric_params or {})
    if "p" in params and p is not None:
        warnings.warn(
            "Parameter p is found in metric_params. The corresponding parameter from __init__ is ignored.",
            SyntaxWarning,
            stacklevel=4,
        )
    if metric != "minkowski":
        return metric, params
    order = params.pop("p", 2 if p is None else p)
    if params.get("w") is None:
        params.pop("w", None)
        shortcut = {1: "manhattan", 2: "euclidean", np.inf: "chebyshev"}.get(order)
        if shortcut is not None:
            return shortcut, params
    return "minkowski", {"p": order, **params}


def n_threads(n_jobs: int | None) -> int | None:
    """Threads of ``n_jobs`` in joblib's convention (-1: every core, -2: all but one, ...)."""
    if n_jobs is None:
        return None
    if n_jobs == 0:
        raise EstimatorParameterError(
            "n_jobs == 0 has no meaning; use None (the scheduler's default), a number of threads, or -1 for every core"
        )
    cores = os.cpu_count() or 1
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


class NeighborsBase(KNeighborsMixin, BaseEstimator):
    """Parameters, validation and the k-nearest-neighbour query shared by bigdist's neighbour estimators.

    scikit-learn's ``KNeighborsMixin`` is a base (its methods all overridden
    here) so that code testing for it, such as
    ``sklearn.neighbors.kneighbors_graph(fitted_estimator)``, takes these estimators.
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left"), None],
        "radius": [Interval(Real, 0, None, closed="both"), None],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "leaf_size": [Interval(Integral, 1, None, closed="left")],
        "p": [Interval(Real, 0, None, closed="right"), None],
        "metric": [str, callable, DistanceMetric],
        "metric_params": [dict, None],
        "n_jobs": [Integral, None],
        "split_every": [Interval(Integral, 2, None, closed="left"), None],
    }

    def _check_params(self) -> None:
        """Validate the constructor's parameters as scikit-learn does; set ``effective_metric_(params_)``."""
        try:
            self._validate_params()
        except InvalidParameterError as error:
            raise EstimatorParameterError(str(error)) from None
        n_threads(self.n_jobs)
        metric, params = effective_metric(self.metric, self.p, self.metric_params)
        if self.algorithm in ("kd_tree", "ball_tree"):
            self._check_tree_metric(metric, params)
        elif metric == "minkowski" and params["p"] < 1:
            warnings.warn(
                "Mind that for 0 < p < 1, Minkowski metrics are not distance metrics. Continuing the execution "
                "with `algorithm='brute'`.",
                stacklevel=3,
            )
        check_metric(metric, **params)
        self.effective_metric_, self.effective_metric_params_ = metric, params

    def _check_tree_metric(self, metric: Any, params: dict[str, Any]) -> None:
        # A tree takes only true metrics (scikit-learn's lists); bigdist's exact search gives the same neighbours.
        if callable(self.metric) and self.algorithm == "kd_tree":
            raise ParameterError(
                f"kd_tree does not support callable metric {self.metric!r}; use algorithm='ball_tree', 'brute' "
                f"or 'auto'"
            )
        if isinstance(self.metric, str) and self.metric not in VALID_METRICS[self.algorithm]:
            raise ParameterError(
                f"Metric '{self.metric}' not valid. Use sorted(sklearn.neighbors.VALID_METRICS['{self.algorithm}']) "
                f"to get valid options, or algorithm='brute' / 'auto' for metric={self.metric!r}"
            )
        if metric == "minkowski" and params["p"] < 1:
            # scikit-learn's wording, which its tests match.
            raise ParameterError(
                f'algorithm="{self.algorithm}" does not support 0 < p < 1 for the Minkowski metric. To resolve this '
                f'problem either set p >= 1 or algorithm="brute". (Got p={params["p"]!r}.)'
            )
        if metric == "minkowski" and self.algorithm == "kd_tree" and params.get("w") is not None:
            raise ParameterError(
                "algorithm='kd_tree' does not support the weighted minkowski metric (metric_params with 'w'), as in "
                "scikit-learn; use algorithm='ball_tree', 'brute' or 'auto'"
            )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # scipy.sparse rows are read in CSR blocks (bigdist.io.sparse)
        # A precomputed matrix is split on both axes by cross-validation, and holds distances (>= 0).
        tags.input_tags.pairwise = tags.input_tags.positive_only = self.metric == "precomputed"
        tags.input_tags.allow_nan = self.metric == "nan_euclidean"
        return tags

    def _rows(self, X: Any) -> da.Array:
        if self.effective_metric_ == "precomputed":
            check_graph_format(X)
        # nan_euclidean is defined on rows with NaN; every other metric refuses them.
        return sparse_or_dense(X, as_array, name="X", check_finite=self.effective_metric_ != "nan_euclidean")

    def _record_train(self, X: Any) -> None:
        # As scikit-learn: a fitted neighbours estimator (its train rows) or a BallTree / KDTree (its data).
        if isinstance(X, NeighborsBase):
            check_is_fitted(X, "_fit_X")
            self._fit_X, self._fit_in_memory = X._fit_X, X._fit_in_memory
        else:
            if isinstance(X, (BallTree, KDTree)):
                X = np.asarray(X.data)
            elif isinstance(X, BaseEstimator) and hasattr(X, "_fit_X"):
                X = X._fit_X
            self._fit_X, self._fit_in_memory = self._rows(X), in_memory(X)
        self.n_samples_fit_, self.n_features_in_ = (int(size) for size in self._fit_X.shape)

    def _threads(self) -> Any:
        """A context in which dask's local threaded scheduler runs ``n_jobs`` threads."""
        threads = n_threads(self.n_jobs)
        return dask.config.set({} if threads is None else {"num_workers": threads})

    def _compute(self, *arrays: Any) -> tuple[Any, ...]:
        """Compute on the ambient scheduler (``n_jobs`` threads when it is dask's local threaded one)."""
        with self._threads():
            return compute(*arrays)

    def _query_array(self, X: Any) -> da.Array:
        return self._rows(X)

    def _neighbours(self, X: Any, n_neighbors: int | None = None) -> tuple[da.Array, da.Array, bool]:
        """Lazy float64 distances and int64 indices of shape (n_queries, k), and whether NumPy goes out.

        X=None queries the train rows, each excluding itself as scikit-learn
        does: k + 1 neighbours, less the row itself, or less the first when
        exact duplicates crowd the row out of its own neighbours.
        """
        result, k = self._search(X, n_neighbors)
        distances, indices = result.distances.astype(np.float64), result.indices
        if X is None:
            rows = da.arange(self.n_samples_fit_, chunks=(indices.chunks[0],), dtype=np.int64)
            columns = da.map_blocks(own_columns, indices, rows[:, None], drop_axis=1, dtype=np.intp,
                                    meta=np.empty((0,), dtype=np.intp))  # fmt: skip
            chunks = (indices.chunks[0], (k,))
            distances = da.map_blocks(drop_columns, distances, columns[:, None], chunks=chunks, dtype=np.float64)
            indices = da.map_blocks(drop_columns, indices, columns[:, None], chunks=chunks, dtype=np.int64)
        return distances, indices, self._fit_in_memory if X is None else in_memory(X)

    def _search(self, X: Any, n_neighbors: int | None = None) -> tuple[Any, int]:
        """The KNNResult behind :meth:`_neighbours` (k + 1 neighbours when X is None), and k."""
        check_is_fitted(self, "_fit_X")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if isinstance(k, bool) or not isinstance(k, Integral):
            raise ParameterError(f"n_neighbors does not take {type(k).__name__} value, enter integer value")
        if k <= 0:
            raise ParameterError(f"Expected n_neighbors > 0. Got {k}")
        queries = None if X is None else self._query_array(X)
        asked = k + 1 if queries is None else k
        if asked > self.n_samples_fit_:
            relation = "n_neighbors < n_samples_fit" if queries is None else "n_neighbors <= n_samples_fit"
            n_samples = self.n_samples_fit_ if queries is None else queries.shape[0]
            raise ParameterError(
                f"Expected {relation}, but n_neighbors = {k}, n_samples_fit = {self.n_samples_fit_}, "
                f"n_samples = {n_samples}; ask for fewer neighbours or fit on more rows"
            )
        metric, params = self.effective_metric_, self.effective_metric_params_
        result = knn(self._fit_X if queries is None else queries, self._fit_X, asked, metric,
                     split_every=self.split_every, **params)  # fmt: skip
        return result, k

    def kneighbors(self, X: Any = None, n_neighbors: int | None = None, return_distance: bool = True) -> Any:
        """Find the k nearest neighbours of each query row.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            Query rows. None means the train rows themselves: each gets k + 1
            neighbours less itself (less its nearest one when exact duplicates
            leave it out of its own k + 1), scikit-learn's rule.
        n_neighbors : int, optional
            Defaults to the constructor's ``n_neighbors``.
        return_distance : bool, default=True

        Returns
        -------
        neigh_dist : ndarray or dask array of shape (n_queries, n_neighbors), float64
            Only when ``return_distance`` is True. NumPy for in-memory X (or X=None after an in-memory fit).
        neigh_ind : ndarray or dask array of shape (n_queries, n_neighbors), int64
        """
        distances, indices, numpy_out = self._neighbours(X, n_neighbors)
        if numpy_out:
            distances, indices = self._compute(distances, indices)
        return (distances, indices) if return_distance else indices

    def kneighbors_graph(
        self, X: Any = None, n_neighbors: int | None = None, mode: str = "connectivity"
    ) -> scipy.sparse.csr_matrix:
        """The k-neighbours graph as a sparse matrix of shape (n_queries, n_samples_fit).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            None means the train rows, each excluding itself (see :meth:`kneighbors`).
        n_neighbors : int, optional
        mode : {"connectivity", "distance"}
            Entries are 1 or the distance to the neighbour.
        """
        check_is_fitted(self, "_fit_X")
        if mode not in ("connectivity", "distance"):
            raise ParameterError(
                f'Unsupported mode, must be one of "connectivity", or "distance" but got "{mode}" instead'
            )
        distances, indices, _ = self._neighbours(X, n_neighbors)
        distances, indices = self._compute(distances, indices)
        n_queries, k = indices.shape
        data = np.ones(indices.size) if mode == "connectivity" else distances.ravel()
        indptr = np.arange(0, n_queries * k + 1, k)
        return scipy.sparse.csr_matrix((data, indices.ravel(), indptr), shape=(n_queries, self.n_samples_fit_))


SEARCH_PARAMETERS = """algorithm : {"auto", "ball_tree", "kd_tree", "brute"}, default="auto"
        The search scikit-learn would run. bigdist always runs its exact
        blockwise search, so every value gives the same neighbours; as in
        scikit-learn, ``"kd_tree"`` and ``"ball_tree"`` accept only the
        metrics of ``sklearn.neighbors.VALID_METRICS[algorithm]`` (true
        metrics, no 0 < p < 1).
    leaf_size : int, default=30
        Validated as scikit-learn does (an integer >= 1); bigdist builds no
        tree, so it changes neither the result nor the work.
    n_jobs : int, optional
        Threads of dask's local threaded scheduler for what the estimator
        computes itself (NumPy results): -1 every core, -2 all but one; None
        the scheduler's default. On a ``dask.distributed`` Client the cluster's
        workers decide, and lazy results run wherever they are computed."""


class NearestNeighbors(RadiusNeighborsMixin, NeighborsBase):
    """Exact nearest neighbours of data far bigger than RAM.

    Fitting only records the train set (a lazy dask array); every query is a
    :func:`bigdist.knn` run on the ambient Dask scheduler. In-memory queries
    (NumPy arrays, lists) give NumPy results, whatever the train set was
    fitted from; dask, Zarr or ``.npy`` queries give lazy dask arrays.

    Parameters
    ----------
    n_neighbors : int, default=5
        Neighbours returned by :meth:`kneighbors` when it is not given one.
    radius : float, default=1.0
        Radius of :meth:`radius_neighbors` when it is not given one.
    {search}
    metric : str, default="minkowski"
        Any metric of :func:`bigdist.knn` (names and aliases of
        ``bigdist.kernels.registry``). ``minkowski`` with p=2 runs as
        ``euclidean`` (the GEMM path), p=1 as ``manhattan``, p=inf as ``chebyshev``.
    p : float, default=2
        Order of the ``minkowski`` metric (ignored by the others, as in
        scikit-learn); a ``p`` in ``metric_params`` takes precedence.
    metric_params : dict, optional
        Other keyword parameters of the metric.
    split_every : int, optional
        Fan-in of the reduction across train blocks (default from config).

    Attributes
    ----------
    effective_metric_ : str
        The metric the search runs with (``minkowski`` resolved as above).
    effective_metric_params_ : dict
    n_features_in_ : int
    n_samples_fit_ : int
    """

    __doc__ = __doc__.replace("{search}", SEARCH_PARAMETERS)

    def __init__(
        self,
        n_neighbors: int = 5,
        *,
        radius: float = 1.0,
        algorithm: str = "auto",
        leaf_size: int = 30,
        metric: Any = "minkowski",
        p: float = 2,
        metric_params: dict[str, Any] | None = None,
        n_jobs: int | None = None,
        split_every: int | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.split_every = split_every

    def fit(self, X: Any, y: Any = None) -> NearestNeighbors:
        """Record the train set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file.
        y : ignored
        """
        self._check_params()
        self._record_train(X)
        return self

    def _radius_result(self, X: Any, radius: float | None, sort_results: bool) -> tuple[RadiusResult, bool]:
        check_is_fitted(self, "_fit_X")
        radius = self.radius if radius is None else radius
        options = {"sort_results": sort_results, "split_every": self.split_every, **self.effective_metric_params_}
        if X is None:
            result = radius_neighbors(self._fit_X, None, radius, self.effective_metric_, **options)
            return result, self._fit_in_memory
        result = radius_neighbors(self._query_array(X), self._fit_X, radius, self.effective_metric_, **options)
        return result, in_memory(X)

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
        radius : float or array-like of shape (n_queries,), optional
            Defaults to the constructor's ``radius``; distances <= radius count (``np.inf``: every row).
            An array gives each query its own radius, as scikit-learn's trees take it (the search runs
            with the largest, then each query keeps its own).
        return_distance : bool, default=True
        sort_results : bool, default=False
            Each query's neighbours nearest first; otherwise in increasing train index.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries,) of dtype object, each a float64 array of distances
            Only when ``return_distance`` is True. A dask array of objects for lazy queries.
        neigh_ind : ndarray of shape (n_queries,) of dtype object, each an int64 array of train rows
        """
        if sort_results and not return_distance:
            raise ParameterError("return_distance must be True if sort_results is True.")
        radius, radii = self._radii(X, radius)
        result, numpy_out = self._radius_result(X, radius, sort_results)
        if numpy_out:
            with self._threads():
                distances, indices = result.compute()
            # float64 distances whatever the input dtype, as scikit-learn returns them.
            distances = _object_array([row.astype(np.float64, copy=False) for row in distances])
            if radii is not None:
                distances, indices = (_within(distances, indices, radii, part) for part in (0, 1))
        else:
            distances, indices = result.to_dask()
            distances = distances.map_blocks(_float64_rows, dtype=object, meta=np.empty(0, dtype=object))
            if radii is not None:
                per_query = da.from_array(radii, chunks=distances.chunks)
                distances, indices = (
                    da.map_blocks(
                        _within, distances, indices, per_query, part, dtype=object, meta=np.empty(0, dtype=object)
                    )  # fmt: skip
                    for part in (0, 1)
                )
        return (distances, indices) if return_distance else indices

    def _radii(self, X: Any, radius: Any) -> tuple[Any, np.ndarray | None]:
        """The radius to search with, and the per-query radii when ``radius`` is an array (else None)."""
        if radius is None or np.ndim(radius) == 0:
            return radius, None
        check_is_fitted(self, "_fit_X")
        radii = np.asarray(radius, dtype=np.float64)
        n_queries = self.n_samples_fit_ if X is None else int(self._query_array(X).shape[0])
        if radii.shape != (n_queries,) or not (radii >= 0).all():
            raise ParameterError(
                f"radius as an array gives one radius >= 0 per query: expected shape ({n_queries},), got "
                f"{radii.shape} (smallest {radii.min() if radii.size else 'none'}); or pass one number"
            )
        return float(radii.max()), radii

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
            raise ParameterError(
                f'Unsupported mode, must be one of "connectivity", or "distance" but got "{mode}" instead'
            )
        if np.ndim(radius) == 1:
            rows_distances, rows_indices = self.radius_neighbors(X, radius, sort_results=sort_results)
            rows_distances, rows_indices = self._compute(rows_distances, rows_indices)
            indptr = np.concatenate([[0], np.cumsum([len(row) for row in rows_indices])])
            indices = np.concatenate([*rows_indices, np.empty(0, dtype=np.int64)])
            distances = np.concatenate([*rows_distances, np.empty(0)])
            n_queries = len(rows_indices)
        else:
            result, _ = self._radius_result(X, radius, sort_results)
            with self._threads():
                indptr, indices, distances = result.to_csr()
            n_queries = result.n_queries
        data = np.ones(len(indices)) if mode == "connectivity" else distances.astype(np.float64)
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(n_queries, self.n_samples_fit_))


def _object_array(rows: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array holding one array per query (np.array would stack equal-length rows)."""
    out = np.empty(len(rows), dtype=object)
    out[:] = rows
    return out


def _within(distances: np.ndarray, indices: np.ndarray, radii: np.ndarray, part: int) -> np.ndarray:
    """Each query's neighbours within its own radius: the distances (``part`` 0) or the indices (1)."""
    kept = [d <= r for d, r in zip(distances, radii, strict=True)]
    return _object_array([row[keep] for row, keep in zip((distances, indices)[part], kept, strict=True)])


def _float64_rows(block: np.ndarray) -> np.ndarray:
    return _object_array([row.astype(np.float64, copy=False) for row in block])
