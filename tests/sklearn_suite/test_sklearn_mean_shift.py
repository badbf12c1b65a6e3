"""scikit-learn's sklearn/cluster/tests/test_mean_shift.py, its estimators bound to bigdist's (see harness.py)."""

from tests.sklearn_suite.harness import load_suite

globals().update(load_suite("sklearn.cluster.tests.test_mean_shift"))
