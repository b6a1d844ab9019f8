"""Turn a run's raw files into the facts a report shows.

Everything here is plain data preparation, no HTML: pairing invocations with
completions, nemesis events into fault intervals, the checkers' evidence into
"which operation failed, which write did it miss, which fault was active", and
long series into a few thousand points a browser can draw quickly. Keeping it
apart from the templates lets the tests check the facts, not the markup.

Size: over 1,200 lines because it still holds a second history model (``Op`` with
result/out/start/end, its own pairing in ``build_history`` and ``events_from``) beside
the evidence explanations; issue 17 item 2 replaces that model with checker.history's and
leaves a display view here, which is when this file is split (explanations apart).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checker.history import read_json_lines
from checker.models import freeze
from nemesis.faults import started_kind, stopped_kinds

NS_PER_S = 1_000_000_000
RESULT_CODES = {"ok": 0, "fail": 1, "info": 2, "pending": 3}
WRITE_FS = frozenset({"write", "put", "cas", "append", "w"})
READ_FS = frozenset({"read", "get", "r"})

# Fault bands come from nemesis.faults' history vocabulary (our names and Jepsen's);
# the report draws a lose-unfsynced crash as what it leaves: a node down, like a kill.
_DRAWN_AS = {"lose-unfsynced": "kill"}


@dataclass
class Op:
    """One client operation: an invocation paired with its completion (if any)."""

    id: int
    process: Any
    f: str
    key: Any
    value: Any  # the invocation's value (what was written, cas [old, new], None for reads)
    result: str  # ok | fail | info | pending
    out: Any  # the completion's value (what a read returned)
    start: int  # ns since run start
    end: int | None  # ns; None when the op never completed
    node: Any = None
    error: Any = None
    index: int | None = None  # history index of the invocation
    end_index: int | None = None
    position: int = -1  # position of the invocation among all events (checker's "invoke")
    end_position: int | None = None  # position of the completion (checker's "complete")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_write(self) -> bool:
        return self.f in WRITE_FS

    @property
    def is_read(self) -> bool:
        return self.f in READ_FS

    def describe(self) -> str:
        """A short sentence like ``p4 read k1 → 3`` a person can quote."""
        key = "" if self.key is None else f" {self.key}"
        if self.is_read:
            what = f"read{key}"
            shown = self.out if self.result == "ok" else None
            tail = f" → {fmt_value(shown)}" if self.result == "ok" else ""
        elif self.f == "cas" and isinstance(self.value, list | tuple) and len(self.value) == 2:
            what = f"cas{key} {fmt_value(self.value[0])}→{fmt_value(self.value[1])}"
            tail = ""
        else:
            what = f"{self.f}{key} {fmt_value(self.value)}"
            tail = ""
        status = {"ok": "", "fail": " (failed)", "info": " (outcome unknown)",
                  "pending": " (never returned)"}[self.result]
        return f"process {self.process}: {what}{tail}{status}"


@dataclass
class Fault:
    """A nemesis fault active from ``start`` to ``end`` (ns); ``end`` None = never healed."""

    kind: str
    start: int
    end: int | None
    label: str
    detail: Any = None

    def overlaps(self, lo: int, hi: int) -> bool:
        end = self.end if self.end is not None else math.inf
        return self.start <= hi and end >= lo


@dataclass
class History:
    ops: list[Op]
    nemesis: list[dict[str, Any]]  # raw nemesis events, in order
    faults: list[Fault]
    end: int  # ns: last event time
    timed: bool = True  # False: times are event positions (EVENT_CLOCK)


def fmt_value(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


#: True while rendering a history without times (Porcupine, Knossos EDN): its clock is
#: the event's position, one "second" per event, and times print as "event N".
EVENT_CLOCK: ContextVar[bool] = ContextVar("event_clock", default=False)


def fmt_time(ns: int | float | None) -> str:
    if ns is None:
        return "—"
    if EVENT_CLOCK.get():
        return f"event {round(ns / NS_PER_S)}"
    return f"{ns / NS_PER_S:.4f} s"


def fmt_tick(seconds: float, digits: int = 3) -> str:
    """An axis label: seconds, or the event number of an untimed history."""
    return f"#{round(seconds)}" if EVENT_CLOCK.get() else f"{seconds:.{digits}f} s"


# ---------------------------------------------------------------- loading


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file by the checker's rule (``checker.history.JsonLines``): a
    torn last line (crashed writer) is dropped, any other bad line is an InputError."""
    return read_json_lines(path)[0]


def events_from(history: Any) -> list[dict[str, Any]]:
    """Accept the history in whatever shape a caller has it and return event dicts.

    Callers pass a path to ``history.jsonl``, a list of event dicts, or the
    ``History`` object of :mod:`checker.history` (its events or its paired ops).
    """
    if isinstance(history, str | Path):
        return read_jsonl(Path(history))
    for attribute in ("events", "raw_events"):
        events = getattr(history, attribute, None)
        if callable(events):  # checker.history.History.events(): normalized, in order
            events = events()
        if events is not None:
            return [_as_dict(e) for e in events]
    if isinstance(history, Mapping) and "events" in history:
        return [_as_dict(e) for e in history["events"]]
    ops = getattr(history, "ops", None)
    if ops is not None and not callable(ops):
        return _events_of_paired_ops(ops, getattr(history, "nemesis", None) or [])
    if isinstance(history, Sequence):
        return [_as_dict(e) for e in history]
    raise TypeError(f"cannot read a history from {type(history).__name__}")


def _as_dict(event: Any) -> dict[str, Any]:
    if isinstance(event, Mapping):
        return dict(event)
    if hasattr(event, "to_dict"):
        return dict(event.to_dict())
    if hasattr(event, "__dataclass_fields__"):
        return {name: getattr(event, name) for name in event.__dataclass_fields__}
    raise TypeError(f"cannot read a history event from {type(event).__name__}")


def _events_of_paired_ops(ops: Iterable[Any], nemesis: Iterable[Any]) -> list[dict[str, Any]]:
    """Unpair ops of a checker History back into invoke/complete events."""
    events: list[dict[str, Any]] = [_as_dict(e) for e in nemesis]
    for op in ops:
        d = _as_dict(op)
        start = d.get("invoke_time", d.get("start", d.get("call")))
        end = d.get("complete_time", d.get("end", d.get("return")))
        invoke = {
            "process": d.get("process"), "type": "invoke", "f": d.get("f"),
            "key": d.get("key"), "value": d.get("value"), "time": start,
            "node": d.get("node"), "index": d.get("index"),
        }
        events.append(invoke)
        result = d.get("type", d.get("result", "ok"))
        if end is not None and result not in ("invoke", "pending"):
            events.append({
                "process": d.get("process"), "type": result, "f": d.get("f"),
                "key": d.get("key"), "value": d.get("output", d.get("out", d.get("value"))),
                "time": end, "node": d.get("node"), "error": d.get("error"),
            })
    events.sort(key=lambda e: (e.get("time") or 0))
    return events


