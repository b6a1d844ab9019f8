"""What a raft_impl node tells the harness about itself, pushed as it happens.

A node writes one JSON object a line to stdout (format: docs/node-events.md):
``ready``, ``role`` changes, ``committed`` entries as it applies them,
``snapshot`` taken or installed, ``complaint`` when it notices that it is
being made to break Raft's safety, and ``events-dropped`` when a slow reader
cost some committed batches. The harness turns them into observations
(checker/README.md): a run that compacts its log every few hundred entries is
still judged entry by entry, because every committed entry was pushed before
any snapshot could hide it, instead of being polled once a second.

Two parts:

- :class:`EventStream`, the writer. It must never block the node: a
  blocking write into a full pipe (a harness busy elsewhere) would freeze
  timers, peers and clients — a pause nobody asked for. On a pipe it writes
  without blocking; what the pipe does not take waits in a bounded backlog
  that :meth:`EventStream.run` drains. Past the bound, committed batches (the
  bulk) are dropped and the next event that fits is preceded by an
  ``events-dropped`` event with the index range, so the harness knows what it
  did not see. Rare events (role, snapshot, complaint) are never dropped.
- :class:`SafetyWatch`, checks a node makes on itself for a few integer
  comparisons per Ready: its commit index or term going backwards, a commit
  index beyond its own log, an applied entry overwritten by a different one,
  a snapshot that rolls its state machine back. None of these can happen in
  correct Raft, so each is a ``complaint`` with severity ``violation``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, Protocol

import trio

#: Bytes of events kept for a slow reader before committed batches are dropped.
EVENT_BACKLOG = 4 << 20
#: Complaints of one kind a node reports per incarnation (the first ones tell the story).
MAX_COMPLAINTS_PER_KIND = 10
#: Applied entries whose (index, term, digest) a node remembers to notice an overwrite.
APPLIED_MEMORY = 4096


class EventSink(Protocol):
    def emit(self, event: dict[str, Any], droppable: tuple[int, int] | None = None) -> None: ...


def encode_event(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


class EventStream:
    """The node's stdout as an event stream that never blocks the node (see module doc)."""

    def __init__(self, fd: int = 1, limit: int = EVENT_BACKLOG) -> None:
        self._fd = fd
        self._limit = limit
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._wake = trio.Event()
        self._nonblocking = False
        #: Nobody reads any more (the pipe broke): nothing is written or kept.
        self._gone = False
        #: [first, last] index range and batch count of committed batches dropped and not
        #: yet reported.
        self._dropped: list[int] | None = None
        self.dropped_batches = 0
        try:
            self._pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except OSError:
            self._pipe = False

    def open(self) -> None:
        """On a pipe, switch to non-blocking writes (never on a terminal or file shared with
        a shell: its flags are shared too)."""
        if self._pipe and not self._nonblocking:
            os.set_blocking(self._fd, False)
            self._nonblocking = True

    def close(self) -> None:
        """The node is ending: hand over what the pipe takes now (never wait for a reader
        that may be gone) and restore blocking mode for whoever writes after us."""
        if not self._nonblocking:
            return
        self._nonblocking = False
        with contextlib.suppress(OSError):
            os.write(self._fd, b"".join(self._backlog))
        with contextlib.suppress(OSError):
            os.set_blocking(self._fd, True)
        self._backlog.clear()
        self._backlog_bytes = 0

    def emit(self, event: dict[str, Any], droppable: tuple[int, int] | None = None) -> None:
        """Write one event; ``droppable`` (an index range) marks a committed batch that may
        be dropped when the backlog is full."""
        if self._gone:
            return
        line = encode_event(event)
        if droppable is not None and self._backlog_bytes + len(line) > self._limit:
            self.dropped_batches += 1
            if self._dropped is None:
                self._dropped = [droppable[0], droppable[1], 1]
            else:
                self._dropped[1] = droppable[1]
                self._dropped[2] += 1
            return
        if self._dropped is not None:
            first, last, batches = self._dropped
            self._dropped = None
            line = encode_event({"event": "events-dropped", "first": first, "last": last,
                                 "batches": batches}) + line
        self._write(line)

    def _reader_gone(self) -> None:
        self._gone = True
        self._backlog.clear()
        self._backlog_bytes = 0

    def _write(self, data: bytes) -> None:
        if not self._nonblocking:
            try:
                while data:
                    data = data[os.write(self._fd, data):]
            except OSError:
                self._reader_gone()
            return
        if not self._backlog:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._reader_gone()
                return
            if sent == len(data):
                return
            data = data[sent:]
            self._wake.set()
        self._backlog.append(data)
        self._backlog_bytes += len(data)

    async def run(self) -> None:
        """Drain the backlog whenever the pipe takes more (a task of the node's nursery)."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._backlog and self._nonblocking:
                await trio.lowlevel.wait_writable(self._fd)
                data = b"".join(self._backlog)
                self._backlog.clear()
                try:
                    sent = os.write(self._fd, data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._reader_gone()
                    return
                if sent < len(data):
                    self._backlog.append(data[sent:])
                self._backlog_bytes = len(data) - sent


class SafetyWatch:
    """A node's checks on itself; each failure is a ``complaint`` event (see module doc)."""

    def __init__(self, events: EventSink) -> None:
        self._events = events
        self._counts: Counter[str] = Counter()
        #: Rows ``[index, term, digest, ...]`` of the latest applied entries, contiguous.
        self._recent: deque[Sequence[Any]] = deque(maxlen=APPLIED_MEMORY)
        self.max_commit = 0
        self.max_term = 0

    def complain(self, complaint: str, message: str, **details: Any) -> None:
        self._counts[complaint] += 1
        if self._counts[complaint] > MAX_COMPLAINTS_PER_KIND:
            return
        self._events.emit({"event": "complaint", "complaint": complaint,
                           "severity": "violation", "message": message, **details})

    def applied(self, rows: list[list[Any]]) -> None:
        """Committed-event rows just applied (``[index, term, digest, ...]``, in order)."""
        recent = self._recent
        if recent and recent[-1][0] + 1 != rows[0][0]:
            recent.clear()  # only a contiguous run can be looked up by position
        recent.extend(rows)

    def _recent_row(self, index: int) -> Sequence[Any] | None:
        recent = self._recent
        if not recent:
            return None
        position = index - recent[0][0]
        if 0 <= position < len(recent):
            return recent[position]
        return None

    def rewriting(self, entries: Sequence[Any], applied: int) -> None:
        """The log is about to store ``entries`` (Entry objects) starting at or below the
        applied index: each one at an applied index must be the entry applied there."""
        for entry in entries:
            if entry.index > applied:
                return
            row = self._recent_row(entry.index)
            if row is None:
                continue  # applied too long ago to remember: cannot tell
            if row[1] != entry.term or row[2] != entry.digest():
                self.complain(
                    "applied-entry-overwritten",
                    f"asked to replace applied entry {entry.index} (term {row[1]}) with a "
                    f"different one (term {entry.term}): committed entries must never change",
                    index=entry.index, applied={"term": row[1], "digest": row[2]},
                    new={"term": entry.term, "digest": entry.digest()}, applied_index=applied,
                )

    def state(self, term: int, commit: int, last_index: int) -> None:
        """After each Ready: term and commit never go back; commit never passes the log."""
        if term < self.max_term:
            self.complain("term-went-backwards",
                          f"term went from {self.max_term} back to {term}",
                          before=self.max_term, after=term)
        else:
            self.max_term = term
        if commit < self.max_commit:
            self.complain("commit-went-backwards",
                          f"commit index went from {self.max_commit} back to {commit}",
                          before=self.max_commit, after=commit)
        else:
            self.max_commit = commit
        if commit > last_index:
            self.complain("commit-beyond-log",
                          f"commit index {commit} is beyond the last log index {last_index}: "
                          f"committed entries were dropped from the log",
                          commit=commit, last_index=last_index)

    def installing_snapshot(self, index: int, term: int, applied: int) -> None:
        """A leader's snapshot is about to replace the state machine that applied ``applied``."""
        if index < applied:
            self.complain("state-rolled-back",
                          f"asked to install a snapshot at index {index} (term {term}) over a "
                          f"state machine that had applied up to {applied}",
                          index=index, term=term, applied_index=applied)
        row = self._recent_row(index)
        if row is not None and row[1] != term:
            self.complain("snapshot-term-mismatch",
                          f"a snapshot ends at index {index} in term {term}, but the entry "
                          f"applied there has term {row[1]}",
                          index=index, term=term, applied_term=row[1])
        self._recent.clear()
