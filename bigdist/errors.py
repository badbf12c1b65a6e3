"""The one exception hierarchy of bigdist.

Every error subclasses ``BigdistError`` and, where users already catch a
builtin, ``ValueError``, ``TypeError`` or ``FileNotFoundError`` too. Messages
show the offending value and say how to fix it.
"""

from __future__ import annotations

from sklearn.utils._param_validation import InvalidParameterError as _ScikitLearnInvalidParameterError


class BigdistError(Exception):
    """Base class of every error raised by bigdist."""


class InputShapeError(BigdistError, ValueError):
    """An input has the wrong number of dimensions, features or rows."""


class InputDtypeError(BigdistError, TypeError, ValueError):
    """An input has a dtype bigdist cannot compute with (both a TypeError and a ValueError, as users catch either)."""


class NonFiniteError(BigdistError, ValueError):
    """An input holds NaN or infinity."""


class ValueRangeError(BigdistError, ValueError):
    """An input's values are so large that their squares exceed the floating-point range of the result."""


class ParameterError(BigdistError, ValueError):
    """A parameter is out of range or unknown."""


class EstimatorParameterError(ParameterError, _ScikitLearnInvalidParameterError):
    """An estimator parameter is invalid; also scikit-learn's InvalidParameterError, which its checks expect."""


class ConfigError(BigdistError, ValueError):
    """A configuration key is unknown or its value has the wrong type."""


class StoreNotFoundError(BigdistError, FileNotFoundError):
    """A path or URL names nothing bigdist can open."""


class StoreError(BigdistError, OSError):
    """A store (an object store, a filesystem) kept failing to read or write a key after its retries."""


class OutputExistsError(BigdistError, FileExistsError):
    """An output already exists and overwriting was not asked for."""


class IncompleteOutputError(BigdistError, ValueError):
    """An output was not finished (its run stopped before the last block)."""


class DataIntegrityError(BigdistError, OSError):
    """Stored data is missing or damaged: a chunk file was deleted, truncated or changed on disk."""


class MissingChunkError(DataIntegrityError):
    """A chunk of a stored array is missing, so reading it would silently give the fill value."""


class CorruptChunkError(DataIntegrityError):
    """A stored chunk fails its checksum or cannot be decoded."""


class ClusterError(BigdistError, RuntimeError):
    """The Dask cluster cannot run the computation (no workers left, workers lost too often)."""


class SchedulerUnreachableError(BigdistError, ConnectionError):
    """The Dask scheduler named by an address or scheduler file cannot be reached."""


class TooManyNeighborsError(BigdistError, ValueError):
    """A query has more neighbours within the radius than the configured cap allows."""


class InputValueError(BigdistError, ValueError):
    """An input holds values the chosen metric is not defined for (negative: chi2, precomputed distances)."""


class PlanError(BigdistError, ValueError):
    """A job cannot be planned: an input cannot be opened or its size is unknown."""


class InsufficientSpaceError(BigdistError, OSError):
    """An output would not fit in the free space of its disk (``--force`` runs anyway)."""


class ReaderNotInstalledError(BigdistError, ImportError):
    """The package that reads an input's format (pyarrow, h5py, anndata) is not installed."""


class OutputLockedError(OutputExistsError):
    """Another run is writing the same output (its lock file names it)."""
