import dask
import pytest

# Loads bigdist's config defaults before any test module imports distributed.utils_test,
# whose cleanup restores the config it saw at import (without them, tests run alone fail).
import bigdist  # noqa: F401


@pytest.fixture
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture
def small_tiles():
    # Several query blocks per input and many sub-tiles per task even on small data.
    with dask.config.set(
        {"bigdist.knn.query-block-rows": 37, "bigdist.knn.tile-query-rows": 16, "bigdist.knn.tile-train-rows": 64}
    ):
        yield
