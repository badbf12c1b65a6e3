"""The metric a driver runs on its inputs: transformed rows for the metrics that have them, user functions.

``seuclidean``, ``mahalanobis`` and weighted ``minkowski`` are Euclidean or
Minkowski distances of transformed rows (``bigdist.kernels.transforms``):
the rows are transformed lazily, block by block, and the kernels of the
base metric run on them. In a self-join the parameters not given are
estimated from the rows, lazily, as scikit-learn's ``pairwise_distances(X)``
estimates them: ``V`` is the variance (``ddof=1``) of each feature, ``VI``
the inverse of the covariance; with train rows given they are required, as
in scikit-learn.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from bigdist.errors import ParameterError
from bigdist.io import as_array, check_features
from bigdist.io.sparse import is_sparse, sparse_or_dense, to_sparse_blocks
from bigdist.kernels.dense import DistanceFunction
from bigdist.kernels.registry import ResolvedMetric, get_metric
from bigdist.kernels.transforms import (
    estimated_inverse_covariance,
    mahalanobis_factor,
    minkowski_scale,
    multiply_rows,
    scale_rows,
    seuclidean_scale,
)


def _estimated_from(train_array: da.Array, self_join: bool, name: str, key: str, example: str) -> da.Array:
    if not self_join:
        raise ParameterError(
            f"metric {name!r} needs {key} when train rows are given (only the self-join estimates it from the rows, "
            f"as scikit-learn); pass {key}, e.g. {key}={example}"
        )
    return train_array.astype(np.float64)


def _variances(rows: da.Array) -> da.Array:
    return rows.var(axis=0, ddof=1)


def _inverse_covariance(rows: da.Array) -> da.Array:
    centred = rows - rows.mean(axis=0)
    covariance = (centred.T @ centred) / max(rows.shape[0] - 1, 1)
    return covariance.rechunk(covariance.shape).map_blocks(estimated_inverse_covariance, dtype=np.float64)


def _apply(array: da.Array, kernel: Any, factor: np.ndarray | da.Array, what: str) -> da.Array:
    """``kernel(block, factor)`` on every row block, float64, ``factor`` one key of the graph."""
    if isinstance(factor, np.ndarray):
        factor = da.from_array(factor, chunks=factor.shape)
    return da.blockwise(
        kernel,
        "if",
        array,
        "if",
        factor,
        "gh"[: factor.ndim],
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
        name=f"bigdist-{what}-rows-{tokenize(array, factor, what)}",
    )


def metric_arrays(
    resolved: ResolvedMetric, query_array: da.Array, train_array: da.Array, self_join: bool
) -> tuple[ResolvedMetric, da.Array, da.Array]:
    """The metric the kernels compute and the rows they compute it on.

    Parameters
    ----------
    resolved : ResolvedMetric, from ``get_metric``
    query_array, train_array : dask arrays of shape (m, d) and (n, d) (the same array in a self-join)
    self_join : bool

    Returns
    -------
    (kernel metric, query rows, train rows): for a metric of transformed rows
    the base metric and the transformed (float64) rows, else the inputs unchanged.

    Raises
    ------
    ParameterError
        The metric or its parameters do not fit the number of features.
    """
    resolved.check_features(train_array.shape[1])
    if not resolved.metric.transform and not (resolved.name == "minkowski" and resolved.params.get("w") is not None):
        return resolved, query_array, train_array
    if resolved.name == "seuclidean":
        variances = resolved.params["V"]
        if variances is None:
            rows = _estimated_from(train_array, self_join, "seuclidean", "V", "numpy.var(train, axis=0, ddof=1)")
            factor: Any = _variances(rows).map_blocks(seuclidean_scale, dtype=np.float64)
        else:
            factor = seuclidean_scale(variances)
        kernel, base = scale_rows, get_metric("euclidean")
    elif resolved.name == "mahalanobis":
        inverse = resolved.params["VI"]
        if inverse is None:
            rows = _estimated_from(train_array, self_join, "mahalanobis", "VI", "numpy.linalg.inv(numpy.cov(train.T))")
            factor = _inverse_covariance(rows).map_blocks(mahalanobis_factor, dtype=np.float64)
        else:
            factor = mahalanobis_factor(inverse)
        kernel, base = multiply_rows, get_metric("euclidean")
    else:
        p = resolved.p
        factor = minkowski_scale(resolved.params["w"], p)
        kernel, base = scale_rows, get_metric("minkowski", p=p)
    train_rows = _apply(train_array, kernel, factor, resolved.name)
    query_rows = train_rows if self_join else _apply(query_array, kernel, factor, resolved.name)
    return base, query_rows, train_rows


def distance_function(resolved: ResolvedMetric) -> DistanceFunction:
    """The user's function of a function metric (a callable or a DistanceMetric) as a block function."""
    return DistanceFunction(
        pair_function=resolved.pair_function,
        params=resolved.params,
        block_function=resolved.block_function,
        label=resolved.name,
    )


def load_inputs(
    resolved: ResolvedMetric, queries: Any, train: Any, names: tuple[str, str] = ("queries", "train")
) -> tuple[da.Array, da.Array, bool, bool]:
    """Both inputs as dask arrays: (query rows, train rows, self_join, sparse).

    Sparse input (scipy.sparse, or dask arrays of sparse blocks) gives CSR
    blocks on both sides (a dense other side is converted block by block);
    ``nan_euclidean`` inputs may hold NaN.

    Raises
    ------
    ParameterError
        Sparse input with a metric that has no sparse form here (those of transformed rows, ``nan_euclidean``),
        as in scikit-learn. A user's function takes sparse rows, as there (1-row CSR matrices, pair by pair).
    """
    self_join = train is None
    finite = check_finite_for(resolved)
    sparse = is_sparse(queries) or (not self_join and is_sparse(train))
    if sparse and (resolved.metric.transform or resolved.name == "nan_euclidean"
                   or resolved.params.get("w") is not None):  # fmt: skip
        raise ParameterError(
            f"metric {resolved.name!r} does not take sparse input (nor in scikit-learn); pass dense rows "
            f"(X.toarray(), for data that fits) or use a metric sparse input takes, e.g. euclidean, cosine, manhattan"
        )
    load = partial(sparse_or_dense, as_dense=as_array, check_finite=finite)
    train_array = load(queries if self_join else train, name=names[0] if self_join else names[1])
    query_array = train_array if self_join else load(queries, name=names[0])
    if sparse:
        if not is_sparse(train_array):
            train_array = to_sparse_blocks(train_array)
        if not is_sparse(query_array):
            query_array = to_sparse_blocks(query_array)
    check_features(query_array, train_array)
    return query_array, train_array, self_join, sparse


def check_finite_for(resolved: ResolvedMetric) -> bool:
    """Whether the inputs must be finite: ``nan_euclidean`` takes NaN as a missing value."""
    return resolved.metric.values != "missing"


__all__ = ["check_finite_for", "distance_function", "load_inputs", "metric_arrays"]
