"""bigdist: exact nearest neighbours and clustering for matrices bigger than RAM."""

from __future__ import annotations

from bigdist import config as config
from bigdist.classification import KNeighborsClassifier, KNeighborsRegressor
from bigdist.cluster import KMeans, MeanShift
from bigdist.errors import BigdistError
from bigdist.execution.plan import Plan, plan
from bigdist.io import open_array
from bigdist.kmeans import KMeansResult, kmeans
from bigdist.knn import KNNResult, knn
from bigdist.meanshift import MeanShiftResult, estimate_bandwidth, meanshift
from bigdist.neighbors import NearestNeighbors
from bigdist.pairwise import (
    cosine_similarity,
    euclidean_distances,
    pairwise_distances,
    pairwise_distances_argmin_min,
)
from bigdist.radius import RadiusResult, radius_neighbors

__version__ = "0.1.0"

__all__ = [
    "BigdistError",
    "KMeans",
    "KMeansResult",
    "KNeighborsClassifier",
    "KNeighborsRegressor",
    "KNNResult",
    "MeanShift",
    "MeanShiftResult",
    "NearestNeighbors",
    "Plan",
    "RadiusResult",
    "__version__",
    "config",
    "cosine_similarity",
    "euclidean_distances",
    "estimate_bandwidth",
    "kmeans",
    "knn",
    "meanshift",
    "open_array",
    "pairwise_distances",
    "pairwise_distances_argmin_min",
    "plan",
    "radius_neighbors",
]
