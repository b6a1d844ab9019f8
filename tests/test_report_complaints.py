"""A node's own word on its safety is shown in the report: on the first screen when it
failed the run, and in its own table with where it was said."""

from __future__ import annotations

from pathlib import Path

from logorder_helpers import Obs

from checker.results import compose
from reports.render import render_history_report


def test_node_complaints_appear_in_the_report(tmp_path: Path) -> None:
    obs = Obs()
    obs.complaint("n2", "commit-beyond-log", time=2_500_000_000, source="event")
    obs.complaint("n3", "commit-beyond-journal", severity="warning", source="output",
                  file="nodes/n3/stderr.log", file_line=7, text="raftCommitIndex (9) exceeds")
    observations = obs.observations()
    complaints = observations.complaints.result({"n2"})
    result = compose({"node-complaints": complaints})
    events = [{"time": t, "process": 0, "type": kind, "f": "write", "key": "k", "value": 1}
              for t, kind in ((1_000_000_000, "invoke"), (3_000_000_000, "ok"))]
    html = render_history_report(events, result, tmp_path / "r.html").read_text()
    assert 'id="complaints"' in html
    assert "n2 reported commit-beyond-log" in html  # the first screen names it
    assert "nodes/n3/stderr.log:7" in html and "raftCommitIndex (9) exceeds" in html
    assert "observations.jsonl:1" in html and "2.500" in html


def test_no_complaints_no_section(tmp_path: Path) -> None:
    result = compose({"node-complaints": Obs().observations().complaints.result({"n1"})})
    events = [{"time": 1, "process": 0, "type": "invoke", "f": "read", "key": "k"}]
    html = render_history_report(events, result, tmp_path / "r.html").read_text()
    assert 'id="complaints"' not in html


def test_the_message_behind_a_complaint_is_shown(tmp_path: Path) -> None:
    """A complaint whose culprit was found in the trace names that message, on the
    first screen (the violation's sentence) and in the complaints table."""
    obs = Obs()
    obs.complaint("n2", "truncated-applied-entries", time=2_500_000_000, source="output",
                  file="nodes/n2/stderr.log", file_line=1,
                  text="truncating already-applied log entries from index 224",
                  details={"index": 224, "culprit": {"type": "append_entries",
                                                     "prev_index": 223}})
    trace = tmp_path / "messages.jsonl"
    trace.write_text('{"time": 2000000000, "from": "n1", "to": "n2", "type": '
                     '"append_entries", "term": 3, "prev_index": 223, "entries": 0, '
                     '"action": "delay", "delay": 0.25}\n')
    complaints = obs.observations().complaints.result(set(), {"patterns": ["x"]},
                                                      messages=trace)
    result = compose({"node-complaints": complaints})
    events = [{"time": t, "process": 0, "type": kind, "f": "write", "key": "k", "value": 1}
              for t, kind in ((1_000_000_000, "invoke"), (3_000_000_000, "ok"))]
    html = render_history_report(events, result, tmp_path / "r.html").read_text()
    said = ("n1-&gt;n2 append_entries (term 3, prev_index 223, 0 entries) at 2.000 s, "
            "delayed 0.250 s")
    assert html.count(said) >= 2, html[html.find("complaints"):][:3000]
