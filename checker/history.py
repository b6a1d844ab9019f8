"""Operation histories: types, readers for every supported format, writers.

A history is what clients observed, in real-time order. Each client operation
is an *invocation* followed (maybe) by a *completion* of the same process:

- ``ok``   it happened, and the completion carries what it returned;
- ``fail`` it certainly did not happen (for Porcupine's etcd logs a failed
  ``cas`` is an observation too: the compare did not match — the model decides);
- ``info`` the outcome is unknown: it may take effect at any point after the
  invocation, or never. An invocation that never completes is the same.

Formats (``load_history(path, format="auto")``):

- ``jsonl``: splitbrain's own, one JSON object a line (docs/DESIGN.md, "History"),
  written by :class:`HistoryWriter`, which flushes every event so a crashed run
  keeps everything up to the crash;
- ``edn``: Jepsen histories, either one map a line or one vector of maps,
  parsed with the ``edn-format`` package (a strict fast path handles the plain
  flat maps Jepsen writes one a line, and anything else goes to the library);
- ``porcupine-kv``: Porcupine's key/value logs, which are EDN maps one a line;
- ``porcupine-etcd``: the Jepsen etcd logs of Porcupine's test data
  (``INFO  jepsen.util - <process> <type> <f> <value>``).

Real-time order is the order of events in the file (that is how every
supported format is written), so two operations are concurrent exactly when
each is invoked before the other completes. Nemesis events are not operations:
they are kept in :attr:`History.nemesis` for reports.

:func:`write_edn` writes a history as Jepsen EDN, one map a line, so it can be
handed to Knossos or Elle.

Size: the one history model (``Op``, ``History``) and its readers, which share the
pairing (``_Pairer``) and the path:line errors. Issue 17 item 2 (one model for the
checkers, the log-order reader and the reports) grows the model here; the EDN and
Porcupine readers are the part to move out next.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import edn_format

from checker.errors import InputError

FORMATS = ("auto", "jsonl", "edn", "porcupine-kv", "porcupine-etcd")
EVENT_TYPES = ("invoke", "ok", "fail", "info")
COMPLETION_TYPES = ("ok", "fail", "info")
NEMESIS = "nemesis"

# Event fields that have a meaning of their own; anything else an event carries
# (node, client, seq, error, ...) is kept in Op.invoke_extra / Op.complete_extra.
_CORE_FIELDS = frozenset(("index", "time", "process", "type", "f", "key", "value"))


@dataclass(slots=True)
class Op:
    """One client operation: its invocation paired with its completion (if any).

    ``call`` and ``complete`` are positions in the history's event sequence
    (real-time order); ``complete`` is None when the operation never completed.
    ``value`` is what the invocation carried (the value to write, ``[expected,
    new]`` for a cas), ``output`` what the completion carried (the value read).
    """

    id: int
    process: Any
    f: str
    key: Any
    value: Any
    type: str  # "ok" | "fail" | "info" (never completed counts as "info")
    output: Any
    call: int
    complete: int | None
    call_time: int | None = None
    complete_time: int | None = None
    invoke_extra: dict[str, Any] = field(default_factory=dict)
    complete_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unknown(self) -> bool:
        """True when the outcome is unknown (``info`` or never completed)."""
        return self.type == "info"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description, for results and reports."""
        out: dict[str, Any] = {
            "id": self.id,
            "process": self.process,
            "f": self.f,
            "type": self.type,
            "value": self.value,
            "output": self.output,
            "invoke": self.call,
            "complete": self.complete,
        }
        if self.key is not None:
            out["key"] = self.key
        if self.call_time is not None:
            out["invoke_time"] = self.call_time
        if self.complete_time is not None:
            out["complete_time"] = self.complete_time
        for name in ("node", "client", "seq"):
            if name in self.invoke_extra:
                out[name] = self.invoke_extra[name]
        if "error" in self.complete_extra:
            out["error"] = self.complete_extra["error"]
        return out


