"""bigdist's settings, kept in ``dask.config`` under the ``bigdist`` key.

Defaults live in the packaged ``bigdist.yaml``; ``bigdist-schema.yaml``
gives each key its type. Values are read at call time, so
``dask.config.set({"bigdist.split-every": 4})`` and environment variables
such as ``DASK_BIGDIST__SPLIT_EVERY=4`` work as Dask users expect.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import dask.config
import dask.utils
import yaml

from bigdist.errors import ConfigError

_HERE = pathlib.Path(__file__).parent


def _load_yaml(name: str) -> dict[str, Any]:
    with open(_HERE / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


defaults = _load_yaml("bigdist.yaml")
schema = _load_yaml("bigdist-schema.yaml")
dask.config.update_defaults(defaults)


def _canonical(key: str) -> str:
    # dask.config treats "_" and "-" alike (environment variables use "_").
    return key.replace("_", "-")


def _check_value(path: str, value: Any, rule: Mapping[str, Any]) -> Any:
    kind = rule["type"]
    if value is None:
        if rule.get("nullable"):
            return None
        raise ConfigError(f"bigdist config {path!r} is None; give a {kind} value")
    if kind in ("bytes", "bytes-or-auto"):
        if kind == "bytes-or-auto" and value == "auto":
            return value
        try:
            value = dask.utils.parse_bytes(value) if isinstance(value, str) else int(value)
        except (ValueError, TypeError):
            raise ConfigError(
                f"bigdist config {path!r} = {value!r} is not a size; use bytes or a string like '64MiB'"
            ) from None
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"bigdist config {path!r} = {value!r} must be an integer")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"bigdist config {path!r} = {value!r} must be a number")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"bigdist config {path!r} = {value!r} must be a string")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"bigdist config {path!r} = {value!r} must be true or false")
    elif kind == "timedelta":
        try:
            value = dask.utils.parse_timedelta(value, default="seconds")
        except (ValueError, TypeError, KeyError):
            raise ConfigError(
                f"bigdist config {path!r} = {value!r} is not a duration; use seconds or a string like '90s'"
            ) from None
    elif kind == "file":
        if not isinstance(value, str) or not os.path.isfile(os.path.expanduser(value)):
            raise ConfigError(f"bigdist config {path!r} = {value!r} is not an existing file; give the path of the file")
        value = os.path.expanduser(value)
    if "min" in rule and value < rule["min"]:
        raise ConfigError(f"bigdist config {path!r} = {value!r} must be at least {rule['min']}")
    if "choices" in rule and value not in rule["choices"]:
        raise ConfigError(f"bigdist config {path!r} = {value!r} is not one of {', '.join(rule['choices'])}")
    return value


def _validate(tree: Mapping[str, Any], rules: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The checked values of ``tree`` under their canonical names, or ConfigError naming a bad key."""
    checked: dict[str, Any] = {}
    for key, value in tree.items():
        name = _canonical(key)
        path = f"{prefix}.{name}"
        if name not in rules:
            raise ConfigError(
                f"unknown bigdist config key {path!r}; valid keys under {prefix!r} are {', '.join(sorted(rules))}"
            )
        rule = rules[name]
        if "type" in rule:
            checked[name] = _check_value(path, value, rule)
        elif not isinstance(value, Mapping):
            raise ConfigError(f"bigdist config {path!r} must be a mapping, got {value!r}")
        else:
            checked[name] = _validate(value, rule, path)
    return checked


def validate() -> None:
    """Check the whole ``bigdist`` config tree; raise ConfigError naming a bad key."""
    _validate(dask.config.get("bigdist"), schema["bigdist"], "bigdist")


def get(key: str) -> Any:
    """Return the checked value of ``bigdist.<key>`` as it is set now.

    Sizes come back in bytes, durations in seconds and files with ``~``
    expanded; a section comes back as a dict of such values.

    Parameters
    ----------
    key : str
        Dotted key below ``bigdist``, e.g. ``"knn.query-block-rows"``.
    """
    rule: Any = schema["bigdist"]
    for part in key.split("."):
        if not isinstance(rule, Mapping) or part not in rule:
            raise ConfigError(f"unknown bigdist config key 'bigdist.{key}'")
        rule = rule[part]
    value = dask.config.get(f"bigdist.{key}")
    if "type" not in rule:
        return _validate(value, rule, f"bigdist.{key}")
    return _check_value(f"bigdist.{key}", value, rule)
