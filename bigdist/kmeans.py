"""K-means over data far bigger than RAM: one pass over the data per Lloyd iteration."""

from __future__ import annotations

import logging
import numbers
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from sklearn.exceptions import ConvergenceWarning

from bigdist import config, display
from bigdist.errors import InputShapeError, ParameterError
from bigdist.io import as_array, check_int, check_number, write_group
from bigdist.io.integrity import ZarrSource, output_codecs
from bigdist.io.sparse import as_dense_rows
from bigdist.kernels.kmeans import (
    BOUNDS_DTYPE,
    NEAREST_DTYPE,
    bound_groups,
    bound_updates,
    candidate_costs_chunk,
    centroid_groups,
    fold_candidates_chunk,
    fold_combine,
    group_bound_updates,
    group_bounds_dtype,
    kmeans_bounded_chunk,
    kmeans_chunk,
    kmeans_combine,
    kmeans_grouped_chunk,
    labels_chunk,
    sample_by_cost_chunk,
    sample_by_distance_chunk,
    stack_rows,
    update_centroids,
    weighted_draw_chunk,
    weighted_draw_combine,
    with_row_weights,
)
from bigdist.reductions import block_tree_reduce, block_tree_reduce_carry, map_row_blocks
from bigdist.resources import maybe_persist, memory_budget, should_persist

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

    def to_zarr(
        self, path: str, *, overwrite: bool = False, attrs: dict[str, Any] | None = None, compute: bool = True
    ) -> Any:
        """Write centroids and labels (block by block) to a Zarr group; stats go in its attributes."""
        centroids = da.from_array(self.centroids, chunks=self.centroids.shape)
        meta = {"kmeans": {**self.params, "inertia": self.inertia, "n_iter": self.n_iter, "stats": self.stats}}
        return write_group(
            path,
            {"centroids": centroids, "labels": self.labels},
            attrs={**meta, **(attrs or {})},
            overwrite=overwrite,
            compute=compute,
        )

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


def _weighted(chunk: Any, weights: da.Array | None) -> tuple[Any, tuple[da.Array, ...]]:
    """A block kernel and the per-row arrays it needs: its rows' weights when the run has any."""
    if weights is None:
        return chunk, ()
    return partial(with_row_weights, chunk), (weights,)


def _lloyd_state(
    X: da.Array,
    centroids: np.ndarray,
    split_every: int,
    n_far: int,
    with_moments: bool = False,
    weights: da.Array | None = None,
) -> dict[str, Any]:
    chunk, along = _weighted(partial(kmeans_chunk, n_far=n_far, with_moments=with_moments), weights)
    return block_tree_reduce(
        X,
        chunk,
        partial(kmeans_combine, n_far=n_far),
        split_every=split_every,
        name="bigdist-kmeans-pass",
        extra=(centroids,),
        along=along,
    ).compute()


def _bounded_pass(
    X: da.Array,
    carried: da.Array | None,
    centroids: np.ndarray,
    previous: np.ndarray | None,
    split_every: int,
    with_moments: bool,
    weights: da.Array | None = None,
    groups: np.ndarray | None = None,
) -> tuple[dict[str, Any], da.Array]:
    """One Lloyd pass that carries each row's label and bounds to the next.

    Hamerly's algorithm (one bound per row), or with ``groups`` (each
    centroid's group, fixed for the run) Yinyang's (one bound per group).
    """
    k = len(centroids)
    if groups is None:
        kernel, carried_dtype = kmeans_bounded_chunk, BOUNDS_DTYPE
        updates = (np.zeros(k), np.zeros(k)) if carried is None else bound_updates(previous, centroids)
    else:
        n_groups = int(groups.max()) + 1
        kernel, carried_dtype = kmeans_grouped_chunk, group_bounds_dtype(n_groups)
        if carried is None:
            updates = (groups, np.zeros(k), np.zeros(n_groups), np.zeros(k))
        else:
            updates = (groups, *group_bound_updates(previous, centroids, groups))
    combine = partial(kmeans_combine, n_far=k)
    chunk, along = _weighted(partial(kernel, n_far=k, with_moments=with_moments), weights)
    partials, after = block_tree_reduce_carry(
        X, carried, chunk, combine, carried_dtype=carried_dtype, split_every=split_every,
        name="bigdist-kmeans-pass", extra=(centroids, *updates), along=along,
    )  # fmt: skip
    # One graph, unoptimised: fusing the bounds' getitem into its chunk task would give the chunk a second
    # key, computed once more for the reduction. Each block is read once; its bounds stay in the cluster.
    *partials, after = dask.persist(*partials, after, optimize_graph=False)
    return combine(list(dask.compute(*partials))), after


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


def _bound_groups(X: da.Array, k: int, kept_bytes: int) -> int:
    """How many groups of centroids the carried bounds tell apart (Yinyang); 0: Hamerly's single bound.

    Chosen by k (``bound_groups``), within the budget of :func:`_carry_rows`:
    a row then carries its label and a float64 per group.
    """
    room = 0.25 * (memory_budget() - kept_bytes) / (2 * X.shape[0])
    return bound_groups(k, int((room - BOUNDS_DTYPE["label"].itemsize) // np.dtype(np.float64).itemsize))


def _measure_candidates(
    X: da.Array,
    nearest: da.Array | None,
    new: np.ndarray,
    candidates: np.ndarray,
    split_every: int,
    carry: bool,
    weights: da.Array | None = None,
) -> tuple[dict[str, Any], da.Array | None]:
    """One pass: the rows' summed cost and the rows per candidate, over all ``candidates`` (``new`` the last).

    With ``carry``, only the distances to ``new`` are computed, folded into
    the rows' nearest candidates so far, which stay in the cluster for the
    next round. Otherwise the distances to every candidate are, and no
    nearest candidates are returned.
    """
    if not carry:
        chunk, along = _weighted(candidate_costs_chunk, weights)
        state = block_tree_reduce(
            X, chunk, fold_combine, split_every=split_every, name="bigdist-kmeans||-cost",
            extra=(candidates,), along=along,
        ).compute()  # fmt: skip
        return state, None
    first_label = len(candidates) - len(new)
    chunk, along = _weighted(partial(fold_candidates_chunk, first_label=first_label, n_labels=len(candidates)), weights)
    partials, folded = block_tree_reduce_carry(
        X, nearest, chunk, fold_combine, carried_dtype=NEAREST_DTYPE, split_every=split_every,
        name="bigdist-kmeans||-cost", extra=(new,), along=along,
    )  # fmt: skip
    *partials, folded = dask.persist(*partials, folded, optimize_graph=False)
    return fold_combine(list(dask.compute(*partials))), folded


def _weighted_rows(X: da.Array, weights: da.Array, size: int, seed: int, split_every: int) -> np.ndarray:
    """``size`` distinct rows drawn with probabilities proportional to their weights, in one pass."""
    draw = block_tree_reduce(
        X, partial(with_row_weights, partial(weighted_draw_chunk, size=size, seed=seed)), weighted_draw_combine,
        split_every=split_every, name="bigdist-kmeans-weighted-draw", along=(weights,),
    ).compute()  # fmt: skip
    return draw["row"]


def _init_kmeans_parallel(
    X: da.Array, k: int, seed: int, split_every: int, carry: bool, weights: da.Array | None, rounds: int = 5
) -> np.ndarray:
    """k-means|| (Bahmani et al. 2012): oversampled rounds, then weighted k-means++ on the candidates.

    Each row carries its nearest candidate and cost (16 bytes, kept in the
    cluster, with ``carry``) from round to round, so a round
    computes distances to that round's new candidates only (one pass), then
    samples from the carried costs (a pass without distances). Otherwise each
    round computes the distances to every candidate twice. The last pass
    gives each candidate's weight, the rows it attracts.
    """
    from sklearn.cluster import KMeans as SkKMeans

    rng = np.random.default_rng(seed)
    if weights is None:
        candidates = X[int(rng.integers(X.shape[0]))].compute()[None, :].astype(np.float64)
    else:
        candidates = _weighted_rows(X, weights, 1, seed, split_every)
    state, nearest = _measure_candidates(X, None, candidates, candidates, split_every, carry, weights)
    oversampling = 2 * k
    for round_ in range(rounds):
        if state["cost"] == 0:
            break
        draw = {"rate": oversampling / state["cost"], "seed": seed, "stream": round_}
        if carry:
            chunk, extra = partial(sample_by_cost_chunk, **draw), ()
        else:
            chunk, extra = partial(sample_by_distance_chunk, **draw), (candidates,)
        chunk, along = _weighted(chunk, weights)
        sampled = block_tree_reduce(
            X, chunk, stack_rows, split_every=split_every, name="bigdist-kmeans||-sample", extra=extra,
            carried=nearest, along=along,
        ).compute()  # fmt: skip
        if len(sampled):
            candidates = np.concatenate([candidates, sampled])
            state, nearest = _measure_candidates(X, nearest, sampled, candidates, split_every, carry, weights)
        logger.info("k-means|| round %d: %d candidates", round_ + 1, len(candidates))
    # Identical candidates (duplicate rows) pool their weights.
    candidates, inverse = np.unique(candidates, axis=0, return_inverse=True)
    if len(candidates) <= k:
        if len(candidates) < k:
            extra = X[np.sort(rng.choice(X.shape[0], size=k, replace=False))].compute().astype(np.float64)
            candidates = np.unique(np.concatenate([candidates, extra]), axis=0)[:k]
        # Fewer distinct rows than k: repeats fill up, and kmeans() warns of the distinct clusters found.
        return candidates[np.arange(k) % len(candidates)]
    weights = np.bincount(inverse.ravel(), weights=state["counts"], minlength=len(candidates))
    model = SkKMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed)
    return model.fit(candidates, sample_weight=weights).cluster_centers_


def _initial_centroids(
    X: da.Array, k: int, init: Any, seed: int, split_every: int, carry: bool, weights: da.Array | None
) -> np.ndarray:
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
            return _weighted_rows(X, weights, k, seed, split_every)
        return X[rng.choice(n, size=k, replace=False)].compute().astype(np.float64)
    if init == "k-means++":
        from sklearn.cluster import kmeans_plusplus

        size = min(n, max(20 * k, 10_000))
        rows = np.sort(rng.choice(n, size=size, replace=False))
        sample = X[rows].compute().astype(np.float64)
        sample_weight = None if weights is None else weights[rows].compute()
        if sample_weight is not None and not sample_weight.any():
            # The sample holds no weighted row: draw it by weight instead.
            sample, sample_weight = _weighted_rows(X, weights, min(size, n), seed, split_every), None
        return kmeans_plusplus(sample, k, random_state=seed, sample_weight=sample_weight)[0]
    return _init_kmeans_parallel(X, k, seed, split_every, carry, weights)


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
    weights = None if sample_weight is None else check_sample_weights(sample_weight, array, k)
    if weights is not None:
        fingerprint = tokenize(fingerprint, weights.name)
    keep = should_persist(array, persist)
    array = maybe_persist(array, keep, "k-means")
    if weights is not None:
        weights = maybe_persist(weights, keep, "k-means sample weights")
    carry = _carry_rows(array, array.nbytes if keep else 0)
    n_groups = _bound_groups(array, k, array.nbytes if keep else 0) if carry else 0

    best: KMeansResult | None = None
    for run, seed in enumerate(seeds):
        result = _lloyd(
            array, k, init, int(seed), max_iter, tol, split_every, checkpoint, fingerprint, carry, weights, n_groups
        )
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


def check_sample_weights(sample_weight: Any, X: da.Array, n_clusters: int = 0) -> da.Array:
    """The weights as a float64 dask array chunked like the rows of X, checked in one pass over them.

    At least ``n_clusters`` rows must have a weight > 0.
    """
    n, k = X.shape[0], n_clusters
    weights = sample_weight if isinstance(sample_weight, da.Array) else da.from_array(np.asarray(sample_weight))
    if weights.shape != (n,):
        raise InputShapeError(
            f"sample_weight has shape {weights.shape}, but X has {n} samples; give one weight per row, shape ({n},)"
        )
    weights = weights.astype(np.float64).rechunk((X.chunks[0],))
    valid = da.isfinite(weights) & (weights >= 0)
    n_valid, n_positive, total = dask.compute(valid.sum(), (weights > 0).sum(), da.where(valid, weights, 0).sum())
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
    return weights


def _lloyd(
    X: da.Array,
    k: int,
    init: Any,
    seed: int,
    max_iter: int,
    tol: float,
    split_every: int,
    checkpoint: str | None,
    fingerprint: str,
    carry: bool,
    weights: da.Array | None = None,
    n_groups: int = 0,
) -> KMeansResult:
    """Lloyd passes from the init (or the checkpoint); ``carry``: keep per-row state in the cluster.

    ``n_groups``: with ``carry``, the bounds are per group of centroids, grouped once from the first
    pass's centroids (0: Hamerly's single bound).
    """
    n, d = X.shape
    saved = _load_checkpoint(checkpoint, k, d, fingerprint) if checkpoint else None
    if saved:
        centroids, start, stats, tol_abs = saved["centroids"], saved["n_iter"], saved["stats"], saved["tol_abs"]
        logger.info("k-means: resuming from %s after %d iterations", checkpoint, start)
        if saved.get("converged"):
            return _finish(X, centroids, start, stats, split_every, weights)
    else:
        centroids = _initial_centroids(X, k, init, seed, split_every, carry, weights)
        start, stats, tol_abs = 0, [], None

    carried, previous = None, None
    groups = centroid_groups(centroids, n_groups) if carry and n_groups else None
    for iteration in range(start, max_iter):
        began = time.perf_counter()
        if carry:
            state, carried = _bounded_pass(
                X, carried, centroids, previous, split_every, tol_abs is None, weights, groups
            )
            previous = centroids
        else:
            state = _lloyd_state(X, centroids, split_every, n_far=k, with_moments=tol_abs is None, weights=weights)
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
    return _finish(X, centroids, len(stats), stats, split_every, weights)


def _finish(
    X: da.Array,
    centroids: np.ndarray,
    n_iter: int,
    stats: list[dict[str, float]],
    split_every: int,
    weights: da.Array | None = None,
) -> KMeansResult:
    # Inertia of the final centroids, as scikit-learn reports it.
    state = _lloyd_state(X, centroids, split_every, n_far=0, weights=weights)
    labels = map_row_blocks(X, labels_chunk, dtype=np.int64, name="bigdist-kmeans-labels", extra=(centroids,))
    return KMeansResult(
        centroids=centroids, labels=labels, inertia=float(state["inertia"]), n_iter=n_iter, stats=stats,
        n_distinct_clusters=int((state["counts"] > 0).sum()),
    )  # fmt: skip
