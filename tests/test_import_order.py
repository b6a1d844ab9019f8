"""Every project module imports on its own, first, in a fresh interpreter.

An import cycle hides as long as some other module happens to be imported
first: ``checker.complaints`` and ``checker.logorder.observations`` imported each
other, and ``import checker.complaints`` failed only when it came first. This
walks every module of the project's packages and imports each one with all
project modules forgotten, so such a cycle fails here whatever the order of use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("splitbrain_common", "raft_impl", "nemesis", "checker", "reports", "harness")

_SCRIPT = """
import importlib, pkgutil, sys
packages = sys.argv[1:]
names = []
for package in packages:
    module = importlib.import_module(package)
    names.append(package)
    names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")
              if not m.name.endswith(".__main__")]  # running a CLI is not importing
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_module_imports_first() -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, *PACKAGES], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True)
    count, *failed = done.stdout.strip().split("\n")
    assert int(count) > 100
    assert [line for line in failed if line] == []
