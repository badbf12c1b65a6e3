"""The ``bigdist`` command line: parse, start the runtime, call the API, report."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import dask
import yaml
from click.core import ParameterSource

from bigdist import config
from bigdist.errors import BigdistError, ConfigError
from bigdist.kernels.registry import get_metric, metric_names

logger = logging.getLogger("bigdist")

# Sections of a run file that are not options of the command.
GENERATE_SECTION = "generate"
DASK_SECTION = "dask"
SECURITY_SECTION = "security"


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # bigdist's own progress lines show at the default level; -v adds Dask's.
    logging.getLogger("bigdist").setLevel(logging.INFO if verbose < 2 else logging.DEBUG)
    # Dask's own logging config, also handed to the LocalCluster's worker processes.
    dask.config.set({"logging.distributed": logging.getLevelName(level).lower()})


def _load_run_file(path: str, ctx: click.Context, sections: tuple[str, ...]) -> dict[str, Any]:
    """Read a YAML run file, check its keys against the command's options and fill in unset options."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            content = yaml.safe_load(f) or {}
    except OSError as error:
        raise ConfigError(f"cannot read the run file {path!r}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"the run file {path!r} is not valid YAML: {error}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"the run file {path!r} must hold a mapping of option names to values")
    # A run file cannot name another run file.
    params = {p.name: p for p in ctx.command.params if p.name != "config_file"}
    extra: dict[str, Any] = {}
    for raw_key, value in content.items():
        key = str(raw_key).replace("-", "_")
        if str(raw_key) in sections:
            extra[str(raw_key)] = value
            continue
        if key not in params:
            valid = sorted(name.replace("_", "-") for name in params) + list(sections)
            raise ConfigError(f"unknown key {raw_key!r} in the run file {path!r}; valid keys are {', '.join(valid)}")
        if ctx.get_parameter_source(key) in (ParameterSource.DEFAULT, None):
            param = params[key]
            try:
                ctx.params[key] = param.type_cast_value(ctx, value)
            except click.BadParameter as error:
                raise ConfigError(f"run file key {raw_key!r}: {error.message}") from None
    return extra


def run_options(*, generate_section: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options every run command shares, and the run-file merge (a flag wins over the file).

    Every run file may carry ``dask:`` and ``security:`` sections; ``generate:`` only when the command has
    inputs to make (its function then takes ``generate``).
    """
    sections = ((GENERATE_SECTION,) if generate_section else ()) + (DASK_SECTION, SECURITY_SECTION)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            help="YAML run file; every option can be a key in it.",
        )
        @click.option("--scheduler", help="Address of an existing Dask scheduler, e.g. tcp://host:8786.")
        @click.option(
            "--scheduler-file", type=click.Path(dir_okay=False), help="Scheduler file of an existing Dask cluster."
        )
        @click.option(
            "--overwrite",
            is_flag=True,
            default=False,
            help="Replace a finished output, or an unfinished one of another run (one of the same run is resumed).",
        )
        @click.option(
            "--performance-report", type=click.Path(dir_okay=False), help="Write Dask's HTML performance report here."
        )
        @click.option("-v", "--verbose", count=True, help="More logging (-vv: debug, tracebacks).")
        @functools.wraps(command)
        def wrapper(config_file: str | None, **options: Any) -> None:
            ctx = click.get_current_context()
            verbose = options["verbose"]
            _setup_logging(verbose)
            try:
                extra: dict[str, Any] = {}
                if config_file:
                    ctx.params.update(options)
                    extra = _load_run_file(config_file, ctx, sections)
                    options = {name: ctx.params[name] for name in options}
                overrides = {
                    **_dask_overrides(extra.pop(DASK_SECTION, None)),
                    **_security_overrides(extra.pop(SECURITY_SECTION, None)),
                }
                with dask.config.set(overrides):
                    config.validate()
                    with _cluster_errors():
                        command(**options, **extra)
            except BigdistError as error:
                if verbose >= 2:
                    raise
                click.echo(f"error: {error}", err=True)
                sys.exit(1)

        return wrapper

    return decorate


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(_flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return flat


def _check_dask_key(key: str) -> None:
    """Refuse a key of a known Dask namespace that Dask does not have (a typo would otherwise do nothing)."""
    import distributed  # noqa: F401  (loads distributed's defaults into dask.config)

    parts = key.replace("_", "-").split(".")
    missing = object()
    if parts[0] == "bigdist" or dask.config.get(parts[0], missing) is missing:
        return  # bigdist's keys are checked by config.validate(); other namespaces may belong to plugins
    for depth in range(len(parts), 0, -1):
        ancestor = dask.config.get(".".join(parts[:depth]), missing)
        if ancestor is missing:
            continue
        # A free-form mapping (empty by default, e.g. worker resources) takes any key below it.
        if depth == len(parts) or (isinstance(ancestor, dict) and not ancestor):
            return
        parent = ".".join(parts[:depth])
        valid = ", ".join(sorted(ancestor)) if isinstance(ancestor, dict) else "none (it is a value)"
        raise ConfigError(
            f"unknown dask config key {key!r} in the run file's 'dask' section; keys under {parent!r} are {valid}"
        )


def _dask_overrides(section: Any) -> dict[str, Any]:
    """The run file's ``dask`` section as dotted keys (a nested mapping would replace whole subtrees)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(
            f"the run file's 'dask' section must be a mapping of dask config keys to values, got {section!r}"
        )
    flat = _flatten(section)
    for key in flat:
        _check_dask_key(key)
    return flat


def _security_overrides(section: Any) -> dict[str, Any]:
    """The run file's ``security`` section as ``bigdist.runtime.security`` keys (checked by config.validate)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(
            f"the run file's 'security' section must be a mapping (tls-ca-file, tls-client-cert, tls-client-key, "
            f"require-encryption), got {section!r}"
        )
    return {f"bigdist.runtime.security.{str(key).replace('_', '-')}": value for key, value in section.items()}


@contextlib.contextmanager
def _cluster_errors() -> Any:
    from bigdist.runtime import cluster_errors

    with cluster_errors():
        yield


def _runtime(options: dict[str, Any]) -> Any:
    from bigdist import runtime

    return runtime.start(
        scheduler=options["scheduler"],
        scheduler_file=options["scheduler_file"],
        performance_report=options["performance_report"],
    )


def _wait(client: Any, delayed: Any) -> Any:
    """Compute ``delayed`` on the cluster, with a progress bar on an interactive terminal."""
    future = client.compute(delayed)
    if sys.stderr.isatty() and not os.environ.get("CI"):
        from distributed import progress

        progress(future)
    return future.result()


@click.group()
@click.version_option(package_name="bigdist")
def main() -> None:
    """Exact nearest neighbours over matrices far bigger than RAM, on Dask and Zarr."""


@main.command()
@click.argument("kind", type=click.Choice(["blobs", "random"]))
@click.option("--n-samples", type=click.IntRange(min=1), required=False)
@click.option("--n-features", type=click.IntRange(min=1), required=False)
@click.option("--centers", type=click.IntRange(min=1), default=8, show_default=True, help="blobs: number of centres.")
@click.option("--cluster-std", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option(
    "--center-box", type=(float, float), default=(-10.0, 10.0), show_default=True, help="blobs: box of the centres."
)
@click.option(
    "--distribution",
    type=click.Choice(["normal", "uniform"]),
    default="normal",
    show_default=True,
    help="random: the distribution.",
)
@click.option("--random-state", type=int, default=0, show_default=True, help="Seed (of the centres, for blobs).")
@click.option(
    "--sample-seed", type=int, default=None, help="blobs: seed of the points (another set around the same centres)."
)
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None, help="Rows per stored chunk.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--out", type=click.Path(), required=False, help="Zarr array to write.")
@run_options(generate_section=False)
def generate(**options: Any) -> None:
    """Write synthetic data to a Zarr array, block by block (any size)."""
    _require(options, "n_samples", "n_features", "out")
    with _runtime(options) as client:
        start = time.perf_counter()
        _wait(client, _generate(options["kind"], options["out"], options, overwrite=options["overwrite"]))
    click.echo(
        f"generated {options['n_samples']:,} x {options['n_features']} {options['kind']} at {options['out']} "
        f"in {time.perf_counter() - start:.1f} s"
    )


def _generate(kind: str, out: str, spec: dict[str, Any], *, overwrite: bool) -> Any:
    from bigdist.io import make_blobs, make_random

    common = {
        "random_state": spec.get("random_state", 0),
        "chunk_rows": spec.get("chunk_rows"),
        "dtype": spec.get("dtype", "float32"),
        "overwrite": overwrite,
        "compute": False,
    }
    if kind == "blobs":
        return make_blobs(
            out,
            spec["n_samples"],
            spec["n_features"],
            centers=spec.get("centers", 8),
            cluster_std=spec.get("cluster_std", 1.0),
            center_box=tuple(spec.get("center_box", (-10.0, 10.0))),
            sample_seed=spec.get("sample_seed"),
            **common,
        )
    return make_random(
        out, spec["n_samples"], spec["n_features"], distribution=spec.get("distribution", "normal"), **common
    )


def _finished(path: str) -> bool:
    """Whether ``path`` exists and is not something a killed run left unfinished (which is made again or resumed)."""
    if not os.path.exists(path):
        return False
    from bigdist.io import describe

    try:
        return describe(path)["complete"] is not False
    except BigdistError:
        return True  # not Zarr: opening it will say what is wrong


def _generate_missing(client: Any, section: Any, paths: dict[str, str | None]) -> None:
    """Make the inputs a run file's ``generate`` section describes, when they do not exist yet (or are unfinished)."""
    if section is None:
        return
    if not isinstance(section, dict) or set(section) - set(paths):
        raise ConfigError(f"the run file's 'generate' section may only describe {', '.join(paths)}; got {section!r}")
    for role, raw_spec in section.items():
        path = paths[role]
        if path is None or _finished(os.path.expanduser(path)):
            continue
        spec = {str(key).replace("-", "_"): value for key, value in (raw_spec or {}).items()}
        kind = spec.pop("kind", "blobs")
        unknown = set(spec) - {
            "n_samples",
            "n_features",
            "centers",
            "cluster_std",
            "center_box",
            "distribution",
            "random_state",
            "sample_seed",
            "chunk_rows",
            "dtype",
        }
        if kind not in ("blobs", "random") or unknown or "n_samples" not in spec or "n_features" not in spec:
            raise ConfigError(
                f"generate.{role}: need kind (blobs or random), n-samples and n-features; "
                f"unknown keys: {sorted(unknown)}"
            )
        logger.info("generating %s at %s", role, path)
        start = time.perf_counter()
        _wait(client, _generate(kind, path, spec, overwrite=False))
        click.echo(
            f"generated {role}: {spec['n_samples']:,} x {spec['n_features']} {kind} at {path} "
            f"in {time.perf_counter() - start:.1f} s"
        )


@main.command()
@click.option(
    "--queries", type=str, default=None, help="Zarr array or .npy of query rows; omit for the self-join of --train."
)
@click.option("--train", type=str, required=False, help="Zarr array or .npy of train rows.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--metric", type=click.Choice(metric_names()), default="euclidean", show_default=True)
@click.option("--p", type=float, default=None, help="Order of the minkowski metric (p > 0; default 2).")
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the top-k tree reduction.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (distances, indices).")
@run_options()
def knn(generate: Any = None, **options: Any) -> None:
    """Exact k nearest neighbours of every query row, written to a Zarr group."""
    import bigdist
    from bigdist.io import update_attrs

    _require(options, "train", "out")
    get_metric(options["metric"], **_metric_params(options))  # a bad parameter fails before any cluster starts
    with _runtime(options) as client:
        _started(client, generate, {"train": options["train"], "queries": options["queries"]})
        out = os.path.expanduser(options["out"])
        result = bigdist.knn(
            *_queries_and_train(options),
            k=options["k"],
            metric=options["metric"],
            split_every=options["split_every"],
            **_metric_params(options),
        )
        start = time.perf_counter()
        _wait(
            client,
            result.to_zarr(out, overwrite=options["overwrite"], attrs={"run": _run_attrs(options)}, compute=False),
        )
        seconds = time.perf_counter() - start
    timings = {"seconds": seconds, "queries_per_second": result.n_queries / seconds}
    if get_metric(result.metric).gemm:  # the direct metrics run no GEMM, so no GFLOP/s
        timings["gflops"] = result.flops / seconds / 1e9
    update_attrs(out, timings=timings)
    click.echo(
        f"knn: {result.n_queries:,} queries x {result.n_train:,} train rows x {result.n_features} features, "
        f"k={result.k}, {result.metric}: {seconds:.1f} s, {result.n_queries / seconds:,.0f} queries/s, "
        f"{_knn_rate(result, seconds)}\noutput: {out} (distances, indices)"
    )


@main.command()
@click.option("--data", type=str, required=False, help="Zarr array or .npy of the rows to cluster.")
@click.option("--n-clusters", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--init", type=click.Choice(["k-means||", "k-means++", "random"]), default="k-means||", show_default=True)
@click.option("--n-init", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-iter", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--random-state", type=int, default=None)
@click.option(
    "--checkpoint", type=str, default=None, help="Zarr group to save centroids to each iteration and resume from."
)
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the tree reductions.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (centroids, labels).")
@run_options()
def kmeans(generate: Any = None, **options: Any) -> None:
    """K-means clustering, one pass over the data per iteration, written to a Zarr group."""
    import bigdist
    from bigdist.io import update_attrs

    _require(options, "data", "out")
    _refuse_existing_output(options)
    with _runtime(options) as client:
        _started(client, generate, {"data": options["data"]})
        out = os.path.expanduser(options["out"])
        start = time.perf_counter()
        result = bigdist.kmeans(
            os.path.expanduser(options["data"]),
            options["n_clusters"],
            init=options["init"],
            n_init=options["n_init"],
            max_iter=options["max_iter"],
            tol=options["tol"],
            random_state=options["random_state"],
            checkpoint=os.path.expanduser(options["checkpoint"]) if options["checkpoint"] else None,
            split_every=options["split_every"],
        )
        _wait(
            client,
            result.to_zarr(out, overwrite=options["overwrite"], attrs={"run": _run_attrs(options)}, compute=False),
        )
        seconds = time.perf_counter() - start
    update_attrs(out, timings={"seconds": seconds})
    click.echo(
        f"kmeans: {result.labels.shape[0]:,} rows, {options['n_clusters']} clusters, {result.n_iter} iterations, "
        f"inertia {result.inertia:.6g}: {seconds:.1f} s\noutput: {out} (centroids, labels)"
    )


@main.command()
@click.option("--train", type=str, required=False, help="Zarr array or .npy of train rows.")
@click.option("--labels", type=str, required=False, help="Zarr array or .npy of class labels, one per train row.")
@click.option(
    "--queries", type=str, default=None, help="Zarr array or .npy of rows to classify; omit to classify --train."
)
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours that vote.")
@click.option("--weights", type=click.Choice(["uniform", "distance"]), default="uniform", show_default=True)
@click.option("--metric", type=click.Choice(metric_names()), default="euclidean", show_default=True)
@click.option("--p", type=float, default=None, help="Order of the minkowski metric (p > 0; default 2).")
@click.option("--proba/--no-proba", default=True, show_default=True, help="Also write the class probabilities.")
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the tree reductions.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (predictions, probabilities).")
@run_options()
def classify(generate: Any = None, **options: Any) -> None:
    """Predict the class of every query row by a vote of its k nearest train rows, written to a Zarr group.

    Omitting --queries classifies the train rows themselves, each without its own vote.
    """
    import dask.array as da

    import bigdist
    from bigdist.io import update_attrs, write_group

    _require(options, "train", "labels", "out")
    get_metric(options["metric"], **_metric_params(options))  # a bad parameter fails before any cluster starts
    with _runtime(options) as client:
        _started(client, generate, {"train": options["train"], "queries": options["queries"]})
        out = os.path.expanduser(options["out"])
        model = bigdist.KNeighborsClassifier(
            options["k"],
            weights=options["weights"],
            metric=options["metric"],
            p=options["p"],
            split_every=options["split_every"],
        ).fit(os.path.expanduser(options["train"]), os.path.expanduser(options["labels"]))
        queries = os.path.expanduser(options["queries"]) if options["queries"] else None
        # Predictions and probabilities share one kNN pass: their graphs have the same keys up to the vote.
        arrays: dict[str, Any] = {"predictions": model.predict(queries)}
        classes = model.classes_ if model.outputs_2d_ else [model.classes_]
        probabilities = model.predict_proba(queries) if options["proba"] else None
        suffixes = [f"_{output}" for output in range(len(classes))] if model.outputs_2d_ else [""]
        for output, suffix in enumerate(suffixes):
            arrays[f"classes{suffix}"] = da.from_array(classes[output])
            if probabilities is not None:
                arrays[f"probabilities{suffix}"] = probabilities[output] if model.outputs_2d_ else probabilities
        start = time.perf_counter()
        _wait(
            client,
            write_group(
                out,
                arrays,
                attrs={"run": _run_attrs(options), "classify": model.get_params()},
                overwrite=options["overwrite"],
                compute=False,
            ),
        )
        seconds = time.perf_counter() - start
    n_queries = arrays["predictions"].shape[0]
    update_attrs(out, timings={"seconds": seconds, "queries_per_second": n_queries / seconds})
    click.echo(
        f"classify: {n_queries:,} queries x {model.n_samples_fit_:,} train rows, k={options['k']}, "
        f"{options['weights']} weights, {options['metric']}: {seconds:.1f} s, {n_queries / seconds:,.0f} queries/s"
        f"\noutput: {out} ({', '.join(arrays)})"
    )


@main.command()
@click.option(
    "--queries", type=str, default=None, help="Zarr array or .npy of query rows; omit for the self-join of --train."
)
@click.option("--train", type=str, required=False, help="Zarr array or .npy of train rows.")
@click.option("--radius", type=float, required=False, help="Neighbours are the rows at distance <= radius.")
@click.option("--metric", type=click.Choice(metric_names()), default="euclidean", show_default=True)
@click.option("--p", type=float, default=None, help="Order of the minkowski metric (p > 0; default 2).")
@click.option("--sort-results", is_flag=True, default=False, help="Each query's neighbours nearest first.")
@click.option("--max-neighbors", type=click.IntRange(min=1), default=None, help="Cap per query (default from config).")
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the merge across blocks.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (indptr, indices, distances).")
@run_options()
def radius(generate: Any = None, **options: Any) -> None:
    """Every train row within --radius of each query row, written to a Zarr group as CSR arrays."""
    import bigdist
    from bigdist.io import update_attrs

    _require(options, "train", "radius", "out")
    get_metric(options["metric"], **_metric_params(options))  # a bad parameter fails before any cluster starts
    with _runtime(options) as client:
        _started(client, generate, {"train": options["train"], "queries": options["queries"]})
        out = os.path.expanduser(options["out"])
        result = bigdist.radius_neighbors(
            *_queries_and_train(options),
            options["radius"],
            options["metric"],
            sort_results=options["sort_results"],
            max_neighbors=options["max_neighbors"],
            split_every=options["split_every"],
            **_metric_params(options),
        )
        start = time.perf_counter()
        result.to_zarr(out, overwrite=options["overwrite"], attrs={"run": _run_attrs(options)})
        seconds = time.perf_counter() - start
    pairs = int(bigdist.io.read_group(out)["indptr"][-1].compute())
    update_attrs(out, timings={"seconds": seconds, "queries_per_second": result.n_queries / seconds})
    click.echo(
        f"radius: {result.n_queries:,} queries x {result.n_train:,} train rows, radius {result.radius:g}, "
        f"{result.metric}: {pairs:,} pairs ({pairs / result.n_queries:.1f} per query), {seconds:.1f} s"
        f"\noutput: {out} (indptr, indices, distances)"
    )


@main.command()
@click.option("--data", type=str, required=False, help="Zarr array or .npy of the rows to cluster.")
@click.option("--bandwidth", type=click.FloatRange(min=0, min_open=True), default=None, help="Default: estimated.")
@click.option("--kernel", type=click.Choice(["gaussian", "flat"]), default="gaussian", show_default=True)
@click.option("--bin-seeding", is_flag=True, default=False, help="Seed at the cells of a grid of the bandwidth.")
@click.option("--min-bin-freq", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--n-seeds", type=click.IntRange(min=1), default=None, help="Rows sampled as seeds (big data).")
@click.option(
    "--cluster-all/--no-cluster-all", default=True, show_default=True, help="Label far rows -1 with --no-cluster-all."
)
@click.option("--max-iter", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0), default=1e-3, show_default=True, help="Relative to the bandwidth.")
@click.option("--random-state", type=int, default=None)
@click.option("--split-every", type=click.IntRange(min=2), default=None, help="Fan-in of the tree reductions.")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (cluster_centers, labels).")
@run_options()
def meanshift(generate: Any = None, **options: Any) -> None:
    """Mean-shift clustering, one pass over the data per iteration, written to a Zarr group."""
    import bigdist
    from bigdist.io import update_attrs

    _require(options, "data", "out")
    _refuse_existing_output(options)
    with _runtime(options) as client:
        _started(client, generate, {"data": options["data"]})
        out = os.path.expanduser(options["out"])
        start = time.perf_counter()
        result = bigdist.meanshift(
            os.path.expanduser(options["data"]),
            options["bandwidth"],
            kernel=options["kernel"],
            bin_seeding=options["bin_seeding"],
            min_bin_freq=options["min_bin_freq"],
            n_seeds=options["n_seeds"],
            cluster_all=options["cluster_all"],
            max_iter=options["max_iter"],
            tol=options["tol"],
            random_state=options["random_state"],
            split_every=options["split_every"],
        )
        _wait(
            client,
            result.to_zarr(out, overwrite=options["overwrite"], attrs={"run": _run_attrs(options)}, compute=False),
        )
        seconds = time.perf_counter() - start
    update_attrs(out, timings={"seconds": seconds})
    click.echo(
        f"meanshift: {result.labels.shape[0]:,} rows, {result.n_seeds:,} seeds, {len(result.cluster_centers)} modes, "
        f"{len(result.stats)} passes, bandwidth {result.bandwidth:.6g}: {seconds:.1f} s\n"
        f"output: {out} (cluster_centers, intensities, labels)"
    )


def _require(options: dict[str, Any], *names: str) -> None:
    for name in names:
        if not options[name]:
            flag = name.replace("_", "-")
            raise ConfigError(f"missing --{flag} (give it as a flag or as '{flag}:' in the run file)")


def _refuse_existing_output(options: dict[str, Any]) -> None:
    """Refuse a finished or foreign --out before a fit that computes for long, rather than when writing after it.

    An unfinished output is left to the write, which resumes it or says how its run differs.
    """
    out = os.path.expanduser(options["out"])
    if _finished(out):
        from bigdist.io.store import prepare_output

        prepare_output(out, options["overwrite"], "result")


def _started(client: Any, generate: Any, inputs: dict[str, str | None]) -> None:
    """Report the dashboard and make the inputs the run file says how to generate."""
    if client.dashboard_link:
        click.echo(f"dashboard: {client.dashboard_link}")
    _generate_missing(client, generate, inputs)


def _queries_and_train(options: dict[str, Any]) -> tuple[str, str | None]:
    """The library's (queries, train) arguments: (--train, None), the self-join, when --queries is not given."""
    train = os.path.expanduser(options["train"])
    return (os.path.expanduser(options["queries"]), train) if options["queries"] else (train, None)


def _run_attrs(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key != "verbose"}


@main.command()
@click.argument("path", type=str)
@click.option("-v", "--verbose", count=True)
def info(path: str, verbose: int) -> None:
    """Describe a Zarr array or a bigdist output group."""
    from bigdist.io import describe

    _setup_logging(verbose)
    try:
        click.echo(yaml.safe_dump(describe(path), sort_keys=False, default_flow_style=None).rstrip())
    except BigdistError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


def _knn_rate(result: Any, seconds: float) -> str:
    """GFLOP/s for the GEMM family; the direct metrics have no GEMM, so pairs per second."""
    if get_metric(result.metric).gemm:
        return f"{result.flops / seconds / 1e9:.1f} GFLOP/s"
    return f"{result.n_queries * result.n_train / seconds / 1e6:,.0f} million pairs/s"


def _metric_params(options: dict[str, Any]) -> dict[str, Any]:
    """The metric's parameters given on the command line (only those given, so others keep their defaults)."""
    return {"p": options["p"]} if options.get("p") is not None else {}


@main.command()
@click.option(
    "--queries", type=str, default=None, help="Zarr array or .npy of query rows; omit for the matrix within --train."
)
@click.option("--train", type=str, required=False, help="Zarr array or .npy of train rows (the columns).")
@click.option("--metric", type=click.Choice(metric_names()), default="euclidean", show_default=True)
@click.option("--p", type=float, default=None, help="Order of the minkowski metric (p > 0; default 2).")
@click.option("--out", type=click.Path(), required=False, help="Zarr group to write (array 'distances').")
@run_options()
def pairwise(generate: Any = None, **options: Any) -> None:
    """The full distance matrix of query rows x train rows, streamed block by block to a Zarr group."""
    import bigdist
    from bigdist.io import update_attrs, write_group

    _require(options, "train", "out")
    get_metric(options["metric"], **_metric_params(options))  # a bad parameter fails before any cluster starts
    with _runtime(options) as client:
        _started(client, generate, {"train": options["train"], "queries": options["queries"]})
        out = os.path.expanduser(options["out"])
        queries, train = _queries_and_train(options)
        matrix = bigdist.pairwise_distances(queries, train, options["metric"], **_metric_params(options))
        params = {"metric": options["metric"], **_metric_params(options), "self_join": train is None}
        start = time.perf_counter()
        _wait(
            client,
            write_group(
                out,
                {"distances": matrix},
                attrs={"pairwise": params, "run": _run_attrs(options)},
                overwrite=options["overwrite"],
                compute=False,
            ),
        )
        seconds = time.perf_counter() - start
    n_queries, n_train = matrix.shape
    gigabytes = matrix.nbytes / 1e9
    update_attrs(out, timings={"seconds": seconds, "gigabytes_per_second": gigabytes / seconds})
    click.echo(
        f"pairwise: {n_queries:,} x {n_train:,} {options['metric']} matrix ({gigabytes:.2f} GB, {matrix.dtype}, "
        f"blocks of {matrix.chunks[0][0]:,} x {matrix.chunks[1][0]:,}): {seconds:.1f} s, "
        f"{gigabytes / seconds:.2f} GB/s\noutput: {out} (distances)"
    )


@main.command()
@click.argument("path", type=str)
@click.option("-v", "--verbose", count=True)
def verify(path: str, verbose: int) -> None:
    """Read every chunk of a Zarr array or group; list missing and damaged chunks (exit 1 if any)."""
    from bigdist.io.integrity import verify as verify_store

    _setup_logging(verbose)
    try:
        report = verify_store(os.path.expanduser(path))
    except FileNotFoundError:
        click.echo(f"error: no Zarr array or group at {path!r}; check the path", err=True)
        sys.exit(1)
    for problem in report["problems"]:
        click.echo(f"error: {problem}", err=True)
    click.echo(
        f"{path}: {report['chunks']} chunk files in {report['arrays']} array(s) read, "
        f"{report['missing']} missing, {report['damaged']} damaged"
    )
    if not report["ok"]:
        sys.exit(1)
