"""What every ``bigdist`` command shares: logging, the run file, the runtime, inputs made when missing."""

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
from bigdist.cli.lock import output_lock
from bigdist.errors import BigdistError, ConfigError, StoreNotFoundError

logger = logging.getLogger("bigdist")

# Sections of a run file that are not options of the command.
GENERATE_SECTION = "generate"
DASK_SECTION = "dask"
SECURITY_SECTION = "security"


# Exit status of a run stopped by Ctrl-C, as shells report SIGINT.
INTERRUPTED_EXIT = 130

# Options that name input arrays: opened by the library's own opener before any cluster starts.
INPUT_OPTIONS = ("data", "train", "queries")


class StorageOptionsType(click.ParamType):
    """``--storage-options``: a JSON or YAML mapping (read with ``yaml.safe_load``), or a mapping in a run file."""

    name = "mapping"

    def convert(self, value: Any, param: Any, ctx: Any) -> dict[str, Any] | None:
        if value is None or isinstance(value, dict):
            return value
        try:
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or error
            self.fail(f"{value!r} is not valid JSON or YAML ({problem}); give a mapping, e.g. '{EXAMPLE}'", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(
                f"{value!r} is not a mapping of fsspec options (it reads as {type(parsed).__name__}); give one, "
                f"e.g. '{EXAMPLE}'",
                param,
                ctx,
            )
        return parsed


EXAMPLE = '{"key": "...", "secret": "...", "client_kwargs": {"endpoint_url": "https://s3.example.org"}}'


class _InterruptedSyncFilter(logging.Filter):
    """Drops the NameError distributed's ``sync`` logs when Ctrl-C comes before its call started.

    Its ``cancel`` callback reads a variable the call had not yet set (distributed 2026.8); the
    traceback says nothing about the run, whose own line says it was interrupted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, NameError) and "free variable 'future'" in str(error))


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # bigdist's own progress lines show at the default level; -v adds Dask's.
    logging.getLogger("bigdist").setLevel(logging.INFO if verbose < 2 else logging.DEBUG)
    # Dask's own logging config, also handed to the LocalCluster's worker processes.
    dask.config.set({"logging.distributed": logging.getLevelName(level).lower()})
    # Without -v a failed task's "Compute Failed" dump stays out of the terminal (workers in this process,
    # and those of a LocalCluster, see bigdist.cli.workers): the error line after it says what happened.
    logging.getLogger("distributed.worker").setLevel(logging.CRITICAL if verbose == 0 else logging.NOTSET)
    if verbose < 2:
        tornado_errors = logging.getLogger("tornado.application")
        if not any(isinstance(f, _InterruptedSyncFilter) for f in tornado_errors.filters):
            tornado_errors.addFilter(_InterruptedSyncFilter())


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


def run_options(
    *, generate_section: bool = True, planning: bool = True, remote: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options every run command shares, and the run-file merge (a flag wins over the file).

    Every run file may carry ``dask:`` and ``security:`` sections; ``generate:`` only when the command has
    inputs to make (its function then takes ``generate``). ``planning`` adds ``--plan`` and ``--force``
    (the command then calls :func:`planned`); ``remote`` adds ``--storage-options`` (the command passes
    ``options["storage_options"]`` to its readers and writers).
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
            setup_logging(verbose)
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
                # Inputs the generate section would make are not checked here (under --plan, the plan names them).
                generated = extra.get(GENERATE_SECTION)
                if options.get("plan_only") and extra.pop(GENERATE_SECTION, None) is not None:
                    logger.info("--plan: the run file's generate section is not run (a plan writes nothing)")
                with dask.config.set(overrides):
                    config.validate()
                    check_inputs(options, generated)
                    with output_lock(options["out"]) if options.get("out") else contextlib.nullcontext():
                        with _cluster_errors():
                            command(**options, **extra)
            except BigdistError as error:
                if verbose >= 2:
                    raise
                click.echo(f"error: {error}", err=True)
                sys.exit(1)
            except KeyboardInterrupt:
                if verbose >= 2:
                    raise
                click.echo(f"\ninterrupted: {_resume_hint(options)}", err=True)
                sys.exit(INTERRUPTED_EXIT)

        if remote:
            wrapper = click.option(
                "--storage-options",
                type=StorageOptionsType(),
                default=None,
                help="fsspec options of the URLs of inputs and output, as a JSON or YAML mapping (credentials, "
                "endpoint, botocore retries); a mapping in a run file. Never written to the output's attributes.",
            )(wrapper)
        if planning:
            wrapper = click.option(
                "--force", is_flag=True, default=False, help="Run even if the output exceeds its disk's free space."
            )(wrapper)
            wrapper = click.option(
                "--plan",
                "plan_only",
                is_flag=True,
                default=False,
                help="Print the plan (tasks, bytes, disk, estimated time) and exit, computing and writing nothing.",
            )(wrapper)
        return wrapper

    return decorate


def _resume_hint(options: dict[str, Any]) -> str:
    """The one line a stopped run prints: what is kept, and that the same command resumes."""
    out = options.get("out")
    if not out:
        return "nothing was written"
    # The fits keep nothing between runs (k-means only with --checkpoint): their iterations run again first.
    redone = {
        "kmeans": " (its iterations run again first; --checkpoint resumes them too)",
        "meanshift": " (its iterations run again first)",
    }
    name = click.get_current_context().info_name or ""
    note = redone.get(name, "") if not options.get("checkpoint") else ""
    return f"the blocks already written to {out} are kept; run the same command again to resume{note}"


def check_inputs(options: dict[str, Any], generate: Any) -> None:
    """Open every input with the library's opener and refuse a bad --out, all before any cluster starts.

    An input the run file's ``generate`` section will make (missing or unfinished) is skipped.
    """
    from bigdist.io import check_features, open_array

    made = set(generate) if isinstance(generate, dict) else set()
    opened = {}
    for name in INPUT_OPTIONS:
        if not options.get(name):
            continue
        path = os.path.expanduser(options[name])
        if name in made and not finished(path, options.get("storage_options")):
            continue
        opened[name] = open_array(path, storage_options=options.get("storage_options"))
    if "queries" in opened and "train" in opened:
        check_features(opened["queries"], opened["train"], names=(options["queries"], options["train"]))
    if options.get("labels") and "train" in opened:
        from bigdist.io.labels import as_labels

        as_labels(os.path.expanduser(options["labels"]), opened["train"].shape[0], name=options["labels"])
    if options.get("out"):
        out = os.path.abspath(os.path.expanduser(options["out"]))
        for name in (*INPUT_OPTIONS, "labels", "checkpoint"):
            if options.get(name) and os.path.abspath(os.path.expanduser(options[name])) == out:
                raise ConfigError(f"--out {options['out']!r} is also --{name}; write the result to another path")
        refuse_existing_output(options)


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


@contextlib.contextmanager
def runtime_client(options: dict[str, Any]) -> Any:
    """The run's cluster: --scheduler, else --scheduler-file, else Dask's ``scheduler-address``, else local.

    ``scheduler-address`` is where Dask users set a default cluster (``DASK_SCHEDULER_ADDRESS``, a Dask
    config file or the run file's ``dask:`` section); an explicit flag wins over it.
    """
    from bigdist import runtime
    from bigdist.cli.workers import TerminalWorker

    scheduler = options["scheduler"]
    if not scheduler and not options["scheduler_file"]:
        scheduler = dask.config.get("scheduler-address", None)
    with runtime.start(
        scheduler=scheduler,
        scheduler_file=options["scheduler_file"],
        performance_report=options["performance_report"],
    ) as client:
        if not scheduler and not options["scheduler_file"]:
            client.register_plugin(TerminalWorker(options["verbose"]))
        yield client


def wait(client: Any, delayed: Any) -> Any:
    """Compute ``delayed`` on the cluster, with a progress bar on an interactive terminal."""
    future = client.compute(delayed)
    try:
        if sys.stderr.isatty() and not os.environ.get("CI"):
            from distributed import progress

            progress(future)
        return future.result()
    except KeyboardInterrupt:
        if logging.getLogger("bigdist").getEffectiveLevel() > logging.DEBUG:
            # The cluster closing under running tasks logs cancellations that say nothing to the user.
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        raise


def generate_data(kind: str, out: str, spec: dict[str, Any], *, overwrite: bool) -> Any:
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


def finished(path: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether ``path`` exists and is not something a killed run left unfinished (which is made again or resumed)."""
    from bigdist.io import describe

    if "://" not in path and not os.path.exists(path):
        return False
    try:
        return describe(path, storage_options)["complete"] is not False
    except StoreNotFoundError:
        # Nothing at a URL; a local path that is not Zarr is left to the opener, which says what is wrong.
        return "://" not in path
    except BigdistError:
        return True  # not Zarr: opening it will say what is wrong


def generate_missing(client: Any, section: Any, paths: dict[str, str | None]) -> None:
    """Make the inputs a run file's ``generate`` section describes, when they do not exist yet (or are unfinished)."""
    if section is None:
        return
    if not isinstance(section, dict) or set(section) - set(paths):
        raise ConfigError(f"the run file's 'generate' section may only describe {', '.join(paths)}; got {section!r}")
    for role, raw_spec in section.items():
        path = paths[role]
        if path is None or finished(os.path.expanduser(path)):
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
        wait(client, generate_data(kind, path, spec, overwrite=False))
        click.echo(
            f"generated {role}: {spec['n_samples']:,} x {spec['n_features']} {kind} at {path} "
            f"in {time.perf_counter() - start:.1f} s"
        )


def require(options: dict[str, Any], *names: str) -> None:
    for name in names:
        if not options[name]:
            flag = name.replace("_", "-")
            raise ConfigError(f"missing --{flag} (give it as a flag or as '{flag}:' in the run file)")


def refuse_existing_output(options: dict[str, Any]) -> None:
    """Refuse a finished or foreign --out before a fit that computes for long, rather than when writing after it.

    An unfinished output is left to the write, which resumes it or says how its run differs.
    """
    out = os.path.expanduser(options["out"])
    if finished(out, options.get("storage_options")):
        from bigdist.io.store import prepare_output

        prepare_output(out, options["overwrite"], "result", storage_options=options.get("storage_options"))


def started(client: Any, generate: Any, inputs: dict[str, str | None]) -> None:
    """Report the dashboard and make the inputs the run file says how to generate."""
    if client.dashboard_link:
        click.echo(f"dashboard: {client.dashboard_link}")
    generate_missing(client, generate, inputs)


def input_of(options: dict[str, Any], name: str) -> Any:
    """The library's argument for input option ``name``: its path, or with --storage-options a URL opened with them."""
    path = os.path.expanduser(options[name])
    storage_options = options.get("storage_options")
    if storage_options and "://" in path:
        from bigdist.io import open_array

        return open_array(path, storage_options=storage_options)
    return path


def queries_and_train(options: dict[str, Any]) -> tuple[Any, Any]:
    """The library's (queries, train) arguments: (--train, None), the self-join, when --queries is not given."""
    train = input_of(options, "train")
    return (input_of(options, "queries"), train) if options["queries"] else (train, None)


def resumed_note(share: float) -> str:
    """Said after the rates of a run that resumed: they are over the part it computed, ``share`` of the whole."""
    if share >= 1.0:
        return ""
    return f" (resumed: {1 - share:.0%} was written by an earlier run; rates are over the {share:.0%} computed now)"


def run_attrs(options: dict[str, Any]) -> dict[str, Any]:
    # Storage options hold credentials: never written to the output.
    hidden = ("verbose", "plan_only", "force", "storage_options")
    return {key: value for key, value in options.items() if key not in hidden}


def planned(options: dict[str, Any], job: str, data: str, train: str | None = None, **params: Any) -> bool:
    """Log the job's plan; True when ``--plan`` asked only for it (printed then), so the command stops there.

    A run whose output would not fit in its disk's free space is refused (InsufficientSpaceError) unless ``--force``.
    """
    from bigdist.execution.plan import plan

    job_plan = plan(job, data, train, out=options["out"], storage_options=options.get("storage_options"), **params)
    if options["plan_only"]:
        click.echo(str(job_plan))
        return True
    logger.info("%s", job_plan)
    job_plan.check_space(force=options["force"])
    return False


def metric_params(options: dict[str, Any]) -> dict[str, Any]:
    """The metric's parameters given on the command line (only those given, so others keep their defaults)."""
    return {"p": options["p"]} if options.get("p") is not None else {}
