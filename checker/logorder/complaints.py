"""``node-complaints``: what the nodes said about their own safety.

A node sometimes knows it is being made to break Raft: raft_impl pushes a
``complaint`` event when its commit index goes back or an entry it applied is
overwritten; PySyncObj logs "truncating already-applied log entries"; etcd's
raft panics with "conflict with committed entry". The harness records both
kinds as ``complaint`` observations (``source``: ``event`` or ``output``,
checker/README.md). This checker fails the run for every complaint of
severity ``violation`` — with the node, the time and where it was said — and
lists ``warning`` ones without failing.

It can only judge what was watched: nodes that push events, and the output
patterns the adapter knows (``test.json["complaint_watch"]``). When nothing
was watched it says ``unknown`` and why (the run composes it as advisory).

A complaint whose pattern names its ``culprit`` (``details.culprit``: the
trace fields of the message that made the node say it, e.g. PySyncObj's
append whose ``prev_index`` precedes the first truncated entry) gets that
message from the run's ``messages.jsonl``: the last one to the complaining
node with those fields, traced before the complaint was found, with what the
network did to it (delivered, delayed by how long, duplicated, reordered).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checker.culprits import find_culprits
from checker.logorder.evidence import Violations
from checker.logorder.records import ComplaintRecord
from checker.results import invalid_result, unknown_result, valid_result

#: Warnings kept in full for evidence; the rest are counted.
MAX_WARNINGS = 25


def _describe(record: ComplaintRecord) -> dict[str, Any]:
    where = record.where
    described: dict[str, Any] = {
        "complaint": record.complaint,
        "severity": record.severity,
        "node": where.node,
        "time": where.time,
        "said": record.message,
    }
    if where.line is not None:
        described["line"] = where.line
    for key in ("source", "file", "file_line", "text", "details"):
        if record.raw.get(key) is not None:
            described[key] = record.raw[key]
    return described


class ComplaintTracker:
    def __init__(self) -> None:
        self.violations = Violations()
        self.warnings: list[dict[str, Any]] = []
        self.total = 0

    def on_complaint(self, record: ComplaintRecord) -> None:
        self.total += 1
        described = _describe(record)
        if record.severity != "violation":
            if len(self.warnings) < MAX_WARNINGS:
                self.warnings.append(described)
            return
        text = f" ({record.raw['text']})" if record.raw.get("text") else ""
        self.violations.add(
            "node-complaint",
            f"{record.where.node} reported {record.complaint}: "
            f"{record.message or 'see its output'}{text}",
            **described,
        )

    def result(self, pushing_nodes: set[str], watch: Mapping[str, Any] | None = None,
               messages: Path | None = None) -> dict[str, Any]:
        """``pushing_nodes``: nodes seen pushing events; ``watch``: test.json's
        ``complaint_watch`` (what the harness looked for), when the run recorded it;
        ``messages``: the run's message trace, to name each complaint's culprit."""
        if messages is not None:
            find_culprits([v for v in self.violations.kept
                           if isinstance(v.get("details"), dict)
                           and isinstance(v["details"].get("culprit"), dict)
                           and isinstance(v.get("time"), int)], messages)
        watch = dict(watch or {})
        patterns = list(watch.get("patterns") or [])
        stats: dict[str, Any] = {
            "complaints": self.total,
            "nodes_pushing_events": sorted(pushing_nodes),
            "output_patterns": patterns,
        }
        if self.warnings:
            stats["warnings"] = self.warnings
        if self.violations:
            return invalid_result(**stats, **self.violations.describe())
        if not pushing_nodes and not patterns and not watch.get("events"):
            return unknown_result(
                "no node pushed events and no output pattern was watched for this system: "
                "nothing could complain", **stats)
        return valid_result(**stats)
