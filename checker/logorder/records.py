"""Parsing and validating observation records (checker/README.md; docs/DESIGN.md, "Observations").

Each line of ``observations.jsonl`` becomes one small, typed record. Log dumps
are the bulk of the file (up to ~100k entries each), so their entries become
plain tuples (:class:`LogEntry`) and validation is kept to what the checks rely
on: integer index and term, a string digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from checker.errors import InputError

LIFECYCLE_KINDS = ("crash", "restart", "lose-unfsynced")
#: What nodes push about themselves as it happens (raft_impl; see docs/node-events.md),
#: and what the harness found in a node's output (``complaint`` with ``source: output``).
PUSHED_KINDS = ("committed", "snapshot", "complaint", "events-dropped")
KINDS = ("status", "log", "role", "digest", "healed", *LIFECYCLE_KINDS, *PUSHED_KINDS)
SEVERITIES = ("violation", "warning")


class LogEntry(NamedTuple):
    """One entry of a node's log dump (its ``duplicate`` flag is kept in the record)."""

    index: int
    term: int
    digest: str
    client: Any = None
    seq: Any = None

    def describe(self) -> dict[str, Any]:
        """JSON evidence naming this entry."""
        described: dict[str, Any] = {"index": self.index, "term": self.term, "digest": self.digest}
        if self.client is not None:
            described["client"] = self.client
            described["seq"] = self.seq
        return described


@dataclass(frozen=True, slots=True)
class Where:
    """Where a record came from, for evidence: the node, its time (ns) and the file line."""

    node: str | None
    time: int
    line: int | None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"node": self.node, "time": self.time}
        if self.line is not None:
            described["line"] = self.line
        return described


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """A status answer. ``role`` and ``term`` may be absent (a system that does not say)."""

    where: Where
    role: str | None
    term: int | None
    leader: str | None
    commit: int | None
    applied: int | None
    last_index: int | None


