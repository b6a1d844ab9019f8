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
