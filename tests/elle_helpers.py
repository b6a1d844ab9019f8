"""Shared by the transactional checker tests: building histories, and a brute-force oracle.

A transaction is written as the micro-ops it completed with (reads with their
results), e.g. ``[["append", "x", 1], ["r", "y", [1]]]``; the invocation is the
same with every read's value null.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from checker.history import History, history_from_events

Mops = list[list[Any]]


def invocation(mops: Mops) -> Mops:
    return [[f, k, None if f in ("r", "read") else v] for f, k, v in mops]


def concurrent(*txns: Mops | tuple[str, Mops]) -> History:
    """Every transaction invoked, then every one completed: no real-time order at all.

    A transaction may be given as ``(type, mops)`` to make it ``fail`` or ``info``.
    """
    events: list[dict[str, Any]] = []
    parsed = [t if isinstance(t, tuple) else ("ok", t) for t in txns]
    for process, (_, mops) in enumerate(parsed):
        events.append({"process": process, "type": "invoke", "f": "txn",
                       "value": invocation(mops)})
    for process, (kind, mops) in enumerate(parsed):
        events.append({"process": process, "type": kind, "f": "txn",
                       "value": mops if kind == "ok" else invocation(mops)})
    return history_from_events(events)


def serial(*txns: Mops | tuple[str, Mops], one_process: bool = False) -> History:
    """One transaction after the other, each on its own process (or all on one process,
    with a fresh one after an info, as Jepsen does)."""
    events: list[dict[str, Any]] = []
    process = 0
    for txn in txns:
        kind, mops = txn if isinstance(txn, tuple) else ("ok", txn)
        events.append({"process": process, "type": "invoke", "f": "txn",
                       "value": invocation(mops)})
        events.append({"process": process, "type": kind, "f": "txn",
                       "value": mops if kind == "ok" else invocation(mops)})
        if kind == "info" or not one_process:
            process += 1
    return history_from_events(events)


def _apply(state: dict[Any, Any], mops: Sequence[Sequence[Any]], model: str,
           check_reads: bool) -> bool:
    for f, k, v in mops:
        if f == "append":
            state[k] = (*state.get(k, ()), v)
        elif f in ("w", "write"):
            state[k] = v
        elif check_reads:
            current = state.get(k, () if model == "list-append" else None)
            got = (tuple(v) if v is not None else ()) if model == "list-append" else v
            if current != got:
                return False
    return True


def brute_force(history: History, model: str, strict: bool) -> bool:
    """Is there a serial order of the committed transactions explaining every read?

    Failed transactions never happen; each transaction of unknown outcome may
    or may not. With ``strict`` the order must also respect real time (a
    transaction that completed before another was invoked comes first).
    Exponential: for a handful of transactions only.
    """
    ok = [op for op in history.ops if op.type == "ok"]
    maybe = [op for op in history.ops if op.type == "info"]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            ops = ok + list(chosen)
            for order in itertools.permutations(ops):
                if strict and _breaks_real_time(order):
                    continue
                state: dict[Any, Any] = {}
                if all(_apply(state, op.output if op.type == "ok" else op.value, model,
                              op.type == "ok") for op in order):
                    return True
    return False


def _breaks_real_time(order: Sequence[Any]) -> bool:
    for i, later in enumerate(order):
        for earlier in order[i + 1:]:
            # `earlier` is placed after `later`, but completed before `later` was invoked
            if earlier.type == "ok" and earlier.complete is not None \
                    and earlier.complete < later.call:
                return True
    return False
