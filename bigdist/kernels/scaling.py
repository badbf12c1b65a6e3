"""Keep squares of the data inside the floating-point range: exact power-of-two scaling. NumPy only.

The expansion trick squares the data: float32 values of 1e20 have squares
of 1e40, beyond float32, and scikit-learn then returns NaN distances. A
block whose values are that large (or so small that their squares vanish)
is multiplied by a power of two before the GEMM and its keys multiplied
back after; scaling by a power of two is exact in binary floating point,
so the results equal those of an unscaled computation with unlimited range.
"""

from __future__ import annotations

import numpy as np

from bigdist.errors import ValueRangeError


def largest_magnitude(*blocks: np.ndarray) -> float:
    """The largest absolute value in the blocks (0.0 when all are empty), without an ``abs`` copy."""
    values = [max(float(b.max()), -float(b.min())) for b in blocks if b.size]
    return max(values, default=0.0)


def safe_range(dtype: np.dtype, n_features: int) -> tuple[float, float]:
    """Magnitudes whose squared norms and products over ``n_features`` stay normal numbers of ``dtype``."""
    info = np.finfo(dtype)
    # Headroom of 4: the key alpha - 2 * score adds two terms of the size of a squared norm.
    high = float(np.sqrt(float(info.max) / (4.0 * max(1, n_features))))
    low = float(np.sqrt(float(info.tiny))) * 2.0**12
    return low, high


def power_of_two_exponent(amax: float, dtype: np.dtype, n_features: int) -> int:
    """0 when values up to ``amax`` are safe in ``dtype``, else ``e`` such that ``amax * 2**-e`` is in [0.5, 1)."""
    low, high = safe_range(dtype, n_features)
    if amax == 0.0 or low <= amax <= high:
        return 0
    return int(np.frexp(amax)[1])


def scale_back(keys: np.ndarray, exponent: int, what: str) -> np.ndarray:
    """Keys of squared size computed on data scaled by ``2**-exponent``, multiplied back exactly.

    Raises ValueRangeError when a finite key does not fit float64 once scaled back.
    """
    if exponent == 0:
        return keys
    with np.errstate(over="ignore"):
        restored = np.ldexp(keys, 2 * exponent)
    overflow = np.isfinite(keys) & ~np.isfinite(restored)
    if overflow.any():
        raise ValueRangeError(
            f"{what}: the values are so large (about 2**{exponent}) that their squared distances exceed the "
            f"float64 range (1.8e308); rescale the data first, e.g. X / 1e150 (distances scale by the same factor)"
        )
    return restored