@dataclass(frozen=True, slots=True)
class LogRecord:
    where: Where
    commit: int
    snapshot_index: int
    snapshot_term: int
    from_index: int | None
    applied: int | None
    entries: list[LogEntry]
    #: the node's last log index, when the dump says it: entries above the last one shown
    #: and up to this were cut off (a size-capped answer), not lost.
    last_index: int | None = None
    #: index -> the entry's ``duplicate`` flag, for the entries that carry one.
    duplicates: dict[int, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RoleRecord:
    where: Where
    role: str
    term: int


@dataclass(frozen=True, slots=True)
class DigestRecord:
    where: Where
    applied: int
    digest: str


@dataclass(frozen=True, slots=True)
class LifecycleRecord:
    where: Where
    kind: str  # one of LIFECYCLE_KINDS


@dataclass(frozen=True, slots=True)
class HealedRecord:
    where: Where


@dataclass(frozen=True, slots=True)
class CommittedRecord:
    """Entries a node applied (so committed and durable on it), pushed as it applied them."""

    where: Where
    commit: int | None
    entries: list[LogEntry]
    duplicates: dict[int, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A snapshot a node took of its state machine or installed from a leader."""

    where: Where
    source: str  # "taken" or "installed"
    index: int
    term: int
    #: State digest at ``index`` (the same function as the ``digest`` records').
    digest: str | None


@dataclass(frozen=True, slots=True)
class ComplaintRecord:
    """A node said it is being made to break safety (an event it pushed, or a known
    pattern in its output)."""

    where: Where
    complaint: str
    severity: str  # one of SEVERITIES
    message: str | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DroppedRecord:
    """A node could not push committed batches for indexes ``first..last`` (slow reader)."""

    where: Where
    first: int
    last: int


Record = (StatusRecord | LogRecord | RoleRecord | DigestRecord | LifecycleRecord | HealedRecord
          | CommittedRecord | SnapshotRecord | ComplaintRecord | DroppedRecord)


_KIND_OF_TYPE = {
    StatusRecord: "status",
    LogRecord: "log",
    RoleRecord: "role",
    DigestRecord: "digest",
    HealedRecord: "healed",
    CommittedRecord: "committed",
    SnapshotRecord: "snapshot",
    ComplaintRecord: "complaint",
    DroppedRecord: "events-dropped",
}


def record_kind(record: Record) -> str:
    """The ``kind`` a record had in the file."""
    if isinstance(record, LifecycleRecord):
        return record.kind
    return _KIND_OF_TYPE[type(record)]


class _Fields:
    """Typed access to one record's fields; every failure names the file, line and field."""

    def __init__(self, raw: dict[str, Any], path: str | None, line: int | None) -> None:
        self.raw = raw
        self.path = path
        self.line = line

    def fail(self, message: str) -> InputError:
        return InputError(self.path, self.line, message)

    def integer(self, key: str, *, required: bool = True, minimum: int = 0) -> int | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise self.fail(f"missing field {key!r} (an integer)")
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(f"field {key!r} must be an integer >= {minimum}, got {value!r}")
        return value

    def string(self, key: str, *, required: bool = True) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise self.fail(f"missing field {key!r} (a string)")
            return None
        if not isinstance(value, str):
            raise self.fail(f"field {key!r} must be a string, got {value!r}")
        return value


def parse_record(raw: object, path: str | None = None, line: int | None = None) -> Record:
    """Validate one decoded JSON value as an observation record."""
    if not isinstance(raw, dict):
        raise InputError(path, line, f"expected a JSON object, got {type(raw).__name__}")
    fields = _Fields(raw, path, line)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise fields.fail(f"unknown or missing 'kind' {kind!r}; expected one of {', '.join(KINDS)}")
    time = fields.integer("time")
    assert time is not None
    if kind == "healed":
        return HealedRecord(Where(raw.get("node"), time, line))
    node = fields.string("node")
    where = Where(node, time, line)
    if kind == "log":
        return _parse_log(fields, where)
    if kind == "status":
        return StatusRecord(
            where,
            role=fields.string("role", required=False),
            term=fields.integer("term", required=False),
            leader=fields.string("leader", required=False),
            commit=fields.integer("commit", required=False),
            applied=fields.integer("applied", required=False),
            last_index=fields.integer("last_index", required=False),
        )
    if kind == "role":
        return RoleRecord(where, role=fields.string("role"), term=fields.integer("term"))  # type: ignore[arg-type]
    if kind == "digest":
        return DigestRecord(
            where, applied=fields.integer("applied"), digest=fields.string("digest")  # type: ignore[arg-type]
        )
    if kind == "committed":
        entries, duplicates = _parse_entries(fields)
        return CommittedRecord(where, fields.integer("commit", required=False), entries,
                               duplicates)
    if kind == "snapshot":
        source = fields.string("source")
        if source not in ("taken", "installed"):
            raise fields.fail(f"field 'source' must be 'taken' or 'installed', got {source!r}")
        return SnapshotRecord(where, source, fields.integer("index", minimum=1),  # type: ignore[arg-type]
                              fields.integer("term"), fields.string("digest", required=False))  # type: ignore[arg-type]
    if kind == "complaint":
        severity = fields.string("severity", required=False) or "violation"
        if severity not in SEVERITIES:
            raise fields.fail(f"field 'severity' must be one of {', '.join(SEVERITIES)}, "
                              f"got {severity!r}")
        return ComplaintRecord(where, fields.string("complaint"), severity,  # type: ignore[arg-type]
                               fields.string("message", required=False), fields.raw)
    if kind == "events-dropped":
        return DroppedRecord(where, fields.integer("first", minimum=1),  # type: ignore[arg-type]
                             fields.integer("last", minimum=1))  # type: ignore[arg-type]
    return LifecycleRecord(where, kind)


_new_tuple = tuple.__new__


def _parse_log(fields: _Fields, where: Where) -> LogRecord:
    entries, duplicates = _parse_entries(fields)
    snapshot_index = fields.integer("snapshot_index", required=False) or 0
    snapshot_term = fields.integer("snapshot_term", required=False) or 0
    return LogRecord(
        where,
        commit=fields.integer("commit"),  # type: ignore[arg-type]
        snapshot_index=snapshot_index,
        snapshot_term=snapshot_term,
        from_index=fields.integer("from", required=False, minimum=1),
        applied=fields.integer("applied", required=False),
        entries=entries,
        last_index=fields.integer("last_index", required=False),
        duplicates=duplicates,
    )


def _parse_entries(fields: _Fields) -> tuple[list[LogEntry], dict[int, bool]]:
    """A record's ``entries`` list (log dumps and committed pushes share the shape)."""
    raw_entries = fields.raw.get("entries")
    if not isinstance(raw_entries, list):
        raise fields.fail(f"field 'entries' must be a list, got {raw_entries!r}")
    # The hot path of the whole checker (a dump can hold 100k entries): build the
    # tuples in one comprehension and validate in one pass; only on failure walk
    # the entries again to say which one is wrong.
    try:
        entries = [
            _new_tuple(LogEntry, (r["index"], r["term"], r["digest"], r.get("client"),
                                  r.get("seq")))
            for r in raw_entries
        ]
    except (KeyError, TypeError, AttributeError):
        entries = []
    if len(entries) != len(raw_entries) or not _well_typed(entries):
        raise fields.fail(_first_bad_entry(raw_entries))
    duplicates: dict[int, bool] = {}
    for position, raw in enumerate(raw_entries):
        if "duplicate" in raw:
            flag = raw["duplicate"]
            if flag is None:
                continue
            if type(flag) is not bool:
                raise fields.fail(f"entries[{position}]: 'duplicate' must be true, false or absent")
            duplicates[raw["index"]] = flag
    return entries, duplicates


def _well_typed(entries: list[LogEntry]) -> bool:
    """Integer index >= 1, integer term >= 0, string digest; checked column-wise at C speed."""
    if not entries:
        return True
    indexes = [e[0] for e in entries]
    terms = [e[1] for e in entries]
    return (
        set(map(type, indexes)) == {int}
        and set(map(type, terms)) == {int}
        and set(map(type, [e[2] for e in entries])) == {str}
        and min(indexes) >= 1
        and min(terms) >= 0
    )


def _first_bad_entry(raw_entries: list[Any]) -> str:
    for position, raw in enumerate(raw_entries):
        if not isinstance(raw, dict) or not {"index", "term", "digest"} <= raw.keys():
            return (f"entries[{position}] must be an object with 'index', 'term' and 'digest', "
                    f"got {raw!r}")
        index, term, digest = raw["index"], raw["term"], raw["digest"]
        if type(index) is not int or type(term) is not int or index < 1 or term < 0:
            return (f"entries[{position}]: 'index' must be an integer >= 1 and 'term' >= 0, "
                    f"got index={index!r} term={term!r}")
        if type(digest) is not str:
            return f"entries[{position}]: 'digest' must be a string, got {digest!r}"
    return "malformed entries"  # pragma: no cover - only called when one is bad


def iter_file(path: str | Path, notes: list[str] | None = None) -> Iterator[Record]:
    """Yield the records of an observations file in file order; InputError on bad lines.

    A torn last line (what a crash or a full disk leaves) follows the one rule of
    :class:`checker.history.JsonLines`, as ``report`` does: it is left out and a note
    is appended to ``notes``, so a run stopped by a full disk stays checkable.
    """
    from checker.history import JsonLines

    name = str(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InputError(name, None, f"cannot read observations: {exc.strerror}") from None

    def decoded() -> Iterator[str]:
        for number, data in enumerate(handle, start=1):
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(name, number, f"not UTF-8 text: {exc.reason}") from None

    rows = JsonLines(name)
    with handle:
        for number, raw in rows.read(decoded()):
            yield parse_record(raw, name, number)
    if notes is not None:
        notes.extend(rows.notes())