def build_history(events: Sequence[Mapping[str, Any]]) -> History:
    """Pair each invocation with the next completion of the same process."""
    ops: list[Op] = []
    open_ops: dict[Any, Op] = {}
    nemesis: list[dict[str, Any]] = []
    last_time = 0
    timed = any(isinstance(e.get("time"), int | float) for e in events)
    for position, event in enumerate(events):
        time = event.get("time")
        # untimed formats: the event's position is its time, one "second" an event
        time = int(time) if timed and isinstance(time, int | float) else position * NS_PER_S
        last_time = max(last_time, time)
        process = event.get("process")
        kind = event.get("type")
        if process == "nemesis":
            if kind != "invoke":  # Jepsen logs both; the completion is when it took effect
                nemesis.append({**event, "time": time})
            continue
        if kind == "invoke":
            op = Op(
                id=len(ops), process=process, f=str(event.get("f")), key=event.get("key"),
                value=event.get("value"), result="pending", out=None, start=time, end=None,
                node=event.get("node"), index=event.get("index", position), position=position,
                extra={k: event[k] for k in ("client", "seq") if k in event},
            )
            ops.append(op)
            open_ops[process] = op
        elif kind in ("ok", "fail", "info"):
            op = open_ops.pop(process, None)
            if op is None:
                continue  # a completion without invocation: nothing to pair it with
            op.result, op.end = kind, time
            op.end_index = event.get("index", position)
            op.end_position = position
            op.out = event.get("value")
            op.error = event.get("error")
            if event.get("node") is not None:
                op.node = event.get("node")
    return History(ops=ops, nemesis=nemesis, faults=fault_intervals(nemesis, last_time),
                   end=last_time, timed=timed)


def _fault_kind(f: str) -> str | None:
    kind = started_kind(f)
    return _DRAWN_AS.get(kind, kind) if kind is not None else None


def _stopped_kinds(f: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_DRAWN_AS.get(kind, kind) for kind in stopped_kinds(f)))


def _nodes_of(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple | set):
        return {str(v) for v in value if isinstance(v, str)}
    if isinstance(value, Mapping):
        for key in ("nodes", "node", "targets", "target"):
            if key in value:
                return _nodes_of(value[key])
    return set()


def _partition_groups(grudge: Mapping[str, Any]) -> list[list[str]] | None:
    """Groups of a clean partition (nodes talk within a group only), else None.

    A grudge maps a node to the nodes it must not receive from. When the nodes
    that can still talk form disjoint cliques, ``n1 | n2 n3`` says it all; ring
    and bridge shapes are not like that and get listed link by link instead.
    """
    nodes = sorted({str(k) for k in grudge} | {str(v) for vs in grudge.values() for v in vs})
    blocked = {(str(a), str(b)) for a, vs in grudge.items() for b in vs}

    def talk(a: str, b: str) -> bool:
        return (a, b) not in blocked and (b, a) not in blocked

    groups: list[list[str]] = []
    for node in nodes:
        for group in groups:
            if talk(node, group[0]):
                if not all(talk(node, member) for member in group):
                    return None
                group.append(node)
                break
        else:
            groups.append([node])
    for i, group in enumerate(groups):
        for other in groups[i + 1:]:
            if any(talk(a, b) for a in group for b in other):
                return None
    return groups if len(groups) > 1 else None


def describe_fault(kind: str, value: Any) -> str:
    """Say what a fault did in words, e.g. ``partition n1 | n2 n3 n4 n5``."""
    description = None
    if isinstance(value, Mapping):
        notes = [str(value[k]) for k in ("description", "shape") if value.get(k)]
        if kind == "partition" and value.get("leader"):
            notes.append(f"leader was {value['leader']}")
        description = ", ".join(notes) or None
    text = None
    if kind == "partition" and isinstance(value, Mapping):
        groups = value.get("components") or value.get("groups")
        if groups is not None and len(groups) < 2:
            groups = None  # one component (a ring, a bridge): the grudge says more
        grudge = value.get("grudge", value)
        if groups is None and isinstance(grudge, Mapping) and all(
            isinstance(v, list | tuple | set) for v in grudge.values()
        ):
            groups = _partition_groups(grudge)
            if groups is None:
                text = "partition: " + "; ".join(
                    f"{k} hears nothing from {' '.join(sorted(map(str, v)))}"
                    for k, v in sorted(grudge.items()) if v)
        if groups:
            text = "partition " + " | ".join(" ".join(map(str, g)) for g in groups)
    if text is None and isinstance(value, Mapping) and "nodes" in value:
        nodes = value["nodes"]
        shown = " ".join(map(str, nodes)) if isinstance(nodes, list) else str(nodes)
        target = value.get("target")
        text = f"{kind} {shown}" + (f" (the {target})" if target in ("leader",) else "")
        extra = {k: v for k, v in value.items() if k not in ("nodes", "target")}
        if extra:
            text += " " + fmt_value(extra)
        description = None
    if text is None:
        if value is None or value == "" or (isinstance(value, Mapping) and
                                            set(value) <= {"description", "shape"}):
            text = kind
        elif isinstance(value, str):
            text = value if value.startswith(kind) else f"{kind} {value}"
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            text = f"{kind} {' '.join(value)}"
        else:
            shown = {k: v for k, v in value.items() if k not in ("description", "shape")
                     } if isinstance(value, Mapping) else value
            text = f"{kind} {fmt_value(shown)}"
    return f"{text} ({description})" if description else text


