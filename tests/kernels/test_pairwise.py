import numpy as np
import pytest

from bigdist.errors import ValueRangeError
from bigdist.kernels.pairwise import pairwise_chunk
from tests.oracle import distances as oracle_distances

RNG = np.random.default_rng(6)
HUGE = (RNG.standard_normal((70, 6)) * 1e20).astype(np.float32)  # squares of 1e40 overflow float32
TINY = (RNG.standard_normal((70, 6)) * 1e-25).astype(np.float32)  # squares of 1e-50 underflow float32


def _block(queries, train, metric, self_join=False):
    query_index, train_index = np.arange(len(queries)), np.arange(len(train))
    return pairwise_chunk(
        queries, train, query_index, train_index, metric=metric, p=2.0, gemm=True, self_join=self_join
    )


@pytest.mark.parametrize("data", [HUGE, TINY], ids=["1e20", "1e-25"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "correlation"])
def test_float32_values_beyond_the_range_of_their_squares(data, metric):
    block = _block(data[:20], data[20:], metric)
    assert block.dtype == np.float32
    np.testing.assert_allclose(block, oracle_distances(data[:20], data[20:], metric), rtol=1e-5)


def test_self_join_of_huge_values_keeps_exact_zeros():
    block = _block(HUGE, HUGE, "euclidean", self_join=True)
    np.testing.assert_array_equal(np.diag(block), 0.0)
    np.testing.assert_allclose(block, oracle_distances(HUGE, HUGE, "euclidean"), rtol=1e-5, atol=0)


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_results_beyond_the_output_range_raise(metric):
    with pytest.raises(ValueRangeError, match=rf"metric=.{metric}.: .*float32 range.*float64 inputs"):
        _block(HUGE[:10], HUGE, metric)
    # In float64 they fit (up to the rounding of the float64 GEMM).
    wide = HUGE.astype(np.float64)
    np.testing.assert_allclose(_block(wide[:10], wide, metric), oracle_distances(wide[:10], wide, metric), rtol=1e-9)
    with pytest.raises(ValueRangeError, match=r"float64 range.*rescale the data first"):
        _block(wide[:10] * 1e140, wide * 1e140, metric)
