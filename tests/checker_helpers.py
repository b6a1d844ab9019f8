"""Shared by the checker tests: where the Porcupine corpus lives."""

from __future__ import annotations

from pathlib import Path


def _corpus() -> Path:
    # The session's shared folder, or CI's copy laid beside the clone.
    for candidate in (Path("/work/shared/corpus/porcupine"),
                      Path(__file__).resolve().parents[2] / "shared" / "corpus" / "porcupine"):
        if (candidate / "expected.tsv").is_file():
            return candidate
    raise RuntimeError("the Porcupine corpus (shared/corpus/porcupine) is not where expected")


CORPUS = _corpus()
