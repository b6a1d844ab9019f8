"""Synthetic transaction histories: simulated concurrent executions, for tests and benchmarks.

Each client runs one transaction at a time; a transaction takes effect
atomically at a random instant between its invocation and its completion, so
the history is strictly serializable by construction. A transaction of
unknown outcome (``info``, at rate ``info_rate``) takes effect or not, and
its process is retired for a fresh one, as Jepsen does.

Keys retire as Elle's generators do: ``keys`` keys are active at a time, and
a key that has taken ``writes_per_key`` writes is replaced by a fresh one, so
lists stay short and every read stays cheap to check. ``stale_rate`` plants
a bug: that share of transactions read from the state as it was when they
were invoked (a stale snapshot), not when they took effect.
"""

from __future__ import annotations

import heapq
import random
from typing import Any


def simulate_txns(rng: random.Random, txns: int, clients: int = 10, keys: int = 100,
                  model: str = "list-append", info_rate: float = 0.01,
                  max_ops: int = 4, writes_per_key: int = 32,
                  stale_rate: float = 0.0) -> list[dict[str, Any]]:
    """Events (JSONL shape, ``time`` in ns) of ``txns`` transactions."""
    write_f = "append" if model == "list-append" else "w"
    active = list(range(keys))
    next_key = keys
    writes: dict[int, int] = {}
    state: dict[int, Any] = {}
    counter = 0
    events: list[tuple[int, int, dict[str, Any]]] = []
    agenda: list[tuple[int, int, str, Any]] = []  # (time, seq, what, payload)
    seq = 0
    processes = list(range(clients))
    next_process = clients
    issued = 0

    def plan(now: int, slot: int) -> None:
        nonlocal seq, issued, counter, next_key
        issued += 1
        mops: list[list[Any]] = []
        for _ in range(rng.randint(1, max_ops)):
            index = rng.randrange(len(active))
            key = active[index]
            if rng.random() < 0.5:
                mops.append(["r", key, None])
                continue
            counter += 1
            mops.append([write_f, key, counter])
            writes[key] = writes.get(key, 0) + 1
            if writes[key] >= writes_per_key:  # retire the key
                active[index] = next_key
                next_key += 1
        seq += 1
        apply_at = now + rng.randint(1, 1000)
        done_at = apply_at + rng.randint(1, 1000)
        txn = {"process": processes[slot], "mops": mops, "slot": slot,
               "info": rng.random() < info_rate, "snapshot": None}
        if rng.random() < stale_rate:
            txn["snapshot"] = dict(state)
        events.append((now, seq, {"process": txn["process"], "type": "invoke", "f": "txn",
                                  "value": [list(m) for m in mops]}))
        heapq.heappush(agenda, (apply_at, seq, "apply", txn))
        heapq.heappush(agenda, (done_at, seq, "done", txn))

    for slot in range(clients):
        plan(rng.randint(0, 100), slot)
    while agenda:
        now, _, what, txn = heapq.heappop(agenda)
        if what == "apply":
            if txn["info"] and rng.random() < 0.5:
                txn["applied"] = False
                continue
            view = txn["snapshot"] if txn["snapshot"] is not None else state
            local: dict[int, Any] = {}
            for mop in txn["mops"]:
                f, key = mop[0], mop[1]
                if f == "r":
                    current = local.get(key, view.get(key))
                    mop[2] = list(current or ()) if write_f == "append" else current
                elif f == "append":
                    base = local.get(key, view.get(key)) or ()
                    local[key] = (*base, mop[2])
                else:
                    local[key] = mop[2]
            for key, value in local.items():
                if write_f == "append":  # appends land on the real state, not a stale copy
                    state[key] = (*state.get(key, ()), *value[len(view.get(key) or ()):])
                else:
                    state[key] = value
            continue
        seq += 1
        if txn["info"]:
            events.append((now, seq, {"process": txn["process"], "type": "info", "f": "txn",
                                      "value": [[f, k, None if f == "r" else v]
                                                for f, k, v in txn["mops"]]}))
            processes[txn["slot"]] = next_process
            next_process += 1
        else:
            events.append((now, seq, {"process": txn["process"], "type": "ok", "f": "txn",
                                      "value": txn["mops"]}))
        if issued < txns:
            plan(now + rng.randint(0, 200), txn["slot"])
    events.sort(key=lambda e: (e[0], e[1]))
    out = []
    for index, (time, _, event) in enumerate(events):
        out.append({"index": index, "time": time, **event})
    return out


__all__ = ["simulate_txns"]
