"""scikit-learn style clustering estimators on top of :func:`bigdist.kmeans` and :func:`bigdist.meanshift`."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from numbers import Integral, Real
from typing import Any

import dask
import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from bigdist.errors import EstimatorParameterError, InputShapeError, ParameterError
from bigdist.io import as_array, in_memory
from bigdist.io.sparse import as_dense_rows
from bigdist.kernels.kmeans import inertia_chunk, labels_chunk, with_row_weights
from bigdist.kmeans import check_sample_weights, kmeans
from bigdist.meanshift import meanshift
from bigdist.neighbors import n_threads as _n_threads
from bigdist.pairwise import euclidean_distances
from bigdist.reductions import map_row_blocks
from bigdist.resources import compute

_KMEANS_ALGORITHMS = {"lloyd": None, "elkan": "always"}


class KMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """K-means clustering of data far bigger than RAM (see :func:`bigdist.kmeans`).

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means||", "k-means++", "random"}, callable or ndarray of shape (n_clusters, n_features), \
default="k-means||"
        A callable is called as ``init(X, n_clusters, random_state)`` (X as
        given to ``fit``, a NumPy ``RandomState``) and returns the initial
        centroids, scikit-learn's signature; it is called once per init.
    n_init : "auto" or int, default="auto"
        Inits run, the lowest inertia kept. ``"auto"``: 10 for ``"random"``
        and a callable, 1 otherwise (scikit-learn's rule). An array init runs once (with a
        RuntimeWarning when n_init > 1 was asked).
    max_iter : int, default=300
    tol : float, default=1e-4
    verbose : int, default=0
        Above 0, the progress of ``fit`` (each init's iterations: inertia,
        centroid shift, rows reassigned; the runs' inertias) is logged to
        standard output through the ``bigdist`` loggers.
    random_state : int or numpy RandomState, optional
    copy_x : bool, default=True
        Validated as scikit-learn does. bigdist never writes to X (it does
        not centre the data), so X is unchanged with either value.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Both run exact Lloyd passes and give the same centroids. ``"elkan"``
        always keeps per-row distance bounds (Hamerly's, 16 bytes per row in
        the cluster's memory) to skip rows whose centroid provably stays;
        ``"lloyd"`` keeps them as the ``bigdist.kmeans.bounds`` config says.
    checkpoint : str, optional
        Zarr group to save the centroids to after every iteration, and to resume from.
    split_every : int, optional
    persist : bool, optional

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), the dtype of X (float32 or float64)
    labels_ : ndarray (in-memory input) or dask array of shape (n_samples,)
    inertia_ : float
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str, for DataFrame input
    stats_ : list of dict, per-iteration statistics
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means||", "k-means++", "random"}), callable, "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "copy_x": ["boolean"],
        "algorithm": [StrOptions(set(_KMEANS_ALGORITHMS))],
        "checkpoint": [str, os.PathLike, None],
        "split_every": [Interval(Integral, 2, None, closed="left"), None],
        "persist": ["boolean", None],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means||",
        n_init: int | str = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        verbose: int = 0,
        random_state: Any = None,
        copy_x: bool = True,
        algorithm: str = "lloyd",
        checkpoint: str | None = None,
        split_every: int | None = None,
        persist: bool | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.checkpoint = checkpoint
        self.split_every = split_every
        self.persist = persist

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # scipy.sparse rows are densified block by block (bigdist.io.sparse)
        return tags

    @property
    def _n_features_out(self) -> int:
        # get_feature_names_out: one column per centroid of transform(), "kmeans0", "kmeans1", ...
        return self.cluster_centers_.shape[0]

    def _checked_init(self, init: Any, n_features: int) -> Any:
        if isinstance(init, str):
            return init
        centers = np.asarray(init.compute() if isinstance(init, da.Array) else init, dtype=np.float64)
        if centers.ndim != 2 or centers.shape[0] != self.n_clusters:
            raise ParameterError(
                f"The shape of the initial centers {centers.shape} does not match the number of clusters "
                f"{self.n_clusters}; give init of shape ({self.n_clusters}, {n_features})"
            )
        if centers.shape[1] != n_features:
            raise ParameterError(
                f"The shape of the initial centers {centers.shape} does not match the number of features of the "
                f"data {n_features}; give init of shape ({self.n_clusters}, {n_features})"
            )
        return centers

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KMeans:
        """Cluster the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, or Zarr / .npy path
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional, weights >= 0 (see :func:`bigdist.kmeans`)
        """
        _validate(self)
        values = _values(X)
        array = as_dense_rows(values, as_array, name="X")
        n_samples, n_features = array.shape
        if n_samples < self.n_clusters:
            raise ParameterError(
                f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}; use n_clusters <= {n_samples}"
            )
        explicit = not isinstance(self.init, str) and not callable(self.init)
        if self.n_init == "auto":
            # scikit-learn's rule: one run from the seeding inits and given centres, ten from random ones.
            self._n_init = 10 if callable(self.init) or (isinstance(self.init, str) and self.init == "random") else 1
        else:
            self._n_init = self.n_init
        if explicit and self._n_init != 1:
            warnings.warn(
                f"Explicit initial center position passed: performing only one init in KMeans instead of "
                f"n_init={self._n_init}.",
                RuntimeWarning,
                stacklevel=2,
            )
            self._n_init = 1
        random = check_random_state(self.random_state)
        # A callable init gives one array per init: each init is its own run, the lowest inertia kept.
        inits = (
            [self._checked_init(self.init(values, self.n_clusters, random), n_features) for _ in range(self._n_init)]
            if callable(self.init)
            else [self._checked_init(self.init, n_features)]
        )
        # An int seeds bigdist's own generator as bd.kmeans does; a RandomState gives one such seed.
        seed = self.random_state if not isinstance(self.random_state, np.random.RandomState) else random.randint(2**31)
        algorithm = self.algorithm
        if algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' instead.",
                RuntimeWarning,
                stacklevel=2,
            )
            algorithm = "lloyd"
        options = {"bigdist.kmeans.bounds": _KMEANS_ALGORITHMS[algorithm]} if algorithm == "elkan" else {}
        with dask.config.set(options), _progress(self.verbose):
            runs = [
                kmeans(
                    array, self.n_clusters, init=init, n_init=self._n_init if isinstance(init, str) else 1,
                    max_iter=self.max_iter, tol=self.tol, random_state=seed, checkpoint=self.checkpoint,
                    split_every=self.split_every, persist=self.persist, sample_weight=sample_weight,
                )
                for init in inits
            ]  # fmt: skip
        result = min(runs, key=lambda run: run.inertia)
        _check_feature_names(self, X, reset=True)
        self.cluster_centers_ = result.centroids.astype(array.dtype, copy=False)
        self.labels_ = compute(result.labels)[0] if _in_memory(X) else result.labels
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        self.stats_ = result.stats
        self.n_features_in_ = n_features
        return self

    def predict(self, X: Any) -> Any:
        """Index of the nearest centroid of each row, shape (n_samples,)."""
        array = _fitted_input(self, X)
        labels = map_row_blocks(
            array, labels_chunk, dtype=np.int64, name="bigdist-kmeans-predict", extra=(self.cluster_centers_,)
        )
        return compute(labels)[0] if _in_memory(X) else labels

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Cluster X and return its labels."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X: Any) -> Any:
        """Euclidean distance of each row to every centroid, shape (n_samples, n_clusters)."""
        # The distance-matrix kernel: blocks of bounded size, however many rows a block of X has.
        distances = euclidean_distances(_fitted_input(self, X), self.cluster_centers_)
        return compute(distances)[0] if _in_memory(X) else distances

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Opposite of the (weighted) inertia of X with respect to the centroids."""
        array = _fitted_input(self, X)
        chunk, along = inertia_chunk, ()
        if sample_weight is not None:
            chunk, along = partial(with_row_weights, inertia_chunk), (check_sample_weights(sample_weight, array),)
        inertia = map_row_blocks(
            array, chunk, dtype=np.float64, name="bigdist-kmeans-score", extra=(self.cluster_centers_,),
            chunks=(1,) * array.numblocks[0], along=along,
        ).sum()  # fmt: skip
        return -float(compute(inertia)[0])


class MeanShift(ClusterMixin, BaseEstimator):
    """Mean-shift clustering of data far bigger than RAM (see :func:`bigdist.meanshift`).

    A drop-in for scikit-learn's ``MeanShift``: the default flat kernel gives
    its modes and labels; ``kernel="gaussian"`` weights rows by
    exp(-d² / (2·bandwidth²)).

    Parameters
    ----------
    bandwidth : float, optional
        None estimates it with :func:`bigdist.estimate_bandwidth`.
    seeds : array-like of shape (n_seeds, n_features), optional
    bin_seeding : bool, default=False
    min_bin_freq : int, default=1
    cluster_all : bool, default=True
    max_iter : int, default=300
    kernel : {"flat", "gaussian"}, default="flat"
    tol : float, default=1e-3
        Convergence threshold, relative to the bandwidth.
    n_seeds : int, optional
    random_state : int, numpy RandomState or Generator, optional
    n_jobs : int, optional
        Threads of dask's local threaded scheduler while ``fit`` runs: -1
        every core, -2 all but one; None the scheduler's default. On a
        ``dask.distributed`` Client the cluster's workers decide.
    split_every : int, optional
    persist : bool, optional

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), the dtype of X (float32 or float64)
    labels_ : ndarray (in-memory input) or dask array of shape (n_samples,)
    n_iter_ : int
    bandwidth_ : float, the bandwidth used (0 when estimated on data whose rows mostly repeat exactly)
    n_features_in_ : int
    stats_ : list of dict, per-pass statistics
    """

    _parameter_constraints: dict = {
        "bandwidth": [Interval(Real, 0, None, closed="neither"), None],
        "seeds": ["array-like", None],
        "bin_seeding": ["boolean"],
        "min_bin_freq": [Interval(Integral, 1, None, closed="left")],
        "cluster_all": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "kernel": [StrOptions({"flat", "gaussian"})],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_seeds": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "split_every": [Interval(Integral, 2, None, closed="left"), None],
        "persist": ["boolean", None],
    }

    def __init__(
        self,
        *,
        bandwidth: float | None = None,
        seeds: Any = None,
        bin_seeding: bool = False,
        min_bin_freq: int = 1,
        cluster_all: bool = True,
        max_iter: int = 300,
        kernel: str = "flat",
        tol: float = 1e-3,
        n_seeds: int | None = None,
        random_state: Any = None,
        n_jobs: int | None = None,
        split_every: int | None = None,
        persist: bool | None = None,
    ) -> None:
        self.bandwidth = bandwidth
        self.seeds = seeds
        self.bin_seeding = bin_seeding
        self.min_bin_freq = min_bin_freq
        self.cluster_all = cluster_all
        self.max_iter = max_iter
        self.kernel = kernel
        self.tol = tol
        self.n_seeds = n_seeds
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.split_every = split_every
        self.persist = persist

    def fit(self, X: Any, y: Any = None) -> MeanShift:
        """Cluster the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, or Zarr / .npy path
        y : ignored
        """
        _validate(self)
        array = as_array(_values(X), name="X")
        threads = _n_threads(self.n_jobs)
        with dask.config.set({} if threads is None else {"num_workers": threads}):
            result = self._meanshift(array)
        _check_feature_names(self, X, reset=True)
        self.cluster_centers_ = result.cluster_centers.astype(array.dtype, copy=False)
        self.labels_ = compute(result.labels)[0] if _in_memory(X) else result.labels
        self.n_iter_ = result.n_iter
        self.bandwidth_ = result.bandwidth
        self.stats_ = result.stats
        self.n_features_in_ = result.cluster_centers.shape[1]
        return self

    def _meanshift(self, array: da.Array) -> Any:
        return meanshift(
            array,
            self.bandwidth,
            kernel=self.kernel,
            seeds=self.seeds,
            bin_seeding=self.bin_seeding,
            min_bin_freq=self.min_bin_freq,
            n_seeds=self.n_seeds,
            cluster_all=self.cluster_all,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
            split_every=self.split_every,
            persist=self.persist,
        )

    def predict(self, X: Any) -> Any:
        """Index of the nearest mode of each row, shape (n_samples,) (every row, as scikit-learn's predict)."""
        array = _fitted_input(self, X)
        labels = map_row_blocks(
            array, labels_chunk, dtype=np.int64, name="bigdist-meanshift-predict", extra=(self.cluster_centers_,)
        )
        return compute(labels)[0] if _in_memory(X) else labels

    def fit_predict(self, X: Any, y: Any = None) -> Any:
        """Cluster X and return its labels."""
        return self.fit(X).labels_


def _validate(estimator: BaseEstimator) -> None:
    """The constructor's parameters checked with scikit-learn's constraints (and its messages)."""
    try:
        estimator._validate_params()
    except InvalidParameterError as error:
        raise EstimatorParameterError(str(error)) from None


@contextmanager
def _progress(verbose: int) -> Iterator[None]:
    """With ``verbose`` above 0, bigdist's INFO progress records go to standard output while the block runs."""
    if not verbose:
        yield
        return
    logger = logging.getLogger("bigdist")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _fitted_input(estimator: BaseEstimator, X: Any) -> da.Array:
    """X as a dask array, checked against the fitted ``estimator`` (feature count, DataFrame column names)."""
    check_is_fitted(estimator, "cluster_centers_")
    array = as_dense_rows(_values(X), as_array, name="X")
    if array.shape[1] != estimator.n_features_in_:
        raise InputShapeError(
            f"X has {array.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input"
        )
    _check_feature_names(estimator, X, reset=False)
    return array


def _check_feature_names(estimator: BaseEstimator, X: Any, *, reset: bool) -> None:
    # Column names of a DataFrame are remembered and checked, as scikit-learn does (paths have none).
    if not isinstance(X, (str, os.PathLike)):
        validate_data(estimator, X, reset=reset, skip_check_array=True)


def _values(X: Any) -> Any:
    return X.to_numpy() if hasattr(X, "columns") and hasattr(X, "to_numpy") else X


def _in_memory(X: Any) -> bool:
    # DataFrames are in memory too: NumPy results, as scikit-learn gives.
    return in_memory(X) or hasattr(X, "columns")