def fault_intervals(nemesis: Sequence[Mapping[str, Any]], end: int) -> list[Fault]:
    """Match fault starts with their stops; a fault never stopped lasts to the end."""
    faults: list[Fault] = []
    open_faults: list[Fault] = []
    for event in nemesis:
        f = str(event.get("f"))
        time = int(event.get("time") or 0)
        value = event.get("value")
        stopped = _stopped_kinds(f)
        if stopped:
            targets = _nodes_of(value) if f in ("start", "restart", "resume") else set()
            still_open = []
            for fault in open_faults:
                matches = fault.kind in stopped and (
                    not targets or "all" in targets or not _nodes_of(fault.detail)
                    or bool(_nodes_of(fault.detail) & targets)
                )
                if matches:
                    fault.end = time
                else:
                    still_open.append(fault)
            open_faults = still_open
            continue
        kind = _fault_kind(f)
        if kind is None:
            continue
        if kind == "partition":  # a new partition replaces the old one
            for fault in [x for x in open_faults if x.kind == "partition"]:
                fault.end = time
                open_faults.remove(fault)
        fault = Fault(kind=kind, start=time, end=None, label=describe_fault(kind, value),
                      detail=value)
        faults.append(fault)
        open_faults.append(fault)
    for fault in open_faults:
        fault.end = None
    return faults


# ---------------------------------------------------------------- evidence


def find_op(history: History, ref: Any) -> Op | None:
    """Find the Op a checker's evidence refers to (by history index, else by fields)."""
    if ref is None:
        return None
    if isinstance(ref, int) and not isinstance(ref, bool):
        return _by_index(history).get(ref) or (
            history.ops[ref] if 0 <= ref < len(history.ops) else None
        )
    if not isinstance(ref, Mapping):
        return None
    if isinstance(ref.get("id"), int) and 0 <= ref["id"] < len(history.ops):
        # checker.history numbers ops in invocation order, as build_history does
        candidate = history.ops[ref["id"]]
        if candidate.process == ref.get("process", candidate.process) and candidate.f == ref.get(
            "f", candidate.f) and ref.get("invoke_time", candidate.start) == candidate.start:
            return candidate
    if isinstance(ref.get("invoke"), int):
        for op in history.ops:
            if op.position == ref["invoke"] and op.process == ref.get("process", op.process):
                return op
    for key in ("index", "invoke_index", "history_index"):
        if isinstance(ref.get(key), int):
            found = _by_index(history).get(ref[key])
            if found is not None:
                return found
    start = ref.get("invoke_time", ref.get("start", ref.get("call", ref.get("time"))))
    for op in history.ops:
        if op.process == ref.get("process") and op.f == ref.get("f", op.f) and (
            start is None or op.start == start
        ):
            return op
    return None


def _by_index(history: History) -> dict[int, Op]:
    cache = getattr(history, "_index_cache", None)
    if cache is None:
        cache = {}
        for op in history.ops:
            if op.index is not None:
                cache[op.index] = op
            if op.end_index is not None:
                cache.setdefault(op.end_index, op)
        history._index_cache = cache  # type: ignore[attr-defined]
    return cache


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in mapping and mapping[key] is not None:
            return mapping[key]
    return None


@dataclass
class LinStep:
    op: Op
    state: Any
    point: int = 0  # ns: a linearization point inside [start, end] consistent with the order


@dataclass
class LinEvidence:
    """The linearizability checker's evidence, resolved to ops of this history."""

    key: Any
    failed: Op | None
    prefix: list[LinStep]
    concurrent: list[Op]
    final_state: Any
    model: str | None
    message: str | None
    initial: Any = None  # the partition's initial state as the checker described it


def lin_evidence(history: History, checker_result: Mapping[str, Any]) -> LinEvidence | None:
    """Read the evidence of a failed linearizability result, tolerant of key spellings."""
    evidence = checker_result.get("evidence") or {}
    if not isinstance(evidence, Mapping):
        return None
    failed_ref = _first(evidence, "op", "failed_op", "operation", "unlinearizable")
    failed = find_op(history, failed_ref)
    steps: list[LinStep] = []
    for step in _first(evidence, "prefix", "longest_prefix", "linearized") or []:
        op_ref = step.get("op", step) if isinstance(step, Mapping) else step
        op = find_op(history, op_ref)
        if op is None:
            continue
        state = step.get("state", step.get("state_after")) if isinstance(step, Mapping) else None
        steps.append(LinStep(op=op, state=state))
    _place_points(steps)
    concurrent = [
        op for op in (find_op(history, r) for r in _first(evidence, "concurrent") or [])
        if op is not None and op is not failed
    ]
    final_state = steps[-1].state if steps else _first(evidence, "state", "final_state")
    return LinEvidence(
        key=_first(evidence, "key", "partition") or (failed.key if failed else None),
        failed=failed, prefix=steps, concurrent=concurrent, final_state=final_state,
        model=checker_result.get("model"),
        message=_first(evidence, "explanation", "message", "reason"),
        initial=evidence.get("initial_state"),
    )


def _place_points(steps: list[LinStep]) -> None:
    """Give each linearized op a point inside its interval, non-decreasing along the order.

    A valid linearization order always admits such points (greedy: as early as
    allowed), which is what lets the report draw the order as ticks on the bars.
    """
    previous = -math.inf
    for step in steps:
        end = step.op.end if step.op.end is not None and step.op.result == "ok" else math.inf
        point = max(previous, step.op.start)
        step.point = int(min(point, end))
        previous = point


@dataclass
class Focus:
    """What the first screen of a failing report shows."""

    checker: str
    headline: str
    failed: Op | None = None
    missed: Op | None = None  # the write the failing op should have seen
    source: Op | None = None  # the write whose value the failing op returned instead
    witness: Op | None = None  # an op that had already seen the newer value
    kind: str | None = None  # a key of ANOMALY_HEADLINES; None: not a proven anomaly
    proof: str = ""  # why real time rules the failing op out (a proven anomaly only)
    faults: list[Fault] = field(default_factory=list)
    window: tuple[int, int] = (0, 0)
    details: list[str] = field(default_factory=list)
    fault_title: str = "Fault active at that moment"


def writes_value(op: Op) -> Any:
    """The value a write-like op leaves in the register (``cas`` leaves its new value)."""
    if op.f == "cas" and isinstance(op.value, list | tuple) and len(op.value) == 2:
        return op.value[1]
    return op.value


def _value_key(value: Any) -> Any:
    """A value as the checker compares it (lists as tuples; 1 == 1.0, as in Python)."""
    try:
        return freeze(value)
    except TypeError:  # not JSON-like: compare its text
        return json.dumps(value, sort_keys=True, default=str)


# ---------------------------------------------------------------- proven anomalies

#: The first words of each proven anomaly's headline, by kind. A headline that starts
#: with one of these names an operation that real time alone proves wrong; the
#: fallback (UNEXPLAINED) only names where the checker's search stopped.
ANOMALY_HEADLINES = {
    "stale-read": "Stale read",
    "stale-cas": "Stale cas",
    "lost-write": "Lost write",
    "never-written": "Value never written",
}
ANOMALY_PREFIXES = tuple(ANOMALY_HEADLINES.values())
UNEXPLAINED = "Not linearizable"

# The proofs assume a register: a read returns the value exactly, a write or a
# successful cas sets it, a failed operation did nothing. These models are such
# registers (per key); "kv" is one as long as the key sees no append.
_REGISTER_MODELS = frozenset({None, "raft-kv", "register", "cas-register", "etcd", "kv"})
#: Knossos's registers take a read of nil as no constraint: it proves nothing there.
_NIL_READ_IS_NO_CONSTRAINT = frozenset({"register", "cas-register"})
_PLAIN_WRITES = frozenset({"write", "put", "w"})
_INF = math.inf


@dataclass
class Anomaly:
    """An observation real time alone rules out, with the parts of the proof."""

    kind: str  # a key of ANOMALY_HEADLINES
    op: Op  # the read (or successful cas) that observed what it could not have
    value: Any  # what it observed: a read's result, a cas's expected value
    newer: Any = None  # a value that provably replaced ``value`` before ``op`` began
    missed: Op | None = None  # a write of ``newer`` (acknowledged, or in doubt but seen)
    witness: Op | None = None  # what observed ``newer`` before ``op`` began; None:
    #                            ``missed`` was acknowledged before it began
    earlier: Op | None = None  # an op that observed ``value`` before ``newer`` showed up
    source: Op | None = None  # the latest write of ``value`` that could be it; None:
    #                           the initial value, or nothing wrote it at all
    proof: str = ""  # why real time rules the observation out, in a sentence or two


def _observed(op: Op) -> tuple[bool, Any]:
    """(True, value) when ``op`` succeeded and its success shows the register held
    ``value`` right before it: a read's result, a successful cas's expected value."""
    if op.result != "ok" or op.end_position is None:
        return False, None
    if op.is_read:
        return True, op.out
    if op.f == "cas":
        return True, op.value[0]
    return False, None


def _phrase(op: Op, value: Any) -> str:
    """How ``op`` observed ``value``, for a headline: "read k2 → 88", "cas k2 88→90"."""
    key = "" if op.key is None else f" {op.key}"
    if op.is_read:
        return f"read{key} → {fmt_value(value)}"
    if op.f == "cas":
        return f"cas{key} {fmt_value(op.value[0])}→{fmt_value(op.value[1])}"
    return f"{op.f}{key} {fmt_value(value)}"


def _key(key: Any, word: str = "") -> str:
    """" k2", " to k2"...: nothing for a history without keys."""
    return "" if key is None else f"{' ' + word if word else ''} {key}"


class _Prefix:
    """Entries sorted by an end position; for any position, the entry of the highest
    rank among those that ended before it, and the highest whose value differs
    from that one's (two values: a proof needs a value other than the stale one)."""

    def __init__(self, entries: list[tuple[int, float, Any, Op]]) -> None:
        entries.sort(key=lambda e: e[0])
        self.ends = [e[0] for e in entries]
        self.best: list[tuple[tuple[float, Any, Op] | None, tuple[float, Any, Op] | None]] = []
        first = second = None
        for _, rank, value, op in entries:
            if first is None or rank > first[0]:
                if first is not None and value != first[1]:
                    second = first
                first = (rank, value, op)
            elif value != first[1] and (second is None or rank > second[0]):
                second = (rank, value, op)
            self.best.append((first, second))

    def best_before(self, position: int, other_than: Any) -> tuple[float, Any, Op] | None:
        i = bisect.bisect_left(self.ends, position) - 1
        if i < 0:
            return None
        first, second = self.best[i]
        return first if first is not None and first[1] != other_than else second


