"""scikit-learn style clustering estimators on top of :func:`bigdist.kmeans`."""

from __future__ import annotations

from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from bigdist.errors import InputShapeError
from bigdist.io import as_array, in_memory
from bigdist.kernels.kmeans import assign
from bigdist.kmeans import kmeans


def _distances_chunk(block: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    diff = block[:, None, :].astype(np.float64) - centroids[None, :, :]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


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

    def fit(self, X: Any, y: Any = None) -> KMeans:
        """Cluster the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array, or Zarr / .npy path
        y : ignored
        """
        result = kmeans(
            X,
            self.n_clusters,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
            checkpoint=self.checkpoint,
            split_every=self.split_every,
            persist=self.persist,
        )
        self.cluster_centers_ = result.centroids
        self.labels_ = result.labels.compute() if in_memory(X) else result.labels
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        self.stats_ = result.stats
        self.n_features_in_ = result.centroids.shape[1]
        return self

    def _check(self, X: Any) -> da.Array:
        check_is_fitted(self, "cluster_centers_")
        array = as_array(X, name="X")
        if array.shape[1] != self.n_features_in_:
            raise InputShapeError(
                f"X has {array.shape[1]} features, but KMeans is expecting {self.n_features_in_} features as input"
            )
        return array

    def predict(self, X: Any) -> Any:
        """Index of the nearest centroid of each row, shape (n_samples,)."""
        array = self._check(X)
        labels = array.map_blocks(
            lambda block: assign(block, self.cluster_centers_)[0],
            dtype=np.int64,
            drop_axis=1,
            meta=np.empty((0,), dtype=np.int64),
        )
        return labels.compute() if in_memory(X) else labels

    def fit_predict(self, X: Any, y: Any = None) -> Any:
        """Cluster X and return its labels."""
        return self.fit(X).labels_

    def transform(self, X: Any) -> Any:
        """Euclidean distance of each row to every centroid, shape (n_samples, n_clusters)."""
        array = self._check(X)
        distances = array.map_blocks(
            partial(_distances_chunk, centroids=self.cluster_centers_),
            dtype=np.float64,
            chunks=(array.chunks[0], (self.cluster_centers_.shape[0],)),
            meta=np.empty((0, 0)),
        )
        return distances.compute() if in_memory(X) else distances

    def score(self, X: Any, y: Any = None) -> float:
        """Opposite of the inertia of X with respect to the centroids."""
        array = self._check(X)
        inertia = array.map_blocks(
            lambda block: np.atleast_1d(assign(block, self.cluster_centers_)[1].sum()),
            dtype=np.float64,
            drop_axis=1,
            chunks=((1,) * array.numblocks[0],),
            meta=np.empty((0,)),
        ).sum()
        return -float(inertia.compute())
