"""Where bigdist's estimators knowingly differ from scikit-learn's, one rule per difference.

Each rule is the exact ids of the tests it covers within their module
(``test_name[parameters]``, for scikit-learn's default test seed 42), with
the reason. They are the README's documented differences and must keep
failing (strict xfail): a test that starts passing fails the run, so that
its rule goes.
"""

from __future__ import annotations


def _ids(name: str, *parameters: str) -> tuple[str, ...]:
    return tuple(f"{name}[{values}]" for values in parameters)


_BOTH_ALGORITHMS = ("lloyd", "elkan")
_CONTAINERS = ("dense", "sparse_matrix", "sparse_array")

DIFFERENCES: list[tuple[tuple[str, ...], str]] = [
    (
        _ids("test_kmeans_verbose", "0.01-lloyd", "0.01-elkan", "0-lloyd", "0-elkan"),
        "verbose logs bigdist's own progress lines (logging: 'k-means iteration 3: inertia ...'), "
        "not scikit-learn's printed wording ('Initialization complete', 'Iteration 3, inertia')",
    ),
    (
        _ids("test_relocating_with_duplicates", *(f"{a}-{c}" for a in _BOTH_ALGORITHMS for c in _CONTAINERS)),
        "n_iter_ counts the passes until the centroid shift is within tol (here 2); scikit-learn also stops "
        "at the first pass that changes no label (here 1)",
    ),
    (
        _ids("test_sample_weight_init", "42-k-means++", "42-random")
        + _ids("test_sample_weight_zero", "42-k-means++", "42-random"),
        "tests the private method _init_centroids of scikit-learn's KMeans",
    ),
    (
        _ids(
            "test_auto_algorithm",
            "X0-precomputed-None-brute",
            "X1-euclidean-None-brute",
            "X2-euclidean-None-brute",
            "X3-euclidean-None-kd_tree",
            "X4-seuclidean-metric_params4-ball_tree",
            "X5-correlation-None-brute",
        )
        + _ids(
            "test_neighbors_minkowski_semimetric_algo_warn",
            *(
                f"{a}-{p}-{e}"
                for a in ("auto", "brute")
                for p in (2, 100)
                for e in ("KNeighborsClassifier", "KNeighborsRegressor")
            ),
        ),
        "reads the private attribute _fit_method (the tree scikit-learn chose); bigdist builds no tree",
    ),
    (
        _ids("test_predict_sparse_ball_kd_tree", "csr_matrix", "csr_array")
        + _ids(
            "test_neighbors_validate_parameters",
            *(f"{c}-{e}" for c in ("csr_matrix", "csr_array") for e in ("KNeighborsClassifier", "KNeighborsRegressor")),
        ),
        "sparse input is searched with every metric and algorithm (bigdist builds no tree); scikit-learn refuses "
        "sparse queries to a kd_tree / ball_tree fit and metrics outside VALID_METRICS_SPARSE (haversine)",
    ),
    (
        _ids("test_kneighbors_brute_backend", "float32-42-mahalanobis", "float64-42-mahalanobis")
        + _ids("test_radius_neighbors_brute_backend", "float32-42-mahalanobis", "float64-42-mahalanobis"),
        "mahalanobis refuses a VI that is not positive semi-definite (the test's A + A.T + 3I over 30 features "
        "has a negative eigenvalue), naming the eigenvalue; scikit-learn computes square roots of its quadratic form",
    ),
]
