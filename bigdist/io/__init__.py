"""Inputs and outputs: Zarr, NumPy, .npy and generated data as row-chunked dask arrays."""

from bigdist.io.arrays import as_array, check_features, open_array
from bigdist.io.synthetic import make_blobs, make_random
from bigdist.io.store import describe, read_group, update_attrs, versions, write_group

__all__ = ["as_array", "check_features", "describe", "make_blobs", "make_random", "open_array", "read_group", "update_attrs", "versions", "write_group"]
