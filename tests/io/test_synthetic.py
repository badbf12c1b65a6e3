import numpy as np
import pytest
import zarr

from bigdist.errors import OutputExistsError, ParameterError
from bigdist.io import make_blobs, make_random, open_array

pytestmark = pytest.mark.usefixtures("synchronous")


def test_blobs_are_deterministic_and_share_centres(tmp_path):
    a = make_blobs(tmp_path / "a.zarr", 3000, 4, centers=3, cluster_std=0.5, random_state=7, chunk_rows=700)
    b = make_blobs(tmp_path / "b.zarr", 3000, 4, centers=3, cluster_std=0.5, random_state=7, chunk_rows=700)
    c = make_blobs(
        tmp_path / "c.zarr", 3000, 4, centers=3, cluster_std=0.5, random_state=7, sample_seed=8, chunk_rows=700
    )
    x, y, z = (open_array(p).compute() for p in (a, b, c))
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z)
    # Both sets sit around the same three centres: every point of one set has
    # a point of the other within a few standard deviations.
    from scipy.spatial.distance import cdist

    assert cdist(z[:200], x).min(axis=1).max() < 0.5 * 4
    assert zarr.open_array(str(a), mode="r").chunks == (700, 4)


def test_blobs_cluster_around_their_centres(tmp_path):
    from sklearn.cluster import KMeans

    path = make_blobs(tmp_path / "a.zarr", 2000, 2, centers=4, cluster_std=0.1, center_box=(-50, 50), random_state=1)
    points = open_array(path).compute()
    inertia = KMeans(n_clusters=4, n_init=3, random_state=0).fit(points).inertia_
    assert inertia / len(points) == pytest.approx(2 * 0.1**2, rel=0.2)


def test_random_lazy_until_computed(tmp_path):
    pending = make_random(tmp_path / "r.zarr", 1000, 3, distribution="uniform", chunk_rows=100, compute=False)
    assert zarr.open_array(str(tmp_path / "r.zarr"), mode="r").attrs["bigdist"]["complete"] is False
    pending.compute()
    values = open_array(tmp_path / "r.zarr").compute()
    assert values.shape == (1000, 3) and 0 <= values.min() and values.max() < 1


def test_refuses_to_overwrite_and_bad_sizes(tmp_path):
    make_random(tmp_path / "r.zarr", 10, 3)
    with pytest.raises(OutputExistsError):
        make_random(tmp_path / "r.zarr", 10, 3)
    with pytest.raises(ParameterError, match="n_samples=0"):
        make_random(tmp_path / "s.zarr", 0, 3)
    with pytest.raises(ParameterError, match="distribution"):
        make_random(tmp_path / "s.zarr", 5, 3, distribution="cauchy")
