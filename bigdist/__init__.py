"""bigdist: exact nearest neighbours and clustering for matrices bigger than RAM."""

from __future__ import annotations

from bigdist import config as config
from bigdist.errors import BigdistError

__version__ = "0.1.0"

__all__ = ["BigdistError", "__version__", "config"]
