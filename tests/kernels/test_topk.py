import numpy as np
import pytest

from bigdist.kernels.topk import PAD_INDEX, TOPK_DTYPE, empty_topk, merge_sorted, nth_largest, topk_merge


def _sorted_best(keys: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    # Oracle: Python's sort of (key, index) tuples, row by row.
    out_k, out_i = [], []
    for row_keys, row_idx in zip(keys, indices, strict=True):
        pairs = sorted(zip(row_keys.tolist(), row_idx.tolist(), strict=True))[:k]
        out_k.append([p[0] for p in pairs])
        out_i.append([p[1] for p in pairs])
    return np.array(out_k), np.array(out_i)


def test_topk_merge_breaks_ties_by_lower_index():
    rng = np.random.default_rng(0)
    partials = np.empty((50, 24), dtype=TOPK_DTYPE)
    partials["key"] = rng.integers(0, 4, size=(50, 24)).astype(float)
    partials["index"] = rng.permutation(50 * 24).reshape(50, 24)
    merged = topk_merge(partials, 5)
    keys, idx = _sorted_best(partials["key"], partials["index"], 5)
    np.testing.assert_array_equal(merged["key"], keys)
    np.testing.assert_array_equal(merged["index"], idx)


def test_padding_sorts_last():
    partials = np.concatenate([empty_topk(3, 4), empty_topk(3, 4)], axis=1)
    partials["key"][:, 5] = 1.0
    partials["index"][:, 5] = 7
    merged = topk_merge(partials, 4)
    assert (merged["index"][:, 0] == 7).all()
    assert (merged["index"][:, 1:] == PAD_INDEX).all()


def _sorted_run(rng, n_rows, k, n_real):
    """A partial result: n_real pairs per row (few distinct keys, so ties across runs), sorted, padded."""
    run = empty_topk(n_rows, k)
    keys = rng.integers(0, 6, size=(n_rows, n_real)).astype(np.float64)
    keys[rng.random(keys.shape) < 0.05] = np.nan
    indices = rng.choice(10**6, size=(n_rows, n_real), replace=False)
    for i in range(n_rows):
        # NaN keys last, as np.lexsort orders them.
        pairs = sorted(zip(keys[i], indices[i], strict=True), key=lambda p: (np.isnan(p[0]), p[0], p[1]))
        run["key"][i, :n_real] = [p[0] for p in pairs]
        run["index"][i, :n_real] = [p[1] for p in pairs]
    return run


@pytest.mark.parametrize(("k", "n_runs"), [(1, 5), (4, 2), (7, 8), (30, 3)])
def test_merge_of_sorted_runs_is_the_k_best_by_key_then_index(k, n_runs):
    rng = np.random.default_rng(k * 10 + n_runs)
    runs = [_sorted_run(rng, 25, k, n_real) for n_real in rng.integers(0, k + 1, size=n_runs)]
    partials = np.concatenate(runs, axis=1)
    got = merge_sorted(partials, k)
    for i in range(len(partials)):
        row = sorted(
            zip(partials["key"][i], partials["index"][i], strict=True),
            key=lambda p: (np.isnan(p[0]), p[0], p[1]),
        )[:k]
        np.testing.assert_array_equal(got["key"][i], [p[0] for p in row])
        np.testing.assert_array_equal(got["index"][i], [p[1] for p in row])


def _orders(rng, size):
    values = rng.standard_normal(size)
    yield "random", values
    yield "rising", np.sort(values)  # every value enters the heap: past a sixteenth, the partition
    yield "falling", np.sort(values)[::-1].copy()
    yield "few values", rng.integers(0, 4, size).astype(float)  # ties at the n-th
    yield "one value", np.full(size, 2.5)


@pytest.mark.parametrize("size", [1, 5, 63, 64, 65, 3000])
def test_nth_largest_counts_repeats_in_any_order(size):
    rng = np.random.default_rng(size)
    for name, values in _orders(rng, size):
        for n in sorted({1, 2, 17, size - 1, size} & set(range(1, size + 1))):
            # Oracle: Python's sort, the n-th from the top.
            assert nth_largest(values, n) == sorted(values.tolist())[-n], (name, n)
