"""Functions on NumPy blocks: NumPy, plus one numba-compiled scan.

Graph builders call them by name; nothing here imports dask.
"""
