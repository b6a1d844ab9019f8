"""Builders for crafted observation files and histories (log-order checker tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checker.history import History, load_history
from checker.logorder import Observations, check_log_order

MS = 1_000_000


def digest_of(index: int, term: int, variant: str = "") -> str:
    """A stand-in entry digest: equal for equal (index, term, variant)."""
    return f"i{index}t{term}{variant}"


def entry(index: int, term: int, *, client: str | None = None, seq: int | None = None,
          variant: str = "", duplicate: bool | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {"index": index, "term": term, "client": client, "seq": seq,
                            "digest": digest_of(index, term, variant)}
    if duplicate is not None:
        made["duplicate"] = duplicate
    return made


def log_of(terms: list[int], start: int = 1, variant: str = "") -> list[dict[str, Any]]:
    """Entries ``start, start+1, ...`` with the given terms."""
    return [entry(start + offset, term, variant=variant) for offset, term in enumerate(terms)]


class Obs:
    """Records observations in time order, 1 ms apart unless told otherwise."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.now = 0

    def _add(self, kind: str, node: str | None, time: int | None, **fields: Any) -> dict:
        self.now = self.now + MS if time is None else time
        record: dict[str, Any] = {"time": self.now, "kind": kind}
        if node is not None:
            record["node"] = node
        record.update(fields)
        self.records.append(record)
        return record

    def log(self, node: str, entries: list[dict[str, Any]], commit: int, *,
            snapshot_index: int = 0, snapshot_term: int = 0, from_index: int | None = None,
            time: int | None = None) -> dict:
        fields: dict[str, Any] = {"commit": commit, "snapshot_index": snapshot_index,
                                  "snapshot_term": snapshot_term, "entries": entries}
        if from_index is not None:
            fields["from"] = from_index
        return self._add("log", node, time, **fields)

    def status(self, node: str, role: str, term: int, *, leader: str | None = None,
               commit: int = 0, time: int | None = None) -> dict:
        return self._add("status", node, time, role=role, term=term, leader=leader,
                         commit=commit, applied=commit, last_index=commit)

    def role(self, node: str, term: int, role: str, time: int | None = None) -> dict:
        return self._add("role", node, time, term=term, role=role)

    def digest(self, node: str, applied: int, digest: str, time: int | None = None) -> dict:
        return self._add("digest", node, time, applied=applied, digest=digest)

    def mark(self, node: str, kind: str, time: int | None = None) -> dict:
        return self._add(kind, node, time)

    def healed(self, time: int | None = None) -> dict:
        return self._add("healed", None, time)

    def committed(self, node: str, entries: list[dict[str, Any]], commit: int | None = None,
                  time: int | None = None) -> dict:
        """Entries ``node`` pushed as it applied them."""
        top = max((e["index"] for e in entries), default=0)
        return self._add("committed", node, time, commit=commit or top, entries=entries)

    def snapshot(self, node: str, index: int, term: int, digest: str | None = None,
                 source: str = "taken", time: int | None = None) -> dict:
        return self._add("snapshot", node, time, source=source, index=index, term=term,
                         digest=digest)

    def complaint(self, node: str, complaint: str, severity: str = "violation",
                  time: int | None = None, **fields: Any) -> dict:
        return self._add("complaint", node, time, complaint=complaint, severity=severity,
                         message=f"{complaint} happened", **fields)

    def observations(self) -> Observations:
        return Observations.from_records(self.records)

    def check(self, history: History | None = None) -> dict[str, Any]:
        return check_log_order(self.observations(), history)

    def write(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")
        return path


class Hist:
    """Builds a splitbrain JSONL history; ``load`` writes and reads it back."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, process: int, f: str, key: str, value: Any, *, client: str, seq: int,
               time: int) -> None:
        self.events.append({"time": time, "process": process, "type": "invoke", "f": f,
                            "key": key, "value": value, "client": client, "seq": seq})

    def complete(self, process: int, outcome: str, f: str, key: str, value: Any, *,
                 time: int) -> None:
        self.events.append({"time": time, "process": process, "type": outcome, "f": f,
                            "key": key, "value": value})

    def write_op(self, process: int, client: str, seq: int, invoked: int, completed: int,
                 outcome: str = "ok", f: str = "write") -> None:
        """One whole operation: invoke at ``invoked`` and complete at ``completed`` (ns)."""
        self.invoke(process, f, "k", seq, client=client, seq=seq, time=invoked)
        self.complete(process, outcome, f, "k", seq, time=completed)

    def load(self, path: Path) -> History:
        ordered = sorted(self.events, key=lambda e: e["time"])
        lines = [json.dumps({"index": i, **event}) for i, event in enumerate(ordered)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return load_history(path, format="jsonl")


def sub(result: dict[str, Any], name: str) -> dict[str, Any]:
    """One sub-checker's result."""
    return result["checkers"][name]


def kinds(result: dict[str, Any]) -> list[str]:
    return [violation["kind"] for violation in result.get("violations", [])]
