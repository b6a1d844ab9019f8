"""Synthetic histories: simulated concurrent executions of the raft-kv semantics.

Used by the tests (Hypothesis feeds them small ones and compares the checker
with a brute-force search) and by ``benchmarks/checker_corpus.py`` (a long
one). Each client runs one operation at a time; every operation takes effect
atomically at a random instant between its invocation and its completion, so
the history is linearizable by construction. An operation of unknown outcome
(``info``) takes effect or not, and possibly only after its ``info``
completion was recorded; its process is then retired for a fresh one, as
Jepsen does.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

FUNCTIONS = ("read", "write", "cas", "append")


def simulate(rng: random.Random, ops: int, keys: int = 3, clients: int = 3,
             info_rate: float = 0.05, functions: tuple[str, ...] = FUNCTIONS,
             values: int | None = None) -> list[dict[str, Any]]:
    """Events (docs/DESIGN.md's JSONL shape, ``time`` in ns) of ``ops`` operations.

    ``values`` bounds the values written (small ranges make collisions and
    hard cases likely); by default every write is distinct. ``append`` is only
    used on keys no plain write has touched (the store refuses appends to
    non-lists).
    """
    key_names = [f"k{i}" for i in range(keys)]
    list_keys = set(key_names[: keys // 2]) if "append" in functions else set()
    state: dict[str, Any] = {}
    events: list[tuple[int, int, dict[str, Any]]] = []  # (time, tiebreak, event)
    agenda: list[tuple[int, int, str, Any]] = []  # (time, seq, what, payload)
    seq = 0
    counter = 0
    next_process = clients
    issued = 0

    def push(when: int, what: str, payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(agenda, (when, seq, what, payload))

    def record(when: int, event: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        events.append((when, seq, event))

    for process in range(clients):
        push(rng.randrange(1_000), "invoke", process)
    while agenda:
        now, _, what, payload = heapq.heappop(agenda)
        if what == "invoke":
            if issued >= ops:
                continue
            issued += 1
            process = payload
            key = rng.choice(key_names)
            allowed = [f for f in functions if (f == "append") == (key in list_keys)
                       or f == "read"]
            f = rng.choice(allowed)
            counter += 1
            value: Any = None
            if f in ("write", "append"):
                value = counter if values is None else rng.randrange(values)
            elif f == "cas":
                current = state.get(key)
                expected = current if rng.random() < 0.6 else (
                    rng.randrange(values) if values else counter - 1)
                value = [expected, counter if values is None else rng.randrange(values)]
            op = {"process": process, "f": f, "key": key, "value": value}
            record(now, {"type": "invoke", **op})
            unknown = rng.random() < info_rate
            effect = now + rng.randrange(1, 10_000)
            if unknown:
                done = now + rng.randrange(1, 10_000)
                if rng.random() < 0.5:
                    push(effect + rng.randrange(0, 10_000), "effect", (op, None))
                push(done, "info", op)
            else:
                push(effect, "effect", (op, effect + rng.randrange(1, 10_000)))
        elif what == "effect":
            op, done = payload
            outcome = _apply(state, op)
            if done is not None:
                push(done, "complete", (op, outcome))
        elif what == "complete":
            op, (kind, output) = payload
            record(now, {"type": kind, "process": op["process"], "f": op["f"],
                         "key": op["key"], "value": output})
            push(now + rng.randrange(1, 3_000), "invoke", op["process"])
        elif what == "info":
            op = payload
            record(now, {"type": "info", "process": op["process"], "f": op["f"],
                         "key": op["key"], "value": op["value"]})
            push(now + rng.randrange(1, 3_000), "invoke", next_process)
            next_process += 1
    events.sort(key=lambda item: (item[0], item[1]))
    out = []
    for index, (when, _, event) in enumerate(events):
        out.append({"index": index, "time": when, **event})
    return out


def _apply(state: dict[str, Any], op: dict[str, Any]) -> tuple[str, Any]:
    """Apply one operation to the store's state: (completion type, completion value)."""
    key, f, value = op["key"], op["f"], op["value"]
    current = state.get(key)
    if f == "read":
        return "ok", (list(current) if isinstance(current, list) else current)
    if f == "write":
        state[key] = value
        return "ok", value
    if f == "cas":
        if current != value[0]:
            return "fail", value
        state[key] = value[1]
        return "ok", value
    if current is None:
        state[key] = [value]
    elif isinstance(current, list):
        state[key] = [*current, value]
    else:
        return "fail", value
    return "ok", value
