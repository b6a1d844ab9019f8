"""Processes the suite starts can be interrupted, however the suite itself was started."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

CHILD = ("import signal, sys; "
         "sys.exit(1 if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else 0)")


def test_a_child_process_sees_ctrl_c() -> None:
    assert subprocess.run([sys.executable, "-c", CHILD], timeout=60).returncode == 0


def test_children_see_ctrl_c_even_when_the_suite_was_started_with_it_ignored() -> None:
    """As `.ci/run &` from a script starts it: SIGINT ignored. The Ctrl-C tests of
    run and serve hung for their whole timeouts that way (three failures in one CI
    run) until tests/conftest.py restored the handler."""
    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    here = Path(__file__).resolve()
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         f"{here}::test_a_child_process_sees_ctrl_c"],
        cwd=here.parent.parent, preexec_fn=ignore_sigint, capture_output=True, text=True,
        timeout=120)
    assert inner.returncode == 0, inner.stdout + inner.stderr