class _KeyProofs:
    """Everything the proofs of one key need, computed once (sorted lists and
    prefix maxima: each proof is a few binary searches, so a long run is cheap).

    Times are event positions, the order the checker itself uses: op X precedes
    op Y exactly when X's completion comes before Y's invocation in the history.
    """

    def __init__(self, history: History, key: Any, initial: Any, model: str | None) -> None:
        self.ops = [o for o in history.ops if o.key == key]
        self.initial = _value_key(initial)
        self.nil_no_constraint = model in _NIL_READ_IS_NO_CONSTRAINT
        self.usable = model in _REGISTER_MODELS and all(
            o.is_read or o.f in _PLAIN_WRITES or (
                o.f == "cas" and isinstance(o.value, list | tuple) and len(o.value) == 2)
            for o in self.ops)
        if not self.usable:
            return
        self.writers: dict[Any, list[Op]] = {}  # value -> its writes that may have happened
        for op in sorted(self.ops, key=lambda o: o.position):
            if op.is_write and op.result != "fail":
                self.writers.setdefault(_value_key(writes_value(op)), []).append(op)
        self.starts = {v: [w.position for w in ws] for v, ws in self.writers.items()}
        self.latest_end: dict[Any, list[float]] = {}  # prefix max of the writes' last moment
        self.acked_by: dict[Any, list[int]] = {}  # the same as times, for the proofs' text
        for v, ws in self.writers.items():
            running, ends, time, times = -_INF, [], 0, []
            for w in ws:
                running = max(running, self._end(w))
                time = max(time, w.end or 0)
                ends.append(running)
                times.append(time)
            self.latest_end[v], self.acked_by[v] = ends, times
        # the first moment each value was seen: an acknowledged write of it, a read of it,
        # a successful cas from it
        self.first_seen: dict[Any, tuple[int, Op]] = {}
        acked: list[tuple[int, float, Any, Op]] = []  # acknowledged writes
        seen: list[tuple[int, float, Any, Op]] = []  # reads and successful cas
        states: list[tuple[int, float, Any, Op]] = []  # the same, ranked by invocation
        for op in self.ops:
            end = op.end_position
            if end is None or op.result != "ok":
                continue
            if op.is_write:
                v = _value_key(writes_value(op))
                acked.append((end, op.position, v, op))
                self._saw(v, end, op)
            if self.observes(op):
                v = _value_key(_observed(op)[1])
                self._saw(v, end, op)
                _, earliest, _ = self._producers(v, end, op)
                # every write that could have produced what it saw began at or after this
                first = earliest.position if earliest and v != self.initial else -_INF
                seen.append((end, first, v, op))
                states.append((end, op.position, v, op))
        self.acked, self.seen, self.states = _Prefix(acked), _Prefix(seen), _Prefix(states)
        reads = [o for o in self.ops if o.is_read and o.result == "ok" and self.observes(o)]
        last_read = max(reads, key=lambda o: o.position, default=None)
        writes_done = max((-1 if w.end_position is None else w.end_position
                           for w in self.ops if w.is_write), default=-1)
        self.final = last_read if last_read is not None and all(
            w.end_position is not None for w in self.ops if w.is_write
        ) and writes_done < last_read.position else None

    @staticmethod
    def _end(write: Op) -> float:
        """The latest position a write can take effect: its acknowledgement, or never."""
        return write.end_position if write.result == "ok" and write.end_position is not None \
            else _INF

    def _saw(self, value: Any, end: int, op: Op) -> None:
        if value not in self.first_seen or end < self.first_seen[value][0]:
            self.first_seen[value] = (end, op)

    def observes(self, op: Op) -> bool:
        """Whether ``op``'s success constrains the register (Knossos ignores nil reads)."""
        ok, value = _observed(op)
        return ok and not (self.nil_no_constraint and op.is_read and value is None)

    def _producers(self, value: Any, before: int, op: Op) -> tuple[int, Op | None, Op | None]:
        """How many writes of ``value`` were invoked before position ``before`` (other
        than ``op``), the first and the last of them: binary search, no copying."""
        writers = self.writers.get(value, [])
        count = bisect.bisect_left(self.starts.get(value, []), before)
        among = [i for i in (0, 1, count - 2, count - 1) if 0 <= i < count
                 and writers[i] is not op]
        if not among:
            return 0, None, None
        itself = op.is_write and op.result != "fail" and op.position < before and (
            _value_key(writes_value(op)) == value)
        return count - itself, writers[min(among)], writers[max(among)]

    def _bound(self, value: Any) -> tuple[float, Op | None] | None:
        """The position before which the one write of ``value`` took effect, and the op
        that saw it there (None: the initial value, never written); None if unknown."""
        if value == self.initial:
            return (-_INF, None) if not self.writers.get(value) else None
        if self.unique(value) and value in self.first_seen:
            return self.first_seen[value]
        return None

    def unique(self, value: Any) -> bool:
        """Written once (the initial value: never): seeing it pins down its one write."""
        return len(self.writers.get(value, [])) == (0 if value == self.initial else 1)

    def prove(self, op: Op, strong: bool = True) -> Anomaly | None:
        """The anomaly ``op`` (a read or a successful cas) is the face of, if real
        time proves one, with the proof's parts. ``strong``: only proofs where real
        time also says which value is the newer one; else also "it came back"."""
        if not self.usable or not self.observes(op) or (op.f == "cas" and (
                _value_key(op.value[0]) == _value_key(op.value[1]))):
            return None
        _, value = _observed(op)
        v = _value_key(value)
        end, begin = op.end_position, op.position
        assert end is not None
        count, _, source = self._producers(v, end, op)
        if not count and v != self.initial:
            written = self.writers.get(v, [])
            failed = [w for w in self.ops if w.is_write and w.result == "fail"
                      and _value_key(writes_value(w)) == v]
            notes = []
            if written:
                notes.append(f"the first write of it began at {fmt_time(written[0].start)}, "
                             "after this operation had returned")
            if failed:
                notes.append(f"{len(failed)} write{'s' if len(failed) > 1 else ''} of it "
                             f"failed, which means {'they' if len(failed) > 1 else 'it'} "
                             "did not happen")
            return Anomaly("never-written", op, value, proof=(
                f"No write of {fmt_value(value)}{_key(op.key, 'to')} had begun before this "
                f"operation returned" + (f" ({'; '.join(notes)})" if notes else "") + "."))
        if self.unique(v) and v != self.initial:
            seen_end, earlier = self.first_seen[v]
            latest = float(seen_end)  # its one write took effect before anyone saw it
            why_old = (f"{fmt_value(value)} is written only once and had been seen by "
                       f"{fmt_time(earlier.end)} (process {earlier.process}: "
                       f"{_phrase(earlier, value)})")
            writer = self.writers[v][0]
            bound = self._bound(_value_key(writer.value[0])) if writer.f == "cas" else None
            if bound is not None and bound[0] < latest:
                # a cas from X that took effect came right after X's one write: whatever
                # began after X was seen also follows it
                latest, seen_op = bound
                x = fmt_value(writer.value[0])
                why_old = (f"{fmt_value(value)} is written only once, by process "
                           f"{writer.process}'s cas from {x}, so right after {x}, which "
                           + ("is the initial value" if seen_op is None else
                              f"had been seen by {fmt_time(seen_op.end)} (process "
                              f"{seen_op.process}: {_phrase(seen_op, writer.value[0])})"))
        else:
            earlier = None
            latest = self.latest_end[v][count - 1] if count else -_INF
            why_old = (f"{fmt_value(value)} is the initial value" if latest == -_INF else
                       f"every write of {fmt_value(value)} that could be it had been "
                       f"acknowledged by {fmt_time(self.acked_by[v][count - 1])}")
        anomaly = None
        hit = self.acked.best_before(begin, v)
        if hit is not None and hit[0] > latest:
            missed = hit[2]
            anomaly = Anomaly("stale-read", op, value, writes_value(missed), missed=missed,
                              earlier=earlier, source=source, proof=(
                f"{why_old}; the write of {fmt_value(writes_value(missed))} began after "
                f"that ({fmt_time(missed.start)}) and was acknowledged at "
                f"{fmt_time(missed.end)}, before this operation began."))
        if anomaly is None:
            hit = self.seen.best_before(begin, v)
            if hit is not None and hit[0] > latest:
                witness = hit[2]
                newer = _observed(witness)[1]
                _, first, last = self._producers(hit[1], witness.end_position or 0, witness)
                assert first is not None and last is not None
                anomaly = Anomaly("stale-read", op, value, newer, missed=last,
                                  witness=witness, earlier=earlier, source=source, proof=(
                    f"{why_old}; every write of {fmt_value(newer)} that could have "
                    f"produced what process {witness.process} saw began after that "
                    f"(the first at {fmt_time(first.start)}), and process "
                    f"{witness.process} saw {fmt_value(newer)} at {fmt_time(witness.end)}, "
                    "before this operation began."))
        if anomaly is None and not strong and earlier is not None:
            # A seen, then B seen by an op begun after that, then A again: A is
            # written once, so no order has it back. Which of the last two is stale
            # real time does not say (the strong proofs, tried first on every op,
            # would have caught the read of B); the later one is blamed.
            hit = self.states.best_before(begin, v)
            seen_end = self.first_seen[v][0]
            if hit is not None and hit[0] > seen_end:
                witness = hit[2]
                newer = _observed(witness)[1]
                _, _, last = self._producers(hit[1], witness.end_position or 0, witness)
                if last is not None:  # what nothing wrote is an anomaly of its own
                    anomaly = Anomaly("stale-read", op, value, newer, missed=last,
                                      witness=witness, earlier=earlier, source=source, proof=(
                        f"{fmt_value(value)} is written only once and had been seen by "
                        f"{fmt_time(earlier.end)} (process {earlier.process}: "
                        f"{_phrase(earlier, value)}); process {witness.process}'s "
                        f"{_phrase(witness, newer)} began after that "
                        f"({fmt_time(witness.start)}) and returned before this operation "
                        f"began, so {fmt_value(newer)} had replaced {fmt_value(value)}, "
                        f"which nothing wrote again. (Real time alone does not order the "
                        f"writes of {fmt_value(value)} and {fmt_value(newer)}: if "
                        f"{fmt_value(newer)} was the older one, that read of it was the "
                        f"stale one; either way no order explains both.)"))
        if anomaly is not None:
            if op.f == "cas":
                anomaly.kind = "stale-cas"
            elif op is self.final:
                anomaly.kind = "lost-write"
        return anomaly


