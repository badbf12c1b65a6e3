import dask
import pytest

# Loads bigdist's config defaults before distributed.utils_test snapshots dask.config (and resets to it).
import bigdist  # noqa: F401


@pytest.fixture
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield
