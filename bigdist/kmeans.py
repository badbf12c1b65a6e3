"""K-means over data far bigger than RAM: one pass over the data per Lloyd iteration."""

from __future__ import annotations

import copy
import logging
import math
import numbers
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from sklearn.exceptions import ConvergenceWarning

from bigdist import config, display
from bigdist.blas import dask_threads
from bigdist.errors import InputShapeError, ParameterError
from bigdist.execution.executors import ambient_client
from bigdist.execution.passes import CarriedRows, PassColumn, run_pass, write_labels
from bigdist.execution.sources import InputRows
from bigdist.execution.waves import ProgressCallback, window_size
from bigdist.io import as_array, check_int, check_number, write_group
from bigdist.io.integrity import ZarrSource, output_codecs
from bigdist.io.sparse import as_dense_rows
from bigdist.kernels.kmeans import (
    BOUNDS_DTYPE,
    STEP_ROWS,
    bound_updates,
    candidate_costs_chunk,
    fold_candidates_chunk,
    fold_combine,
    kmeans_accumulate_piece,
    kmeans_bounded_chunk,
    kmeans_chunk,
    kmeans_combine,
    kmeans_label_piece,
    labels_chunk,
    sample_by_cost_chunk,
    sample_by_distance_chunk,
    stack_rows,
    update_centroids,
    weighted_draw_chunk,
    weighted_draw_combine,
    with_row_weights,
)
from bigdist.reductions import map_row_blocks
from bigdist.resources import compute, maybe_persist, memory_budget, should_persist, spread
from bigdist.warmup import warm_up

logger = logging.getLogger(__name__)

INITS = ("k-means||", "k-means++", "random")


