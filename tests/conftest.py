import dask
import pytest

# Loads bigdist's config defaults before any test module imports distributed.utils_test,
# whose cleanup restores the config it saw at import (without them, tests run alone fail).
import bigdist  # noqa: F401


@pytest.fixture
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield
