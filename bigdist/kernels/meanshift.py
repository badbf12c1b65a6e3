"""Mean shift on blocks: kernel-weighted partial sums of a row block for a set of seeds. NumPy + numba only.

One mean-shift pass maps ``meanshift_chunk`` over the row blocks, merges the
partial states with ``meanshift_combine`` and turns the merged state into the
seeds' new positions with ``meanshift_agg``. The state is a small dict::

    {"sums": (s, d) float64, sum of w * x over the rows,
     "weights": (s,) float64, sum of w,
     "counts": (s,) int64, rows within the bandwidth (d <= bandwidth)}

With few features (``DIRECT_MAX_FEATURES``) compiled loops compute the
exact float64 distances and the weighted sums (the Gaussian's exp by
NumPy's vectorised one in between). With more, squared distances come from
one GEMM of rows and seeds centred on the block's mean (the expansion
trick); pairs whose GEMM distance is within its error bound of the
bandwidth are recomputed from the original values in float64, so the flat
kernel and the counts follow scikit-learn's ``d <= bandwidth`` exactly. The
flat kernel's GEMM runs in the data's dtype (float32 keeps its speed: only
the side of the bandwidth matters); the Gaussian's runs in float64, because
its weights need relative accuracy at every distance (float32 would err by
about 1e-7 x spread² / bandwidth² in the exponent).

The bin-seeding count reduction (``bin_chunk`` / ``bin_combine``) is here too.
"""

from __future__ import annotations

import numba
import numpy as np

from bigdist.errors import ParameterError
from bigdist.kernels.metrics import gemm_dtype, margin
from bigdist.kernels.scaling import largest_magnitude, power_of_two_exponent

KERNELS = ("gaussian", "flat")
ROW_STEP = 4096
SEED_STEP = 512
# Up to this many features a compiled loop of exact float64 differences is
# faster than the GEMM, whose inner dimension is then too short for BLAS
# (d=8: 1.3 ns per pair against 9 ns for the GEMM alone).
DIRECT_MAX_FEATURES = 16


