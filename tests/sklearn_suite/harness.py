"""scikit-learn's own test modules, run with their estimator names bound to bigdist's classes.

Each ``test_sklearn_*.py`` beside this file loads one module shipped in the
installed scikit-learn wheel through :func:`load_suite` and exposes its test
functions and fixtures to pytest; scikit-learn's assertions run untouched.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from typing import Any

import bigdist as bd

# scikit-learn module -> the estimator names it resolves, bound to bigdist's classes.
BINDINGS: dict[str, dict[str, type]] = {
    "sklearn.neighbors": {
        "NearestNeighbors": bd.NearestNeighbors,
        "KNeighborsClassifier": bd.KNeighborsClassifier,
        "KNeighborsRegressor": bd.KNeighborsRegressor,
    },
    "sklearn.cluster": {"KMeans": bd.KMeans, "MeanShift": bd.MeanShift},
}

BIGDIST_ESTIMATORS: tuple[type, ...] = tuple(cls for names in BINDINGS.values() for cls in names.values())

# Calls of any bigdist estimator's constructor or public method, to tell whether a test exercises one.
calls = 0


def _counted(function: Any) -> Any:
    @functools.wraps(function)
    def counting(*args: Any, **kwargs: Any) -> Any:
        global calls
        calls += 1
        return function(*args, **kwargs)

    return counting


def counted_methods(cls: type) -> dict[str, Any]:
    """The constructor and public methods of ``cls``, each wrapped to count its calls."""
    names = ["__init__"] + [name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))]
    wrapped = {}
    for name in names:
        attribute = getattr(cls, name)
        if isinstance(attribute, type) or isinstance(cls.__dict__.get(name), (staticmethod, classmethod)):
            continue
        wrapped[name] = _counted(attribute)
    return wrapped


def _proxy(module: types.ModuleType, overrides: dict[str, type]) -> types.ModuleType:
    """A stand-in for ``module`` whose ``overrides`` names are bigdist's classes, the rest scikit-learn's."""
    proxy = types.ModuleType(module.__name__)
    proxy.__dict__.update(module.__dict__)
    proxy.__dict__.update(overrides)
    return proxy


def load_suite(module_name: str) -> dict[str, Any]:
    """The test functions, fixtures and test classes of scikit-learn's ``module_name``, rebound to bigdist.

    The module is first imported as it is, so that everything it imports is
    scikit-learn's own; then a second copy is executed while the bound names
    of ``sklearn.neighbors`` / ``sklearn.cluster`` are bigdist's classes (so
    that ``from sklearn.cluster import KMeans`` and parametrizations made at
    import see them), and its references to those modules are replaced by
    stand-ins that keep resolving to bigdist at run time.
    """
    original = importlib.import_module(module_name)
    spec = importlib.util.spec_from_file_location(f"bigdist_sklearn_suite.{module_name}", original.__file__)
    copy = importlib.util.module_from_spec(spec)
    modules = {name: importlib.import_module(name) for name in BINDINGS}
    saved = {name: {key: getattr(modules[name], key) for key in names} for name, names in BINDINGS.items()}
    try:
        for name, names in BINDINGS.items():
            for key, cls in names.items():
                setattr(modules[name], key, cls)
        sys.modules[spec.name] = copy
        spec.loader.exec_module(copy)
    finally:
        for name, names in saved.items():
            for key, cls in names.items():
                setattr(modules[name], key, cls)
    for key, value in list(vars(copy).items()):
        if isinstance(value, types.ModuleType) and value.__name__ in BINDINGS:
            setattr(copy, key, _proxy(value, BINDINGS[value.__name__]))
    return {
        key: value
        for key, value in vars(copy).items()
        if key.startswith(("test_", "Test")) or hasattr(value, "_fixture_function_marker") or _is_fixture(value)
    }


def _is_fixture(value: Any) -> bool:
    return type(value).__name__ == "FixtureFunctionDefinition" or hasattr(value, "_pytestfixturefunction")
