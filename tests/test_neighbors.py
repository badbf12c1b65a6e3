import dask.array as da
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import bigdist as bd

pytestmark = pytest.mark.usefixtures("synchronous")


@pytest.fixture(scope="module")
def digits():
    # Jitter breaks the digits' exact ties, whose order scikit-learn does not specify.
    data = load_digits().data
    return data + np.random.default_rng(0).random(data.shape) * 1e-3


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kneighbors_matches_scikit_learn(digits, metric):
    queries, train = digits[:200], digits[200:]
    ours = bd.NearestNeighbors(n_neighbors=6, metric=metric).fit(train)
    theirs = SkNearestNeighbors(n_neighbors=6, metric=metric, algorithm="brute").fit(train)
    distances, indices = ours.kneighbors(queries)
    expected_distances, expected_indices = theirs.kneighbors(queries)
    assert isinstance(indices, np.ndarray)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-7, atol=1e-7)


def test_kneighbors_without_queries_excludes_self(digits):
    ours = bd.NearestNeighbors(n_neighbors=3).fit(digits[:500])
    theirs = SkNearestNeighbors(n_neighbors=3, algorithm="brute").fit(digits[:500])
    distances, indices = ours.kneighbors()
    expected_distances, _ = theirs.kneighbors()
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-9)
    assert (indices != np.arange(500)[:, None]).all()


def test_kneighbors_graph_matches_scikit_learn(digits):
    train = digits[:400]
    ours = bd.NearestNeighbors(n_neighbors=4).fit(train)
    theirs = SkNearestNeighbors(n_neighbors=4, algorithm="brute").fit(train)
    for mode in ("connectivity", "distance"):
        got = ours.kneighbors_graph(train[:50], mode=mode)
        expected = theirs.kneighbors_graph(train[:50], mode=mode)
        # scikit-learn's float64 expansion trick leaves ~1e-6 where the exact distance is 0.
        np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-9, atol=1e-5)
    assert (ours.kneighbors_graph(train[:50], mode="distance").diagonal() == 0).all()
    np.testing.assert_allclose(ours.kneighbors_graph().toarray(), theirs.kneighbors_graph().toarray())


def test_dask_input_stays_lazy(digits):
    ours = bd.NearestNeighbors(n_neighbors=2).fit(da.from_array(digits, chunks=500))
    distances, indices = ours.kneighbors(da.from_array(digits[:10], chunks=5))
    assert isinstance(indices, da.Array)
    assert indices.compute().shape == (10, 2)