def _end_time(op: Op | None) -> int | None:
    return None if op is None else op.end


def find_anomaly(history: History, key: Any, near: int | None = None,
                 initial: Any = None, model: str | None = None,
                 first: Op | None = None) -> Anomaly | None:
    """The proven anomaly on ``key`` nearest to position ``near`` (``first`` is tried
    before all others: the checker's culprit).

    What real time alone proves, for a register (reads return the value, writes
    and successful cas set it, a failed op did nothing, an op of unknown outcome
    took effect at some point after its invocation, or never):

    - a value is *seen* when an op that returned observed it: an acknowledged
      write of it, a read of it, a successful cas from it; the initial value is
      seen before everything. A value written once took effect before it was
      first seen, so that moment bounds its write even when the write's own
      outcome is unknown; a value written more than once is bounded only when
      every write of it that could be the one was acknowledged;
    - value A is *older* than B when A's write was bounded before every write of
      B (that could have produced the observation of B) began;
    - an op that observed A after B had been seen (before it began) is then
      stale: a stale read, a stale cas, or, for the read that began after every
      write of the key had completed (the harness's final read), a lost write.
      This holds whether B's write was acknowledged or still in doubt but seen;
    - an op that observed a value no write begun before it returned wrote (and
      not the initial value) saw a value never written.

    A value written by a cas from X that took effect was written right after
    X's one write, so X's bound serves it too (a cas from 1 to 2 that succeeded
    puts 2 before a write of 3 begun after 1 was seen, though the writes of 2
    and 3 overlap).

    These proofs also say by real time which value is the newer one, so they
    blame the right op; they are tried on every op first. Failing them: A
    (written once) seen, then B seen by an op begun after that, then A again by
    an op begun after that. That is not linearizable either, but real time does
    not say whether the read of B or the second read of A is the stale one; the
    later one is blamed and the proof says so.

    A history with no final read gets no lost-write headline; such a loss shows
    as the first stale read after it.
    """
    proofs = _KeyProofs(history, key, initial, model)
    if not proofs.usable:
        return None
    candidates = sorted((o for o in proofs.ops if proofs.observes(o)),
                        key=lambda o: (o is not first, near is not None and o.position > near,
                                       abs(o.position - (near or 0))))
    for strong in (True, False):
        for op in candidates:
            found = proofs.prove(op, strong)
            if found is not None:
                return found
    return None


