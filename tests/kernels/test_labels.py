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
