import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigdist.kernels.metrics import (
    GEMM_METRICS,
    gemm_dtype,
    key_beta,
    margin,
    prepare,
    train_center,
)
from bigdist.kernels.scan import metric_code, pair_key
from tests.oracle import knn_keys


def _approx_keys(queries, train, metric):
    dtype = gemm_dtype(queries.dtype, train.dtype)
    center = train_center(metric, train, dtype)
    pq = prepare(queries, metric, center, dtype, "query")
    px = prepare(train, metric, center, dtype, "train")
    scores = (pq.rows @ px.rows.T).astype(np.float64)
    approx = pq.alpha[:, None] - key_beta(metric) * scores
    bound = margin(metric, dtype, queries.shape[1], pq.norms, float(px.norms.max()))
    return approx, bound


@settings(max_examples=60, deadline=None)
@given(
    metric=st.sampled_from(GEMM_METRICS),
    offset=st.sampled_from([0.0, 1.0, 1e4, 1e6, -3e5]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    d=st.sampled_from([1, 3, 64, 300]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_margin_bounds_the_gemm_error(metric, offset, scale, d, dtype, seed):
    rng = np.random.default_rng(seed)
    queries = (rng.standard_normal((40, d)) * scale + offset).astype(dtype)
    train = (rng.standard_normal((70, d)) * scale + offset).astype(dtype)
    approx, bound = _approx_keys(queries, train, metric)
    exact = knn_keys(queries, train, metric)
    assert (np.abs(approx - exact) <= bound[:, None]).all()


@pytest.mark.parametrize("metric", GEMM_METRICS)
def test_pair_key_matches_oracle(metric):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((30, 7)).astype(np.float32)
    x = rng.standard_normal((30, 7)).astype(np.float32)
    x[3] = 0.0
    expected = np.diag(knn_keys(q, x, metric))
    norms = np.linalg.norm(q.astype(float), axis=1), np.linalg.norm(x.astype(float), axis=1)
    got = [pair_key(q[i], x[i], metric_code(metric), norms[0][i], norms[1][i]) for i in range(len(q))]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_gemm_dtype_keeps_float32_only_when_both_are():
    assert gemm_dtype(np.float32, np.float32) == np.float32
    assert gemm_dtype(np.float32, np.float64) == np.float64
