"""pytest plumbing for scikit-learn's own test modules run on bigdist (see harness.py)."""

from __future__ import annotations

import os
from collections import Counter

# Read when sklearn.conftest is imported: the float32 parametrizations run too.
os.environ["SKLEARN_RUN_FLOAT32_TESTS"] = "1"

import dask  # noqa: E402
import pytest  # noqa: E402
from sklearn.conftest import global_dtype  # noqa: E402, F401
from sklearn.conftest import pytest_generate_tests as sklearn_generate_tests  # noqa: E402

from tests.sklearn_suite import harness  # noqa: E402
from tests.sklearn_suite.differences import DIFFERENCES  # noqa: E402

_CALLS_AT_START = pytest.StashKey[int]()
_tally: dict[str, Counter] = {}


def pytest_generate_tests(metafunc):
    # global_random_seed, parametrized as scikit-learn's own conftest does.
    sklearn_generate_tests(metafunc)


def _id_key(test_id: str) -> tuple[str, tuple[str, ...]]:
    # The order of a test's parameters in its id depends on which conftest parametrizes first (the
    # seed comes first in a whole-suite run, last in a run of this folder): compare them as a multiset.
    name, _, parameters = test_id.partition("[")
    return name, tuple(sorted(parameters.removesuffix("]").split("-")))


def _matching(rules: list[tuple[tuple[str, ...], str]], nodeid: str) -> str | None:
    key = _id_key(nodeid.split("::", 1)[1])
    return next((reason for ids, reason in rules if key in {_id_key(test_id) for test_id in ids}), None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "sklearn_suite" not in item.nodeid:
            continue
        if (reason := _matching(DIFFERENCES, item.nodeid)) is not None:
            item.add_marker(pytest.mark.xfail(reason=f"documented difference: {reason}", strict=True))


@pytest.fixture(autouse=True)
def _count_bigdist_calls(request, monkeypatch):
    # The threaded scheduler would start dask's thread pool for each of these small tests.
    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")
    for cls in harness.BIGDIST_ESTIMATORS:
        for name, wrapped in harness.counted_methods(cls).items():
            monkeypatch.setattr(cls, name, wrapped)
    request.node.stash[_CALLS_AT_START] = harness.calls
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    failed_setup = call.when == "setup" and report.outcome != "passed"
    if "sklearn_suite" in item.nodeid and (call.when == "call" or failed_setup):
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1]
        start = item.stash.get(_CALLS_AT_START, None)
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        else:
            outcome = report.outcome
        if start is not None and harness.calls == start and outcome != "skipped":
            outcome = f"not bigdist ({outcome})"
        _tally.setdefault(module, Counter())[outcome] += 1
    return report


def pytest_terminal_summary(terminalreporter):
    if not _tally:
        return
    terminalreporter.section("scikit-learn's test modules on bigdist's estimators")
    for module, tally in sorted(_tally.items()):
        counts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(tally.items()))
        terminalreporter.write_line(f"{module}: {counts}")


def pytest_configure(config):
    for marker in ("thread_unsafe: scikit-learn's own mark", "parallel_threads(n): scikit-learn's own mark"):
        config.addinivalue_line("markers", marker)
