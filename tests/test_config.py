import dask
import pytest

from bigdist import config
from bigdist.errors import ConfigError


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and "type" not in value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_defaults_and_schema_have_the_same_keys():
    assert sorted(_leaves(config.defaults["bigdist"])) == sorted(_leaves(config.schema["bigdist"]))


def test_defaults_validate():
    config.validate()


def test_unknown_key_is_named():
    with dask.config.set({"bigdist.knn.tile-rows": 3}):
        with pytest.raises(ConfigError, match="bigdist.knn.tile-rows"):
            config.validate()


def test_bad_value_is_named():
    with dask.config.set({"bigdist.split-every": 1}):
        with pytest.raises(ConfigError, match="split-every.*at least 2"):
            config.get("split-every")


def test_environment_variables_reach_config(monkeypatch):
    monkeypatch.setenv("DASK_BIGDIST__KNN__QUERY_BLOCK_ROWS", "123")
    dask.config.refresh()
    try:
        assert config.get("knn.query-block-rows") == 123
    finally:
        monkeypatch.delenv("DASK_BIGDIST__KNN__QUERY_BLOCK_ROWS")
        dask.config.refresh()
        dask.config.update_defaults(config.defaults)


def test_sizes_parse():
    with dask.config.set({"bigdist.chunk-bytes": "1 MiB"}):
        assert config.get("chunk-bytes") == 2**20


def test_a_section_comes_back_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ca.pem").write_text("not read here")
    with dask.config.set(
        {"bigdist.runtime.security.tls-ca-file": "~/ca.pem", "bigdist.runtime.no-workers-timeout": "2m"}
    ):
        assert config.get("runtime.security")["tls-ca-file"] == str(tmp_path / "ca.pem")
        assert config.get("runtime")["no-workers-timeout"] == 120