@dataclass
class History:
    """Paired client operations (in invocation order) plus the non-operation events."""

    ops: list[Op]
    nemesis: list[dict[str, Any]] = field(default_factory=list)
    format: str = "jsonl"
    source: str | None = None
    #: the model a history of this format is normally checked with
    default_model: str = "raft-kv"
    #: what the reader had to say about the input (a torn last line), for the user
    notes: list[str] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        """The history as normalized events in real-time order (for writers and reports)."""
        positioned: list[tuple[int, dict[str, Any]]] = []
        for op in self.ops:
            invoke = {"process": op.process, "type": "invoke", "f": op.f}
            if op.key is not None:
                invoke["key"] = op.key
            invoke["value"] = op.value
            if op.call_time is not None:
                invoke["time"] = op.call_time
            invoke.update(op.invoke_extra)
            positioned.append((op.call, invoke))
            if op.complete is not None:
                done = {"process": op.process, "type": op.type, "f": op.f}
                if op.key is not None:
                    done["key"] = op.key
                done["value"] = op.output
                if op.complete_time is not None:
                    done["time"] = op.complete_time
                done.update(op.complete_extra)
                positioned.append((op.complete, done))
        positioned.extend((int(event.get("_position", 0)), event) for event in self.nemesis)
        positioned.sort(key=lambda item: item[0])
        out = []
        for index, (_, event) in enumerate(positioned):
            clean = {k: v for k, v in event.items() if k != "_position"}
            clean["index"] = index
            out.append(clean)
        return out


_MICRO_OPS = frozenset({"append", "r", "w", "read", "write"})


def _looks_like_txn(value: Any) -> bool:
    """A non-empty list of ``[f, key, value]`` micro-ops (``[:append 1 2]``, ``[:r 1 nil]``)."""
    return (isinstance(value, list | tuple) and len(value) > 0
            and all(isinstance(m, list | tuple) and len(m) == 3 and m[0] in _MICRO_OPS
                    for m in value))


class _Pairer:
    """Pairs invocations with completions the Jepsen way.

    Each process runs one operation at a time: a completion closes the pending
    invocation of its process. An invocation while one is pending means the
    earlier one never returned (a crashed client): it stays of unknown outcome.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.ops: list[Op] = []
        self.nemesis: list[dict[str, Any]] = []
        self.pending: dict[Any, Op] = {}
        self.position = 0

    def add(self, event: dict[str, Any], line: int | None) -> None:
        position = self.position
        self.position += 1
        process = event.get("process")
        etype = event.get("type")
        if etype not in EVENT_TYPES:
            raise InputError(
                self.path, line, f"event type must be one of {', '.join(EVENT_TYPES)}, "
                f"got {etype!r}")
        if process is None and etype == "invoke" and None in self.pending:
            # Elle's own example histories name no process (only their values
            # matter to it); they are sequential, so each completion closes the one
            # open invocation. Overlapping ones could not be paired.
            raise InputError(self.path, line, "event has no process, and another operation "
                                              "without one is still open: give each event "
                                              "a process")
        try:
            hash(process)  # pending invocations are looked up by process
        except TypeError:
            raise InputError(self.path, line, f"process must be a number or a name, got "
                                              f"{type(process).__name__} {process!r}") from None
        if process == NEMESIS or (etype == "info" and process not in self.pending):
            # Nemesis events and notes are not client operations.
            note = dict(event)
            note["_position"] = position
            self.nemesis.append(note)
            return
        f = event.get("f")
        if f is None and _looks_like_txn(event.get("value")):
            f = "txn"  # Elle's histories often leave :f out: the micro-ops say it
        if not isinstance(f, str) or not f:
            raise InputError(self.path, line, "operation has no function name (field f)")
        extra = {k: v for k, v in event.items() if k not in _CORE_FIELDS}
        if etype == "invoke":
            previous = self.pending.pop(process, None)
            if previous is not None:
                previous.type = "info"  # never returned: unknown outcome
            op = Op(
                id=len(self.ops), process=process, f=f, key=event.get("key"),
                value=event.get("value"), type="info", output=None, call=position,
                complete=None, call_time=_int_or_none(event.get("time")), invoke_extra=extra,
            )
            self.ops.append(op)
            self.pending[process] = op
            return
        op = self.pending.pop(process, None)
        if op is None:
            raise InputError(
                self.path, line,
                f"{etype} completion of process {process!r} without a pending invocation")
        if f != op.f:
            raise InputError(
                self.path, line,
                f"completion f {f!r} does not match the invocation's f {op.f!r} "
                f"(process {process!r})")
        op.type = etype
        op.output = event.get("value")
        op.complete = position
        op.complete_time = _int_or_none(event.get("time"))
        op.complete_extra = extra

    def history(self, fmt: str, default_model: str) -> History:
        # Whatever is still pending never completed: its outcome stays unknown.
        return History(self.ops, self.nemesis, fmt, self.path, default_model)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def history_from_events(events: Iterable[dict[str, Any]], source: str | None = None,
                        default_model: str = "raft-kv") -> History:
    """Pair a sequence of event dicts (in real-time order) into a History."""
    pairer = _Pairer(source)
    for number, event in enumerate(events, start=1):
        if not isinstance(event, dict):
            raise InputError(source, number, "each event must be a dict")
        pairer.add(event, number)
    return pairer.history("events", default_model)


# ---------------------------------------------------------------------------
# JSONL (splitbrain's own format)


def read_jsonl(path: str | Path) -> History:
    """Read splitbrain's JSONL history (one event a line; blank lines are skipped)."""
    with _open_text(path) as handle:
        return _jsonl_history(handle, path)


