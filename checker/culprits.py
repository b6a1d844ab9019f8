"""The message behind a node's complaint, found in the run's message trace.

Kept apart from ``checker.logorder.complaints`` (which needs the log-order records) so the
report can describe a traced message without importing the checkers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def describe_message(message: Mapping[str, Any]) -> str:
    """One traced message in words: ``n1->n2 append_entries (term 1, prev_index 2607,
    26 entries) at 30.060 s, delayed 0.092 s``."""
    fields = [f"term {message['term']}"] if message.get("term") is not None else []
    fields += [f"{key} {message[key]}" for key in ("prev_index", "prev_term", "commit")
               if message.get(key) is not None]
    if message.get("entries") is not None:
        fields.append(f"{message['entries']} entries")
    text = f"{message.get('from')}->{message.get('to')} {message.get('type')}"
    if fields:
        text += f" ({', '.join(fields)})"
    if isinstance(message.get("time"), int):
        text += f" at {message['time'] / 1e9:.3f} s"
    action = message.get("action")
    if action == "delay" and message.get("delay") is not None:
        text += f", delayed {message['delay']:.3f} s"
    elif action in ("duplicate", "reorder", "drop"):
        text += {"duplicate": ", duplicated", "reorder": ", held back behind the next one",
                 "drop": ", dropped"}[action]
    return text


def find_culprits(wanted: list[dict[str, Any]], messages: Path) -> None:
    """Give each violation in ``wanted`` (with ``node``, ``time`` and
    ``details.culprit``) the last traced message that matches, as ``culprit_message``."""
    if not wanted or not messages.is_file():
        return
    best: dict[int, dict[str, Any]] = {}
    with messages.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if not isinstance(message, dict):
                continue
            for number, violation in enumerate(wanted):
                rule = violation["details"]["culprit"]
                if message.get("to") != violation["node"] or not all(
                        message.get(key) == value for key, value in rule.items()):
                    continue
                time = message.get("time")
                if isinstance(time, int) and time <= violation["time"]:
                    best[number] = message  # the trace is in time order: keep the last
    for number, message in best.items():
        violation = wanted[number]
        violation["culprit_message"] = message
        violation["message"] += f"; the message: {describe_message(message)}"
