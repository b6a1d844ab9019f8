"""Turn a run's raw files into the facts a report shows.

Everything here is plain data preparation, no HTML: pairing invocations with
completions, nemesis events into fault intervals, the checkers' evidence into
"which operation failed, which write did it miss, which fault was active", and
long series into a few thousand points a browser can draw quickly. Keeping it
apart from the templates lets the tests check the facts, not the markup.
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

from checker.errors import InputError

NS_PER_S = 1_000_000_000
RESULT_CODES = {"ok": 0, "fail": 1, "info": 2, "pending": 3}
WRITE_FS = frozenset({"write", "put", "cas", "append", "w"})
READ_FS = frozenset({"read", "get", "r"})

# A fault kind starts with one of these ``f`` names and ends with the matching stop name.
# ``heal``-like names close every open fault of the kinds they list.
_FAULT_STARTS = {
    "start-partition": "partition",
    "partition": "partition",
    "kill": "kill",
    "crash": "kill",
    "lose-unfsynced": "kill",
    "pause": "pause",
    "start-pause": "pause",
    "clock": "clock",
    "start-clock": "clock",
    "strobe-clock": "clock",
    "start-clock-strobe": "clock",
    "bump-clock": "clock",
}
_FAULT_STOPS = {
    "stop-partition": ("partition",),
    "heal": ("partition",),
    "heal-partition": ("partition",),
    "start": ("kill",),
    "restart": ("kill",),
    "resume": ("pause",),
    "stop-pause": ("pause",),
    "stop-clock": ("clock",),
    "reset-clock": ("clock",),
    "clock-reset": ("clock",),
    "reset": ("partition", "loss", "delay", "duplicate", "reorder", "clock"),
    "reset-faults": ("loss", "delay", "duplicate", "reorder"),
    "heal-all": ("partition", "loss", "delay", "duplicate", "reorder", "clock", "pause"),
}
_LINK_FAULTS = ("loss", "delay", "duplicate", "reorder")


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


def read_jsonl(path: Path, limit_bytes: int | None = None) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a torn last line (crashed writer) is dropped, not fatal."""
    rows: list[dict[str, Any]] = []
    # decode once: json.loads on str skips the per-line encoding sniffing bytes need
    with path.open("rb") as fh:
        data = fh.read(limit_bytes) if limit_bytes else fh.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break  # the writer died mid-line: keep everything before it
            raise InputError(path, number, f"not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise InputError(path, number, "expected a JSON object")
        rows.append(row)
    return rows


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
            op.out = event.get("value")
            op.error = event.get("error")
            if event.get("node") is not None:
                op.node = event.get("node")
    return History(ops=ops, nemesis=nemesis, faults=fault_intervals(nemesis, last_time),
                   end=last_time, timed=timed)


def _fault_kind(f: str) -> str | None:
    if f in _FAULT_STARTS:
        return _FAULT_STARTS[f]
    base = f.removeprefix("start-")
    if base in _LINK_FAULTS:
        return base
    return None


def _stopped_kinds(f: str) -> tuple[str, ...]:
    if f in _FAULT_STOPS:
        return _FAULT_STOPS[f]
    if f.startswith("stop-") and f.removeprefix("stop-") in _LINK_FAULTS:
        return (f.removeprefix("stop-"),)
    return ()


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
    witness: Op | None = None  # a read that had already seen the newer value
    faults: list[Fault] = field(default_factory=list)
    window: tuple[int, int] = (0, 0)
    details: list[str] = field(default_factory=list)
    fault_title: str = "Fault active at that moment"


def writes_value(op: Op) -> Any:
    """The value a write-like op leaves in the register (``cas`` leaves its new value)."""
    if op.f == "cas" and isinstance(op.value, list | tuple) and len(op.value) == 2:
        return op.value[1]
    return op.value


def _value_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class StaleRead:
    """A read that provably returned an overwritten value, with the proof's parts."""

    read: Op
    missed: Op  # the write of a newer value that real time orders before the read
    source: Op | None  # the (latest) write of the value the read returned; None: initial
    witness: Op | None = None  # a read that had already returned the newer value


def find_stale_read(history: History, key: Any, near: int, limit: int = 300,
                    only: Op | None = None) -> StaleRead | None:
    """A read that provably returned an overwritten value, nearest to ``near``.

    The certificate: every write that could have produced the value read (ok
    or unknown) had finished before a newer write W began, and before the read
    began W was acknowledged, or another read had already returned W's value.
    Real time then orders the old value before W before the read. The
    checker's culprit need not be that read (it names the op whose return
    blocked its deepest search), so the reads around it are examined, earlier
    ones first.
    """
    writes = [o for o in history.ops if o.key == key and o.is_write and o.result in ("ok", "info")]
    by_value: dict[str, list[Op]] = {}
    for write in writes:
        by_value.setdefault(_value_key(writes_value(write)), []).append(write)
    first_start = {value: min(w.start for w in ws) for value, ws in by_value.items()}
    acked = sorted((w for w in writes if w.result == "ok" and w.end is not None),
                   key=lambda w: w.end or 0)
    acked_ends = [w.end or 0 for w in acked]
    ok_reads = sorted((o for o in history.ops if o.key == key and o.is_read
                       and o.result == "ok" and o.end is not None), key=lambda o: o.end or 0)
    read_ends = [o.end or 0 for o in ok_reads]
    # for each prefix of reads (by end): the read whose value's first write began latest,
    # among values some write had begun before that read returned. A read ending before R
    # that saw a value first written after R's value was done proves R stale.
    newest: list[tuple[int, Op | None]] = []
    best: tuple[int, Op | None] = (-1, None)
    for other in ok_reads:
        began = first_start.get(_value_key(other.out))
        if began is not None and began < (other.end or 0) and began > best[0]:
            best = (began, other)
        newest.append(best)
    candidates = [only] if only is not None else sorted(
        ok_reads, key=lambda o: (o.start > near, abs(o.start - near)))[:limit]

    for read in candidates:
        read_end = read.end if read.end is not None else history.end
        value = _value_key(read.out)
        sources = [w for w in by_value.get(value, []) if w.start < read_end]
        if not sources and read.out is not None:
            continue  # a value nobody wrote: another anomaly, not staleness
        if any(w.result == "info" or w.end is None for w in sources):
            continue  # an unknown write may take effect late: no certain order
        old_done = max((w.end or history.end for w in sources), default=-1)
        source = max(sources, key=lambda w: w.start) if sources else None
        # the latest acknowledged newer write: the one most obviously missed
        for i in range(bisect.bisect_left(acked_ends, read.start) - 1, -1, -1):
            write = acked[i]
            if acked_ends[i] <= old_done:
                break  # it began before the old value was done: no certain order
            if write.start > old_done and writes_value(write) != read.out:
                return StaleRead(read, write, source)
        before = bisect.bisect_left(read_ends, read.start)
        if before:
            began, witness = newest[before - 1]
            if witness is not None and began > old_done and witness.out != read.out:
                newer = [w for w in by_value[_value_key(witness.out)] if w.start < (
                    witness.end or 0)]
                return StaleRead(read, max(newer, key=lambda w: w.start), source, witness)
    return None


def explain_lin_failure(history: History, ev: LinEvidence) -> Focus:
    """Name the failing op, the write it missed, and the faults active meanwhile.

    When the checker's culprit is a read that provably missed a write, that is
    the story. Otherwise (the checker blocked on some op's return) the nearest
    provably stale read on the same key is the story, and the culprit is
    named in the details.
    """
    culprit = ev.failed
    if culprit is None:
        return Focus(checker="linearizable",
                     headline="Linearizability violated (the evidence names no operation).")
    stale = None
    if culprit.is_read and culprit.result == "ok":
        stale = find_stale_read(history, culprit.key, culprit.start, only=culprit)
    if stale is None:
        stale = find_stale_read(history, culprit.key, culprit.start)
    details = []
    witness = None
    if stale is not None:
        op, missed, source, witness = stale.read, stale.missed, stale.source, stale.witness
        if op is not culprit:
            details.append(
                f"The checker's search stopped at {culprit.describe()} "
                f"({fmt_time(culprit.start)}), which cannot be placed after the longest "
                f"linearizable prefix; the read above is a stale read on the same key that "
                f"real time alone proves.")
    else:
        op, source = culprit, None
        changing = [s.op for s in ev.prefix if s.op.is_write and s.op is not op]
        missed = changing[-1] if changing else None
    end = op.end if op.end is not None else history.end
    faults = [f for f in history.faults if f.overlaps(op.start, end)]
    during = f" While {faults[0].label} was active." if faults else ""
    node = f" on {op.node}" if op.node is not None else ""
    read_part = (f"Stale read: process {op.process} read {op.key} → {fmt_value(op.out)}{node} "
                 f"({fmt_time(op.start)}–{fmt_time(op.end)}), but ")
    if stale is not None and witness is None:
        headline = (
            f"{read_part}process {missed.process}'s {missed.f} of "
            f"{fmt_value(writes_value(missed))} had been acknowledged at "
            f"{fmt_time(missed.end)}, before the read began.{during}")
    elif stale is not None:
        headline = (
            f"{read_part}process {witness.process} had already read the newer value "
            f"{fmt_value(witness.out)} (written by process {missed.process}) at "
            f"{fmt_time(witness.end)}, before this read began.{during}")
    else:
        headline = f"Cannot linearize {op.describe()}{node} at {fmt_time(op.start)}.{during}"
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
    shown = [o for o in (missed, source, witness) if o is not None]
    lo = min([op.start] + [o.start for o in shown])
    hi = max([end] + [o.end or o.start for o in shown])
    pad = max((hi - lo) // 4, 50_000_000)
    return Focus(checker="linearizable", headline=headline, failed=op, missed=missed,
                 source=source, witness=witness, faults=faults, window=(lo - pad, hi + pad),
                 details=details)


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
