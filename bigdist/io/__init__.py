"""Inputs and outputs: Zarr, NumPy, .npy (and shards), Parquet, HDF5, AnnData and synthetic data as dask arrays."""

from bigdist.io.arrays import as_array, check_features, check_int, check_number, in_memory, open_array
from bigdist.io.integrity import verify
from bigdist.io.labels import as_labels
from bigdist.io.store import describe, read_group, update_attrs, versions, write_group
from bigdist.io.synthetic import blob_centers, make_blobs, make_random

__all__ = [
    "as_array",
    "as_labels",
    "blob_centers",
    "check_features",
    "check_int",
    "check_number",
    "describe",
    "in_memory",
    "make_blobs",
    "make_random",
    "open_array",
    "read_group",
    "update_attrs",
    "verify",
    "versions",
    "write_group",
]
