"""The collector records what nodes push and what their output complains about; the
checker reads those records back."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from checker.logorder import load_observations
from harness.db.base import DB
from harness.db.pysyncobj import COMPLAINTS as PYSYNCOBJ_COMPLAINTS
from harness.run.collect import Collector, ObservationWriter


class OutputDB(DB):
    """Only what the collector's pushes and output scan use."""

    complaint_patterns = PYSYNCOBJ_COMPLAINTS

    def __init__(self, home: Path) -> None:
        self.home = home

    def complaint_files(self, node: str) -> list[Path]:
        return [self.home / node / "stderr.log"]


def collector_in(tmp_path: Path, db: DB) -> tuple[Collector, ObservationWriter]:
    ticks = iter(range(1, 1000))
    writer = ObservationWriter(tmp_path / "observations.jsonl", clock=lambda: next(ticks))
    return Collector(db, ["n1", "n2"], writer), writer


SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "observation.schema.json"


def records(tmp_path: Path) -> list[dict]:
    """The collector's records, each checked against the observation schema (DESIGN.md)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    found = [json.loads(line) for line in (tmp_path / "observations.jsonl").open()]
    for record in found:
        assert not list(validator.iter_errors(record)), record
    return found


def test_pushed_events_become_observations_the_checker_reads(tmp_path: Path) -> None:
    collector, writer = collector_in(tmp_path, OutputDB(tmp_path))
    collector.on_node_event("n1", {"event": "committed", "commit": 3, "entries": [
        [1, 1, "d1", None, None, None], [2, 1, "d2", "c1", 1, False],
        [3, 1, "d3", "c1", 1, True]]})
    collector.on_node_event("n1", {"event": "snapshot", "source": "taken", "index": 3,
                                   "term": 1, "digest": "s3"})
    collector.on_node_event("n2", {"event": "complaint", "complaint": "commit-beyond-log",
                                   "severity": "violation", "message": "m", "commit": 9})
    collector.on_node_event("n2", {"event": "events-dropped", "first": 4, "last": 9,
                                   "batches": 2})
    writer.close()
    committed, snapshot, complaint, dropped = records(tmp_path)
    assert committed["entries"][2] == {"index": 3, "term": 1, "digest": "d3", "client": "c1",
                                       "seq": 1, "duplicate": True}
    assert (snapshot["kind"], snapshot["index"], snapshot["digest"]) == ("snapshot", 3, "s3")
    assert complaint["details"] == {"commit": 9} and complaint["source"] == "event"
    assert dropped["kind"] == "events-dropped"
    assert dict(collector.pushed) == {"committed": 3, "snapshot": 1}
    observations = load_observations(tmp_path / "observations.jsonl")
    assert observations.logs.duplicate_flags == {2: False, 3: True}
    assert observations.pushing == {"n1"}
    assert observations.complaints.result(observations.pushing)["valid"] is False


def test_output_lines_matching_a_pattern_become_complaints_once(tmp_path: Path) -> None:
    (tmp_path / "n1").mkdir()
    stderr = tmp_path / "n1" / "stderr.log"
    stderr.write_text("starting\nall good\n")
    collector, writer = collector_in(tmp_path, OutputDB(tmp_path))
    collector.scan_outputs()
    with stderr.open("a") as out:  # one line finished, one still being written
        out.write("truncating already-applied log entries from index 5 (last applied: 7)\n"
                  "raftCommitIndex (12) exceeds journal")
    collector.scan_outputs()
    with stderr.open("a") as out:
        out.write(" end (10) after loading dump\n")
    collector.scan_outputs()
    collector.scan_outputs()  # nothing new: nothing recorded again
    writer.close()
    violation, warning = records(tmp_path)
    assert (violation["node"], violation["complaint"], violation["severity"]) == (
        "n1", "truncated-applied-entries", "violation")
    assert (violation["file"], violation["file_line"]) == ("n1/stderr.log", 3)
    assert violation["text"].startswith("truncating already-applied")
    # The line's numbers, and the message that made PySyncObj truncate: the append
    # whose prevLogIdx precedes the first truncated entry.
    assert violation["details"] == {
        "index": 5, "culprit": {"type": "append_entries", "prev_index": 4}}
    assert (warning["complaint"], warning["severity"], warning["file_line"]) == (
        "commit-beyond-journal", "warning", 4)
    assert "details" not in warning  # its pattern names no groups


def test_a_complaint_names_the_traced_message_that_caused_it(tmp_path: Path) -> None:
    """The checker finds the culprit in messages.jsonl: the last matching message to the
    complaining node traced before the complaint was found, not a later or another's."""
    from checker.logorder.complaints import ComplaintTracker

    (tmp_path / "n2").mkdir()
    (tmp_path / "n2" / "stderr.log").write_text(
        "truncating already-applied log entries from index 224 (last applied: 439) - x\n")
    collector, writer = collector_in(tmp_path, OutputDB(tmp_path))
    collector.nodes = ["n2"]
    collector.scan_outputs()  # found at time 1 (the writer's clock)
    writer.close()

    def append(time: int, to: str, prev: int, action: str = "deliver", **extra) -> str:
        return json.dumps({"time": time, "from": "n1", "to": to, "type": "append_entries",
                           "term": 3, "commit": 230, "prev_index": prev, "prev_term": 3,
                           "entries": 0, "action": action, **extra})

    trace = tmp_path / "messages.jsonl"
    trace.write_text("\n".join([
        append(0, "n2", 223, "delay", delay=0.25),  # the culprit (delivered late)
        append(0, "n3", 223),                       # another node's
        append(0, "n2", 224),                       # another position
        append(2, "n2", 223),                       # traced after the complaint
        '{"torn',
    ]) + "\n")
    observations = load_observations(tmp_path / "observations.jsonl")
    tracker: ComplaintTracker = observations.complaints
    result = tracker.result(set(), {"patterns": ["truncated-applied-entries"]}, messages=trace)
    assert result["valid"] is False
    (violation,) = result["violations"]
    assert violation["culprit_message"] == json.loads(append(0, "n2", 223, "delay",
                                                             delay=0.25))
    assert violation["message"].endswith(
        "the message: n1->n2 append_entries (term 3, prev_index 223, prev_term 3, "
        "commit 230, 0 entries) at 0.000 s, delayed 0.250 s")
    # Without a trace the complaint stands as it was said.
    again = load_observations(tmp_path / "observations.jsonl").complaints.result(
        set(), {"patterns": ["truncated-applied-entries"]}, messages=tmp_path / "none")
    assert "culprit_message" not in again["violations"][0]


def test_pysyncobj_patterns_match_the_messages_pysyncobj_logs() -> None:
    """The patterns are checked against the installed library's own format strings."""
    spec = importlib.util.find_spec("pysyncobj")
    if spec is None or spec.origin is None:
        pytest.skip("PySyncObj is not installed")
    source = (Path(spec.origin).parent / "syncobj.py").read_text().replace("%d", "12")
    for pattern in PYSYNCOBJ_COMPLAINTS:
        assert re.search(pattern.regex, source), pattern.name


def test_etcd_patterns_match_the_messages_in_the_etcd_binary() -> None:
    from harness.db.etcd import COMPLAINTS, etcd_binary

    binary = etcd_binary()
    if binary is None:
        pytest.skip("etcd is not installed")
    text = Path(binary).read_bytes().replace(b"%d", b"12").decode("latin-1")
    for pattern in COMPLAINTS:
        assert re.search(pattern.regex, text), pattern.name
