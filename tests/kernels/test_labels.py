import tracemalloc

import numpy as np
import pytest

from bigdist.errors import ParameterError
from bigdist.kernels.labels import class_mode, class_proba, lookup_chunk, neighbour_weights, weighted_average


def test_lookup_chunk_fills_only_rows_of_its_block():
    values = np.array([[10.0], [11.0], [12.0]])
    indices = np.array([[4, 6], [5, 0]])
    out = lookup_chunk(indices, values, np.arange(4, 7))
    assert out.shape == (2, 1, 2, 1)
    np.testing.assert_array_equal(out[:, 0, :, 0], [[10.0, 12.0], [11.0, np.nan]])


def test_distance_weights_follow_the_zero_distance_rule():
    distances = np.array([[0.5, 2.0, 4.0], [0.0, 1.0, 0.0]])
    weights = neighbour_weights(distances, "distance")
    np.testing.assert_array_equal(weights, [[2.0, 0.5, 0.25], [1.0, 0.0, 1.0]])
    assert neighbour_weights(distances, "uniform") is None
    with pytest.raises(ParameterError, match="returned shape"):
        neighbour_weights(distances, lambda d: d[:, 0])


def test_votes_break_ties_to_the_lowest_class():
    codes = np.array([[2, 1, 1, 2], [3, 0, 0, 3]])
    np.testing.assert_array_equal(class_mode(codes, None, 4), [1, 0])
    np.testing.assert_array_equal(class_proba(codes, None, 4), [[0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5]])
    weights = np.array([[1.0, 0.25, 0.25, 1.0], [1.0, 1.0, 1.0, 3.0]])
    np.testing.assert_array_equal(class_mode(codes, weights, 4), [2, 3])


def test_weighted_average_per_output():
    values = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_allclose(weighted_average(values, None), values.mean(axis=1))
    weights = np.array([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    np.testing.assert_allclose(weighted_average(values, weights), [[2.0, 3.0], [8.0, 9.0]])


def _vote_oracle(codes, weights, n_classes):
    # Per row: each class's weights summed in neighbour order; absent classes sum 0; ties to the lowest class.
    winners = []
    for row in range(codes.shape[0]):
        sums = [0.0] * n_classes
        for column in range(codes.shape[1]):
            sums[codes[row, column]] += 1.0 if weights is None else weights[row, column]
        winners.append(max(range(n_classes), key=lambda c: (sums[c], -c)))
    return winners


def test_class_mode_equals_the_per_class_vote_with_many_classes_and_ties():
    rng = np.random.default_rng(9)
    for _ in range(200):
        m, k, n_classes = rng.integers(1, 40), rng.integers(1, 12), rng.integers(1, 7)
        codes = rng.integers(0, n_classes, size=(m, k))
        for weights in (None, rng.integers(0, 3, size=(m, k)).astype(float), rng.normal(size=(m, k))):
            np.testing.assert_array_equal(
                class_mode(codes, weights, n_classes), _vote_oracle(codes, weights, n_classes)
            )
    # 100,000 classes: the vote needs the neighbours, not a (rows, classes) table (800 MB here).
    codes = rng.integers(0, 100_000, size=(1000, 5))
    tracemalloc.start()
    class_mode(codes, None, 100_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 2**20