@numba.njit(cache=True, nogil=True)
def _checked_distances(
    products: np.ndarray,
    seed_norms2: np.ndarray,
    row_norms2: np.ndarray,
    bounds: np.ndarray,
    seeds: np.ndarray,
    rows: np.ndarray,
    bandwidth2: float,
    out: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Squared distances of one (seed step, row step) tile from its GEMM, exact near the bandwidth.

    Pairs within the GEMM's error bound of the bandwidth are recomputed from
    the original values in float64.

    Parameters
    ----------
    products : ndarray of shape (s, r), GEMM of the centred seeds and rows
    seed_norms2 : ndarray of shape (s,), float64, squared norms of the centred seeds
    row_norms2 : ndarray of shape (r,), float64, squared norms of the centred rows
    bounds : ndarray of shape (s,), float64, error bound of each seed's GEMM squared distances
    seeds : ndarray of shape (s, d), float64, the seeds
    rows : ndarray of shape (r, d), the original rows
    bandwidth2 : float, squared bandwidth
    out : ndarray of shape (s, r), float64, the squared distances
    counts : ndarray of shape (s,), int64, incremented by the rows within the bandwidth
    """
    n_seeds, n_rows = products.shape
    for s in range(n_seeds):
        bound = bounds[s]
        within = 0
        for j in range(n_rows):
            d2 = seed_norms2[s] + row_norms2[j] - 2.0 * products[s, j]
            if abs(d2 - bandwidth2) <= bound:
                d2 = 0.0
                for f in range(rows.shape[1]):
                    diff = np.float64(rows[j, f]) - seeds[s, f]
                    d2 += diff * diff
            out[s, j] = max(d2, 0.0)
            within += d2 <= bandwidth2
        counts[s] += within


# fastmath lets the compiler vectorise the sums over features; the
# differences and squares are still float64 (exact for integer data).
@numba.njit(cache=True, nogil=True, fastmath=True)
def _flat_direct(
    seeds: np.ndarray, rows: np.ndarray, bandwidth2: float, sums: np.ndarray, totals: np.ndarray, counts: np.ndarray
) -> None:
    """Flat kernel with few features: exact float64 distances and the sums of the rows within, in place.

    Parameters
    ----------
    seeds : ndarray of shape (s, d), float64
    rows : ndarray of shape (r, d)
    bandwidth2 : float, squared bandwidth
    sums : ndarray of shape (s, d), float64; totals : ndarray of shape (s,), float64;
    counts : ndarray of shape (s,), int64, rows within the bandwidth
    """
    n_seeds, n_features = seeds.shape
    for s in range(n_seeds):
        within = 0
        for j in range(rows.shape[0]):
            d2 = 0.0
            for f in range(n_features):
                diff = np.float64(rows[j, f]) - seeds[s, f]
                d2 += diff * diff
            if d2 <= bandwidth2:
                within += 1
                for f in range(n_features):
                    sums[s, f] += np.float64(rows[j, f])
        totals[s] += within
        counts[s] += within


@numba.njit(cache=True, nogil=True, fastmath=True)
def _exponents_direct(
    seeds: np.ndarray, rows: np.ndarray, bandwidth2: float, out: np.ndarray, counts: np.ndarray
) -> None:
    """Gaussian kernel with few features: -d² / (2 bandwidth²) from exact float64 distances, in place.

    Parameters
    ----------
    seeds : ndarray of shape (s, d), float64
    rows : ndarray of shape (r, d)
    bandwidth2 : float, squared bandwidth
    out : ndarray of shape (s, r), float64
    counts : ndarray of shape (s,), int64, incremented by the rows within the bandwidth
    """
    scale = -0.5 / bandwidth2
    for s in range(seeds.shape[0]):
        within = 0
        for j in range(rows.shape[0]):
            d2 = 0.0
            for f in range(seeds.shape[1]):
                diff = np.float64(rows[j, f]) - seeds[s, f]
                d2 += diff * diff
            within += d2 <= bandwidth2
            out[s, j] = d2 * scale
        counts[s] += within


@numba.njit(cache=True, nogil=True, fastmath=True)
def _weighted_sums(weights: np.ndarray, rows: np.ndarray, sums: np.ndarray, totals: np.ndarray) -> None:
    """Add ``weights @ rows`` to ``sums`` and the weights' row sums to ``totals``, skipping zero weights.

    Parameters
    ----------
    weights : ndarray of shape (s, r), float64
    rows : ndarray of shape (r, d)
    sums : ndarray of shape (s, d), float64; totals : ndarray of shape (s,), float64
    """
    for s in range(weights.shape[0]):
        total = 0.0
        for j in range(rows.shape[0]):
            weight = weights[s, j]
            if weight == 0.0:
                continue
            total += weight
            for f in range(rows.shape[1]):
                sums[s, f] += weight * np.float64(rows[j, f])
        totals[s] += total


def shift_sums(block: np.ndarray, seeds: np.ndarray, bandwidth: float, kernel: str) -> dict[str, np.ndarray]:
    """Kernel-weighted sums of the rows of one block, for every seed.

    Parameters
    ----------
    block : ndarray of shape (n, d), float32 or float64
    seeds : ndarray of shape (s, d), float64, current positions of the seeds
    bandwidth : float, > 0
    kernel : {"gaussian", "flat"}

    Returns
    -------
    dict with ``sums`` (s, d) float64, ``weights`` (s,) float64, ``counts`` (s,) int64
    """
    n, d = block.shape
    n_seeds = seeds.shape[0]
    sums = np.zeros((n_seeds, d))
    totals = np.zeros(n_seeds)
    counts = np.zeros(n_seeds, dtype=np.int64)
    if n == 0 or n_seeds == 0:
        return {"sums": sums, "weights": totals, "counts": counts}
    seeds = np.ascontiguousarray(seeds, dtype=np.float64)
    bandwidth2 = float(bandwidth) ** 2
    gaussian = kernel == "gaussian"
    direct = d <= DIRECT_MAX_FEATURES
    if direct and not gaussian:
        for start in range(0, n, ROW_STEP):
            _flat_direct(seeds, block[start : start + ROW_STEP], bandwidth2, sums, totals, counts)
        return {"sums": sums, "weights": totals, "counts": counts}

    dtype = np.dtype(np.float64) if gaussian else gemm_dtype(block.dtype)
    if dtype == np.float32 and power_of_two_exponent(largest_magnitude(block, seeds), dtype, d):
        # Squares beyond (or below) float32's range: the GEMM runs in float64 instead, as in k-means.
        dtype = np.dtype(np.float64)
    # Any shift leaves distances unchanged; the block's mean keeps the centred values small.
    centre = block.mean(axis=0, dtype=np.float64)
    centred_seeds = (seeds - centre).astype(dtype)
    seed_norms2 = np.einsum("ij,ij->i", centred_seeds, centred_seeds, dtype=np.float64)
    centre_cast = centre.astype(dtype)
    products_buffer = np.empty((min(SEED_STEP, n_seeds), min(ROW_STEP, n)), dtype=dtype)
    weights_buffer = np.empty(products_buffer.shape)
    for start in range(0, n, ROW_STEP):
        rows = block[start : start + ROW_STEP]
        if not direct:
            centred_rows = np.subtract(rows, centre_cast, dtype=dtype)
            row_norms2 = np.einsum("ij,ij->i", centred_rows, centred_rows, dtype=np.float64)
            max_row_norm = float(np.sqrt(row_norms2.max()))
        for first in range(0, n_seeds, SEED_STEP):
            last = min(first + SEED_STEP, n_seeds)
            weights = weights_buffer[: last - first, : len(rows)]
            if direct:
                _exponents_direct(seeds[first:last], rows, bandwidth2, weights, counts[first:last])
                # NumPy's vectorised exp is about 3x faster than a compiled loop's.
                np.exp(weights, out=weights)
                _weighted_sums(weights, rows, sums[first:last], totals[first:last])
                continue
            products = products_buffer[: last - first, : len(rows)]
            np.matmul(centred_seeds[first:last], centred_rows.T, out=products)
            bounds = margin("sqeuclidean", dtype, d, np.sqrt(seed_norms2[first:last]), max_row_norm)
            _checked_distances(
                products, seed_norms2[first:last], row_norms2, bounds, seeds[first:last], rows,
                bandwidth2, weights, counts[first:last],
            )  # fmt: skip
            if gaussian:
                weights *= -0.5 / bandwidth2
                np.exp(weights, out=weights)
            else:
                np.less_equal(weights, bandwidth2, out=weights)
                if np.count_nonzero(weights) < weights.size // 4:
                    # Mostly zeros: the compiled loop skips them.
                    _weighted_sums(weights, rows, sums[first:last], totals[first:last])
                    continue
            sums[first:last] += weights @ rows.astype(np.float64)
            totals[first:last] += weights.sum(axis=1)
    return {"sums": sums, "weights": totals, "counts": counts}


def meanshift_chunk(
    block: np.ndarray, first_row: int, seeds: np.ndarray, *, bandwidth: float, kernel: str
) -> dict[str, np.ndarray]:
    """Partial mean-shift state of one row block (``first_row`` is unused: sums do not need row indices)."""
    return shift_sums(block, seeds, bandwidth, kernel)


def meanshift_combine(partials: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Merge partial mean-shift states (sums of sums)."""
    return {key: sum(p[key] for p in partials) for key in partials[0]}


def meanshift_agg(state: dict[str, np.ndarray], seeds: np.ndarray) -> dict[str, np.ndarray]:
    """New seed positions from a merged state.

    Seeds with zero total weight (no row within the flat kernel's bandwidth,
    or Gaussian weights that all underflow) keep their position.

    Returns
    -------
    dict with ``means`` (s, d) float64, ``weights`` (s,), ``counts`` (s,)
    """
    weights = state["weights"]
    positive = weights > 0
    means = np.array(seeds, dtype=np.float64, copy=True)
    means[positive] = state["sums"][positive] / weights[positive, None]
    return {"means": means, "weights": weights, "counts": state["counts"]}


def _check_bins(n_bins: int, max_bins: int | None, bin_size: float | None) -> None:
    if max_bins is not None and n_bins > max_bins:
        raise ParameterError(
            f"bin seeding found more than {max_bins} distinct grid cells at bandwidth {bin_size!r} (bin seeding "
            f"holds every cell until the bins are counted); use a larger bandwidth, or bin_seeding=False (the "
            f"seeds are then a sample of bigdist.meanshift.max-seeds rows)"
        )


def bin_chunk(
    block: np.ndarray, first_row: int, *, bin_size: float, max_bins: int | None = None
) -> dict[str, np.ndarray]:
    """Grid bins of the rows of one block: their integer coordinates, row counts and first rows.

    A row's bin is ``round(x / bin_size)`` with NumPy's promotion, as
    scikit-learn's ``get_bin_seeds`` computes it: float32 rows divided by a
    Python float stay float32, by a ``np.float64`` become float64.

    Returns
    -------
    dict with ``bins`` (u, d) float64, ``counts`` (u,) int64, ``first`` (u,) int64 (global row of
    the bin's first row)

    Raises
    ------
    ParameterError
        More than ``max_bins`` distinct bins.
    """
    # + 0.0 turns -0.0 into 0.0, one bin as in scikit-learn's dict of tuples.
    bins = np.round(block / bin_size).astype(np.float64) + 0.0
    unique, first, counts = np.unique(bins, axis=0, return_index=True, return_counts=True)
    _check_bins(len(unique), max_bins, bin_size)
    return {"bins": unique, "counts": counts.astype(np.int64), "first": first.astype(np.int64) + first_row}


def bin_combine(
    partials: list[dict[str, np.ndarray]], max_bins: int | None = None, bin_size: float | None = None
) -> dict[str, np.ndarray]:
    """Merge bin counts of several blocks (counts add, the first row is the earliest); at most ``max_bins``."""
    bins = np.concatenate([p["bins"] for p in partials])
    unique, inverse = np.unique(bins, axis=0, return_inverse=True)
    _check_bins(len(unique), max_bins, bin_size)
    inverse = inverse.ravel()
    counts = np.zeros(len(unique), dtype=np.int64)
    np.add.at(counts, inverse, np.concatenate([p["counts"] for p in partials]))
    first = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inverse, np.concatenate([p["first"] for p in partials]))
    return {"bins": unique, "counts": counts, "first": first}


