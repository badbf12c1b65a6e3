import numpy as np

from bigdist.kernels.topk import PAD_INDEX, TOPK_DTYPE, empty_topk, topk_merge


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
