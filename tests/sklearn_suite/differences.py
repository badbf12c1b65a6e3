"""Where bigdist's estimators knowingly differ from scikit-learn's, one rule per difference.

Each rule is a regular expression matched against the test's id within its
module (``test_name[parameters]``), with the reason. DIFFERENCES are the
README's documented differences and must keep failing (strict xfail);
PENDING are scikit-learn features bigdist does not have yet (each names
the work that brings it), non-strict so that a branch adding one does not
fail; the run's summary counts their passes ("xpassed") so the list can
shrink.
"""

from __future__ import annotations

# Sparse containers of scikit-learn's parametrizations (ids of its data_containers and CSR_CONTAINERS etc.).
_SPARSE = r".*(sparse|(csr|csc|coo|bsr|dia|dok|lil)_(matrix|array)).*"

DIFFERENCES: list[tuple[str, str]] = [
    (
        r"test_kmeans_verbose\[.*",
        "verbose logs bigdist's own progress lines (logging: 'k-means iteration 3: inertia ...'), "
        "not scikit-learn's printed wording ('Initialization complete', 'Iteration 3, inertia')",
    ),
    (
        r"test_relocating_with_duplicates\[(lloyd|elkan)-dense\]",
        "n_iter_ counts the passes until the centroid shift is within tol (here 2); scikit-learn also stops "
        "at the first pass that changes no label (here 1)",
    ),
    (
        r"test_sample_weight_(init|zero)\[.*",
        "tests the private method _init_centroids of scikit-learn's KMeans",
    ),
    (
        r"(test_auto_algorithm\[.*|test_neighbors_minkowski_semimetric_algo_warn\[.*-KNeighbors(Classifier|Regressor)\])",
        "reads the private attribute _fit_method (the tree scikit-learn chose); bigdist builds no tree",
    ),
]

PENDING: list[tuple[str, str]] = [
    (_SPARSE, "sparse input (issue 13, sk-metrics)"),
    (
        r"(test_kmeans_results|test_weighted_vs_repeated|test_unit_weights_vs_no_weights|test_scaled_weights"
        r"|test_kmeans_empty_cluster_relocated|test_sample_weight_unchanged)\[?.*",
        "KMeans sample_weight (issue 13, speed-kmeans)",
    ),
    (
        r"(test_kneighbors_brute_backend|test_radius_neighbors_brute_backend|test_neighbors_metrics"
        r"|test_nan_euclidean_support|test_precomputed_dense|test_precomputed_cross_validation"
        r"|test_radius_neighbors_sort_results|test_callable_metric|test_pairwise_boolean_distance"
        r"|test_neigh_predictions_algorithm_agnosticity)\[?.*",
        "metrics, callables and precomputed distances bigdist's registry lacks (issue 13, sk-metrics); "
        "not yet analysed test by test",
    ),
    (
        r"(test_unsupervised_inputs|test_unsupervised_kneighbors|test_neighbors_minkowski_semimetric_algo_error"
        r"|test_radius_neighbors_parallel_array_radius|test_pipeline_with_nearest_neighbors_transformer)\[?.*",
        "not yet analysed (failing on this branch; see the issue 13 notes)",
    ),
]