def merge_modes(positions: np.ndarray, intensities: np.ndarray, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge converged seeds into modes as scikit-learn does.

    Seeds with zero intensity are dropped; equal positions count once (the
    last seed's intensity, as in a dict keyed by position); the rest are
    sorted by (intensity, position) descending, and each kept position
    suppresses the later ones within ``bandwidth`` (``d <= bandwidth``).

    Parameters
    ----------
    positions : ndarray of shape (s, d), float64
    intensities : ndarray of shape (s,), int64, rows within the bandwidth of each seed's last position
    bandwidth : float

    Returns
    -------
    modes : ndarray of shape (c, d), float64
    mode_intensities : ndarray of shape (c,), int64
    """
    by_position: dict[tuple[float, ...], int] = {}
    for position, intensity in zip(map(tuple, positions.tolist()), intensities.tolist(), strict=True):
        if intensity:
            by_position[position] = intensity
    ranked = sorted(by_position.items(), key=lambda item: (item[1], item[0]), reverse=True)
    centres = np.array([position for position, _ in ranked], dtype=np.float64).reshape(-1, positions.shape[1])
    ranks = np.array([intensity for _, intensity in ranked], dtype=np.int64)
    keep = np.ones(len(centres), dtype=bool)
    bandwidth2 = float(bandwidth) ** 2
    for i in range(len(centres)):
        if keep[i]:
            diff = centres[i + 1 :] - centres[i]
            keep[i + 1 :] &= np.einsum("ij,ij->i", diff, diff) > bandwidth2
    return centres[keep], ranks[keep]


def kth_chunk(queries: np.ndarray, train: np.ndarray, *, k: int, tile_rows: int = 8192) -> np.ndarray:
    """The k smallest squared distances of each query row within one train block (unsorted).

    For the large k of ``estimate_bandwidth`` (a fraction of the rows), where
    a running partition costs O(rows) per query and a sorted top-k list
    O(k) per insertion. float64 expansion trick on rows centred on the train
    block's mean.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    train : ndarray of shape (n, d)
    k : int
    tile_rows : int, train rows scored at a time

    Returns
    -------
    ndarray of shape (m, min(k, n)), float64
    """
    centre = train.mean(axis=0, dtype=np.float64)
    centred_queries = queries.astype(np.float64) - centre
    query_norms2 = np.einsum("ij,ij->i", centred_queries, centred_queries)
    best = np.empty((len(queries), 0))
    for start in range(0, len(train), tile_rows):
        rows = train[start : start + tile_rows].astype(np.float64) - centre
        d2 = query_norms2[:, None] + np.einsum("ij,ij->i", rows, rows)[None, :] - 2.0 * (centred_queries @ rows.T)
        np.maximum(d2, 0.0, out=d2)
        best = kth_combine(np.concatenate([best, d2], axis=1), k=k)
    return best


def kth_combine(partials: np.ndarray, *, k: int) -> np.ndarray:
    """Keep the k smallest of each row, shape (m, w) -> (m, min(k, w))."""
    if partials.shape[1] <= k:
        return partials
    return np.partition(partials, k - 1, axis=1)[:, :k]


def kth_agg(partials: np.ndarray, *, k: int) -> np.ndarray:
    """Distance to the k-th nearest train row of each query, shape (m, w) -> (m, 1)."""
    return np.sqrt(kth_combine(partials, k=k).max(axis=1, keepdims=True))
