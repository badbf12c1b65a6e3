"""bigdist: exact nearest neighbours and clustering for matrices bigger than RAM."""

from __future__ import annotations

from bigdist import config as config
from bigdist.cluster import KMeans, MeanShift
from bigdist.errors import BigdistError
from bigdist.io import open_array
from bigdist.kmeans import KMeansResult, kmeans
from bigdist.knn import KNNResult, knn
from bigdist.meanshift import MeanShiftResult, estimate_bandwidth, meanshift
from bigdist.neighbors import NearestNeighbors

__version__ = "0.1.0"

__all__ = [
    "BigdistError",
    "KMeans",
    "KMeansResult",
    "KNNResult",
    "MeanShift",
    "MeanShiftResult",
    "NearestNeighbors",
    "__version__",
    "config",
    "estimate_bandwidth",
    "kmeans",
    "knn",
    "meanshift",
    "open_array",
]
