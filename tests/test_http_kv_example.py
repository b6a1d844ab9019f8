"""The guide's worked example (examples/http_kv), found through the ``splitbrain.dbs``
entry point of a package outside the tree, run by ``splitbrain run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "http_kv"


def installed(tmp_path: Path) -> dict[str, str]:
    """An environment in which http_kv is installed the way pip installs it: the package
    importable and a dist-info whose entry_points.txt names the adapter (copied from what
    ``pip install examples/http_kv`` writes, without needing a build backend or an index)."""
    site = tmp_path / "site"
    info = site / "splitbrain_http_kv-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: splitbrain-http-kv\n"
                                   "Version: 0.1.0\n")
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    entry = next(line for line in pyproject.splitlines() if line.startswith("http_kv ="))
    entry = entry.replace('"', "")  # TOML string -> entry_points.txt value
    (info / "entry_points.txt").write_text(f"[splitbrain.dbs]\n{entry}\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(EXAMPLE), str(ROOT)])
    return env


def run(tmp_path: Path, env: dict[str, str], *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "--db", "http_kv", "--nodes", "3",
         "--net", "none", "--time-limit", "3", "--quiet-period", "0.3", "--seed", "2",
         "--no-display", "--no-report", "--store", str(tmp_path / "store"), *words],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def kill_primary(tmp_path: Path) -> Path:
    path = tmp_path / "kill-primary.json"
    path.write_text(json.dumps([{"at": 1.2, "f": "kill", "value": "n1"},
                                {"at": 1.6, "f": "start", "value": "n1"}]))
    return path


def test_entry_point_finds_the_adapter(tmp_path: Path) -> None:
    env = installed(tmp_path)
    code = ("from harness.db.base import available_dbs, create_db, DBOptions; "
            "print('http_kv' in available_dbs(), type(create_db('http_kv', DBOptions())).__name__)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    out = out.stdout
    assert out.split() == ["True", "HttpKvDB"]


@pytest.mark.parametrize(("volatile", "expected"), [(False, 0), (True, 1)],
                         ids=["durable", "volatile-bug"])
def test_kill_the_primary(tmp_path: Path, volatile: bool, expected: int) -> None:
    """Durable primary: valid through a kill. With its planted bug (memory only) the
    restarted primary forgets acknowledged writes and the run is invalid."""
    env = installed(tmp_path)
    if volatile:
        env["HTTP_KV_VOLATILE"] = "1"
    done = run(tmp_path, env, "--nemesis-schedule", str(kill_primary(tmp_path)))
    assert done.returncode == expected, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
