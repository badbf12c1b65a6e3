"""The one registry of distance metrics: names, aliases, kernels and parameters. NumPy only.

Every algorithm (kNN, pairwise distances, k-means, mean shift) resolves the
metric a user names here, so names, aliases, parameters and error messages
are the same everywhere. A metric is either in the *GEMM family* (scored by
one matrix product of prepared rows, ``bigdist.kernels.metrics``) or
*direct* (a compiled loop over coordinates, ``bigdist.kernels.direct``).

Conventions where SciPy's ``cdist`` gives NaN:

- ``cosine`` and ``correlation``: a zero row (for ``correlation``, a
  constant row) has similarity 0 with every row, so distance 1 (scikit-learn's
  convention); the distance of a row to itself in a self-join is 0.
- ``braycurtis``: two all-zero rows are at distance 0.
- The boolean metrics (``dice``, ``jaccard``, ``rogerstanimoto``,
  ``russellrao``, ``sokalsneath``, ``yule``) read any value as a boolean
  (non-zero is True), as scikit-learn converts the data for them; ``dice``,
  ``jaccard`` and ``sokalsneath`` of two all-false rows are 0.
- ``nan_euclidean`` (scikit-learn's): NaN marks a missing coordinate; the
  squared distance over the coordinates present in both rows is scaled by
  ``n_features / present``; a pair with none present is NaN (and ranks last
  in a kNN, reported as infinity).

Three metrics are Euclidean or Minkowski distances of transformed rows and
run on those kernels (the GEMM family for the Euclidean ones, with its exact
re-check on the transformed rows): ``seuclidean`` (rows divided by
``sqrt(V)``), ``mahalanobis`` (rows times the Cholesky factor of ``VI``) and
``minkowski`` with weights ``w`` (rows times ``w ** (1 / p)``). Their values
equal SciPy's to a few ulps of the transform's rounding.

Besides names, a metric may be a Python callable ``f(u, v) -> float`` on two
1-D float64 rows (compiled with numba when it can be, else called pair by
pair) or a ``sklearn.metrics.DistanceMetric`` object (its ``pairwise`` on
each tile); see :func:`get_metric`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bigdist.errors import ParameterError


@dataclass(frozen=True)
class Metric:
    """One entry of the registry.

    Attributes
    ----------
    name : str
        Canonical name.
    aliases : tuple of str
        Other names accepted for it.
    gemm : bool
        Computed through the expansion trick (one GEMM per tile); otherwise by a direct kernel.
    similarity : bool
        The reported value is a similarity (larger is closer), e.g. ``inner_product``.
    params : dict of str to default value
        Keyword parameters the metric accepts.
    values : {"any", "nonnegative", "boolean", "missing"}
        The input values the metric is defined for: any, >= 0, read as booleans
        (non-zero is True), or any with NaN marking a missing value.
    transform : bool
        Computed as a base metric on transformed rows (``seuclidean``, ``mahalanobis``, weighted ``minkowski``).
    n_features : int or None
        The number of features the metric needs (``haversine``: 2, latitude and longitude in radians).
    """

    name: str
    aliases: tuple[str, ...] = ()
    gemm: bool = False
    similarity: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    values: str = "any"
    transform: bool = False
    n_features: int | None = None


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("euclidean", ("l2",), gemm=True),
        Metric("sqeuclidean", gemm=True),
        Metric("cosine", gemm=True),
        Metric("correlation", gemm=True),
        Metric("inner_product", ("dot",), gemm=True, similarity=True),
        Metric("manhattan", ("cityblock", "l1")),
        Metric("chebyshev"),
        Metric("minkowski", params={"p": 2.0, "w": None}),
        Metric("canberra"),
        Metric("braycurtis"),
        Metric("chi2", values="nonnegative"),
        Metric("hamming"),
        Metric("jaccard", values="boolean"),
        Metric("dice", values="boolean"),
        Metric("rogerstanimoto", values="boolean"),
        Metric("russellrao", values="boolean"),
        Metric("sokalsneath", values="boolean"),
        Metric("yule", values="boolean"),
        Metric("haversine", n_features=2),
        Metric("nan_euclidean", values="missing"),
        Metric("seuclidean", params={"V": None}, transform=True),
        Metric("mahalanobis", params={"VI": None}, transform=True),
    )
}

# Not a metric of the kernels: the distances are the input (kNN, radius neighbours, estimators).
PRECOMPUTED = Metric("precomputed")

_BY_NAME: dict[str, Metric] = {name: metric for metric in METRICS.values() for name in (metric.name, *metric.aliases)}


def metric_names(*, gemm: bool | None = None, aliases: bool = True) -> list[str]:
    """Every accepted metric name, canonical names first.

    Parameters
    ----------
    gemm : bool, optional
        Only the GEMM family (True) or only the direct metrics (False).
    aliases : bool
        Include the aliases.
    """
    chosen = [m for m in METRICS.values() if gemm is None or m.gemm == gemm]
    names = [m.name for m in chosen]
    return names + [a for m in chosen for a in m.aliases] if aliases else names


@dataclass(frozen=True)
class ResolvedMetric:
    """A metric with its parameters checked and defaults filled in.

    ``name`` is the metric the kernels compute: ``minkowski`` with p=1, 2 or
    infinity (and no weights) is computed as ``manhattan``, ``euclidean`` or
    ``chebyshev`` (same values, the faster kernel). Array parameters (``V``,
    ``VI``, ``w``) are float64 ndarrays, or None where they are estimated
    from the data (``V``, ``VI``).

    ``pair_function`` is a user's callable ``f(u, v, **params)``;
    ``block_function`` a ``DistanceMetric``'s ``pairwise``. Either makes the
    metric a *function metric*, computed tile by tile from the dense block
    of distances the function gives.
    """

    metric: Metric
    params: dict[str, Any]
    requested: Any
    pair_function: Callable[..., float] | None = None
    block_function: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def gemm(self) -> bool:
        return self.metric.gemm

    @property
    def p(self) -> float:
        return float(self.params.get("p") or 2.0)

    @property
    def precomputed(self) -> bool:
        """The input is a matrix of distances (``metric="precomputed"``)."""
        return self.metric is PRECOMPUTED

    @property
    def function(self) -> bool:
        """Computed by a user's function (a callable or a DistanceMetric), not by bigdist's kernels."""
        return self.pair_function is not None or self.block_function is not None

    def check_features(self, n_features: int) -> None:
        """Raise ParameterError when the metric or its parameters do not fit rows of ``n_features``."""
        need = self.metric.n_features
        if need is not None and n_features != need:
            # scikit-learn's first sentence, which its users and tests match.
            raise ParameterError(
                f"Haversine distance only valid in 2 dimensions: metric {self.name!r} needs {need} features "
                f"(latitude and longitude, in radians), got data with n_features={n_features}; pass the two columns "
                f"[lat, lon] (e.g. np.radians(X[:, :2]))"
            )
        for key in ("V", "w"):
            value = self.params.get(key)
            if value is not None and len(value) != n_features:
                raise ParameterError(
                    f"metric {self.name!r}: {key} has {len(value)} entries but the data has n_features={n_features}; "
                    f"pass one entry per feature"
                )
        vi = self.params.get("VI")
        if vi is not None and vi.shape != (n_features, n_features):
            raise ParameterError(
                f"metric 'mahalanobis': VI has shape {vi.shape} but the data has n_features={n_features}; pass a "
                f"({n_features}, {n_features}) inverse covariance matrix"
            )

    def describe(self) -> dict[str, Any]:
        """The metric and its scalar parameters, for result attributes and logs (arrays by their shape)."""
        out: dict[str, Any] = {}
        for key, value in self.params.items():
            if isinstance(value, np.ndarray):
                out[key] = f"array of shape {value.shape}"
            elif value is not None:
                out[key] = value
        return out


# DistanceMetric classes whose metric the registry computes by its own kernels (no parameters to read back).
_DISTANCE_METRIC_CLASSES = {
    "EuclideanDistance": "euclidean",
    "ManhattanDistance": "manhattan",
    "ChebyshevDistance": "chebyshev",
    "CanberraDistance": "canberra",
    "BrayCurtisDistance": "braycurtis",
    "HammingDistance": "hamming",
    "JaccardDistance": "jaccard",
    "DiceDistance": "dice",
    "RogersTanimotoDistance": "rogerstanimoto",
    "RussellRaoDistance": "russellrao",
    "SokalSneathDistance": "sokalsneath",
    "HaversineDistance": "haversine",
}


def _is_distance_metric(metric: Any) -> bool:
    bases = ("DistanceMetric", "DistanceMetric32", "DistanceMetric64")
    return any(cls.__name__ in bases for cls in type(metric).__mro__)


def _real_vector(name: str, key: str, value: Any, *, positive: bool) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ParameterError(f"metric {name!r}: {key} must be a 1-D array of numbers, got {key}={value!r}") from error
    if array.ndim != 1 or not array.size:
        raise ParameterError(f"metric {name!r}: {key} must be a non-empty 1-D array, got shape {array.shape}")
    bad = ~np.isfinite(array) | ((array <= 0) if positive else (array < 0))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        need = "finite and > 0 (variances)" if positive else "finite and >= 0 (weights)"
        raise ParameterError(
            f"metric {name!r}: every entry of {key} must be {need}, got {key}[{j}]={array[j].item()!r}"
        )
    if not positive and not array.any():
        raise ParameterError(f"metric {name!r}: the weights w are all 0; give at least one feature a weight > 0")
    return array


def _inverse_covariance(value: Any) -> np.ndarray:
    try:
        vi = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ParameterError(
            f"metric 'mahalanobis': VI must be a square matrix of numbers, got VI={value!r}"
        ) from error
    if vi.ndim != 2 or vi.shape[0] != vi.shape[1] or not vi.size:
        raise ParameterError(f"metric 'mahalanobis': VI must be a square (d, d) matrix, got shape {vi.shape}")
    if not np.isfinite(vi).all():
        raise ParameterError("metric 'mahalanobis': VI holds NaN or infinity; pass a finite inverse covariance")
    if not np.allclose(vi, vi.T, rtol=1e-10, atol=1e-12 * np.abs(vi).max()):
        i, j = np.unravel_index(int(np.argmax(np.abs(vi - vi.T))), vi.shape)
        raise ParameterError(
            f"metric 'mahalanobis': VI must be symmetric, got VI[{i}, {j}]={vi[i, j].item()!r} and "
            f"VI[{j}, {i}]={vi[j, i].item()!r}; pass (VI + VI.T) / 2 or the inverse of a covariance matrix"
        )
    return vi


def get_metric(metric: Any, **params: Any) -> ResolvedMetric:
    """Resolve a metric and its keyword parameters.

    Parameters
    ----------
    metric : str, callable or sklearn.metrics.DistanceMetric
        A name from :func:`metric_names` (case-sensitive); a callable
        ``f(u, v, **params) -> float`` of two 1-D float64 rows (compiled with
        numba when it can be, else called pair by pair); or a
        ``DistanceMetric`` object (computed by its own ``pairwise``, or by
        bigdist's kernel for a metric without parameters).
    **params
        The metric's parameters, as scikit-learn's ``metric_params``: ``p``
        and ``w`` for ``minkowski``, ``V`` for ``seuclidean``, ``VI`` for
        ``mahalanobis``, keyword arguments of a callable; ``None`` values
        mean the default (``V`` and ``VI`` estimated from the data).

    Returns
    -------
    ResolvedMetric

    Raises
    ------
    ParameterError
        Unknown metric (the message lists the valid names), a parameter the
        metric does not take, or a parameter out of range (``p`` <= 0, ``V``
        not > 0, ``w`` negative, ``VI`` not symmetric).
    """
    if isinstance(metric, ResolvedMetric) and not params:
        return metric
    given = {key: value for key, value in params.items() if value is not None}
    if _is_distance_metric(metric):
        if given:
            raise ParameterError(
                f"a DistanceMetric object carries its own parameters; got the extra parameter(s) "
                f"{', '.join(sorted(given))}: pass them to DistanceMetric.get_metric instead"
            )
        kind = type(metric).__name__.rstrip("0123456789")
        if kind in _DISTANCE_METRIC_CLASSES:
            return ResolvedMetric(METRICS[_DISTANCE_METRIC_CLASSES[kind]], {}, metric)
        return ResolvedMetric(Metric(f"DistanceMetric:{kind}"), {}, metric, block_function=metric.pairwise)
    if isinstance(metric, str) and metric == "precomputed":
        if given:
            raise ParameterError(
                f"metric='precomputed' takes no parameters (the distances are given); got "
                f"{', '.join(sorted(given))}: remove them"
            )
        return ResolvedMetric(PRECOMPUTED, {}, metric)
    if callable(metric) and not isinstance(metric, str):
        label = getattr(metric, "__name__", type(metric).__name__)
        return ResolvedMetric(Metric(f"callable:{label}"), given, metric, pair_function=metric)
    if not isinstance(metric, str) or metric not in _BY_NAME:
        raise ParameterError(
            f"unknown metric {metric!r}; valid metrics are {', '.join(metric_names())}, 'precomputed' where a "
            f"distance matrix is accepted, a callable f(u, v) -> float or a sklearn.metrics.DistanceMetric"
        )
    entry = _BY_NAME[metric]
    unknown = sorted(set(given) - set(entry.params))
    if unknown:
        takes = f"takes only {', '.join(entry.params)}" if entry.params else "takes no parameters"
        raise ParameterError(
            f"metric {metric!r} {takes}; got the unknown parameter(s) {', '.join(unknown)} "
            f"({', '.join(f'{key}={given[key]!r}' for key in unknown)}); remove them"
        )
    resolved = {**entry.params, **given}
    if entry.name == "seuclidean" and resolved["V"] is not None:
        resolved["V"] = _real_vector(entry.name, "V", resolved["V"], positive=True)
    if entry.name == "mahalanobis" and resolved["VI"] is not None:
        resolved["VI"] = _inverse_covariance(resolved["VI"])
    if entry.name == "minkowski":
        p = resolved["p"]
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p > 0:
            raise ParameterError(
                f"minkowski needs a real p > 0 (p=1 manhattan, p=2 euclidean, p=inf chebyshev), got p={p!r}"
            )
        p = float(p)
        resolved["p"] = p
        if resolved["w"] is not None:
            resolved["w"] = _real_vector(entry.name, "w", resolved["w"], positive=False)
            return ResolvedMetric(entry, resolved, metric)
        del resolved["w"]
        shortcut = {1.0: "manhattan", 2.0: "euclidean", math.inf: "chebyshev"}.get(p)
        if shortcut is not None:
            return ResolvedMetric(METRICS[shortcut], {}, metric)
    return ResolvedMetric(entry, resolved, metric)


__all__ = ["METRICS", "PRECOMPUTED", "Metric", "ResolvedMetric", "get_metric", "metric_names"]
