"""Pure NumPy functions on blocks. Graph builders call them by name; nothing here imports dask."""
