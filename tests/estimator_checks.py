"""scikit-learn's estimator checks, without those that cannot apply here (which would only skip)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

# Array-API input needs SCIPY_ARRAY_API=1 and array-api-strict, and bigdist's
# estimators compute on NumPy/dask; multilabel decision_function needs a
# method scikit-learn's own neighbour estimators do not have either.
NOT_APPLICABLE = ("check_array_api_input", "check_classifiers_multilabel_output_format_decision_function")


def _check_name(param: Any) -> str:
    values = getattr(param, "values", param)
    check = values[1]
    return getattr(check, "func", check).__name__


def estimator_checks(estimators: list[Any]) -> pytest.MarkDecorator:
    """``parametrize_with_checks(estimators)`` less the checks in NOT_APPLICABLE."""
    mark = parametrize_with_checks(estimators).mark
    params = [param for param in mark.args[1] if not _check_name(param).startswith(NOT_APPLICABLE)]
    return pytest.mark.parametrize(mark.args[0], params, **mark.kwargs)


def same_message(ours: BaseException, theirs: BaseException) -> bool:
    """Whether two errors say the same, the valid options of a parameter compared as sets.

    scikit-learn prints them as a Python set, whose order changes with the process's hash seed.
    """

    def options_sorted(message: str) -> str:
        return re.sub(r"\{([^}]*)\}", lambda match: "{" + ", ".join(sorted(match[1].split(", "))) + "}", message)

    return options_sorted(str(ours)) == options_sorted(str(theirs))
