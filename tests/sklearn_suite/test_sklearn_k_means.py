"""scikit-learn's sklearn/cluster/tests/test_k_means.py, its estimators bound to bigdist's (see harness.py)."""

from tests.sklearn_suite.harness import load_suite

globals().update(load_suite("sklearn.cluster.tests.test_k_means"))
