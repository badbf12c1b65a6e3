"""Labelled neighbours: k-nearest-neighbour classification and regression out of core.

The votes are computed from the lazy top-k result of :func:`bigdist.knn`,
one query block at a time: the neighbours' labels are looked up block
against block (``bigdist-label-lookup``, never gathering the labels or the
train set), then weighted and counted per query block
(``bigdist-knn-vote``). The rules are scikit-learn's, see
``bigdist.kernels.labels``.
"""

from __future__ import annotations

import logging
import warnings
from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
from sklearn.base import ClassifierMixin, MultiOutputMixin, RegressorMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from bigdist import config
from bigdist.errors import InputDtypeError, InputShapeError
from bigdist.execution.jobs import OutputArray
from bigdist.execution.labelled import write_labelled
from bigdist.execution.waves import ProgressCallback
from bigdist.io import check_int, in_memory, write_group
from bigdist.io.labels import as_labels
from bigdist.kernels.labels import class_mode, class_proba, neighbour_weights, weighted_average
from bigdist.neighbors import SEARCH_PARAMETERS, NeighborsBase
from bigdist.reductions import lookup_rows

logger = logging.getLogger(__name__)

_WEIGHTS = ("uniform", "distance")
_COLUMN_VECTOR = (
    "A column-vector y was passed when a 1d array was expected. Please change the shape of y to (n_samples,), "
    "for example using ravel()."
)


