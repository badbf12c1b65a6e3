import math

import pytest

from bigdist.errors import ParameterError
from bigdist.kernels.registry import METRICS, get_metric, metric_names


@pytest.mark.parametrize(
    ("alias", "name"),
    [("l2", "euclidean"), ("dot", "inner_product"), ("cityblock", "manhattan"), ("l1", "manhattan")],
)
def test_aliases_resolve_to_their_metric(alias, name):
    assert get_metric(alias).name == name


def test_every_name_resolves_and_families_are_as_documented():
    for name in metric_names():
        assert get_metric(name).metric in METRICS.values()
    assert set(metric_names(gemm=True, aliases=False)) == {
        "euclidean",
        "sqeuclidean",
        "cosine",
        "correlation",
        "inner_product",
    }
    assert get_metric("inner_product").metric.similarity
    assert not get_metric("cosine").metric.similarity


def test_unknown_metric_lists_the_valid_names():
    with pytest.raises(ParameterError, match="unknown metric 'mahalanobi'.*euclidean.*jaccard.*cityblock.*callable"):
        get_metric("mahalanobi")
    with pytest.raises(ParameterError, match="unknown metric None"):
        get_metric(None)


@pytest.mark.parametrize("p", [0, -1.5, "2", True, float("nan")])
def test_minkowski_rejects_p_out_of_range(p):
    with pytest.raises(ParameterError, match=r"p > 0.*got p="):
        get_metric("minkowski", p=p)


def test_unknown_parameter_is_named():
    with pytest.raises(ParameterError, match=r"'euclidean' takes no parameters.*\bw=3"):
        get_metric("euclidean", w=3)
    with pytest.raises(ParameterError, match=r"takes only p.*\bq=1"):
        get_metric("minkowski", p=3, q=1)


def test_minkowski_defaults_and_shortcuts():
    assert get_metric("minkowski").name == "euclidean"  # SciPy's default p=2
    assert get_metric("minkowski", p=1).name == "manhattan"
    assert get_metric("minkowski", p=math.inf).name == "chebyshev"
    resolved = get_metric("minkowski", p=3)
    assert (resolved.name, resolved.p) == ("minkowski", 3.0)
    assert get_metric("minkowski", p=None).name == "euclidean"