def explain_lin_failure(history: History, ev: LinEvidence) -> Focus:
    """The first screen's story of a linearizability failure.

    A proven anomaly (see ``find_anomaly``) on the failing key is the story,
    the checker's culprit first; its headline names the op, the newer value,
    who saw it and when. Otherwise the headline names the checker's culprit
    and says it is only where the search stopped.
    """
    culprit = ev.failed
    key = culprit.key if culprit is not None else ev.key
    near = culprit.position if culprit is not None else None
    initial = _initial_value(ev.model, key, ev.initial)
    anomaly = find_anomaly(history, key, near, initial, ev.model, first=culprit)
    if anomaly is None and culprit is None:
        return Focus(checker="linearizable",
                     headline="Linearizability violated (the evidence names no operation).")
    details: list[str] = []
    if anomaly is not None:
        op = anomaly.op
        headline = _anomaly_headline(anomaly)
        if culprit is not None and culprit is not op:
            details.append(
                f"The checker's search stopped at {culprit.describe()} "
                f"({fmt_time(culprit.start)}), which cannot be placed after the longest "
                f"linearizable prefix; the operation above is an anomaly on the same key "
                f"that real time alone proves.")
    else:
        assert culprit is not None
        op = culprit
        node = f" on {op.node}" if op.node is not None else ""
        headline = (f"{UNEXPLAINED}: the checker's search stopped at {op.describe()}{node} "
                    f"({fmt_time(op.start)}), which no order of the operations"
                    f"{_key(key, 'on')} explains; that is where the search stopped, not "
                    f"necessarily the faulty operation.")
    end = op.end if op.end is not None else history.end
    faults = [f for f in history.faults if f.overlaps(op.start, end)]
    if faults:
        headline += f" While {faults[0].label} was active."
    if ev.final_state is not None or ev.prefix:
        details.append(
            f"After the longest linearizable prefix ({len(ev.prefix)} operations on key "
            f"{fmt_value(ev.key)}), the model state is {fmt_value(ev.final_state)}; "
            f"no order of the remaining concurrent operations lets "
            f"{'the checker' + chr(39) + 's culprit' if op is not culprit else 'this one'} "
            f"return what it did."
        )
    if ev.message:
        details.append(str(ev.message))
    parts = [] if anomaly is None else [anomaly.missed, anomaly.source, anomaly.witness]
    shown = [o for o in parts if o is not None]
    lo = min([op.start] + [o.start for o in shown])
    hi = max([end] + [o.end or o.start for o in shown])
    pad = max((hi - lo) // 4, 50_000_000)
    return Focus(
        checker="linearizable", headline=headline, failed=op, kind=anomaly and anomaly.kind,
        missed=anomaly and anomaly.missed, source=anomaly and anomaly.source,
        witness=anomaly and anomaly.witness, faults=faults, window=(lo - pad, hi + pad),
        details=details, proof=anomaly.proof if anomaly else "")


def _initial_value(model_name: str | None, key: Any, described: Any) -> Any:
    """The register's initial value from the checker's description of the initial
    state: the model's own default when it describes it so (etcd says "absent"
    for None), else the description itself (a value given with ``--init``)."""
    from checker.models import ModelError, get_model, thaw

    try:
        spec = get_model(model_name or "raft-kv", None)
        default = spec.init(key)
    except ModelError:
        return described
    return thaw(default) if spec.describe(default) == described else described


def _anomaly_headline(a: Anomaly) -> str:
    """One sentence: the op, what it saw, the newer value, who saw that and when."""
    op = a.op
    node = f" on {op.node}" if op.node is not None else ""
    span = f"({fmt_time(op.start)}–{fmt_time(op.end)})"
    prefix = ANOMALY_HEADLINES[a.kind]
    if a.kind == "never-written":
        if op.is_read:
            return (f"{prefix}: process {op.process} read{_key(op.key)} → {fmt_value(a.value)}"
                    f"{node} {span}, but no write of {fmt_value(a.value)}{_key(op.key, 'to')} had "
                    f"begun before the read ended.")
        return (f"{prefix}: process {op.process}'s {_phrase(op, a.value)} succeeded{node} "
                f"{span}, but no write of {fmt_value(a.value)}{_key(op.key, 'to')} had begun "
                f"before it ended.")
    missed, witness = a.missed, a.witness
    assert missed is not None
    where = "" if witness is None or witness.node is None else f" on {witness.node}"
    if witness is None:
        newer = (f"process {missed.process}'s {missed.f} of {fmt_value(a.newer)} had been "
                 f"acknowledged at {fmt_time(missed.end)}")
        writer = ""
    else:
        if witness.is_read:
            newer = (f"process {witness.process} had already read the newer value "
                     f"{fmt_value(a.newer)}{where} at {fmt_time(witness.end)}")
        else:
            newer = (f"process {witness.process}'s {_phrase(witness, a.newer)} had already "
                     f"found the newer value {fmt_value(a.newer)}{where} at "
                     f"{fmt_time(witness.end)}")
        status = (f"acknowledged at {fmt_time(missed.end)}" if missed.result == "ok"
                  else "its outcome unknown" if missed.result == "info"
                  else "it never returned")
        writer = f" ({fmt_value(a.newer)} was written by process {missed.process}, {status})"
    if a.kind == "lost-write":
        lost = (f"process {missed.process}'s {missed.f} of {fmt_value(a.newer)} was "
                f"acknowledged at {fmt_time(missed.end)}" if witness is None else
                f"process {witness.process} had seen {fmt_value(a.newer)} "
                f"({_phrase(witness, a.newer)}{where}) at {fmt_time(witness.end)}{writer}")
        return (f"{prefix}: {lost}, but the final read{_key(op.key, 'of')} (process {op.process}"
                f"{node}, {fmt_time(op.start)}–{fmt_time(op.end)}) returned the older value "
                f"{fmt_value(a.value)}.")
    if a.kind == "stale-cas":
        return (f"{prefix}: process {op.process}'s {_phrase(op, a.value)} succeeded{node} "
                f"{span}, but {fmt_value(a.value)} had already been overwritten: {newer}, "
                f"before the cas began{writer}.")
    return (f"{prefix}: process {op.process} read{_key(op.key)} → {fmt_value(a.value)}{node} "
            f"{span}, but {newer}, before this read began{writer}.")


# ---------------------------------------------------------------- log divergence


@dataclass
class LogView:
    """Node logs side by side around the first index where they disagree."""

    nodes: list[str]
    indices: list[int]
    cells: dict[str, dict[int, dict[str, Any]]]  # node -> index -> entry
    commits: dict[str, int]
    diverging_index: int | None
    differing: set[tuple[str, int]]  # (node, index) cells that disagree with the majority
    time: int | None


def _entry_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return (entry.get("term"), entry.get("digest"), entry.get("client"), entry.get("seq"))


def latest_logs(observations: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last full log each node reported (merging `from`-partial dumps onto it)."""
    logs: dict[str, dict[str, Any]] = {}
    for row in observations:
        if row.get("kind") != "log" or "node" not in row:
            continue
        node = str(row["node"])
        entries = {int(e["index"]): dict(e) for e in row.get("entries") or [] if "index" in e}
        previous = logs.get(node)
        if row.get("from") is not None and previous is not None:
            kept = {i: e for i, e in previous["entries"].items() if i < int(row["from"])}
            entries = {**kept, **entries}
        logs[node] = {"entries": entries, "commit": int(row.get("commit") or 0),
                      "time": row.get("time")}
    return logs


def log_view(observations: Sequence[Mapping[str, Any]], focus_index: int | None = None,
             radius: int = 5) -> LogView | None:
    logs = latest_logs(observations)
    if len(logs) < 2:
        return None
    nodes = sorted(logs)
    all_indices = sorted({i for log in logs.values() for i in log["entries"]})
    differing: set[tuple[str, int]] = set()
    diverging = None
    for index in all_indices:
        present = {n: logs[n]["entries"][index] for n in nodes if index in logs[n]["entries"]}
        if len(present) < 2:
            continue
        counts: dict[tuple[Any, ...], int] = {}
        for entry in present.values():
            counts[_entry_key(entry)] = counts.get(_entry_key(entry), 0) + 1
        if len(counts) > 1:
            majority = max(counts, key=lambda k: counts[k])
            for node, entry in present.items():
                if _entry_key(entry) != majority:
                    differing.add((node, index))
            if diverging is None:
                diverging = index
    centre = focus_index if focus_index is not None else diverging
    if centre is None:
        centre = max(all_indices) if all_indices else 0
    window = [i for i in all_indices if centre - radius <= i <= centre + radius]
    times = [log["time"] for log in logs.values() if isinstance(log.get("time"), int)]
    return LogView(
        nodes=nodes, indices=window,
        cells={n: {i: logs[n]["entries"][i] for i in window if i in logs[n]["entries"]}
               for n in nodes},
        commits={n: logs[n]["commit"] for n in nodes}, diverging_index=diverging,
        differing={c for c in differing if c[1] in window},
        time=max(times) if times else None,
    )


# ---------------------------------------------------------------- series for plots


def downsample(points: Sequence[tuple[float, float]], buckets: int) -> list[tuple[float, float]]:
    """Keep at most ~2 points per time bucket: the lowest and the highest.

    Latency plots are read for their outliers, so min/max per bucket keeps the
    shape a person looks for while bounding the page size.
    """
    if len(points) <= 2 * buckets:
        return list(points)
    lo = min(p[0] for p in points)
    hi = max(p[0] for p in points)
    width = (hi - lo) / buckets or 1.0
    best: dict[int, list[tuple[float, float]]] = {}
    for point in points:
        slot = min(int((point[0] - lo) / width), buckets - 1)
        pair = best.get(slot)
        if pair is None:
            best[slot] = [point, point]
        else:
            if point[1] < pair[0][1]:
                pair[0] = point
            if point[1] > pair[1][1]:
                pair[1] = point
    kept: list[tuple[float, float]] = []
    for slot in sorted(best):
        low, high = best[slot]
        kept.extend(sorted({low, high}))
    return kept


def latency_series(history: History, buckets: int = 600) -> list[dict[str, Any]]:
    """Latency (ms) against invocation time (s), one series per (f, result)."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for op in history.ops:
        if op.end is None:
            continue
        groups.setdefault((op.f, op.result), []).append(
            (op.start / NS_PER_S, max((op.end - op.start) / 1e6, 0.001))
        )
    series = []
    for (f, result), points in sorted(groups.items()):
        kept = downsample(sorted(points), buckets)
        series.append({
            "f": f, "result": result, "count": len(points),
            "t": [round(p[0], 4) for p in kept], "ms": [round(p[1], 3) for p in kept],
        })
    return series


def throughput_series(history: History, max_buckets: int = 300) -> dict[str, Any]:
    """Completed ops per second in time buckets, by result."""
    span = max(history.end, 1)
    width = max(span / max_buckets, 100_000_000)
    count = int(span // width) + 1
    rates = {r: [0.0] * count for r in ("ok", "fail", "info")}
    for op in history.ops:
        if op.end is None or op.result not in rates:
            continue
        rates[op.result][min(int(op.end // width), count - 1)] += 1
    scale = NS_PER_S / width
    return {
        "bucket_s": round(width / NS_PER_S, 4),
        "series": {r: [round(v * scale, 2) for v in vals] for r, vals in rates.items()},
    }


def timeline_data(history: History, lanes: Sequence[Any]) -> dict[str, Any]:
    """The ops as compact columns for the timeline canvas (times in µs, sorted by start)."""
    lane_of = {p: i for i, p in enumerate(lanes)}
    fs: list[str] = []
    keys: list[Any] = []
    nodes: list[Any] = []
    errors: list[Any] = []
    tables: dict[int, dict[Any, int]] = {}

    def code(table: list[Any], value: Any) -> int:
        lookup = tables.setdefault(id(table), {})
        # plain scalars are their own dict key (1 and True and "1" kept apart by type)
        marker = (type(value), value) if isinstance(value, str | int | float | None) else (
            json.dumps(value, sort_keys=True, default=str))
        if marker not in lookup:
            lookup[marker] = len(table)
            table.append(value)
        return lookup[marker]

    cols: dict[str, list[Any]] = {k: [] for k in
                                  ("id", "p", "l", "f", "k", "n", "e", "r", "t0", "d", "v", "o")}
    previous = 0
    for op in sorted(history.ops, key=lambda o: o.start):
        start_us = op.start // 1000
        cols["id"].append(op.id)
        cols["p"].append(op.process)
        cols["l"].append(lane_of.get(lane_key(op), 0))
        cols["f"].append(code(fs, op.f))
        cols["k"].append(code(keys, op.key))
        cols["n"].append(code(nodes, op.node))
        cols["e"].append(code(errors, op.error))
        cols["r"].append(RESULT_CODES[op.result])
        cols["t0"].append(start_us - previous)  # delta-encoded: small numbers, small page
        previous = start_us
        cols["d"].append(-1 if op.end is None else (op.end - op.start) // 1000)
        cols["v"].append(op.value)
        cols["o"].append(op.out if op.out != op.value else None)
    folded = any(lane_key(op) != op.process for op in history.ops)
    return {"fs": fs, "keys": keys, "nodes": nodes, "errors": errors,
            "lanes": [str(p) for p in lanes], "lane_word": "lane" if folded else "p",
            "ops": cols}


def _pack_processes(history: History) -> None:
    span: dict[Any, list[int]] = {}
    for op in history.ops:
        end = op.end if op.end is not None else history.end
        if op.process in span:
            span[op.process][1] = max(span[op.process][1], end)
        else:
            span[op.process] = [op.start, end]
    lane_free_at: list[int] = []  # per lane: when its last process ended
    lane_of: dict[Any, int] = {}
    for process, (start, end) in sorted(span.items(), key=lambda item: item[1][0]):
        lane = next((i for i, free in enumerate(lane_free_at) if free < start), None)
        if lane is None:
            lane = len(lane_free_at)
            lane_free_at.append(end)
        else:
            lane_free_at[lane] = end
        lane_of[process] = lane
    for op in history.ops:
        op.extra["lane"] = lane_of[op.process]


def lane_key(op: Op) -> Any:
    return op.extra.get("lane", op.process)


MAX_PROCESS_LANES = 40


def assign_lanes(history: History, concurrency: int | None) -> list[Any]:
    """One lane per client thread when the run's concurrency is known, else per process.

    Jepsen retires a process after an indeterminate op and gives its thread a
    new number (p + concurrency); folding them back keeps a 60 s run at a few
    lanes instead of hundreds, and ops of one thread never overlap. A bare
    history with many processes gets its processes packed into as few lanes
    as never overlap (greedy interval colouring: as many lanes as processes
    were ever alive at once).
    """
    processes = {op.process for op in history.ops}
    if not concurrency and len(processes) > MAX_PROCESS_LANES:
        _pack_processes(history)
        return sorted({lane_key(op) for op in history.ops})
    for op in history.ops:
        if concurrency and isinstance(op.process, int) and not isinstance(op.process, bool):
            op.extra["lane"] = op.process % concurrency
        else:
            op.extra["lane"] = op.process
    distinct = {lane_key(op) for op in history.ops}
    return sorted(distinct, key=lambda p: (not isinstance(p, int), str(p) if
                                           not isinstance(p, int) else p))