@dataclass
class KMeansResult:
    """Result of :func:`kmeans`.

    Attributes
    ----------
    centroids : ndarray of shape (n_clusters, n_features)
    labels : dask array of shape (n_samples,), int64, lazy
    inertia : float, sum of squared distances of the rows to their centroid
    n_iter : int, Lloyd iterations run
    stats : list of dict, one per iteration: inertia, centroid shift, relocated clusters, seconds
    n_distinct_clusters : int, clusters holding at least one row (fewer than n_clusters warns)
    """

    centroids: np.ndarray
    labels: da.Array
    inertia: float
    n_iter: int
    stats: list[dict[str, float]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    n_distinct_clusters: int = 0
    data: da.Array | None = field(default=None, repr=False)

    def to_zarr(
        self,
        path: str,
        *,
        overwrite: bool = False,
        attrs: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> str:
        """Write centroids and labels to a Zarr group; stats go in its attributes.

        The labels are computed in bounded waves of tasks that read their own
        row blocks (``bigdist.execution``), each block written and marked; an
        unfinished group of the same run (same data and centroids) is resumed,
        its labelled blocks kept.

        Parameters
        ----------
        path : str, local path or fsspec URL
        overwrite : bool
            Replace a finished output (or another run's unfinished one).
        attrs : dict, optional
            More attributes of the run, e.g. the CLI's config.
        progress : callable, optional
            ``progress(done, total, elapsed_seconds)`` after every labelled row block.
        storage_options : dict, optional
            fsspec options of the output URL's filesystem, as for :func:`bigdist.io.write_group`.

        Returns
        -------
        str, the path
        """
        meta = {"kmeans": {**self.params, "inertia": self.inertia, "n_iter": self.n_iter, "stats": self.stats}}
        rows = self.labels if self.data is None else self.data
        if self.data is None:
            # Made by hand from lazy labels: no data to read, one graph.
            centroids = da.from_array(self.centroids, chunks=self.centroids.shape)
            return write_group(path, {"centroids": centroids, "labels": rows}, attrs={**meta, **(attrs or {})},
                               overwrite=overwrite, storage_options=storage_options)  # fmt: skip
        return write_labels(
            path, rows, partial(labels_chunk, centroids=self.centroids), {"centroids": self.centroids},
            fingerprint=tokenize("bigdist-kmeans-labels", rows.name, rows.chunks, self.centroids),
            attrs={**meta, **(attrs or {})}, overwrite=overwrite, what=f"k-means labels {path}", progress=progress,
            storage_options=storage_options,
        )  # fmt: skip

    def _rows(self) -> list[tuple[str, Any]]:
        last = self.stats[-1] if self.stats else {}
        return [
            ("clusters", f"{len(self.centroids):,} ({self.centroids.shape[1]:,} features)"),
            ("centroids", display.array_summary(self.centroids)),
            ("labels", display.array_summary(self.labels)),
            ("inertia", f"{self.inertia:.6g}"),
            ("iterations", self.n_iter),
            ("last centroid shift", f"{last['shift']:.3g}" if "shift" in last else "-"),
            ("seconds", f"{display.seconds(self.stats):.2f} in the iterations"),
        ]

    def __repr__(self) -> str:
        return display.text(
            "KMeansResult",
            [("n_clusters", len(self.centroids)), ("n_features", self.centroids.shape[1]),
             ("n_iter", self.n_iter), ("inertia", f"{self.inertia:.6g}"),
             ("labels", display.array_summary(self.labels))],
        )  # fmt: skip

    def _repr_html_(self) -> str:
        return display.html_table("bigdist KMeansResult", self._rows())


def _weighted(chunk: Any, weights: da.Array | None) -> Any:
    """A block kernel fed its rows' weights (the pass's ``along`` input) when the run has any."""
    return chunk if weights is None else partial(with_row_weights, chunk)


# Fewer row blocks than this per worker leave a Client's workers idle in a Lloyd pass: the blocks are then
# labelled in pieces, twice as many.
PIECES_PER_WORKER = 2

# Fewest rows of a piece, and least work (rows x centroids x features, ~20 ms of one thread): its
# labelling task takes well over the overhead of its three tasks.
MIN_PIECE_ROWS = 16 * STEP_ROWS
MIN_PIECE_WORK = 2**30


class _Passes:
    """The data of a run as the passes read it: its row blocks (and weights) read inside each task.

    The input graphs are materialised once, here, not once per pass. With
    ``pieces`` (the data persisted on a Client in pieces of its row blocks,
    ``groups`` the pieces of each block) a Lloyd pass labels the pieces on
    every worker at once and sums them block by block in row order; every
    other pass reads each block whole. The partial states, and so the
    results, are bitwise those of the blocks unsplit.
    """

    def __init__(
        self,
        X: da.Array,
        weights: da.Array | None,
        split_every: int,
        pieces: tuple[da.Array, da.Array | None] | None = None,
        groups: list[list[int]] | None = None,
    ) -> None:
        self.X = X
        self.weights = weights
        self.split_every = split_every
        self.groups = groups
        rows, row_weights = (X, weights) if pieces is None else pieces
        self.rows = InputRows(rows)
        self.along = () if row_weights is None else (InputRows(row_weights[:, None]),)
        # Asked once: on a Client each pass would wait for the scheduler's answer (3-5 ms of a 100 ms pass).
        self.window = window_size(ambient_client())

    def unweighted(self) -> _Passes:
        """The same data, its passes without the weights."""
        data = copy.copy(self)
        data.weights, data.along = None, ()
        return data

    def run(self, chunk: Any, combine: Any, name: str, extra: tuple[Any, ...] = (), **carry: Any) -> tuple[Any, Any]:
        """One pass of ``chunk`` over every row block, the partials folded by ``combine``; (state, carried)."""
        return self._run(PassColumn(_weighted(chunk, self.weights), combine, extra), name, **carry)

    def lloyd(self, n_far: int, with_moments: bool, extra: tuple[Any, ...], **carry: Any) -> tuple[Any, Any]:
        """One Lloyd pass: with Hamerly's bounds given ``carried`` (and ``extra`` their updates), else in full."""
        combine = partial(kmeans_combine, n_far=n_far)
        name = "bigdist-kmeans-pass"
        if self.groups is None:
            kernel = kmeans_bounded_chunk if "carried" in carry else kmeans_chunk
            return self.run(partial(_sharing_threads, kernel, n_far=n_far, with_moments=with_moments), combine,
                            name, extra, **carry)  # fmt: skip
        accumulate = partial(kmeans_accumulate_piece, n_far=n_far, with_moments=with_moments)
        column = PassColumn(partial(_sharing_threads, kmeans_label_piece), combine, extra,
                            _weighted(accumulate, self.weights))  # fmt: skip
        # The labelling takes each piece's bounds (None without them).
        return self._run(column, name, **{"takes_carried": True, **carry})

    def _run(self, column: PassColumn, name: str, **carry: Any) -> tuple[Any, Any]:
        (state,), carried = run_pass(
            self.rows, [column], split_every=self.split_every, name=name, what=name.removeprefix("bigdist-"),
            along=self.along, groups=self.groups, window=self.window, **carry,
        )  # fmt: skip
        return state, carried


def _split_blocks(block_rows: tuple[int, ...], workers: int, row_work: int) -> list[list[int]] | None:
    """The pieces (rows) of each row block, for a Lloyd pass to label on ``workers`` at once; None: unsplit.

    Fewer than ``PIECES_PER_WORKER`` blocks per worker leave workers idle
    (or one with more rows than another): each block is cut into pieces of
    whole steps of ``STEP_ROWS`` from its first row, so that the Client has
    about twice that many. A piece but a block's last has at least
    ``MIN_PIECE_ROWS`` rows and ``MIN_PIECE_WORK`` of work (``row_work`` a
    row: centroids x features).
    """
    if workers < 2 or len(block_rows) >= PIECES_PER_WORKER * workers:
        return None
    per_block = math.ceil(2 * PIECES_PER_WORKER * workers / len(block_rows))
    fewest = math.ceil(max(MIN_PIECE_ROWS, MIN_PIECE_WORK / max(row_work, 1)) / STEP_ROWS) * STEP_ROWS
    split = []
    for n in block_rows:
        rows = max(fewest, math.ceil(n / per_block / STEP_ROWS) * STEP_ROWS)
        # Cut only into two or more pieces of at least the fewest rows.
        split.append([rows] * (n // rows) + ([n % rows] if n % rows else []) if n >= 2 * fewest else [n])
    return split if any(len(pieces) > 1 for pieces in split) else None


def _persisted_passes(X: da.Array, weights: da.Array | None, split_every: int, keep: bool, n_clusters: int) -> _Passes:
    """The run's data, persisted when ``keep``; on a Client with few blocks per worker, in pieces of them."""
    client = ambient_client()
    workers = sorted(client.nthreads()) if keep and client is not None else []
    split = _split_blocks(X.chunks[0], len(workers), n_clusters * X.shape[1])
    if split is None:
        X = maybe_persist(X, keep, "k-means")
        if weights is not None:
            weights = maybe_persist(weights, keep, "k-means sample weights")
        return _Passes(X, weights, split_every)
    blocks = X.chunks[0]
    pieces = {0: tuple(rows for block in split for rows in block)}
    logger.info("k-means: %d row blocks in %d pieces, labelled on %d workers at once", len(blocks),
                len(pieces[0]), len(workers))  # fmt: skip
    # Consecutive pieces on different workers: each labels its share, the sums follow from one to the next.
    rows = spread(maybe_persist(X.rechunk(pieces), True, "k-means"), workers)
    row_weights = None
    if weights is not None:
        row_weights = spread(maybe_persist(weights.rechunk(pieces), True, "k-means sample weights"), workers)
    first = np.cumsum([0] + [len(block) for block in split]).tolist()
    groups = [list(range(first[i], first[i + 1])) for i in range(len(split))]
    # The blocks themselves, for every pass but Lloyd's and for the results: views of the pieces.
    X, weights = rows.rechunk({0: blocks}), None if row_weights is None else row_weights.rechunk({0: blocks})
    return _Passes(X, weights, split_every, (rows, row_weights), groups)


def _sharing_threads(chunk: Any, *args: Any, **kwargs: Any) -> Any:
    """``chunk(*args, threads=..., **kwargs)`` in a task: its block shared among the dask threads of its process.

    The tasks of a pass (often fewer than the threads, or not a multiple)
    hand their rows to one pool of that many threads, so every core works
    to the end of the pass; in the main thread (synchronous or processes
    scheduler) a task runs alone.
    """
    threads = 1 if threading.current_thread() is threading.main_thread() else dask_threads()
    return chunk(*args, threads=threads, **kwargs)


def _lloyd_state(data: _Passes, centroids: np.ndarray, n_far: int, with_moments: bool = False) -> dict[str, Any]:
    return data.lloyd(n_far, with_moments, (centroids,))[0]


def _bounded_pass(
    data: _Passes,
    carried: CarriedRows | None,
    centroids: np.ndarray,
    previous: np.ndarray | None,
    with_moments: bool,
    n_far: int | None = None,
) -> tuple[dict[str, Any], CarriedRows]:
    """One Lloyd pass that carries each row's label and bound to the next (Hamerly's algorithm).

    A block whose bounds were lost (its worker died) runs in full: the same partial state.
    ``n_far``: the farthest rows kept (default k, for empty clusters).
    """
    k = len(centroids)
    n_far = k if n_far is None else n_far
    if carried is None:
        drift_other, half_gap = np.zeros(k), np.zeros(k)
    else:
        drift_other, half_gap = bound_updates(previous, centroids)
    state, after = data.lloyd(
        n_far, with_moments, (centroids, drift_other, half_gap), carried=carried, takes_carried=True,
        returns_carried=True,
    )  # fmt: skip
    if carried is not None:
        carried.release()
    return state, after


def _carry_rows(X: da.Array, kept_bytes: int) -> bool:
    """Whether passes carry per-row state (Hamerly's bounds; k-means|| nearest candidates) in the cluster.

    ``kept_bytes``: what the data persisted in the cluster already takes of the memory budget.
    """
    setting = config.get("kmeans.bounds")
    if setting != "auto":
        return setting == "always"
    # 16 bytes per row, twice while a pass runs (the last pass's state is its input), within a quarter of
    # what the persisted data leaves of the budget.
    return 2 * X.shape[0] * BOUNDS_DTYPE.itemsize <= 0.25 * (memory_budget() - kept_bytes)


def _replay_nearest(
    rounds: tuple[tuple[np.ndarray, int, int], ...], block: np.ndarray, first_row: int, *along: Any
) -> np.ndarray | None:
    """A block's nearest k-means|| candidates after ``rounds`` (new candidates, first label, labels), recomputed.

    The same folds as the rounds made, so bitwise the state a lost worker held.
    """
    nearest = None
    for new, first_label, n_labels in rounds:
        nearest = fold_candidates_chunk(block, first_row, nearest, new, first_label, n_labels)[1]
    return nearest


def _measure_candidates(
    data: _Passes,
    nearest: CarriedRows | None,
    new: np.ndarray,
    candidates: np.ndarray,
    carry: bool,
    rounds: tuple[tuple[np.ndarray, int, int], ...] = (),
) -> tuple[dict[str, Any], CarriedRows | None]:
    """One pass: the rows' summed cost and the rows per candidate, over all ``candidates`` (``new`` the last).

    With ``carry``, only the distances to ``new`` are computed, folded into
    the rows' nearest candidates so far (after ``rounds``), which stay in the
    cluster for the next round. Otherwise the distances to every candidate
    are, and no nearest candidates are returned.
    """
    if not carry:
        return data.run(candidate_costs_chunk, fold_combine, "bigdist-kmeans||-cost", (candidates,))[0], None
    first_label = len(candidates) - len(new)
    chunk = partial(fold_candidates_chunk, first_label=first_label, n_labels=len(candidates))
    state, folded = data.run(
        chunk, fold_combine, "bigdist-kmeans||-cost", (new,), carried=nearest, takes_carried=True,
        returns_carried=True, rebuild=partial(_replay_nearest, rounds),
    )  # fmt: skip
    if nearest is not None:
        nearest.release()
    return state, folded


def _weighted_rows(data: _Passes, size: int, seed: int) -> np.ndarray:
    """``size`` distinct rows drawn with probabilities proportional to their weights, in one pass."""
    draw = data.run(partial(weighted_draw_chunk, size=size, seed=seed), weighted_draw_combine,
                    "bigdist-kmeans-weighted-draw")[0]  # fmt: skip
    return draw["row"]


def _init_kmeans_parallel(data: _Passes, k: int, seed: int, carry: bool, rounds: int = 5) -> np.ndarray:
    """k-means|| (Bahmani et al. 2012): oversampled rounds, then weighted k-means++ on the candidates.

    Each row carries its nearest candidate and cost (16 bytes, kept in the
    cluster, with ``carry``) from round to round, so a round
    computes distances to that round's new candidates only (one pass), then
    samples from the carried costs (a pass without distances). Otherwise each
    round computes the distances to every candidate twice. The last pass
    gives each candidate's weight, the rows it attracts.
    """
    from sklearn.cluster import KMeans as SkKMeans

    X = data.X
    rng = np.random.default_rng(seed)
    if data.weights is None:
        candidates = compute(X[int(rng.integers(X.shape[0]))])[0][None, :].astype(np.float64)
    else:
        candidates = _weighted_rows(data, 1, seed)
    state, nearest = _measure_candidates(data, None, candidates, candidates, carry)
    # What each carried round folded in: a block whose state was lost is rebuilt from them.
    folds = ((candidates, 0, len(candidates)),)
    oversampling = 2 * k
    for round_ in range(rounds):
        if state["cost"] == 0:
            break
        draw = {"rate": oversampling / state["cost"], "seed": seed, "stream": round_}
        if carry:
            sampled, _ = data.run(
                partial(sample_by_cost_chunk, **draw), stack_rows, "bigdist-kmeans||-sample", carried=nearest,
                takes_carried=True, rebuild=partial(_replay_nearest, folds),
            )  # fmt: skip
        else:
            sampled, _ = data.run(partial(sample_by_distance_chunk, **draw), stack_rows, "bigdist-kmeans||-sample",
                                  (candidates,))  # fmt: skip
        if len(sampled):
            candidates = np.concatenate([candidates, sampled])
            state, nearest = _measure_candidates(data, nearest, sampled, candidates, carry, folds)
            folds = (*folds, (sampled, len(candidates) - len(sampled), len(candidates)))
        logger.info("k-means|| round %d: %d candidates", round_ + 1, len(candidates))
    if nearest is not None:
        nearest.release()
    # Identical candidates (duplicate rows) pool their weights.
    candidates, inverse = np.unique(candidates, axis=0, return_inverse=True)
    if len(candidates) <= k:
        if len(candidates) < k:
            extra = compute(X[np.sort(rng.choice(X.shape[0], size=k, replace=False))])[0].astype(np.float64)
            candidates = np.unique(np.concatenate([candidates, extra]), axis=0)[:k]
        # Fewer distinct rows than k: repeats fill up, and kmeans() warns of the distinct clusters found.
        return candidates[np.arange(k) % len(candidates)]
    weights = np.bincount(inverse.ravel(), weights=state["counts"], minlength=len(candidates))
    model = SkKMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed)
    return model.fit(candidates, sample_weight=weights).cluster_centers_


def _initial_centroids(data: _Passes, k: int, init: Any, seed: int, carry: bool) -> np.ndarray:
    X, weights = data.X, data.weights
    n, d = X.shape
    if not isinstance(init, str):
        centroids = np.asarray(init, dtype=np.float64)
        if centroids.shape != (k, d):
            raise InputShapeError(
                f"init has shape {centroids.shape}, but n_clusters={k} and X has {d} features; "
                f"give an array of shape ({k}, {d})"
            )
        if not np.isfinite(centroids).all():
            raise ParameterError("init holds NaN or infinity; give finite initial centroids")
        return centroids
    rng = np.random.default_rng(seed)
    if init == "random":
        if weights is not None:
            return _weighted_rows(data, k, seed)
        return compute(X[rng.choice(n, size=k, replace=False)])[0].astype(np.float64)
    if init == "k-means++":
        from sklearn.cluster import kmeans_plusplus

        size = min(n, max(20 * k, 10_000))
        rows = np.sort(rng.choice(n, size=size, replace=False))
        sample = compute(X[rows])[0].astype(np.float64)
        sample_weight = None if weights is None else compute(weights[rows])[0]
        if sample_weight is not None and not sample_weight.any():
            # The sample holds no weighted row: draw it by weight instead.
            sample, sample_weight = _weighted_rows(data, min(size, n), seed), None
        return kmeans_plusplus(sample, k, random_state=seed, sample_weight=sample_weight)[0]
    return _init_kmeans_parallel(data, k, seed, carry)


def _load_checkpoint(path: str, k: int, d: int, fingerprint: str) -> dict[str, Any] | None:
    try:
        group = zarr.open_group(store=path, mode="r")
    except FileNotFoundError:
        return None
    state = dict(group.attrs.get("bigdist_checkpoint", {}))
    if not state:
        return None  # created, but killed before the first iteration was saved
    if state.get("fingerprint") != fingerprint:
        raise ParameterError(
            f"the checkpoint at {path!r} belongs to another run (other data, n_clusters, init, random_state or "
            f"tol than this one, which expects centroids of shape {(k, d)}); give another checkpoint path, "
            f"rerun with the arguments of that run, or delete it"
        )
    source = ZarrSource(group[state["array"]], f"the checkpoint {path}")
    state["centroids"] = source.read_all()
    return state


def _save_checkpoint(path: str, centroids: np.ndarray, state: dict[str, Any]) -> None:
    """Save the centroids of an iteration, never overwriting those the attributes point to.

    The two arrays alternate and the attributes (one file, written atomically
    on local stores) are updated last, so a run killed at any moment leaves a
    checkpoint whose attributes describe centroids fully stored.
    """
    group = zarr.open_group(store=path, mode="a")
    name = f"centroids_{state['n_iter'] % 2}"
    if name in group:
        del group[name]
    array = group.create_array(
        name, shape=centroids.shape, dtype=centroids.dtype, chunks=centroids.shape, compressors=output_codecs("none")
    )
    array[...] = centroids
    group.attrs["bigdist_checkpoint"] = {**state, "array": name}


def kmeans(
    X: Any,
    n_clusters: int,
    *,
    init: str | np.ndarray = "k-means||",
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state: int | None = None,
    checkpoint: str | None = None,
    split_every: int | None = None,
    persist: bool | None = None,
    sample_weight: Any = None,
) -> KMeansResult:
    """K-means clustering (Lloyd's algorithm) of data far bigger than RAM.

    Each iteration is one pass over the data: every row block is assigned to
    its nearest centroids (one GEMM, ties to the lower centroid index) and
    reduced at once to per-centroid sums and counts, which a tree reduction
    merges. Empty clusters take the rows farthest from their centroid.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NumPy or dask array, Zarr array, or a path/URL of a Zarr array or ``.npy`` file;
        or sparse (scipy.sparse, dask arrays of sparse blocks): each task densifies its own
        row block of about ``bigdist.chunk-bytes``, never the whole matrix.
    n_clusters : int
    init : {"k-means||", "k-means++", "random"} or ndarray of shape (n_clusters, n_features)
        ``k-means||`` runs oversampling rounds over the data and reduces the
        candidates, weighted by the rows they attract, with weighted k-means++;
        ``k-means++`` runs on a sample.
    n_init : int
        Runs with different seeds; the one with the lowest inertia is kept.
    max_iter : int
    tol : float
        Stop when the squared centroid shift is at most ``tol`` times the mean
        variance of the features (as scikit-learn does).
    random_state : int, optional
    checkpoint : str, optional
        Zarr group where the centroids are saved after every iteration; a run
        with the same checkpoint resumes where the last one stopped.
    split_every : int, optional
        Fan-in of the reductions (default from config).
    persist : bool, optional
        Keep the data in the cluster's memory between iterations; by default
        when it takes at most half of the workers' memory.
    sample_weight : array-like of shape (n_samples,), optional
        NumPy or dask array of weights >= 0, as in scikit-learn: centroids are
        weighted means, the inertia a weighted sum, empty means no weight,
        and the inits draw rows by weight (``random``: without replacement
        in proportion to the weights; ``k-means++`` and ``k-means||``:
        weighted costs). The tolerance stays relative to the unweighted
        variance, as scikit-learn's.

    Returns
    -------
    KMeansResult
    """
    array = as_dense_rows(X, as_array, name="X")
    n, d = array.shape
    k = check_int("n_clusters", n_clusters)
    if k > n:
        raise ParameterError(f"n_clusters={k} exceeds the {n} samples; use n_clusters <= {n}")
    max_iter = check_int("max_iter", max_iter)
    n_init = check_int("n_init", n_init)
    if isinstance(init, str) and init not in INITS:
        raise ParameterError(f"unknown init {init!r}; use one of {', '.join(INITS)} or an array of shape ({k}, {d})")
    tol = check_number("tol", tol, minimum=0)
    if checkpoint is not None and n_init != 1:
        raise ParameterError(f"checkpoint needs n_init=1 (got n_init={n_init}); run the inits one by one")
    split_every = check_int("split_every", config.get("split-every") if split_every is None else split_every, minimum=2)
    if random_state is not None and (
        isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral) or random_state < 0
    ):
        # SeedSequence takes non-negative integers only.
        raise ParameterError(f"random_state must be None or an integer seed >= 0, got random_state={random_state!r}")
    seeds = np.random.SeedSequence(random_state).generate_state(n_init)
    # What a checkpoint must match to be resumed: the data (its dask name) and the arguments that shape the run.
    fingerprint = tokenize(array.name, k, init, random_state, tol)
    weights, equal_weights = (None, True) if sample_weight is None else _checked_weights(sample_weight, array, k)
    if weights is not None:
        fingerprint = tokenize(fingerprint, weights.name)
    warm_up(("kmeans-pass", array.dtype), _load_pass_kernels, array.dtype, d)
    keep = should_persist(array, persist)
    data = _persisted_passes(array, weights, split_every, keep, k)
    carry = _carry_rows(array, array.nbytes if keep else 0)

    best: KMeansResult | None = None
    for run, seed in enumerate(seeds):
        result = _lloyd(data, k, init, int(seed), max_iter, tol, checkpoint, fingerprint, carry, equal_weights)
        logger.info(
            "k-means run %d/%d: inertia %.6g after %d iterations", run + 1, n_init, result.inertia, result.n_iter
        )
        if best is None or result.inertia < best.inertia:
            best = result
    assert best is not None
    distinct = best.n_distinct_clusters
    if distinct < k:
        # scikit-learn's wording and category, which its users filter on.
        warnings.warn(
            f"Number of distinct clusters ({distinct}) found smaller than n_clusters ({k}). Possibly due to "
            f"duplicate points in X; use n_clusters <= {distinct}",
            ConvergenceWarning,
            stacklevel=2,
        )
    best.params = {
        "n_clusters": k, "init": init if isinstance(init, str) else "array", "n_init": n_init,
        "max_iter": max_iter, "tol": tol, "random_state": random_state,
    }  # fmt: skip
    return best


def _load_pass_kernels(dtype: np.dtype, n_features: int) -> None:
    """A Lloyd pass's compiled kernels for ``dtype`` rows loaded (a pass over two rows, one of them kept far)."""
    rows = np.random.default_rng(0).standard_normal((2, n_features)).astype(dtype)
    kmeans_chunk(rows, 0, rows[:1].astype(np.float64), n_far=1)


def check_sample_weights(sample_weight: Any, X: da.Array, n_clusters: int = 0) -> da.Array:
    """The weights as a float64 dask array chunked like the rows of X, checked in one pass over them.

    At least ``n_clusters`` rows must have a weight > 0.
    """
    return _checked_weights(sample_weight, X, n_clusters)[0]


def _checked_weights(sample_weight: Any, X: da.Array, n_clusters: int) -> tuple[da.Array, bool]:
    """:func:`check_sample_weights`, and whether every row has the same weight (found in the same pass)."""
    n, k = X.shape[0], n_clusters
    weights = sample_weight if isinstance(sample_weight, da.Array) else da.from_array(np.asarray(sample_weight))
    if weights.shape != (n,):
        raise InputShapeError(
            f"sample_weight has shape {weights.shape}, but X has {n} samples; give one weight per row, shape ({n},)"
        )
    weights = weights.astype(np.float64).rechunk((X.chunks[0],))
    valid = da.isfinite(weights) & (weights >= 0)
    n_valid, n_positive, total, lowest, highest = compute(
        valid.sum(), (weights > 0).sum(), da.where(valid, weights, 0).sum(), weights.min(), weights.max()
    )
    if n_valid < n:
        raise ParameterError(
            f"sample_weight holds {n - int(n_valid)} negative, NaN or infinite values; give finite weights >= 0"
        )
    if k > 0 and n_positive == 0:
        raise ParameterError("sample_weight is zero for every row; give at least one row a weight > 0")
    if n_positive < k:
        raise ParameterError(
            f"sample_weight gives only {int(n_positive)} rows a weight > 0 (total {float(total):.6g}), fewer than "
            f"n_clusters={k}; give more rows a positive weight or use fewer clusters"
        )
    return weights, bool(lowest == highest)


def _lloyd(
    data: _Passes,
    k: int,
    init: Any,
    seed: int,
    max_iter: int,
    tol: float,
    checkpoint: str | None,
    fingerprint: str,
    carry: bool,
    equal_weights: bool = True,
) -> KMeansResult:
    """Lloyd passes from the init (or the checkpoint); ``carry``: keep per-row state in the cluster.

    Equal weights draw the inits as no weights do (the draw is the same in
    distribution), so that unit weights give the unweighted run, as in scikit-learn.
    """
    n, d = data.X.shape
    saved = _load_checkpoint(checkpoint, k, d, fingerprint) if checkpoint else None
    if saved:
        centroids, start, stats, tol_abs = saved["centroids"], saved["n_iter"], saved["stats"], saved["tol_abs"]
        logger.info("k-means: resuming from %s after %d iterations", checkpoint, start)
        if saved.get("converged"):
            return _finish(data, centroids, start, stats)
    else:
        draws = data.unweighted() if equal_weights and data.weights is not None else data
        centroids = _initial_centroids(draws, k, init, seed, carry)
        start, stats, tol_abs = 0, [], None

    carried, previous = None, None
    for iteration in range(start, max_iter):
        began = time.perf_counter()
        if carry:
            state, carried = _bounded_pass(data, carried, centroids, previous, tol_abs is None)
            previous = centroids
        else:
            state = _lloyd_state(data, centroids, n_far=k, with_moments=tol_abs is None)
        if tol_abs is None:
            mean, mean_sq = state["moments"] / n
            tol_abs = float(np.mean(mean_sq - mean**2) * tol)
        new, relocated = update_centroids(state, centroids)
        shift = float(((new - centroids) ** 2).sum())
        stats.append(
            {"iteration": iteration + 1, "inertia": state["inertia"], "shift": shift, "relocated": relocated,
             "reassigned_fraction": state["full_rows"] / n, "seconds": time.perf_counter() - began}
        )  # fmt: skip
        logger.info(
            "k-means iteration %d: inertia %.6g, centroid shift %.3g%s, %.0f%% of rows assigned in full, %.2f s",
            iteration + 1, state["inertia"], shift, f", {relocated} empty clusters relocated" if relocated else "",
            100 * state["full_rows"] / n, stats[-1]["seconds"],
        )  # fmt: skip
        centroids = new
        converged = shift <= tol_abs
        if checkpoint:
            _save_checkpoint(
                checkpoint, centroids,
                {"n_iter": iteration + 1, "stats": stats, "tol_abs": tol_abs, "converged": converged,
                 "fingerprint": fingerprint},
            )  # fmt: skip
        if converged:
            break
    return _finish(data, centroids, len(stats), stats, carried, previous)


def _finish(
    data: _Passes,
    centroids: np.ndarray,
    n_iter: int,
    stats: list[dict[str, float]],
    carried: CarriedRows | None = None,
    previous: np.ndarray | None = None,
) -> KMeansResult:
    """The result at the final centroids; ``carried``: the last pass's bounds (at ``previous``), released here."""
    # Inertia of the final centroids, as scikit-learn reports it; the last pass's bounds skip the rows
    # that provably keep their centroid (bitwise the same state).
    if carried is None:
        state = _lloyd_state(data, centroids, n_far=0)
    else:
        state, after = _bounded_pass(data, carried, centroids, previous, with_moments=False, n_far=0)
        after.release()
    labels = map_row_blocks(data.X, labels_chunk, dtype=np.int64, name="bigdist-kmeans-labels", extra=(centroids,))
    return KMeansResult(
        centroids=centroids, labels=labels, inertia=float(state["inertia"]), n_iter=n_iter, stats=stats,
        n_distinct_clusters=int((state["counts"] > 0).sum()), data=data.X,
    )  # fmt: skip
