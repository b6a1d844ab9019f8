"""Read the run's side files (message trace, node stderr) around the moment of an anomaly.

These files can be large (the proxy traces every heartbeat), so they are
streamed and only a window around the anomaly is kept for the page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reports.model import NS_PER_S
from splitbrain_common import files

MAX_MESSAGES = 140
MAX_LOG_LINES = 40  # per node
QUIET_TYPES = frozenset({"heartbeat", "heartbeat-resp"})
_ISO = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)")
_SECONDS = re.compile(r"^\s*\[?\s*(\d+(?:\.\d+)?)\s*s?\]?[\s:]")


def message_window(path: Path, window: tuple[int, int],
                   nodes: Sequence[str]) -> dict[str, Any] | None:
    """Messages inside ``window`` (ns) for the sequence diagram, plus per-link totals.

    When the window holds more than the diagram can show, heartbeats go first,
    then the messages farthest from the window's centre.
    """
    if not path.is_file():
        return None
    lo, hi = window
    links: dict[tuple[str, str], dict[str, int]] = {}
    inside: list[dict[str, Any]] = []
    seen_nodes = set(nodes)
    with path.open(encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            try:
                message = json.loads(raw)
            except json.JSONDecodeError:
                continue  # the trace's last line may be torn by a crash
            if not isinstance(message, dict) or not isinstance(message.get("time"), int | float):
                continue
            src, dst = str(message.get("from")), str(message.get("to"))
            seen_nodes.update((src, dst))
            action = str(message.get("action", "deliver"))
            counts = links.setdefault((src, dst), {})
            counts[action] = counts.get(action, 0) + 1
            if lo <= message["time"] <= hi:
                inside.append(message)
    centre = (lo + hi) / 2
    shown = inside
    if len(inside) > MAX_MESSAGES:
        ranked = sorted(inside, key=lambda m: (m.get("type") in QUIET_TYPES
                                               and m.get("action", "deliver") == "deliver",
                                               abs(m["time"] - centre)))
        shown = sorted(ranked[:MAX_MESSAGES], key=lambda m: m["time"])
    return {
        "nodes": sorted(seen_nodes),
        "shown": shown,
        "in_window": len(inside),
        "omitted": len(inside) - len(shown),
        "window": [lo / NS_PER_S, hi / NS_PER_S],
        "links": [{"from": s, "to": d, **c} for (s, d), c in sorted(links.items())],
        "actions": sorted({a for c in links.values() for a in c}),
    }


def _wall_start(config: Mapping[str, Any]) -> float | None:
    """The run's start as a Unix time, if test.json recorded it."""
    for key in ("started_at", "start_time", "start_wall", "started", "started_utc"):
        value = config.get(key)
        if isinstance(value, int | float):
            return float(value) / (1e9 if value > 1e12 else 1)
        if isinstance(value, str):
            try:
                return _parse_iso(value)
            except ValueError:
                continue
    return None


def _parse_iso(text: str) -> float:
    """ISO 8601 (also the store's compact 20261128T044455.505Z) as a Unix time.

    A stamp without zone is local time: what Python's logging ``asctime`` writes.
    """
    text = text.replace(",", ".")
    compact = re.fullmatch(r"(\d{8})T(\d{6})(\.\d+)?(Z?)", text)
    if compact:
        day, clock, fraction, zone = compact.groups()
        text = (f"{day[:4]}-{day[4:6]}-{day[6:]}T{clock[:2]}:{clock[2:4]}:{clock[4:]}"
                f"{fraction or ''}{zone}")
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def line_time(line: str, wall_start: float | None) -> int | None:
    """Run-relative time (ns) of a log line, if the line carries one we understand."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            for key in ("time_ns", "time", "t", "ts"):
                value = record.get(key)
                if isinstance(value, int | float):
                    if value > 1e12 and wall_start is not None and key != "time_ns":
                        return int((value / 1e9 - wall_start) * NS_PER_S)
                    if key == "time_ns" or value > 1e12:
                        return int(value)
                    if value > 1e8 and wall_start is not None:  # Unix seconds
                        return int((value - wall_start) * NS_PER_S)
                    return int(value * NS_PER_S)
    match = _ISO.search(line[:64])
    if match and wall_start is not None:
        try:
            return int((_parse_iso(match.group(1)) - wall_start) * NS_PER_S)
        except ValueError:
            return None
    match = _SECONDS.match(line)
    if match:
        value = float(match.group(1))
        if value > 1e8:
            return None if wall_start is None else int((value - wall_start) * NS_PER_S)
        return int(value * NS_PER_S)
    return None


LIFECYCLE_KINDS = frozenset({"role", "crash", "restart", "lose-unfsynced"})


def _event_line(row: Mapping[str, Any]) -> str:
    """A node event from observations.jsonl, worded like a log line."""
    if row.get("kind") == "role":
        leader = f", leader {row['leader']}" if row.get("leader") else ""
        return f"▸ became {row.get('role')} in term {row.get('term')}{leader}"
    return f"▸ {row.get('kind')} (harness)"


def stderr_window(nodes_dir: Path, window: tuple[int, int], config: Mapping[str, Any],
                  observations: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]] | None:
    """Each node's stderr lines inside the window; the last lines when untimed.

    Role changes and crash/restart marks from observations.jsonl (exact run
    times) are merged in, marked ▸: nodes log little at INFO level, and who
    led in which term is usually what the moment needs.
    """
    if not nodes_dir.is_dir():
        return None
    wall_start = _wall_start(config)
    lo, hi = window
    found = []
    for node_dir in sorted(p for p in nodes_dir.iterdir() if p.is_dir()):
        path = node_dir / files.NODE_STDERR
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        timed = [(line_time(line, wall_start), line) for line in lines]
        # a line without a time (a traceback) belongs to the timed line before it
        last: int | None = None
        stamped = []
        for time, line in timed:
            last = time if time is not None else last
            stamped.append((last, line))
        stamped += [(int(row["time"]), _event_line(row)) for row in observations
                    if row.get("node") == node_dir.name and row.get("kind") in LIFECYCLE_KINDS
                    and isinstance(row.get("time"), int | float)]
        stamped.sort(key=lambda item: -1 if item[0] is None else item[0])
        aligned = any(t is not None for t, _ in stamped)
        if aligned:
            chosen = [(t, line) for t, line in stamped if t is not None and lo <= t <= hi]
            note = f"lines logged {lo / NS_PER_S:.3f} s – {hi / NS_PER_S:.3f} s"
            if not chosen:  # a quiet node: its last words before the window still help
                chosen = [(t, line) for t, line in stamped if t is not None and t < lo][-5:]
                note = "nothing logged in the window; its last lines before it"
        else:
            chosen = [(None, line) for _, line in stamped[-MAX_LOG_LINES:]]
            note = "the log lines carry no time: its last lines"
        omitted = max(len(chosen) - MAX_LOG_LINES, 0)
        if omitted:  # keep the lines nearest the window's centre
            centre = (lo + hi) / 2
            nearest = sorted(chosen, key=lambda c: abs((c[0] or 0) - centre))[:MAX_LOG_LINES]
            chosen = sorted(nearest, key=lambda c: c[0] or 0)
        found.append({
            "node": node_dir.name, "note": note, "omitted": omitted, "total": len(lines),
            "lines": [{"t": None if t is None or _SECONDS.match(line) else
                       f"{t / NS_PER_S:.3f} s", "text": line[:400],
                       "event": line.startswith("▸")} for t, line in chosen],
        })
    return found or None
