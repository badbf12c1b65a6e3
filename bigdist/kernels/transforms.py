"""Metrics that are Euclidean or Minkowski distances of transformed rows: the transforms. NumPy only.

- ``seuclidean`` with variances ``V``: rows divided by ``sqrt(V)``, then Euclidean.
- ``mahalanobis`` with inverse covariance ``VI``: rows times ``L`` with
  ``VI = L @ L.T`` (Cholesky; an eigen-decomposition when ``VI`` is only
  positive semi-definite), since ``(u - v) VI (u - v)^T = |(u - v) L|^2``, then Euclidean.
- ``minkowski`` with weights ``w``: rows times ``w ** (1 / p)``, since
  ``w |u - v|^p = |w^(1/p) u - w^(1/p) v|^p`` (for p = infinity SciPy takes the
  maximum over the features of weight > 0: those features kept).

The transformed rows are float64, so the kernels' exact float64 re-check
applies to them and the values equal SciPy's to the rounding of the transform.
"""

from __future__ import annotations

import math

import numpy as np

from bigdist.errors import InputValueError, ParameterError


def seuclidean_scale(variances: np.ndarray) -> np.ndarray:
    """The factor ``1 / sqrt(V)`` of each feature, shape (d,) float64.

    Raises InputValueError when a variance is not > 0 (a constant feature, when estimated from the data).
    """
    variances = np.asarray(variances, dtype=np.float64)
    bad = ~(variances > 0) | ~np.isfinite(variances)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise InputValueError(
            f"metric 'seuclidean': feature {j} has variance {variances[j].item()!r} in the data (constant, or fewer "
            f"than two rows), and seuclidean divides by it; drop the feature or pass V with a positive variance for "
            f"each feature"
        )
    return 1.0 / np.sqrt(variances)


def mahalanobis_factor(inverse_covariance: np.ndarray) -> np.ndarray:
    """``L`` of shape (d, d) with ``VI = L @ L.T``, float64.

    Raises ParameterError when ``VI`` has a negative eigenvalue (the distance would be imaginary).
    """
    vi = np.asarray(inverse_covariance, dtype=np.float64)
    try:
        return np.linalg.cholesky(vi)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(vi)
    tolerance = 1e-12 * max(float(np.abs(values).max()), np.finfo(np.float64).tiny) * len(values)
    if values.min() < -tolerance:
        raise ParameterError(
            f"metric 'mahalanobis': VI must be positive semi-definite, but it has the eigenvalue {values.min():.6g}; "
            f"pass the inverse of a covariance matrix"
        )
    return vectors * np.sqrt(np.maximum(values, 0.0))


def estimated_inverse_covariance(covariance: np.ndarray) -> np.ndarray:
    """``inv(cov).T`` as scikit-learn estimates VI, shape (d, d) float64; InputValueError when ``cov`` is singular."""
    try:
        inverse = np.linalg.inv(np.asarray(covariance, dtype=np.float64)).T
    except np.linalg.LinAlgError as error:
        raise InputValueError(
            f"metric 'mahalanobis': the covariance of the data ({covariance.shape[0]} features) is singular (a "
            f"constant feature, linearly dependent features, or fewer rows than features), so it has no inverse; "
            f"pass VI, e.g. numpy.linalg.pinv of the covariance"
        ) from error
    return (inverse + inverse.T) / 2


def minkowski_scale(weights: np.ndarray, p: float) -> np.ndarray:
    """The factor ``w ** (1 / p)`` of each feature (p = infinity: 1 where ``w > 0``, else 0), shape (d,) float64."""
    weights = np.asarray(weights, dtype=np.float64)
    if math.isinf(p):
        return (weights > 0).astype(np.float64)
    return weights ** (1.0 / p)


def scale_rows(block: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each row times ``scale`` feature by feature, float64; shape (n, d) -> (n, d)."""
    return np.multiply(block, scale, dtype=np.float64)


def multiply_rows(block: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``block @ factor`` in float64; shape (n, d) -> (n, d)."""
    return np.asarray(block, dtype=np.float64) @ factor


__all__ = [
    "estimated_inverse_covariance",
    "mahalanobis_factor",
    "minkowski_scale",
    "multiply_rows",
    "scale_rows",
    "seuclidean_scale",
]
