"""scikit-learn style clustering estimators on top of :func:`bigdist.kmeans` and :func:`bigdist.meanshift`."""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from bigdist.errors import InputShapeError
from bigdist.io import as_array, in_memory
from bigdist.kernels.kmeans import inertia_chunk, labels_chunk, with_row_weights
from bigdist.kmeans import check_sample_weights, kmeans
from bigdist.meanshift import meanshift
from bigdist.pairwise import euclidean_distances
from bigdist.reductions import map_row_blocks


class KMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """K-means clustering of data far bigger than RAM (see :func:`bigdist.kmeans`).

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means||", "k-means++", "random"} or ndarray of shape (n_clusters, n_features), default="k-means||"
    n_init : int, default=1
    max_iter : int, default=300
    tol : float, default=1e-4
    random_state : int, optional
    checkpoint : str, optional
        Zarr group to save the centroids to after every iteration, and to resume from.
    split_every : int, optional
    persist : bool, optional

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray (NumPy input) or dask array of shape (n_samples,)
    inertia_ : float
    n_iter_ : int
    n_features_in_ : int
    stats_ : list of dict, per-iteration statistics
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means||",
        n_init: int = 1,
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state: int | None = None,
        checkpoint: str | None = None,
        split_every: int | None = None,
        persist: bool | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.checkpoint = checkpoint
        self.split_every = split_every
        self.persist = persist

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KMeans:
        """Cluster the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, or Zarr / .npy path
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional, weights >= 0 (see :func:`bigdist.kmeans`)
        """
        result = kmeans(
            _values(X),
            self.n_clusters,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
            checkpoint=self.checkpoint,
            split_every=self.split_every,
            persist=self.persist,
            sample_weight=sample_weight,
        )
        _check_feature_names(self, X, reset=True)
        self.cluster_centers_ = result.centroids
        self.labels_ = result.labels.compute() if _in_memory(X) else result.labels
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        self.stats_ = result.stats
        self.n_features_in_ = result.centroids.shape[1]
        return self

    def predict(self, X: Any) -> Any:
        """Index of the nearest centroid of each row, shape (n_samples,)."""
        array = _fitted_input(self, X)
        labels = map_row_blocks(
            array, labels_chunk, dtype=np.int64, name="bigdist-kmeans-predict", extra=(self.cluster_centers_,)
        )
        return labels.compute() if _in_memory(X) else labels

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Cluster X and return its labels."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X: Any) -> Any:
        """Euclidean distance of each row to every centroid, shape (n_samples, n_clusters)."""
        # The distance-matrix kernel: blocks of bounded size, however many rows a block of X has.
        distances = euclidean_distances(_fitted_input(self, X), self.cluster_centers_)
        return distances.compute() if _in_memory(X) else distances

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
        return -float(inertia.compute())


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
    random_state : int, optional
    split_every : int, optional
    persist : bool, optional

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray (NumPy input) or dask array of shape (n_samples,)
    n_iter_ : int
    bandwidth_ : float, the bandwidth used
    n_features_in_ : int
    stats_ : list of dict, per-pass statistics
    """

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
        random_state: int | None = None,
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
        self.split_every = split_every
        self.persist = persist

    def fit(self, X: Any, y: Any = None) -> MeanShift:
        """Cluster the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, or Zarr / .npy path
        y : ignored
        """
        result = meanshift(
            _values(X),
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
        _check_feature_names(self, X, reset=True)
        self.cluster_centers_ = result.cluster_centers
        self.labels_ = result.labels.compute() if _in_memory(X) else result.labels
        self.n_iter_ = result.n_iter
        self.bandwidth_ = result.bandwidth
        self.stats_ = result.stats
        self.n_features_in_ = result.cluster_centers.shape[1]
        return self

    def predict(self, X: Any) -> Any:
        """Index of the nearest mode of each row, shape (n_samples,) (every row, as scikit-learn's predict)."""
        array = _fitted_input(self, X)
        labels = map_row_blocks(
            array, labels_chunk, dtype=np.int64, name="bigdist-meanshift-predict", extra=(self.cluster_centers_,)
        )
        return labels.compute() if _in_memory(X) else labels

    def fit_predict(self, X: Any, y: Any = None) -> Any:
        """Cluster X and return its labels."""
        return self.fit(X).labels_


def _fitted_input(estimator: BaseEstimator, X: Any) -> da.Array:
    """X as a dask array, checked against the fitted ``estimator`` (feature count, DataFrame column names)."""
    check_is_fitted(estimator, "cluster_centers_")
    array = as_array(_values(X), name="X")
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
