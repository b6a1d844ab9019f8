"""Porcupine's 108 public histories: every verdict must equal expected.tsv.

Each file is checked the way a user runs it, through ``splitbrain check``
(format and model detected from the file), so the exit code carries the
verdict: 0 linearizable, 1 not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from checker_helpers import CORPUS

from checker.history import load_history
from harness.cli.main import main


def _rows() -> list[tuple[str, str, bool, int, int]]:
    lines = (CORPUS / "expected.tsv").read_text(encoding="utf-8").splitlines()
    header, *body = lines
    assert header.split("\t") == ["path", "model", "linearizable", "operations", "pending"]
    rows = []
    for line in body:
        path, model, linearizable, operations, pending = line.split("\t")
        rows.append((path, model, linearizable == "true", int(operations), int(pending)))
    return rows


ROWS = _rows()


def test_the_corpus_is_complete() -> None:
    assert len(ROWS) == 108
    assert sum(1 for r in ROWS if r[0].startswith("kv/")) == 6


@pytest.mark.parametrize(("path", "model", "linearizable", "operations", "pending"), ROWS,
                         ids=[r[0] for r in ROWS])
def test_verdict_matches_reference(path: str, model: str, linearizable: bool, operations: int,
                                   pending: int, capsys: pytest.CaptureFixture[str]) -> None:
    history = load_history(CORPUS / path)
    assert history.default_model == model  # detected from the file, as the CLI does
    assert len(history.ops) == operations
    assert sum(1 for op in history.ops if op.complete is None or op.type == "info") == pending
    code = main(["check", str(CORPUS / path)])
    out = capsys.readouterr().out
    assert code == (0 if linearizable else 1), out
    assert out.startswith("linearizable: " + ("valid" if linearizable else "INVALID"))


def test_installed_console_script_gives_the_verdicts() -> None:
    """From the installed entry point, as a user would run it (one valid, one not)."""
    installed = Path(sys.executable).parent / "splitbrain"
    script = [str(installed), "check"] if installed.exists() else [
        sys.executable, "-m", "harness", "check"]
    ok = subprocess.run([*script, str(CORPUS / "kv" / "c50-ok.txt")], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*script, str(CORPUS / "etcd" / "etcd_000.log"), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1, bad.stderr
    assert '"valid": false' in bad.stdout
