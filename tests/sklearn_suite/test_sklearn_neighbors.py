"""scikit-learn's sklearn/neighbors/tests/test_neighbors.py, its estimators bound to bigdist's (see harness.py)."""

from tests.sklearn_suite.harness import load_suite

globals().update(load_suite("sklearn.neighbors.tests.test_neighbors"))
