"""The set-up the GEMM-family tile kernels share (kNN and radius): scaling, centring, prepared rows, bounds. NumPy only.

A kernel builds one ``GemmTiles`` per (query block, train block) tile and
asks it for each train sub-tile in turn; the GEMM and what follows it
(the top-k scan, the radius collector) stay in the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bigdist.kernels.metrics import Prepared, gemm_dtype, key_beta, margin, prepare, train_center
from bigdist.kernels.pairwise import centre_rows, row_norms
from bigdist.kernels.scaling import largest_magnitude, power_of_two_exponent
from bigdist.kernels.scan import metric_code


@dataclass(frozen=True)
class TrainTile:
    """One train sub-tile made ready for the GEMM and the exact re-check.

    rows : ndarray of shape (w, d), the rows the exact keys come from (scaled; correlation: centred)
    norms : ndarray of shape (w,), float64 norms of ``rows`` (cosine only, else uninitialised)
    prepared : Prepared, the GEMM's train side
    bounds : ndarray of shape (r,), each query row's (of those asked for) bound on the GEMM key's rounding error
    """

    rows: np.ndarray
    norms: np.ndarray
    prepared: Prepared
    bounds: np.ndarray


@dataclass(frozen=True)
class GemmTiles:
    """A query block and a train block set up for a GEMM-family metric.

    Values whose squares leave the float range are scaled by ``2**-exponent``
    (exact); keys of squared size then come out scaled by ``2**(-2 * exponent)``
    (``bigdist.kernels.scaling.scale_back`` undoes it), cosine keys unchanged.
    ``correlation`` becomes ``cosine`` of rows centred in float64: the GEMM
    rows are the centred rows rounded once, the re-check uses them unrounded.

    queries : ndarray of shape (m, d), the rows the exact keys come from (scaled; correlation: centred)
    train : ndarray of shape (n, d), scaled
    metric : str, the metric the GEMM computes (``correlation`` -> ``cosine``)
    exponent : int, the power-of-two scale (0: none)
    dtype : the GEMM dtype
    center : ndarray of shape (d,) or None, the shift of both sides (``train_center``)
    prepared_queries : Prepared
    query_norms : ndarray of shape (m,), float64 norms of ``queries`` (cosine only, else uninitialised)
    beta : float, code : int, from ``key_beta`` and ``metric_code``
    centred : bool, the metric was ``correlation`` (train sub-tiles are centred as they are taken)
    """

    queries: np.ndarray
    train: np.ndarray
    metric: str
    exponent: int
    dtype: np.dtype
    center: np.ndarray | None
    prepared_queries: Prepared
    query_norms: np.ndarray
    beta: float
    code: int
    centred: bool

    @classmethod
    def build(cls, queries: np.ndarray, train: np.ndarray, metric: str) -> GemmTiles:
        """Set up non-empty ``queries`` (m, d) and ``train`` (n, d) for a GEMM metric or ``correlation``."""
        d = queries.shape[1]
        dtype = gemm_dtype(queries.dtype, train.dtype)
        exponent = power_of_two_exponent(largest_magnitude(queries, train), dtype, d)
        if exponent:
            queries, train = np.ldexp(queries, -exponent), np.ldexp(train, -exponent)
        centred = metric == "correlation"
        if centred:
            queries = centre_rows(queries)
            metric = "cosine"
        center = train_center(metric, train, dtype)
        return cls(
            queries=queries,
            train=train,
            metric=metric,
            exponent=exponent,
            dtype=dtype,
            center=center,
            prepared_queries=prepare(queries, metric, center, dtype, "query"),
            query_norms=row_norms(queries) if metric == "cosine" else np.empty(len(queries)),
            beta=key_beta(metric),
            code=metric_code(metric),
            centred=centred,
        )

    def train_tile(
        self, start: int, stop: int, buffer: np.ndarray | None = None, query_rows: slice = slice(None)
    ) -> TrainTile:
        """Train rows [start, stop) prepared (into ``buffer``, see ``prepare``), with the bounds of ``query_rows``."""
        rows = centre_rows(self.train[start:stop]) if self.centred else self.train[start:stop]
        norms = row_norms(rows) if self.metric == "cosine" else np.empty(stop - start)
        prepared = prepare(rows, self.metric, self.center, self.dtype, "train", buffer=buffer)
        bounds = margin(
            self.metric, self.dtype, rows.shape[1], self.prepared_queries.norms[query_rows], float(prepared.norms.max())
        )
        return TrainTile(rows=rows, norms=norms, prepared=prepared, bounds=bounds)
