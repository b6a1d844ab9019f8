"""Shared by the transactional checker tests: building histories, and a brute-force oracle.

A transaction is written as the micro-ops it completed with (reads with their
results), e.g. ``[["append", "x", 1], ["r", "y", [1]]]``; the invocation is the
same with every read's value null.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

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


def executed(order: Sequence[int], shapes: Sequence[Sequence[tuple[str, Any]]],
             applies: Sequence[bool], model: str) -> list[Mops]:
    """Run transaction shapes ``(f, key)`` one at a time in ``order`` against a dict.

    Written values are unique per key (a counter); each read gets what the
    state holds at that moment, own earlier writes included. A transaction
    with ``applies[i]`` false (failed, or of unknown outcome and left out)
    still gets values, but its writes change nothing and its reads are
    whatever the state held. Returns each transaction's completed micro-ops,
    indexed like ``shapes``.
    """
    counter = 0
    state: dict[Any, Any] = {}
    out: list[Mops] = [[] for _ in shapes]
    written: list[list[Any]] = [[] for _ in shapes]
    for i in range(len(shapes)):  # values in shape order, so they do not depend on `order`
        for f, _ in shapes[i]:
            counter += 1
            written[i].append(counter if f != "r" else None)
    for i in order:
        scratch = state if applies[i] else dict(state)
        for (f, k), value in zip(shapes[i], written[i], strict=True):
            if f == "r":
                current = scratch.get(k, () if model == "list-append" else None)
                out[i].append(["r", k, list(current) if model == "list-append" else current])
            elif f == "append":
                scratch[k] = (*scratch.get(k, ()), value)
                out[i].append(["append", k, value])
            else:
                scratch[k] = value
                out[i].append(["w", k, value])
    return out


@st.composite
def txn_histories(draw: st.DrawFn, model: str, keys: str = "xyz", max_txns: int = 5,
                  max_mops: int = 4, events: bool = False) -> Any:
    """Small transactional histories, from correct executions to random garbage.

    The shapes (which micro-ops on which keys) are drawn, then the results
    come from one of three sources: a serial execution in a drawn order (so
    internal reads are right), that execution with one read changed (stale,
    longer, foreign or garbage), or random values for every read. Timing is
    either consistent with the execution order (each transaction spans its
    turn, so the history is strictly serializable unless a read was changed)
    or a random interleaving. Transactions may fail, end ``info`` or never
    complete; processes are reused when free (one transaction at a time, a
    fresh one after an unknown outcome, as Jepsen does), so process order
    is exercised as well as real time. With ``events`` the event dicts (a
    history's JSONL lines) come back instead of the paired History.
    """
    write_f = "append" if model == "list-append" else "w"
    count = draw(st.integers(1, max_txns))
    mop = st.tuples(st.sampled_from(["r", write_f]), st.sampled_from(keys))
    shapes = [draw(st.lists(mop, min_size=1, max_size=max_mops)) for _ in range(count)]
    kinds = [draw(st.sampled_from(["ok", "ok", "ok", "ok", "info", "fail"]))
             for _ in range(count)]
    order = draw(st.permutations(range(count)))
    applies = [k == "ok" or (k == "info" and draw(st.booleans())) for k in kinds]
    txns = executed(order, shapes, applies, model)
    values: dict[Any, list[Any]] = {}
    for mops in txns:
        for f, k, v in mops:
            if f != "r":
                values.setdefault(k, []).append(v)
    reads = [(i, j) for i, mops in enumerate(txns) for j, m in enumerate(mops)
             if m[0] == "r" and kinds[i] == "ok"]
    source = draw(st.sampled_from(["executed", "perturbed", "random"]))
    if reads and source != "executed":
        chosen = reads if source == "random" else [draw(st.sampled_from(reads))]
        for i, j in chosen:
            key = txns[i][j][1]
            pool = [*values.get(key, []), *values.get(draw(st.sampled_from(keys)), []), 99]
            if model == "list-append":
                current = txns[i][j][2]
                new = draw(st.one_of(
                    st.integers(0, len(current)).map(lambda n, c=current: c[:n]),
                    st.lists(st.sampled_from(pool), max_size=4, unique=True),
                    st.lists(st.sampled_from(pool), max_size=4).map(lambda v, c=current: c + v)))
            else:
                new = draw(st.sampled_from([None, *pool]))
            txns[i][j] = ["r", key, new]
    span = st.integers(1, 25)
    if draw(st.booleans()):  # timing consistent with the execution order
        rank = {t: r for r, t in enumerate(order)}
        times = [(10 * rank[i] - draw(span), 10 * rank[i] + draw(span)) for i in range(count)]
    else:
        slots = draw(st.permutations(range(2 * count)))
        times = []
        for i in range(count):
            a, b = slots[2 * i], slots[2 * i + 1]
            times.append((min(a, b), max(a, b)))
    completes = [kinds[i] != "info" or draw(st.booleans()) for i in range(count)]
    timeline = sorted([(times[i][0], i, 0) for i in range(count)]
                      + [(times[i][1], i, 1) for i in range(count) if completes[i]])
    free: list[int] = []
    fresh = 0
    process: dict[int, int] = {}
    lines: list[dict[str, Any]] = []
    for _, i, phase in timeline:
        if phase == 0:
            pick = draw(st.integers(0, len(free)))
            if pick == len(free):
                process[i], fresh = fresh, fresh + 1
            else:
                process[i] = free.pop(pick)
            lines.append({"process": process[i], "type": "invoke", "f": "txn",
                          "value": invocation(txns[i])})
        else:
            kind = kinds[i]
            lines.append({"process": process[i], "type": kind, "f": "txn",
                          "value": txns[i] if kind == "ok" else invocation(txns[i])})
            if kind != "info":
                free.append(process[i])
    return lines if events else history_from_events(lines)