def _values_array(values: np.ndarray | da.Array) -> da.Array:
    """Per-row values of shape (n, n_outputs) as a dask array, one chunk of about chunk-bytes per block."""
    if isinstance(values, da.Array):
        return values
    rows = max(1, config.get("chunk-bytes") // max(1, values.shape[1] * values.dtype.itemsize))
    return da.from_array(values, chunks=(min(rows, len(values)), values.shape[1]))


def _encode(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of each label in the sorted ``classes``."""
    return np.searchsorted(classes, labels)


def _check_discrete(classes: np.ndarray) -> None:
    """Refuse continuous labels, as scikit-learn does, from the distinct values of lazy labels."""
    if classes.dtype.kind == "f" and not np.array_equal(classes, np.round(classes)):
        # scikit-learn's wording, which its estimator checks look for; a bigdist error, so the CLI reports it cleanly.
        raise InputDtypeError(
            f"Unknown label type: continuous. Maybe you are trying to fit a classifier, which expects discrete "
            f"classes on a regression target with continuous values (e.g. {classes[classes != np.round(classes)][0]!r}"
            f"); use KNeighborsRegressor for those"
        )


def _as_2d(labels: np.ndarray | da.Array) -> np.ndarray | da.Array:
    return labels.reshape(-1, 1) if labels.ndim == 1 else labels


def _vote_block(
    distances: np.ndarray, values: np.ndarray, *, weights: Any, n_classes: tuple[int, ...], output: int, proba: bool
) -> np.ndarray:
    codes = values[:, :, output].astype(np.intp)
    weight = neighbour_weights(distances, weights)
    if proba:
        return class_proba(codes, weight, n_classes[output])
    return class_mode(codes, weight, n_classes[output])


def _classify_block(
    distances: np.ndarray,
    values: np.ndarray,
    *,
    weights: Any,
    classes: tuple[np.ndarray, ...],
    outputs_2d: bool,
    proba: bool,
    suffixes: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """A query block's predictions (and probabilities) by name, as predict and predict_proba give them."""
    n_classes = tuple(len(found) for found in classes)
    out: dict[str, np.ndarray] = {}
    labels = []
    for output, (found, suffix) in enumerate(zip(classes, suffixes, strict=True)):
        vote = partial(_vote_block, distances, values, weights=weights, n_classes=n_classes, output=output)
        labels.append(found.take(vote(proba=False)))
        if proba:
            out[f"probabilities{suffix}"] = vote(proba=True)
    out["predictions"] = np.stack(labels, axis=1).astype(classes[0].dtype) if outputs_2d else labels[0]
    return out


def _average_block(distances: np.ndarray, values: np.ndarray, *, weights: Any, outputs_2d: bool) -> np.ndarray:
    average = weighted_average(values, neighbour_weights(distances, weights))
    return average if outputs_2d else average[:, 0]


class _LabelledNeighbors(MultiOutputMixin, NeighborsBase):
    """Train rows with a label each, queried through :func:`bigdist.knn`."""

    _parameter_constraints: dict = {
        **{key: value for key, value in NeighborsBase._parameter_constraints.items() if key != "radius"},
        "weights": [StrOptions(set(_WEIGHTS)), callable, None],
    }

    def __init__(
        self,
        n_neighbors: int = 5,
        *,
        weights: Any = "uniform",
        algorithm: str = "auto",
        leaf_size: int = 30,
        p: float | None = 2,
        metric: Any = "minkowski",
        metric_params: dict[str, Any] | None = None,
        n_jobs: int | None = None,
        split_every: int | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.p = p
        self.metric = metric
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.split_every = split_every

    def _weights(self) -> Any:
        # None is scikit-learn's other spelling of "uniform".
        return "uniform" if self.weights is None else self.weights

    def _fit_train(self, X: Any, y: Any) -> np.ndarray | da.Array:
        """Validate the parameters, record the train rows; return the labels (NumPy or dask)."""
        self._check_params()
        if y is None:
            raise InputShapeError(
                f"{type(self).__name__} requires y to be passed, but the target y is None; give one label per train row"
            )
        self._record_train(X)
        self._fit_in_memory = self._fit_in_memory and in_memory(y)
        return as_labels(y, self.n_samples_fit_, name="y")

    def _store_values(self, values: np.ndarray | da.Array) -> None:
        self._values = _values_array(values)

    def _query_array(self, X: Any) -> da.Array:
        queries = self._rows(X)
        if queries.shape[1] != self.n_features_in_:
            raise InputShapeError(
                f"X has {queries.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return queries

    def _neighbour_values(self, X: Any) -> tuple[da.Array, da.Array, bool]:
        """Lazy distances (m, k) and the neighbours' stored values (m, k, n_outputs)."""
        distances, indices, numpy_out = self._neighbours(X)
        split_every = config.get("split-every") if self.split_every is None else self.split_every
        values = lookup_rows(indices, self._values, split_every=check_int("split_every", split_every, minimum=2))
        return distances, values, numpy_out


class KNeighborsClassifier(ClassifierMixin, _LabelledNeighbors):
    """Classify by a vote of the k nearest train rows, exactly, for data far bigger than RAM.

    Fitting records the train rows and their labels (both may stay on disk);
    each prediction is a :func:`bigdist.knn` run followed by a blockwise
    vote. NumPy inputs give NumPy results; dask, Zarr or ``.npy`` inputs
    (train rows, labels or queries) give lazy dask arrays. Predictions and
    probabilities equal scikit-learn's brute-force ``KNeighborsClassifier``.

    Parameters
    ----------
    n_neighbors : int, default=5
    weights : {"uniform", "distance"}, callable or None, default="uniform"
        ``"distance"`` weighs a neighbour by ``1 / d``; a query with
        neighbours at distance 0 counts only those, each with weight 1
        (scikit-learn's rule). A callable maps the (n_queries, k) distances
        of a query block to weights of the same shape. None is "uniform".
    {search}
    p : float, default=2
        Order of the ``minkowski`` metric (ignored by the other metrics, as in
        scikit-learn); a ``p`` in ``metric_params`` takes precedence.
    metric : str, default="minkowski"
        Any metric :func:`bigdist.knn` accepts; ``minkowski`` with p=2 runs as
        ``euclidean``, p=1 as ``manhattan``, p=inf as ``chebyshev``.
    metric_params : dict, optional
        Further keyword arguments of the metric, passed to :func:`bigdist.knn`.
    split_every : int, optional
        Fan-in of the reductions across train blocks (default from config).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,), or list of such arrays (one per output)
    outputs_2d_ : bool
        Whether the labels had several outputs (y of shape (n_samples, n_outputs)).
    n_features_in_ : int
    n_samples_fit_ : int
    """

    __doc__ = __doc__.replace("{search}", SEARCH_PARAMETERS)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X: Any, y: Any) -> KNeighborsClassifier:
        """Record the train rows and their class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels aligned with the rows of X: NumPy or dask array, Zarr
            array, or a path/URL. Lazy labels are read once here, to find the classes.

        Raises
        ------
        InputShapeError
            y has a length other than the rows of X.
        NonFiniteError
            y holds NaN or infinity.
        ValueError
            y holds continuous values (use :class:`KNeighborsRegressor`).
        """
        labels = self._fit_train(X, y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            warnings.warn(_COLUMN_VECTOR, DataConversionWarning, stacklevel=2)
            labels = labels.reshape(-1)
        self.outputs_2d_ = labels.ndim == 2
        columns = [_as_2d(labels)[:, output] for output in range(_as_2d(labels).shape[1])]
        if isinstance(labels, np.ndarray):
            check_classification_targets(labels)
            encoded = [np.unique(column, return_inverse=True) for column in columns]
            classes = [found for found, _ in encoded]
            codes: np.ndarray | da.Array = np.stack([inverse.reshape(-1) for _, inverse in encoded], axis=1)
        else:
            classes = list(dask.compute(*(da.unique(column) for column in columns)))
            for found in classes:
                _check_discrete(found)
            codes = da.stack(
                [
                    column.map_blocks(_encode, found, dtype=np.intp, meta=np.empty((0,), dtype=np.intp))
                    for column, found in zip(columns, classes, strict=True)
                ],
                axis=1,
            )
        self._store_values(codes.astype(np.float64))
        self.classes_ = classes if self.outputs_2d_ else classes[0]
        return self

    def _classes_list(self) -> list[np.ndarray]:
        return list(self.classes_) if self.outputs_2d_ else [self.classes_]

    def _votes(self, X: Any, *, proba: bool) -> tuple[list[da.Array], bool]:
        check_is_fitted(self, "classes_")
        distances, values, numpy_out = self._neighbour_values(X)
        classes = self._classes_list()
        n_classes = tuple(len(found) for found in classes)
        votes = []
        for output, count in enumerate(n_classes):
            vote = partial(_vote_block, weights=self._weights(), n_classes=n_classes, output=output, proba=proba)
            name = f"bigdist-knn-{'proba' if proba else 'vote'}-{dask.base.tokenize(distances, values, vote)}"
            # Probabilities: one column per class; votes: one class code per query.
            if proba:
                out_index, new_axes, meta = "ic", {"c": count}, np.empty((0, 0))
            else:
                out_index, new_axes, meta = "i", None, np.empty((0,), dtype=np.int64)
            votes.append(
                da.blockwise(
                    vote, out_index, distances, "ik", values, "iko",
                    new_axes=new_axes, concatenate=True, dtype=meta.dtype, meta=meta, name=name,
                )
            )  # fmt: skip
        return votes, numpy_out

    def predict(self, X: Any = None) -> Any:
        """Class of each query row: the largest summed weight among its neighbours, ties to the lowest class.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            None means the train rows, each excluding itself.

        Returns
        -------
        ndarray or dask array of shape (n_queries,) or (n_queries, n_outputs)
        """
        codes, numpy_out = self._votes(X, proba=False)
        classes = self._classes_list()
        dtype = classes[0].dtype
        labels = [
            code.map_blocks(found.take, dtype=dtype, meta=np.empty((0,), dtype=dtype))
            for code, found in zip(codes, classes, strict=True)
        ]
        predicted = da.stack(labels, axis=1).astype(dtype) if self.outputs_2d_ else labels[0]
        return self._compute(predicted)[0] if numpy_out else predicted

    def predict_proba(self, X: Any = None) -> Any:
        """Class probabilities of each query row, classes in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            None means the train rows, each excluding itself.

        Returns
        -------
        ndarray or dask array of shape (n_queries, n_classes), or a list of them (one per output)
        """
        probabilities, numpy_out = self._votes(X, proba=True)
        if numpy_out:
            probabilities = list(self._compute(*probabilities))
        return probabilities if self.outputs_2d_ else probabilities[0]

    def write_predictions(
        self,
        path: str,
        X: Any = None,
        *,
        proba: bool = True,
        overwrite: bool = False,
        attrs: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> str:
        """Write ``predictions``, ``probabilities`` and ``classes`` of the queries to a Zarr group, in waves.

        The arrays of ``bigdist classify``: with several outputs, ``probabilities_<i>``
        and ``classes_<i>`` per output. The kNN's panel tasks read their train
        rows and their labels themselves; a task per query block votes and
        writes the block, marked done, so an unfinished group of the same run
        resumes (``bigdist.execution.labelled``). Sparse rows and precomputed
        distances are written from the lazy graph instead.

        Parameters
        ----------
        path : str, local path or fsspec URL
        X : array-like of shape (n_queries, n_features), optional
            None means the train rows, each excluding itself.
        proba : bool, also write the class probabilities
        overwrite : bool, replace a finished output (or another run's unfinished one)
        attrs : dict, optional, more attributes of the run
        progress : callable, optional
            ``progress(done, total, elapsed_seconds)`` after every written query block.
        storage_options : dict, optional
            fsspec options of the output URL's filesystem, as for :func:`bigdist.io.write_group`.

        Returns
        -------
        str, the path
        """
        check_is_fitted(self, "classes_")
        classes = self._classes_list()
        suffixes = [f"_{output}" for output in range(len(classes))] if self.outputs_2d_ else [""]
        attrs = {"classify": self.get_params(), **(attrs or {})}
        result, _ = self._search(X)
        if not result._waves:
            logger.info("classify to %s: %s rows are written from one graph, not in waves", path,
                        "sparse" if result.sparse else "precomputed")  # fmt: skip
            arrays: dict[str, Any] = {"predictions": self.predict(X)}
            probabilities = self.predict_proba(X) if proba else None
            for output, suffix in enumerate(suffixes):
                arrays[f"classes{suffix}"] = da.from_array(classes[output])
                if probabilities is not None:
                    arrays[f"probabilities{suffix}"] = probabilities[output] if self.outputs_2d_ else probabilities
            return str(write_group(path, arrays, attrs=attrs, overwrite=overwrite, storage_options=storage_options))
        rows = result._wave_queries().chunks[0]
        m = result.n_queries
        dtype = classes[0].dtype
        # Several outputs: one chunk each, as the lazy predictions (one array per output, stacked) are stored.
        predictions = ((m, len(classes)), (rows, (1,) * len(classes))) if self.outputs_2d_ else ((m,), (rows,))
        outputs = [OutputArray("predictions", predictions[0], dtype, predictions[1])]
        if proba:
            outputs += [
                OutputArray(f"probabilities{suffix}", (m, len(found)), np.dtype(np.float64), (rows, (len(found),)))
                for suffix, found in zip(suffixes, classes, strict=True)
            ]
        vote = partial(_classify_block, weights=self._weights(), classes=tuple(classes), outputs_2d=self.outputs_2d_,
                       proba=proba, suffixes=tuple(suffixes))  # fmt: skip
        return write_labelled(
            path,
            result,
            self._values,
            outputs=tuple(outputs),
            constants={f"classes{suffix}": found for suffix, found in zip(suffixes, classes, strict=True)},
            vote=vote,
            drop_self=X is None,
            split_every=result.split_every,
            attrs=attrs,
            overwrite=overwrite,
            progress=progress,
            storage_options=storage_options,
        )

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``predict(X)`` against y; with several outputs, the share of rows with all of them right.

        Lazy inputs are scored blockwise, without gathering the predictions.
        """
        predicted = self.predict(X)
        if not isinstance(predicted, da.Array):
            if predicted.ndim == 2:
                # accuracy_score refuses several outputs: the share of rows with every output right.
                right = (predicted == _as_2d(np.asarray(y))).all(axis=1)
                return float(np.average(right, weights=sample_weight))
            return float(accuracy_score(y, predicted, sample_weight=sample_weight))
        truth = as_labels(y, predicted.shape[0], name="y", check_finite=False)
        correct = predicted == (truth.reshape(-1) if predicted.ndim == 1 else _as_2d(truth))
        if correct.ndim == 2:
            correct = correct.all(axis=1)
        return _weighted_mean(correct.astype(np.float64), sample_weight, predicted.shape[0])


class KNeighborsRegressor(RegressorMixin, _LabelledNeighbors):
    """Predict by the (weighted) mean target of the k nearest train rows, exactly, out of core.

    Parameters, laziness and weighting as :class:`KNeighborsClassifier`;
    predictions equal scikit-learn's brute-force ``KNeighborsRegressor``.

    Parameters
    ----------
    n_neighbors : int, default=5
    weights : {"uniform", "distance"}, callable or None, default="uniform"
    {search}
    p : float, default=2
    metric : str, default="minkowski"
    metric_params : dict, optional
    split_every : int, optional

    Attributes
    ----------
    n_features_in_ : int
    n_samples_fit_ : int
    """

    __doc__ = __doc__.replace("{search}", SEARCH_PARAMETERS)

    def fit(self, X: Any, y: Any) -> KNeighborsRegressor:
        """Record the train rows and their targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Numeric targets aligned with the rows of X, in memory or lazy
            (a lazy y is checked for NaN when its blocks are read).
        """
        targets = self._fit_train(X, y)
        if targets.dtype == object and isinstance(targets, np.ndarray):
            try:
                targets = targets.astype(np.float64)
            except (TypeError, ValueError):
                raise InputDtypeError(
                    "y holds values that are not numbers; regression targets must be numeric "
                    "(for class labels use KNeighborsClassifier)"
                ) from None
            as_labels(targets, self.n_samples_fit_, name="y")
        if targets.dtype.kind not in "biuf":
            raise InputDtypeError(
                f"y has dtype {targets.dtype}; regression targets must be numeric, e.g. y.astype('float64') "
                f"(for class labels use KNeighborsClassifier)"
            )
        self._outputs_2d = targets.ndim == 2
        values = _as_2d(targets)
        self._store_values(values if values.dtype.kind == "f" else values.astype(np.float64))
        return self

    def predict(self, X: Any = None) -> Any:
        """Mean (or weighted mean) target of each query row's neighbours.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            None means the train rows, each excluding itself.

        Returns
        -------
        ndarray or dask array of shape (n_queries,) or (n_queries, n_outputs)
        """
        check_is_fitted(self, "_values")
        distances, values, numpy_out = self._neighbour_values(X)
        dtype = self._values.dtype if self._weights() == "uniform" else np.dtype(np.float64)
        average = partial(_average_block, weights=self._weights(), outputs_2d=self._outputs_2d)
        name = f"bigdist-knn-average-{dask.base.tokenize(distances, values, average)}"
        out_index = "io" if self._outputs_2d else "i"
        predicted = da.blockwise(
            average, out_index, distances, "ik", values, "iko",
            concatenate=True, dtype=dtype, meta=np.empty((0,) * len(out_index), dtype=dtype), name=name,
        )  # fmt: skip
        return self._compute(predicted)[0] if numpy_out else predicted

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R² of ``predict(X)``, averaged over outputs.

        Lazy inputs are scored blockwise, without gathering the predictions.
        """
        predicted = self.predict(X)
        if not isinstance(predicted, da.Array):
            return float(r2_score(y, predicted, sample_weight=sample_weight))
        truth = _as_2d(da.asarray(as_labels(y, predicted.shape[0], name="y"))).astype(np.float64)
        predicted = _as_2d(predicted).astype(np.float64)
        weight = _weights_column(sample_weight, predicted.shape[0])
        total = weight.sum()
        mean = (weight * truth).sum(axis=0) / total
        residual = (weight * (truth - predicted) ** 2).sum(axis=0)
        spread = (weight * (truth - mean) ** 2).sum(axis=0)
        residual, spread = dask.compute(residual, spread)
        # scikit-learn's convention for a constant target: 1 if predicted exactly, else 0.
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(spread > 0, 1.0 - residual / spread, np.where(residual == 0, 1.0, 0.0))
        return float(np.mean(r2))


def _weights_column(sample_weight: Any, n_rows: int) -> da.Array:
    if sample_weight is None:
        return da.ones((n_rows, 1))
    return _as_2d(da.asarray(as_labels(sample_weight, n_rows, name="sample_weight"))).astype(np.float64)


def _weighted_mean(values: da.Array, sample_weight: Any, n_rows: int) -> float:
    weight = _weights_column(sample_weight, n_rows)[:, 0]
    total, weight_sum = dask.compute((values * weight).sum(), weight.sum())
    return float(total / weight_sum)


__all__ = ["KNeighborsClassifier", "KNeighborsRegressor"]
