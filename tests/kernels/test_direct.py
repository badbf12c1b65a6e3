import numpy as np
import pytest
from scipy.spatial.distance import cdist

from bigdist.errors import InputValueError
from bigdist.kernels.direct import DIRECT_METRICS, check_values, direct_block, direct_code, direct_topk
from tests.oracle import BOOLEAN_METRICS, OWN_DATA_METRICS, distances

SCIPY = {"manhattan": "cityblock"}


def _data(kind, dtype, metric, rng):
    shape_q, shape_x = (37, 13), (300, 13)  # more than one TILE of train rows
    if (metric in BOOLEAN_METRICS and metric != "hamming") or kind == "boolean":
        return rng.random(shape_q) > 0.6, rng.random(shape_x) > 0.6
    if kind == "integer":
        return rng.integers(0, 4, shape_q).astype(dtype), rng.integers(0, 4, shape_x).astype(dtype)
    return rng.random(shape_q).astype(dtype), rng.random(shape_x).astype(dtype)


@pytest.mark.parametrize("metric", [m for m in DIRECT_METRICS if m not in ("chi2", *OWN_DATA_METRICS)])
@pytest.mark.parametrize(("kind", "dtype"), [("random", np.float64), ("random", np.float32), ("integer", np.int64)])
def test_direct_block_equals_cdist(metric, kind, dtype):
    rng = np.random.default_rng(0)
    queries, train = _data(kind, dtype, metric, rng)
    queries[0] = 0  # a zero row
    train[5] = 0
    params = {"p": 3.5} if metric == "minkowski" else {}
    expected = cdist(queries.astype(np.float64), train.astype(np.float64), SCIPY.get(metric, metric), **params)
    if metric in ("braycurtis", "dice", "sokalsneath"):
        expected[np.isnan(expected)] = 0.0  # two zero rows: cdist gives NaN, bigdist 0
    out = np.empty(expected.shape)
    direct_block(queries, train, direct_code(metric), params.get("p", 2.0), out)
    # Same float64 sums in the same order as cdist.
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("p", [3.0, 3.5, 4.0, 0.5, 1.7, 5.0, 8.0, 9.0])
def test_minkowski_orders(p):
    rng = np.random.default_rng(1)
    queries, train = rng.standard_normal((20, 7)), rng.standard_normal((40, 7))
    out = np.empty((20, 40))
    direct_block(queries, train, direct_code("minkowski"), p, out)
    np.testing.assert_allclose(out, cdist(queries, train, "minkowski", p=p), rtol=1e-13)


def test_chi2_is_its_formula_and_skips_zero_sums():
    rng = np.random.default_rng(2)
    queries = rng.random((15, 6))
    train = rng.random((30, 6))
    queries[:, 2] = 0
    train[:, 2] = 0  # a coordinate where every a + b = 0
    out = np.empty((15, 30))
    direct_block(queries, train, direct_code("chi2"), 2.0, out)
    expected = np.empty((15, 30))
    for i in range(15):
        for j in range(30):
            a, b = queries[i], train[j]
            keep = a + b > 0
            expected[i, j] = 0.5 * np.sum((a[keep] - b[keep]) ** 2 / (a[keep] + b[keep]))
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    assert np.isfinite(out).all()


def test_float32_output_is_the_float64_value_rounded_once():
    rng = np.random.default_rng(3)
    queries, train = rng.random((10, 50)).astype(np.float32), rng.random((20, 50)).astype(np.float32)
    out = np.empty((10, 20), dtype=np.float32)
    direct_block(queries, train, direct_code("canberra"), 2.0, out)
    np.testing.assert_array_equal(out, cdist(queries, train, "canberra").astype(np.float32))


def test_check_values_names_row_and_column():
    block = np.zeros((4, 3))
    block[2, 1] = -0.5
    with pytest.raises(InputValueError, match=r"chi2.*-0\.5 at row 12, column 1"):
        check_values(block, "chi2", "train", 10)
    block[2, 1] = 2.0
    check_values(block, "jaccard", "queries", 0)  # the boolean metrics read non-zero as True (as scikit-learn)
    check_values(block, "hamming", "queries", 0)  # hamming is defined for any values (as SciPy)


def test_direct_topk_ties_go_to_lower_index_and_self_is_excluded():
    rng = np.random.default_rng(4)
    train = rng.integers(0, 3, (600, 4)).astype(np.float64)  # many exact ties
    keys = distances(train[:50], train, "manhattan")
    keys[np.arange(50), np.arange(50)] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")[:, :6]
    best = direct_topk(
        train[:50],
        train,
        np.arange(50),
        np.arange(600),
        k=6,
        metric="manhattan",
        p=2.0,
        exclude_self=True,
    )
    np.testing.assert_array_equal(best["index"], order)
    np.testing.assert_array_equal(best["key"], np.take_along_axis(keys, order, axis=1))
