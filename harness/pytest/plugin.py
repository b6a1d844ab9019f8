"""pytest plugin of splitbrain, loaded through the ``pytest11`` entry point.

Options shared by the project's own suite and by users' suites live here so
that installing splitbrain is enough to get them.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("splitbrain")
    group.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (long fuzz and soak runs)",
    )
    group.addoption(
        "--splitbrain-store",
        default=None,
        help="store directory for runs made by tests (default: a temporary directory)",
    )
    group.addoption(
        "--splitbrain-seed",
        type=int,
        default=None,
        help="seed for workloads and nemesis schedules made by tests",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long fuzz or soak runs, opt-in with --run-slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


# -- fixtures: Jepsen-style tests in a few lines (see docs/pytest-plugin.md) --------------

_RESULTS_KEY = pytest.StashKey[list]()


def _test_name(request: pytest.FixtureRequest) -> str:
    """A store-safe name for the requesting test (module + function + params)."""
    return "pytest-" + request.node.nodeid.replace("::", "-").replace("/", "-")


@pytest.fixture(scope="session")
def splitbrain_store(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory):
    """The store directory runs of this session go to (``--splitbrain-store``, or a temp dir)."""
    from pathlib import Path

    chosen = request.config.getoption("--splitbrain-store")
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()
    return tmp_path_factory.mktemp("splitbrain-store")


@pytest.fixture
def splitbrain_seed(request: pytest.FixtureRequest) -> int:
    """``--splitbrain-seed``, or a seed derived from the test's id (stable across reruns)."""
    import zlib

    chosen = request.config.getoption("--splitbrain-seed")
    if chosen is not None:
        return int(chosen)
    return zlib.crc32(request.node.nodeid.encode()) % (2**31)


def _recorder(request: pytest.FixtureRequest):
    results = request.node.stash.setdefault(_RESULTS_KEY, [])
    return results.append


@pytest.fixture
def sim_cluster(request: pytest.FixtureRequest, splitbrain_store, splitbrain_seed):
    """Simulated raft_impl clusters (deterministic, in-process): ``.run(...)``, ``.fuzz(...)``."""
    from harness.pytest.fixtures import SimClusterFixture

    return SimClusterFixture(splitbrain_store, splitbrain_seed, _test_name(request),
                             _recorder(request))


@pytest.fixture
def cluster(request: pytest.FixtureRequest, splitbrain_store, splitbrain_seed):
    """Real raft_impl clusters (node processes on loopback) through ``harness.run.run``."""
    from harness.pytest.fixtures import RealClusterFixture

    return RealClusterFixture(splitbrain_store, splitbrain_seed, _test_name(request),
                              _recorder(request))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failed test, list every splitbrain run it made: verdict, run dir, report."""
    report = yield
    if report.when == "call" and report.failed:
        results = item.stash.get(_RESULTS_KEY, [])
        if results:
            text = "\n".join(result.describe() for result in results)
            report.sections.append(("splitbrain runs", text))
    return report
