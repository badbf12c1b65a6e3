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
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

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
    values : {"any", "nonnegative", "boolean"}
        The input values the metric is defined for.
    """

    name: str
    aliases: tuple[str, ...] = ()
    gemm: bool = False
    similarity: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    values: str = "any"


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
        Metric("minkowski", params={"p": 2.0}),
        Metric("canberra"),
        Metric("braycurtis"),
        Metric("chi2", values="nonnegative"),
        Metric("hamming"),
        Metric("jaccard", values="boolean"),
    )
}

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
    infinity is computed as ``manhattan``, ``euclidean`` or ``chebyshev``
    (same values, the faster kernel).
    """

    metric: Metric
    params: dict[str, Any]
    requested: str

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def gemm(self) -> bool:
        return self.metric.gemm

    @property
    def p(self) -> float:
        return float(self.params.get("p", 2.0))


def get_metric(metric: Any, **params: Any) -> ResolvedMetric:
    """Resolve a metric name (or alias) and its keyword parameters.

    Parameters
    ----------
    metric : str
        A name from :func:`metric_names`, case-sensitive.
    **params
        The metric's parameters (``p`` for ``minkowski``); ``None`` values mean the default.

    Returns
    -------
    ResolvedMetric

    Raises
    ------
    ParameterError
        Unknown metric (the message lists the valid names), a parameter the
        metric does not take, or a parameter out of range (``p`` <= 0).
    """
    if isinstance(metric, ResolvedMetric) and not params:
        return metric
    if not isinstance(metric, str) or metric not in _BY_NAME:
        raise ParameterError(f"unknown metric {metric!r}; valid metrics are {', '.join(metric_names())}")
    entry = _BY_NAME[metric]
    given = {key: value for key, value in params.items() if value is not None}
    unknown = sorted(set(given) - set(entry.params))
    if unknown:
        takes = f"takes only {', '.join(entry.params)}" if entry.params else "takes no parameters"
        raise ParameterError(
            f"metric {metric!r} {takes}; got the unknown parameter(s) {', '.join(unknown)} "
            f"({', '.join(f'{key}={given[key]!r}' for key in unknown)}); remove them"
        )
    resolved = {**entry.params, **given}
    if entry.name == "minkowski":
        p = resolved["p"]
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p > 0:
            raise ParameterError(
                f"minkowski needs a real p > 0 (p=1 manhattan, p=2 euclidean, p=inf chebyshev), got p={p!r}"
            )
        p = float(p)
        resolved["p"] = p
        shortcut = {1.0: "manhattan", 2.0: "euclidean", math.inf: "chebyshev"}.get(p)
        if shortcut is not None:
            return ResolvedMetric(METRICS[shortcut], {}, metric)
    return ResolvedMetric(entry, resolved, metric)


__all__ = ["METRICS", "Metric", "ResolvedMetric", "get_metric", "metric_names"]
