import dask
import pytest


@pytest.fixture
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield
