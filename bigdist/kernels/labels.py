"""Labelled neighbours on blocks: label lookup, neighbour weights, votes and averages. NumPy only.

The rules follow scikit-learn's brute-force ``KNeighborsClassifier`` and
``KNeighborsRegressor`` exactly: distance weights are ``1 / d``, except that
a query with a neighbour at distance 0 gives weight 1 to its zero-distance
neighbours and 0 to the others; class probabilities are the weights summed
per class in neighbour order and normalised; the predicted class is the one
with the largest summed weight, ties going to the lowest class index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bigdist.errors import ParameterError

Weights = str | Callable[[np.ndarray], Any]


def lookup_chunk(indices: np.ndarray, values: np.ndarray, value_index: np.ndarray) -> np.ndarray:
    """The values of the neighbours that fall in one block of value rows.

    Parameters
    ----------
    indices : ndarray of shape (m, k), int64, global train rows of the neighbours
    values : ndarray of shape (n, n_outputs), float, one block of per-row values
    value_index : ndarray of shape (n,), int64, global rows of ``values`` (consecutive)

    Returns
    -------
    ndarray of shape (m, 1, k, n_outputs), dtype of ``values``
        The value of each neighbour in this block, NaN for neighbours elsewhere.
    """
    m, k = indices.shape
    out = np.full((m, 1, k, values.shape[1]), np.nan, dtype=values.dtype)
    if len(value_index) == 0:
        return out
    local = indices - value_index[0]
    inside = (local >= 0) & (local < len(values))
    out[:, 0][inside] = values[local[inside]]
    return out


def fmax_reduce(block: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """Merge lookup partials: each entry is a real value in exactly one partial, NaN in the others."""
    return np.fmax.reduce(block, axis=axis, keepdims=keepdims)


def neighbour_weights(distances: np.ndarray, weights: Weights) -> np.ndarray | None:
    """Weight of each neighbour, shape (m, k) float64, or None for uniform weights.

    Parameters
    ----------
    distances : ndarray of shape (m, k)
    weights : {"uniform", "distance"} or callable
        ``"distance"`` is ``1 / d``; a row with a zero distance weighs only
        its zero-distance neighbours, each with weight 1. A callable maps the
        (m, k) distances to (m, k) weights.

    Raises
    ------
    ParameterError
        A callable returned the wrong shape, or all-zero weights for some query.
    """
    if weights == "uniform":
        return None
    if weights == "distance":
        with np.errstate(divide="ignore"):
            inverse = 1.0 / np.asarray(distances, dtype=np.float64)
        at_zero = np.isinf(inverse)
        zero_rows = at_zero.any(axis=1)
        inverse[zero_rows] = at_zero[zero_rows]
        return inverse
    values = np.asarray(weights(distances), dtype=np.float64)
    if values.shape != distances.shape:
        raise ParameterError(
            f"the weights callable returned shape {values.shape} for distances of shape {distances.shape}; "
            f"it must return one weight per neighbour, of the same shape"
        )
    all_zero = ~(values != 0).any(axis=1)
    if all_zero.any():
        raise ParameterError(
            f"All neighbors of some sample is getting zero weights. Please modify 'weights' to avoid this case if "
            f"you are using a user-defined function. ({int(all_zero.sum())} queries, the first: query "
            f"{int(np.argmax(all_zero))} of its block; give at least one neighbour of every query a positive weight)"
        )
    return values


def class_sums(codes: np.ndarray, weights: np.ndarray | None, n_classes: int) -> np.ndarray:
    """Summed neighbour weights per class, in neighbour order, shape (m, n_classes) float64.

    Parameters
    ----------
    codes : ndarray of shape (m, k), int, class index of each neighbour
    weights : ndarray of shape (m, k) or None (each neighbour weighs 1)
    n_classes : int
    """
    m, k = codes.shape
    sums = np.zeros((m, n_classes))
    rows = np.arange(m)
    for column in range(k):
        sums[rows, codes[:, column]] += 1.0 if weights is None else weights[:, column]
    return sums


def class_proba(codes: np.ndarray, weights: np.ndarray | None, n_classes: int) -> np.ndarray:
    """Class probabilities: the per-class weight sums normalised per row, shape (m, n_classes)."""
    sums = class_sums(codes, weights, n_classes)
    total = sums.sum(axis=1)[:, None]
    total[total == 0.0] = 1.0
    return sums / total


def class_mode(codes: np.ndarray, weights: np.ndarray | None, n_classes: int) -> np.ndarray:
    """Index of the class with the largest summed weight, ties to the lowest index; shape (m,) int64.

    The neighbours of each row are sorted by class (stably, so each class's weights are summed in
    neighbour order, bitwise as :func:`class_sums` sums them) and the runs compared in class order:
    O(m·k) memory, whatever the number of classes.
    """
    m, k = codes.shape
    order = np.argsort(codes, axis=1, kind="stable")
    sorted_codes = np.take_along_axis(codes, order, axis=1)
    sorted_weights = np.ones((m, k)) if weights is None else np.take_along_axis(weights, order, axis=1)
    best_sum, best_code = np.full(m, -np.inf), np.zeros(m, dtype=np.int64)
    running = np.zeros(m)
    for column in range(k):
        if column:
            running[sorted_codes[:, column] != sorted_codes[:, column - 1]] = 0.0
        running = running + sorted_weights[:, column]
        run_ends = np.ones(m, dtype=bool) if column == k - 1 else sorted_codes[:, column + 1] != sorted_codes[:, column]
        better = run_ends & (running > best_sum)
        best_sum[better] = running[better]
        best_code[better] = sorted_codes[better, column]
    # The classes no neighbour has sum to 0: a best sum of 0 or less (a callable's zero or negative
    # weights) ties with or loses to them, so those rows take the full table's argmax.
    unsure = best_sum <= 0
    if unsure.any():
        best_code[unsure] = np.argmax(class_sums(codes[unsure], weights[unsure], n_classes), axis=1)
    return best_code


def weighted_average(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Mean (uniform) or weighted mean of the neighbours' values per output.

    Parameters
    ----------
    values : ndarray of shape (m, k, n_outputs)
    weights : ndarray of shape (m, k) or None

    Returns
    -------
    ndarray of shape (m, n_outputs)
    """
    m, k, n_outputs = values.shape
    if weights is None:
        if n_outputs == 1:
            # Contiguous, so the summation order is scikit-learn's for 1-D targets.
            return np.mean(np.ascontiguousarray(values[:, :, 0]), axis=1)[:, None]
        return np.mean(values, axis=1)
    out = np.empty((m, n_outputs), dtype=np.float64)
    total = np.sum(weights, axis=1)
    for output in range(n_outputs):
        out[:, output] = np.sum(values[:, :, output] * weights, axis=1) / total
    return out


def values_of_neighbours(indices: np.ndarray, candidates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The values of the neighbours ``indices`` found among ``candidates``, whose values are ``values``.

    Each row's candidates are distinct train rows (padding aside), so every
    neighbour is found once; the values are copied, never recomputed.

    Parameters
    ----------
    indices : ndarray of shape (m, k), int64, a subset of each row's candidates
    candidates : ndarray of shape (m, c), int64 global rows (``PAD_INDEX`` for padding)
    values : ndarray of shape (m, c, n_outputs), the candidates' values

    Returns
    -------
    ndarray of shape (m, k, n_outputs)
    """
    m, c = candidates.shape
    pad = np.iinfo(np.int64).max

    def keys(rows_indices: np.ndarray, span: np.int64) -> np.ndarray:
        # One sortable key per (row, index): padding as -1, so keys stay far below the int64 range.
        shifted = np.where(rows_indices == pad, -1, rows_indices) + 1
        return (np.arange(m, dtype=np.int64)[:, None] * span + shifted).ravel()

    real = candidates[candidates != pad]
    span = np.int64((real.max() if real.size else 0) + 2)
    candidate_keys = keys(candidates, span)
    order = np.argsort(candidate_keys, kind="stable")
    positions = order[np.searchsorted(candidate_keys[order], keys(indices, span))]
    return values.reshape(m * c, -1)[positions].reshape(m, indices.shape[1], values.shape[2])
