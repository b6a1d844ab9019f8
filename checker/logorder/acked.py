"""Acknowledged writes against the committed log, matched by client session ``(client, seq)``.

* Every ``ok`` write / cas / append is in the committed log.
* No ``(client, seq)`` takes effect twice. A retried command *may* sit in the log
  twice (a new leader can re-propose it; the state machine then skips the
  retry), so two entries are a violation only when the nodes say both were
  applied (the ``duplicate`` field of a log entry, see checker/README.md). If the
  nodes do not say, the repeated commands are listed under ``unmarked_retries``
  and their single application is left to the linearizability checker, which
  sees a double effect in what clients read.
* Log order respects real time: if A completed before B was invoked, A's entry
  comes first. Only the first (effective) entry of a command counts.

A missing acknowledged write is called lost only when that is certain: it was
acknowledged, so it was on a majority; the last dumps of a majority of nodes,
taken after the acknowledgement and showing their whole log, must then show it
— unless it may hide under a snapshot at an index whose content was never
observed, or sits uncommitted in some log. Those cases are ``unknown``.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

from checker.logorder.evidence import Violations, ranges
from checker.logorder.logs import LogTracker
from checker.logorder.records import LogEntry
from checker.results import invalid_result, unknown_result, valid_result

WRITE_FUNCTIONS = frozenset({"write", "cas", "append"})
#: Micro-ops of a ``txn`` that write: an acknowledged txn holding one is a log entry.
TXN_WRITES = frozenset({"append", "w", "write"})


def is_write(op: Any) -> bool:
    """A write must be in the log once acknowledged: a write, cas or append, or a txn with
    a writing micro-op (a read-only txn may be served by the read path, off the log)."""
    if op.f == "txn":
        value = op.value if isinstance(op.value, list | tuple) else ()
        return any(isinstance(m, list | tuple) and m and m[0] in TXN_WRITES for m in value)
    return op.f in WRITE_FUNCTIONS
MAX_UNKNOWN_SHOWN = 20


def session_key(client: Any, seq: Any) -> Hashable:
    """A hashable key for a ``(client, seq)`` pair, whatever JSON types they are."""
    if isinstance(client, (str, int, float, bool, type(None))) and isinstance(
        seq, (str, int, float, bool, type(None))
    ):
        return (client, seq)
    return (json.dumps(client, sort_keys=True), json.dumps(seq, sort_keys=True))


def _session(op: Any) -> Hashable | None:
    extra = getattr(op, "invoke_extra", None) or {}
    client = extra.get("client")
    seq = extra.get("seq")
    if client is None or seq is None:
        return None
    return session_key(client, seq)


def _op_evidence(op: Any, index: int | None = None) -> dict[str, Any]:
    described = op.to_dict() if hasattr(op, "to_dict") else {"op": repr(op)}
    if index is not None:
        described["log_index"] = index
    return described


class _AckedWrites:
    def __init__(self, ops: Iterable[Any], logs: LogTracker, known_nodes: set[str]) -> None:
        self.ops = list(ops)
        self.logs = logs
        self.known_nodes = known_nodes | set(logs.nodes)
        self.violations = Violations()
        self.unknown: list[dict[str, Any]] = []
        self.unknown_total = 0
        #: session -> committed indexes holding it, ascending.
        self.indexes: dict[Hashable, list[int]] = {}
        for index in sorted(logs.committed):
            entry = logs.committed[index][0]
            if entry.client is not None and entry.seq is not None:
                self.indexes.setdefault(session_key(entry.client, entry.seq), []).append(index)
        self._uncommitted: dict[Hashable, tuple[str, LogEntry]] | None = None
        self.unknown_reasons: Counter[str] = Counter()
        self.unmarked_retries = 0
        self._gaps: list[list[int]] | None = None
        self._gap_ends: list[int] = []
        self._horizon: tuple[list[int], list[int]] = ([], [])
        self.unmarked_examples: list[dict[str, Any]] = []

    def note_unknown(self, reason: str, **evidence: Any) -> None:
        self.unknown_total += 1
        self.unknown_reasons[reason] += 1
        if len(self.unknown) < MAX_UNKNOWN_SHOWN:
            self.unknown.append({"reason": reason, **evidence})

    # -- presence ---------------------------------------------------------------------------

    def check_presence(self, op: Any, session: Hashable) -> None:
        if session in self.indexes:
            return
        found = self._uncommitted_holders().get(session)
        if found is not None:
            node, entry = found
            self.note_unknown(
                "acknowledged, but only seen uncommitted",
                op=_op_evidence(op),
                node=node,
                entry=entry.describe(),
            )
            return
        ack_time = getattr(op, "complete_time", None)
        if ack_time is None:
            self.note_unknown("acknowledged write not in the log; no completion time to judge",
                              op=_op_evidence(op))
            return
        hidden = self._hidden_ranges(getattr(op, "call_time", None))
        witnesses = [
            name
            for name, log in sorted(self.logs.nodes.items())
            if log.last is not None
            and (log.last.from_index or 1) <= 1
            and (log.last.last_index or 0) <= (log.last_view.last or 0)
            and log.last.where.time > ack_time
        ]
        majority = len(self.known_nodes) // 2 + 1
        if hidden:
            pushed = ("" if self.logs.pushed_entries else
                      " (the nodes do not push their committed entries; only polls saw the log)")
            self.note_unknown(
                "acknowledged write not seen in the log; it may be under a snapshot, at indexes "
                "whose content no dump showed" + pushed,
                op=_op_evidence(op),
                unobserved_indexes=hidden,
            )
        elif len(witnesses) < majority:
            self.note_unknown(
                "acknowledged write not seen in the log; fewer than a majority of nodes were "
                "dumped in full after it was acknowledged",
                op=_op_evidence(op),
                dumped_after=witnesses,
            )
        else:
            self.violations.add(
                "acknowledged-write-lost",
                f"{op.f} by client {op.invoke_extra.get('client')} seq "
                f"{op.invoke_extra.get('seq')} was acknowledged but is in no node's log",
                op=_op_evidence(op),
                time=ack_time,
                nodes_dumped_after=witnesses,
                max_committed_index=max(self.logs.committed, default=0),
            )

    def _uncommitted_holders(self) -> dict[Hashable, tuple[str, LogEntry]]:
        if self._uncommitted is None:
            self._uncommitted = {}
            for name, log in sorted(self.logs.nodes.items()):
                for entry in log.last_view.values():
                    if entry.client is not None and entry.seq is not None:
                        key = session_key(entry.client, entry.seq)
                        if key not in self.indexes:
                            self._uncommitted.setdefault(key, (name, entry))
        return self._uncommitted

    def _hidden_ranges(self, call_time: int | None) -> list[list[int]]:
        """Index ranges where a command invoked at ``call_time`` may hide unseen.

        Those are indexes under some final snapshot whose committed content no dump
        showed, above what was already committed when the command was invoked (a
        command is proposed after its invocation, so it lands above that).
        """
        if self._gaps is None:
            self._gaps = self._unobserved_committed()
            self._gap_ends = [last for _, last in self._gaps]
            self._horizon = self.logs.commit_horizon()
        floor = 0
        if call_time is not None:
            times, commits = self._horizon
            position = bisect.bisect_right(times, call_time)
            if position:
                floor = commits[position - 1]
        start = bisect.bisect_right(self._gap_ends, floor)
        return [[max(first, floor + 1), last] for first, last in self._gaps[start:]][:10]

    def _unobserved_committed(self) -> list[list[int]]:
        """Index ranges under some final snapshot whose committed content was never seen."""
        top = max(
            (log.last.snapshot_index for log in self.logs.nodes.values() if log.last),
            default=0,
        )
        committed = self.logs.committed
        return ranges([index for index in range(1, top + 1) if index not in committed])

    # -- duplicates -------------------------------------------------------------------------

    def check_duplicates(self, ops_by_session: dict[Hashable, Any]) -> None:
        flags = self.logs.duplicate_flags
        for session, indexes in self.indexes.items():
            if len(indexes) < 2:
                continue
            said = [flags.get(index) for index in indexes]
            applied = [i for i, flag in zip(indexes, said, strict=True) if flag is False]
            unsaid = [i for i, flag in zip(indexes, said, strict=True) if flag is None]
            entries = [self.logs.committed[i][0].describe() for i in indexes]
            op = ops_by_session.get(session)
            if len(applied) >= 2:
                first = self.logs.committed[indexes[0]][0]
                self.violations.add(
                    "applied-twice",
                    f"client {first.client} seq {first.seq} was applied at indexes "
                    f"{', '.join(map(str, applied))}",
                    indexes=applied,
                    entries=entries,
                    op=None if op is None else _op_evidence(op),
                )
            elif unsaid and len(applied) + len(unsaid) >= 2:
                # Raft logs legitimately hold a retried command twice (a new leader
                # re-proposes it; the session table skips it at apply). Without the nodes'
                # word, exactly-once *application* is left to the linearizability checker,
                # and said so in the evidence.
                self.unmarked_retries += 1
                if len(self.unmarked_examples) < MAX_UNKNOWN_SHOWN:
                    self.unmarked_examples.append(
                        {"entries": entries, "op": None if op is None else _op_evidence(op)}
                    )

    # -- real-time order ----------------------------------------------------------------------

    def check_real_time(self, placed: list[tuple[Any, int]]) -> int:
        """``placed``: (op, first committed index). Returns how many ops were ordered."""
        completed = sorted(
            ((op.complete, index, op) for op, index in placed
             if op.complete is not None and op.type in ("ok", "fail")),
            key=lambda item: item[0],
        )
        invoked = sorted(placed, key=lambda item: item[0].call)
        best: tuple[int, Any] | None = None  # highest index among ops completed so far
        position = 0
        for op, index in invoked:
            while position < len(completed) and completed[position][0] < op.call:
                _, earlier_index, earlier = completed[position]
                if best is None or earlier_index > best[0]:
                    best = (earlier_index, earlier)
                position += 1
            if best is not None and best[0] > index:
                earlier_index, earlier = best
                self.violations.add(
                    "real-time-order",
                    f"op {earlier.id} completed before op {op.id} was invoked, yet its entry "
                    f"(index {earlier_index}) comes after op {op.id}'s (index {index})",
                    time=op.call_time,
                    earlier=_op_evidence(earlier, earlier_index),
                    later=_op_evidence(op, index),
                )
        return len(placed)


def acked_writes_result(history: Any, logs: LogTracker, known_nodes: set[str]) -> dict[str, Any]:
    """The ``acked-writes`` sub-result (``history``: a :class:`checker.history.History`)."""
    if history is None:
        return unknown_result("no history was given: acknowledged writes were not checked")
    if not logs.dumps:
        return unknown_result("no log dumps were observed: acknowledged writes not checked")
    check = _AckedWrites(getattr(history, "ops", history), logs, known_nodes)
    if not check.indexes:
        return unknown_result(
            "no committed log entry names a client session (client, seq): acknowledged "
            "writes cannot be matched to log entries",
            committed_indexes=len(logs.committed),
        )
    acked = 0
    without_session = 0
    ops_by_session: dict[Hashable, Any] = {}
    placed: list[tuple[Any, int]] = []
    for op in check.ops:
        session = _session(op)
        if session is None:
            if op.type == "ok" and is_write(op):
                without_session += 1
            continue
        ops_by_session.setdefault(session, op)
        indexes = check.indexes.get(session)
        if indexes:
            placed.append((op, indexes[0]))
        if op.type == "ok" and is_write(op):
            acked += 1
            check.check_presence(op, session)
    check.check_duplicates(ops_by_session)
    ordered = check.check_real_time(placed)
    stats = {
        "acknowledged_writes": acked,
        "ops_in_log": ordered,
        "acknowledged_without_session": without_session,
    }
    if check.unmarked_retries:
        stats["unmarked_retries"] = check.unmarked_retries
        stats["unmarked_retry_examples"] = check.unmarked_examples
    if check.violations:
        return invalid_result(**stats, **check.violations.describe())
    if without_session:
        return unknown_result(
            f"{without_session} acknowledged writes carry no client/seq on their invocation, "
            "so they cannot be found in the log",
            **stats,
        )
    if check.unknown_total:
        summary = "; ".join(
            f"{count} x {reason}" for reason, count in check.unknown_reasons.most_common()
        )
        return unknown_result(
            f"{check.unknown_total} operations could not be judged: {summary}",
            undecided=check.unknown,
            undecided_total=check.unknown_total,
            **stats,
        )
    if not acked:
        return unknown_result("the history has no acknowledged write to look for", **stats)
    return valid_result(**stats)
