"""Elle's own published histories, and what Elle says of them, against ours.

The histories are copied as data (the EDN exactly as published, a few lines
each, in ``tests/elle_histories/``) from jepsen-io/elle (``histories/*.edn``,
whose verdicts are asserted in Elle's ``test/elle/list_append_test.clj`` and
``rw_register_test.clj``) and ligurio/elle-cli (``histories/elle/*.edn``,
verdicts in its ``test.sh``: exit code 1 = invalid). They exercise the reader
as much as the checker: no ``:process`` or ``:f`` at all (Elle reads only
values), commas or none, ``[ :r 2 [ ]]``, comments between lines, keyword keys.

Where we differ, the test says so: Elle's rw-register does not report a read
of a value that no operation in the history wrote (these files are excerpts),
we do (``garbage``, which rules out even read-uncommitted). Apart from those
reads the verdicts agree: no dependency cycle in either register file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.elle import check_txn_history
from checker.history import History, InputError, load_history

HERE = Path(__file__).resolve().parent / "elle_histories"  # where each came from: README.md


def load(name: str) -> History:
    return load_history(HERE / f"{name}.edn")


def test_the_paper_example_is_g_single() -> None:
    history = load("paper-example")
    assert [op.f for op in history.ops] == ["txn"] * 4
    result = check_txn_history(history, "list-append")
    assert result["valid"] is False  # elle-cli exits 1
    assert "G-single" in result["anomaly_types"]
    cycle = result["anomalies"]["G-single"][0]
    assert sorted((s["type"], s["key"]) for s in cycle["steps"]) == [
        ("rw", 255), ("wr", 255), ("ww", 256)]


def test_write_skew_without_g_single() -> None:
    history = load("si-without-g-single")
    result = check_txn_history(history, "list-append", consistency_model="repeatable-read")
    assert result["valid"] is False and "G2-item" in result["anomaly_types"]
    assert "G-single" not in result["anomaly_types"]  # the file's point: no false G-single
    assert "repeatable-read" in result["not"] and "snapshot-isolation" not in result["not"]
    assert check_txn_history(history, "list-append",
                             consistency_model="snapshot-isolation")["valid"] is True


def test_gh_30_is_not_serializable() -> None:
    history = load("list-append-gh-30")
    result = check_txn_history(history, "list-append", consistency_model="serializable")
    assert result["valid"] is False
    assert result["anomaly_types"] == ["G2-item"]


@pytest.mark.parametrize("name, garbage", [("cyclic-versions", 8), ("rw-register", 1)])
def test_register_excerpts_differ_from_elle_only_by_garbage_reads(name: str,
                                                                  garbage: int) -> None:
    """Elle: valid. Ours: only reads of values the excerpt never wrote; no cycle."""
    history = load(name)
    for linearizable_keys in (False, True):
        result = check_txn_history(history, "rw-register", linearizable_keys=linearizable_keys)
        assert result["anomaly_types"] == ["garbage"]
        assert result["counts"]["garbage"] == garbage


def test_events_without_a_process_must_not_overlap(tmp_path: Path) -> None:
    path = tmp_path / "overlap.edn"
    path.write_text("{:type :invoke :value [[:r 1 nil]]}\n{:type :invoke :value [[:r 2 nil]]}\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match="without one is still open"):
        load_history(path)