def _jsonl_history(lines: Iterable[str], path: str | Path) -> History:
    pairer = _Pairer(str(path))
    rows = JsonLines(path)
    for number, event in rows.read(lines):
        pairer.add(event, number)
    history = pairer.history("jsonl", "raft-kv")
    history.notes.extend(rows.notes())
    return history


class JsonLines:
    """The one reader of JSON-lines files (histories, and reports' other run files).

    One rule for a torn last line, whoever reads the file: a final line without
    its newline that starts a JSON object but does not parse, after at least one
    complete line, is what a crashed writer or a full disk leaves (every writer
    ends each line with a newline and flushes). It is dropped, everything before
    it is kept, and :meth:`notes` says so. Any other bad line (a file of nothing
    but one broken line too) is an :class:`InputError` naming its line.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path
        #: 1-based number of the torn last line, if there was one
        self.torn: int | None = None
        self.rows = 0  # complete lines read so far

    def read(self, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, object) for each non-blank line of ``lines`` (newlines kept)."""
        for number, raw in enumerate(lines, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                if not raw.endswith("\n") and text.startswith("{") and self.rows:
                    self.torn = number
                    return
                raise InputError(self.path, number, f"not valid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise InputError(
                    self.path, number, "each line must be a JSON object (an event), got "
                    f"{_json_kind(row)}")
            self.rows += 1
            yield number, row

    def notes(self) -> list[str]:
        if self.torn is None:
            return []
        return [f"{self.path}:{self.torn}: the last line is torn (an incomplete write, as a "
                f"crash or a full disk leaves); read the {self.torn - 1} line(s) before it"]


def read_json_lines(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every object of a JSON-lines file, and the reader's notes (see :class:`JsonLines`)."""
    rows = JsonLines(path)
    with _open_text(path) as handle:
        objects = [row for _, row in rows.read(handle)]
    return objects, rows.notes()


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list (a JSON array of events? write one event a line)"
    return {str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"the number {value!r}" if isinstance(value, int | float) else "no object")


class HistoryWriter:
    """Appends events to a JSONL history, each written as it happens.

    A crashed or interrupted run therefore keeps every event up to the crash,
    and a write the disk refuses leaves the file whole up to the event before
    and raises :class:`checker.lines.LineWriteError` (an ``OSError``).
    ``index`` is filled in (a running counter) unless the event has one.
    """

    def __init__(self, path: str | Path) -> None:
        from checker.lines import LineAppender

        self.path = Path(path)
        self._file: LineAppender | None = LineAppender(self.path)
        self._next_index = 0

    def write(self, event: dict[str, Any]) -> dict[str, Any]:
        """Write one event (docs/DESIGN.md's fields); returns what was written."""
        if self._file is None:
            raise ValueError(f"history writer for {self.path} is closed")
        if event.get("type") not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {EVENT_TYPES}: {event!r}")
        if "index" not in event:
            event = {"index": self._next_index, **event}
        self._file.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
        self._next_index = max(self._next_index, int(event["index"])) + 1
        return event

    append = write

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# EDN (Jepsen histories, Porcupine kv logs)

# A strict tokenizer for the flat maps Jepsen prints one a line. Anything it is
# not sure about (escapes, floats, nesting, tags, namespaced keywords) makes
# the fast path give up, and the edn-format library parses that line instead.
_EDN_TOKEN = re.compile(
    r'[\s,]*(?:(?P<open>\[)|(?P<close>\])|(?P<str>"[^"\\]*")|(?P<int>-?\d+)(?=[\s,\]]|$)'
    r"|(?P<kw>:[A-Za-z_*+!?<>=-][\w*+!?<>=.-]*)(?=[\s,\]]|$)"
    r"|(?P<sym>nil|true|false)(?=[\s,\]]|$))"
)
_EDN_SYMBOLS = {"nil": None, "true": True, "false": False}


_KW = r"[A-Za-z_*+!?<>=-][\w*+!?<>=.-]*"
_SCALAR = rf'nil|true|false|-?\d+|"[^"\\]*"|:{_KW}'
_PAIR = rf"[\s,]*:({_KW})[\s,]+({_SCALAR})(?=[\s,}}])"
# A whole line of keyword -> scalar pairs (the usual Jepsen line): two C-level passes.
_FLAT_MAP = re.compile(rf"\{{(?:{_PAIR})*[\s,]*\}}")
_FLAT_PAIR = re.compile(_PAIR)


def _flat_scalar(text: str) -> Any:
    first = text[0]
    if first == '"':
        return text[1:-1]
    if first == ":":
        return text[1:]
    if text in _EDN_SYMBOLS:
        return _EDN_SYMBOLS[text]
    return int(text)


def _fast_edn_map(text: str) -> dict[str, Any] | None:
    """Parse ``{:k v, ...}`` with flat scalar/vector values, or None if unsure."""
    if not (text.startswith("{") and text.endswith("}")):
        return None
    if _FLAT_MAP.fullmatch(text):
        return {key: _flat_scalar(value) for key, value in _FLAT_PAIR.findall(text)}
    body = text[1:-1]
    pos, end = 0, len(body)
    items: list[Any] = []
    stack: list[list[Any]] = []
    match = _EDN_TOKEN.match
    while True:
        # skip trailing separators
        while pos < end and body[pos] in " \t,\n\r":
            pos += 1
        if pos >= end:
            break
        token = match(body, pos)
        if token is None:
            return None
        pos = token.end()
        kind = token.lastgroup
        text_value = token.group(kind)
        if kind == "open":
            stack.append([])
            continue
        if kind == "close":
            if not stack or len(stack) > 1:
                return None  # unbalanced, or nested vectors: let the library do it
            value: Any = stack.pop()
        elif kind == "str":
            value = text_value[1:-1]
        elif kind == "int":
            value = int(text_value)
        elif kind == "kw":
            value = _Kw(text_value[1:])
        else:
            value = _EDN_SYMBOLS[text_value]
        if stack:
            stack[-1].append(str(value) if isinstance(value, _Kw) else value)
        else:
            items.append(value)
    if stack or len(items) % 2:
        return None
    out: dict[str, Any] = {}
    for i in range(0, len(items), 2):
        k, v = items[i], items[i + 1]
        if not isinstance(k, _Kw):
            return None
        out[str(k)] = str(v) if isinstance(v, _Kw) else v
    return out


class _Kw(str):
    """A keyword seen by the fast path (so map keys can be told from strings)."""

    __slots__ = ()


def edn_to_python(value: Any) -> Any:
    """Turn edn-format values into plain Python: keywords and symbols become their names."""
    if isinstance(value, edn_format.Keyword | edn_format.Symbol):
        return value.name
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {edn_to_python(k): edn_to_python(v) for k, v in value.items()}
    if isinstance(value, Sequence | AbstractSet):
        return [edn_to_python(v) for v in value]
    if isinstance(value, edn_format.Char):
        return str(value)
    return value


def _edn_event(value: Any, path: str | Path, line: int | None) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(path, line, "each history element must be an EDN map, got "
                         f"{_edn_describe(value)}")
    return edn_to_python(value)


def _edn_describe(value: Any) -> str:
    text = edn_format.dumps(value) if value is not None else "nil"
    return text if len(text) <= 40 else text[:37] + "..."


def read_edn(path: str | Path, fmt: str = "edn") -> History:
    """Read a Jepsen EDN history in any layout EDN allows.

    One map a line (what Jepsen writes), one top-level vector or list of maps,
    maps spread over several lines, ``;`` comments: all read the same. Errors
    name the line where the element starts (or where the syntax breaks).
    """
    with _open_text(path) as handle:
        return _edn_history(handle, path, fmt)


def _edn_history(lines: Iterable[str], path: str | Path, fmt: str) -> History:
    text_lines = list(lines)
    pairer = _Pairer(str(path))
    events = _edn_line_by_line(text_lines)
    if events is None:  # not one flat map a line: read the text as EDN forms
        events = _edn_elements("".join(text_lines), path)
    for number, event in events:
        pairer.add(event, number)
    return pairer.history(fmt, _guess_edn_model(pairer.ops))


def _edn_line_by_line(lines: Sequence[str]) -> list[tuple[int | None, dict[str, Any]]] | None:
    """The fast path for Jepsen's usual layout, or None when a line is anything else."""
    events: list[tuple[int | None, dict[str, Any]]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        event = _fast_edn_map(line)
        if event is None:
            return None
        events.append((number, event))
    return events


#: Record literals Jepsen and Knossos print their operations as
#: (``#jepsen.history.Op{:index 0, :type :invoke, ...}``): the tagged map is the event.
_EDN_RECORD_TAGS = ("jepsen.history.Op", "knossos.op.Op")
for _tag in _EDN_RECORD_TAGS:
    edn_format.add_tag(_tag, lambda value: value)


# Where EDN forms begin and end: strings (which may hold brackets and span lines),
# comments, character literals (\{), brackets, and the dispatch character #.
_EDN_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|;[^\n]*|\\.|[\[\](){}#"]', re.DOTALL)
_EDN_PAIRS = {"[": "]", "(": ")", "{": "}"}
_EDN_OPEN, _EDN_CLOSE = frozenset(_EDN_PAIRS), frozenset(_EDN_PAIRS.values())


class _EdnGiveUp(Exception):
    """The layout needs the whole-text parser (a tagged or discarded top-level form)."""


def _edn_elements(text: str, path: str | Path) -> list[tuple[int | None, dict[str, Any]]]:
    """The history's maps, each with the line it starts on."""
    try:
        spans = list(_edn_spans(text, path))
    except _EdnGiveUp:
        return [(None, event) for event in _edn_whole_text(text, path)]
    newlines = [m.start() for m in re.finditer("\n", text)]
    events: list[tuple[int | None, dict[str, Any]]] = []
    for start, end in spans:
        line = bisect.bisect_left(newlines, start) + 1
        chunk = text[start:end]
        event = _fast_edn_map(chunk)
        if event is None:
            values = _edn_loads(chunk, path, line)
            event = _edn_event(values[0], path, line)
        events.append((line, event))
    return events


def _edn_spans(text: str, path: str | Path) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of each history element: the top-level forms, or the
    elements of a single top-level vector or list."""
    newlines: list[int] | None = None

    def line_of(pos: int) -> int:
        nonlocal newlines
        if newlines is None:
            newlines = [m.start() for m in re.finditer("\n", text)]
        return bisect.bisect_left(newlines, pos) + 1

    def atom_in(gap_start: int, gap_end: int) -> None:
        gap = text[gap_start:gap_end]
        stripped = gap.lstrip(" \t\r\n,")
        if stripped:
            where = gap_start + len(gap) - len(stripped)
            word = stripped.split(None, 1)[0][:40]
            raise InputError(path, line_of(where),
                             f"each history element must be an EDN map, got {word}")

    base = 0
    opened: list[tuple[str, int]] = []  # the open brackets, innermost last
    container: int | None = None  # offset of the top-level vector holding the history
    closed = False  # that vector has ended: nothing but comments may follow
    start = last = 0
    seen = False
    for match in _EDN_STRUCTURE.finditer(text):
        token = match.group()
        pos = match.start()
        if token == '"':
            raise InputError(path, line_of(pos), "not valid EDN: a string that never ends")
        if token in _EDN_CLOSE:
            if len(opened) == base:  # closing the history's vector: nothing left over?
                atom_in(last, pos)
            if not opened:
                raise InputError(path, line_of(pos),
                                 f"not valid EDN: unexpected {token!r}: nothing is open")
            bracket, where = opened.pop()
            if _EDN_PAIRS[bracket] != token:
                raise InputError(path, line_of(pos),
                                 f"not valid EDN: unexpected {token!r}: the {bracket!r} "
                                 f"of line {line_of(where)} is still open")
            if len(opened) == base:  # an element ends
                yield start, match.end()
                last = match.end()
            elif len(opened) < base:  # the history's vector ends
                closed, base, last = True, 0, match.end()
            continue
        if len(opened) > base:  # inside an element
            if token in _EDN_OPEN:
                opened.append((token, pos))
            continue
        if token.startswith(";"):
            atom_in(last, pos)
            last = match.end()
            continue
        if closed:
            raise InputError(path, line_of(pos), "more text after the history's vector (a "
                             "history is one vector of maps, or maps one after another)")
        atom_in(last, pos)
        if token == "#":
            raise _EdnGiveUp
        if token in _EDN_OPEN:
            opened.append((token, pos))
            if token != "{" and not seen and container is None:
                container, base, last = pos, 1, match.end()
            else:
                start, seen = pos, True
            continue
        raise InputError(path, line_of(pos), "each history element must be an EDN map, got "
                         f"{token[:40]}")
    if opened:
        bracket, where = opened[-1]
        raise InputError(path, line_of(where), f"not valid EDN: this {bracket!r} is never "
                         "closed (the text ends inside it)")
    atom_in(last, len(text))


def _edn_whole_text(text: str, path: str | Path) -> list[dict[str, Any]]:
    forms = _edn_loads(text, path, 1)
    if len(forms) == 1 and isinstance(forms[0], Sequence) and not isinstance(forms[0], str):
        forms = list(forms[0])
    return [_edn_event(form, path, None) for form in forms]


_LEX_POSITION = re.compile(r"LexToken\((\w+),'(.*)',\d+,(\d+)\)|lexpos (\d+)")


def _edn_loads(text: str, path: str | Path, first_line: int) -> list[Any]:
    """Every form of ``text`` through the edn-format library; errors name their line."""
    try:
        return list(edn_format.loads_all(text))
    except Exception as exc:  # the library raises several types for bad syntax
        message = str(exc)
        line: int | None = first_line
        found = _LEX_POSITION.search(message)
        if found:
            offset = int(found.group(3) or found.group(4))
            line = first_line + text.count("\n", 0, offset)
            if found.group(2):
                message = f"unexpected {found.group(2)!r}"
            elif "Illegal character" in message:
                message = message.split(" with lexpos")[0].lower()
        elif "EOF" in message:
            message = "the text ends inside a form (an unclosed bracket or string)"
        raise InputError(path, line, f"not valid EDN: {message}") from None


def _guess_edn_model(ops: Iterable[Op]) -> str:
    fs = {op.f for op in ops}
    if fs and fs <= {"get", "put", "append"}:
        return "kv"
    if "txn" in fs:
        return "multi-register"
    if fs and fs <= {"acquire", "release"}:
        return "mutex"
    return "cas-register"


def _edn_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {_edn_key(k): _edn_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_edn_value(v) for v in value]
    return value


def _edn_key(key: Any) -> Any:
    return edn_format.Keyword(key) if isinstance(key, str) else key


_KEYWORD_FIELDS = frozenset(("type", "f"))


def write_edn(history: History, out: str | Path | IO[str]) -> None:
    """Write the history as Jepsen EDN, one map a line, for Knossos or Elle.

    ``type`` and ``f`` become keywords, as Jepsen writes them; the nemesis
    process becomes ``:nemesis``.
    """
    lines = []
    for event in history.events():
        mapped: dict[Any, Any] = {}
        for name, value in event.items():
            if name in _KEYWORD_FIELDS and isinstance(value, str):
                value = edn_format.Keyword(value)
            elif name == "process" and value == NEMESIS:
                value = edn_format.Keyword(NEMESIS)
            else:
                value = _edn_value(value)
            mapped[edn_format.Keyword(name)] = value
        lines.append(edn_format.dumps(mapped))
    text = "\n".join(lines) + ("\n" if lines else "")
    if isinstance(out, str | Path):
        Path(out).write_text(text, encoding="utf-8")
    else:
        out.write(text)


# ---------------------------------------------------------------------------
# Porcupine's Jepsen etcd logs

_ETCD_LINE = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(?P<process>\d+)\s+:(?P<type>[\w-]+)\s+:(?P<f>[\w-]+)"
    r"\s+(?P<value>.*?)\s*$"
)
_ETCD_VECTOR = re.compile(r"^\[\s*(-?\d+)\s+(-?\d+)\s*\]$")


def _etcd_value(text: str, path: str | Path, line: int) -> Any:
    if text == "nil":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.startswith(":"):
        return text[1:]
    vector = _ETCD_VECTOR.match(text)
    if vector:
        return [int(vector.group(1)), int(vector.group(2))]
    raise InputError(path, line, f"cannot read the value {text!r}")


def read_porcupine_etcd(path: str | Path) -> History:
    """Read one of Porcupine's Jepsen etcd logs (a single CAS register, model ``etcd``).

    Every completion keeps its type as written: ``:fail :read :timed-out``
    closes a read with an unknown result, which the ``etcd`` model ignores.
    """
    with _open_text(path) as handle:
        return _etcd_history(handle, path)


def _etcd_history(lines: Iterable[str], path: str | Path) -> History:
    pairer = _Pairer(str(path))
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        match = _ETCD_LINE.match(text)
        if match is None:
            raise InputError(
                path, number,
                "not a Jepsen log line (expected 'INFO jepsen.util - PROCESS :TYPE :F VALUE')")
        value = _etcd_value(match.group("value"), path, number)
        event = {"process": int(match.group("process")), "type": match.group("type"),
                 "f": match.group("f"), "value": value}
        pairer.add(event, number)
    return pairer.history("porcupine-etcd", "etcd")


# ---------------------------------------------------------------------------
# Entry points

#: The path that means standard input (``splitbrain check -``).
STDIN = "-"


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its first non-blank line."""
    with _open_text(path) as handle:
        return _sniff(iter(handle), path)[0]


def _sniff(lines: Iterator[str], path: str | Path) -> tuple[str, list[str]]:
    """The format told by the first non-blank line, and the lines read to tell it.

    The caller goes on reading the same handle after these lines: a pipe or
    ``/dev/stdin`` can be read only once.
    """
    seen: list[str] = []
    for raw in lines:
        seen.append(raw)
        text = raw.strip()
        if not text:
            continue
        if text.startswith("INFO") and "jepsen.util" in text:
            return "porcupine-etcd", seen
        if re.match(r'^\{\s*"', text):
            return "jsonl", seen
        if text.startswith(("[", "-")) or text[0].isdigit():
            try:  # JSON that is not an object ([1,2,3]): JSONL's reader says what is wrong
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = []
            if parsed != []:
                return "jsonl", seen
        if text.startswith(("{", "[", "(", ";", "#")):
            return "edn", seen
        raise InputError(path, len(seen), "cannot tell the history format from this line; "
                         "pass --format")
    return "jsonl", seen  # an empty file is an empty history in any format


def load_history(path: str | Path, format: str = "auto") -> History:
    """Load a history in any supported format; ops come paired, in invocation order.

    ``path`` may be ``-`` for standard input. The input is opened and read once,
    so a pipe (``<(...)``, ``/dev/stdin``) is read whole, never half.
    """
    if format not in FORMATS:
        raise InputError(path, None, f"unknown format {format!r} (one of {', '.join(FORMATS)})")
    name = "<stdin>" if str(path) == STDIN else path
    with _open_text(path) as handle:
        lines = iter(handle)
        fmt, seen = _sniff(lines, name) if format == "auto" else (format, [])
        everything = itertools.chain(seen, lines)
        if fmt == "jsonl":
            return _jsonl_history(everything, name)
        if fmt in ("edn", "porcupine-kv"):
            history = _edn_history(everything, name, fmt)
            if fmt == "porcupine-kv":
                history.default_model = "kv"
            return history
        return _etcd_history(everything, name)


def iter_ops(history: History, keys: Iterable[Any] | None = None) -> Iterator[Op]:
    """The history's operations, optionally only those on the given keys."""
    wanted = None if keys is None else set(keys)
    for op in history.ops:
        if wanted is None or op.key in wanted:
            yield op


class _TextFile:
    """Open a file (or ``-``, standard input) for reading, with errors turned into
    InputError (missing, binary, ...)."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None
        self.borrowed = False  # standard input: detach, never close

    def __enter__(self) -> IO[str]:
        if str(self.path) == STDIN:
            buffer = getattr(sys.stdin, "buffer", None)
            self.borrowed = True
            self.handle = (sys.stdin if buffer is None
                           else io.TextIOWrapper(buffer, encoding="utf-8"))
            return _DecodeGuard(self.handle, "<stdin>")  # type: ignore[return-value]
        try:
            self.handle = open(self.path, encoding="utf-8")
        except FileNotFoundError:
            raise InputError(self.path, None, "no such file") from None
        except IsADirectoryError:
            raise InputError(self.path, None, "is a directory, not a history file") from None
        except OSError as exc:
            raise InputError(self.path, None, f"cannot open: {exc.strerror}") from None
        return _DecodeGuard(self.handle, self.path)  # type: ignore[return-value]

    def __exit__(self, *exc: object) -> None:
        if self.handle is None:
            return
        if not self.borrowed:
            self.handle.close()
        elif isinstance(self.handle, io.TextIOWrapper) and self.handle is not sys.stdin:
            self.handle.detach()  # leave sys.stdin's buffer open
        self.handle = None


class _DecodeGuard:
    """Wraps a text handle so an undecodable byte becomes an InputError with a line number."""

    def __init__(self, handle: IO[str], path: str | Path) -> None:
        self._handle = handle
        self._path = path
        self._line = 0

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                raw = self._handle.readline()
            except UnicodeDecodeError:
                raise InputError(self._path, self._line + 1, "not UTF-8 text") from None
            if not raw:
                return
            self._line += 1
            yield raw

    def read(self) -> str:
        try:
            return self._handle.read()
        except UnicodeDecodeError:
            raise InputError(self._path, None, "not UTF-8 text") from None


def _open_text(path: str | Path) -> _TextFile:
    return _TextFile(path)
