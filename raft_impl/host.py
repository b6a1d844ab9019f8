"""The raft_impl node's logic without I/O: one object that both hosts drive.

:class:`NodeHost` is everything a raft_impl node decides, around the sans-IO
:class:`~raft_impl.core.RaftCore`: durability ordering and group commit, early
sends and what each fsync made durable (the core's self-acknowledgement),
client sessions and answers, the admin answers, snapshots taken and
installed, the node-level planted bugs and the safety watch. It does no I/O and
never waits. Two shells drive it, as etcd's raft
leaves I/O to the application through Ready/Advance:

- ``raft_impl/node.py`` — the Trio node process (sockets, a WAL on disk,
  a worker thread for fsync, the monotonic clock);
- ``harness/sim/node.py`` — the simulator (virtual network, disk and clock).

So a bug in the node's durability path is a bug in both, and a fuzz of the
simulator searches the code that real runs execute.

Events in: :meth:`NodeHost.step` (a peer message), :meth:`NodeHost.tick`,
:meth:`NodeHost.request` (a client or admin request), :meth:`NodeHost.take_batch`
and :meth:`NodeHost.batch_durable` (the shell's group commit: take what is
staged, write + fsync it, report it durable), :meth:`NodeHost.snapshot_written`
(a snapshot file is durable). After any of them the shell calls
:meth:`NodeHost.process` to turn the core's output into actions.

Actions out, through the :class:`HostIO` the shell implements: ``send`` a
message, ``want_sync`` (something is staged: take a batch when the disk is
free), ``write_snapshot`` (write a snapshot file durably, then call
``snapshot_written``), plus the answers given to each request's ``reply``
callable and the events pushed to an :class:`~raft_impl.events.EventSink`.
Staging records for the WAL is no I/O: the host stages into a :class:`Wal`
(``raft_impl.storage.Storage`` on a real node, an in-memory log in the
simulator) and the shell writes what :meth:`NodeHost.take_batch` hands it.

Durability, in one place:

- A node's messages leave only once the batch holding what they acknowledge
  (entries, term, vote) is durable; they wait in ``_held`` until then.
- A leader's appends and heartbeats and a follower's heartbeat answers leave
  at once when its term and vote are already durable (:meth:`_may_send_early`;
  Raft thesis §10.2.1: the leader writes its log in parallel with replicating it).
- The core counts the leader's own entries only once they are durable: the host
  runs it with ``async_storage_writes`` and tells it what each fsync made durable
  (``core.persisted``, the leader's self-acknowledgement), so every commit index
  it announces is durable on a quorum. The host applies (and so acknowledges) an
  entry only once it is durable here too.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .core import LEADER, READ_MODES, RaftConfig, RaftCore
from .events import EventSink, SafetyWatch
from .kv import Command, CommandError, KVStateMachine
from .messages import AppendEntries, Heartbeat, HeartbeatResponse, Message
from .types import Entry, EntryKind, HardState, Snapshot, SnapshotMeta

#: Entries returned by one ``log`` admin answer at most (use ``from`` to page).
MAX_LOG_ENTRIES = 100_000
ADMIN_OPS = frozenset({"status", "log", "state-digest", "clock"})

Reply = Callable[[dict[str, Any]], None]


class Wal(Protocol):
    """What the host stages for the write-ahead log (no I/O: records in memory)."""

    @property
    def last_index(self) -> int: ...

    @property
    def needs_sync(self) -> bool: ...

    def stage_hard_state(self, hs: HardState) -> None: ...

    def stage_entries(self, entries: Sequence[Entry]) -> None: ...

    def stage_snapshot_mark(self, meta: SnapshotMeta, *, reset: bool) -> None: ...

    def take_staged(self) -> Any: ...


class HostIO(Protocol):
    """The shell's side: what the host asks it to do."""

    def send(self, message: Message) -> None: ...

    def want_sync(self) -> None: ...

    def write_snapshot(self, snapshot: Snapshot, installed: bool) -> None: ...


class Clock(Protocol):
    """The node's fault-injectable clock (the ``clock`` admin op sets it)."""

    offset: float
    rate: float

    def now(self) -> float: ...

    def set(self, offset: float, rate: float) -> None: ...


@dataclass
class HostSettings:
    """The node's tunables: the core's config plus what the host itself needs."""

    raft: RaftConfig
    read_mode: str = "read-index"
    snapshot_threshold: int = 10_000


@dataclass
class TakenBatch:
    """A batch the shell is writing: its number and what it makes durable."""

    number: int
    term_vote: tuple[int, str | None]
    batch: Any


@dataclass
class _Pending:
    """A client proposal waiting for its entry to be applied."""

    term: int
    reply: Reply
    request_id: Any


@dataclass(order=True)
class _WaitingRead:
    index: int
    seq: int
    #: The key read, or the Command of a read-only txn (NodeHost._local_answer).
    key: Any = field(compare=False)
    reply: Reply = field(compare=False)
    request_id: Any = field(compare=False)


class NodeHost:
    """One raft_impl node's logic (see the module docstring for the contract).

    Build it, then :meth:`recover` with what storage recovered; the state
    machine (``kv``) exists from the start so a snapshot can be restored into it.
    """

    def __init__(
        self, node_id: str, peers: Sequence[str], settings: HostSettings,
        rng: random.Random, wal: Wal, io: HostIO, events: EventSink, clock: Clock,
    ) -> None:
        self.id = node_id
        self.peers = [p for p in peers if p != node_id]
        self.settings = settings
        self.bugs = frozenset(settings.raft.bugs)
        self.rng = rng
        self.wal = wal
        self.io = io
        self.events = events
        self.clock = clock
        self.watch = SafetyWatch(events)
        self.kv = KVStateMachine(dedup="no-dedup" not in self.bugs)
        self.core: RaftCore | None = None
        self._pending: dict[int, _Pending] = {}
        self._reads: dict[int, tuple[Any, Reply, Any]] = {}
        self._waiting_reads: list[_WaitingRead] = []
        self._read_ctx = itertools.count(1)
        self._read_seq = itertools.count()
        #: Planted bug ack-before-fsync: everything counts as durable at once.
        self._ack_first = "ack-before-fsync" in self.bugs
        self._batches_taken = 0
        self._batches_durable = 0
        self._staged_term_vote: tuple[int, str | None] = (0, None)
        self._durable_term_vote: tuple[int, str | None] = (0, None)
        #: Last log index known to be fsynced in this node's WAL.
        self._durable_index = 0
        #: Lowest index staged for replacement since the last batch was taken.
        self._cut_since_take: float = math.inf
        self._held: deque[tuple[int, Message]] = deque()
        self._to_apply: deque[Entry] = deque()
        #: A snapshot of our own is being written (at most one at a time).
        self._snapshotting = False
        #: A leader's snapshot is being written: the Ready carrying it, and its digest.
        self._installing: tuple[Any, str] | None = None
        #: Rows of applied entries not yet pushed: one ``committed`` event per round of
        #: the shell's loop (:meth:`push_applied`), not one per apply, keeps the stream cheap.
        self._applied_rows: list[list[Any]] = []

    # ------------------------------------------------------------------ startup

    def recover(self, hard_state: HardState, snapshot: Snapshot | None,
                entries: Sequence[Entry]) -> RaftCore:
        """Build the core from what storage recovered (all of it durable)."""
        self._durable_term_vote = self._staged_term_vote = (hard_state.term, hard_state.vote)
        self._durable_index = self.wal.last_index
        if snapshot is not None:
            self.kv.restore(snapshot.data)
        # We advance each Ready before its fsync: durability comes from persisted().
        config = dataclasses.replace(self.settings.raft, async_storage_writes=True)
        self.core = RaftCore(
            self.id, [self.id, *self.peers], config, self.rng, hard_state,
            snapshot, entries, self.clock.now(), applied=self.kv.applied,
        )
        return self.core

    # ------------------------------------------------------------------ inputs

    def tick(self) -> bool:
        """A timer tick at the node's clock; True when the core has output to process."""
        core = self.core
        assert core is not None
        core.tick(self.clock.now())
        return core.has_ready()

    def step(self, message: Message) -> None:
        assert self.core is not None
        self.core.step(message, self.clock.now())

    def has_ready(self) -> bool:
        return self.core is not None and self._installing is None and self.core.has_ready()

    def process(self) -> int:
        """Turn everything the core has to say into actions (never waits); returns how
        many Readies that took.

        A Ready carrying a leader's snapshot stops here until the shell reports
        the snapshot file durable (:meth:`snapshot_written`): Readies never interleave.
        """
        core = self.core
        assert core is not None
        handled = 0
        while self._installing is None and core.has_ready():
            rd = core.ready()
            handled += 1
            if rd.snapshot is not None:
                self._begin_install(rd)
                break
            self._handle_ready(rd)
        return handled

    def take_batch(self) -> TakenBatch | None:
        """Group commit: everything staged since the last batch, for one write + fsync."""
        batch = self.wal.take_staged()
        if batch is None:
            return None
        self._batches_taken += 1
        self._cut_since_take = math.inf
        return TakenBatch(self._batches_taken, self._staged_term_vote, batch)

    def batch_durable(self, taken: TakenBatch) -> None:
        """The shell wrote and fsynced ``taken``: release what waited for it."""
        self._batches_durable = taken.number
        if not self._ack_first:
            self._durable_term_vote = taken.term_vote
            self._durable_index = int(min(taken.batch.last_index, self._cut_since_take - 1))
            assert self.core is not None
            self.core.persisted(self._durable_index)  # may commit: the shell processes next
        held = self._held
        while held and held[0][0] <= taken.number:
            self._send(held.popleft()[1])
        self._apply_durable()
        self._serve_waiting_reads()
        self.push_applied()

    def snapshot_written(self, snapshot: Snapshot, installed: bool) -> None:
        """The snapshot file asked for by ``io.write_snapshot`` is durable."""
        if installed:
            self._finish_install(snapshot)
        else:
            self._finish_taken(snapshot)

    # ------------------------------------------------------------------ the Ready cycle

    def _handle_ready(self, rd: Any) -> None:
        """Stage a Ready for the WAL and act on what is already safe; never wait for fsync.

        What needs durability waits in queues released by :meth:`batch_durable`:
        messages (acks, votes) until the batch holding what they acknowledge is
        durable, committed entries until they are durable here.
        """
        core = self.core
        assert core is not None
        wal = self.wal
        if rd.hard_state is not None:
            hs = rd.hard_state
            if "forget-vote" in self.bugs:
                hs = HardState(hs.term, None, hs.commit)
            wal.stage_hard_state(hs)
            if (rd.hard_state.vote is not None
                    and (rd.hard_state.term, rd.hard_state.vote) != self._staged_term_vote):
                # A vote granted (or our own, as a candidate): the harness may crash this
                # node right after, to see whether the promise survives a restart.
                self.events.emit({"event": "vote", "term": rd.hard_state.term,
                                  "for": rd.hard_state.vote})
            self._staged_term_vote = (rd.hard_state.term, rd.hard_state.vote)
        if rd.entries:
            # Entries from this index on are being replaced: not durable until fsynced.
            first = rd.entries[0].index
            if first <= self.kv.applied:
                self.watch.rewriting(rd.entries, self.kv.applied)
            self._durable_index = min(self._durable_index, first - 1)
            self._cut_since_take = min(self._cut_since_take, first)
            wal.stage_entries(rd.entries)
        if self._ack_first:
            # Planted bug: everything counts as durable at once (and is never fsynced),
            # the leader's own entries towards a commit too.
            self._durable_index = wal.last_index
            self._durable_term_vote = self._staged_term_vote
            core.persisted(wal.last_index)
        needs_sync = wal.needs_sync
        needed = self._batches_taken + 1 if needs_sync else self._batches_taken
        for m in rd.messages:
            if self._ack_first or needed <= self._batches_durable or self._may_send_early(m):
                self._send(m)
            else:
                self._held.append((needed, m))
        self._to_apply.extend(rd.committed_entries)
        self._apply_durable()
        for read_state in rd.read_states:
            self._read_ready(read_state.ctx, read_state.index)
        for ctx in rd.rejected_reads:
            self._read_rejected(ctx)
        if rd.role_changed is not None:
            role, term = rd.role_changed
            self.push_applied()
            self.events.emit(
                {"event": "role", "term": term, "role": role, "leader": core.leader_id}
            )
            if role != LEADER:
                self._fail_pending("leadership-lost")
        core.advance(rd)
        self.watch.state(core.term, core.commit_index, core.last_index)
        self._serve_waiting_reads()
        if needs_sync:
            self.io.want_sync()
        self._maybe_snapshot()

    def _may_send_early(self, m: Message) -> bool:
        """Messages that acknowledge no log data may leave before the pending fsync, once
        this node's term and vote are durable: a leader's appends and heartbeats (Raft
        thesis §10.2.1), and a follower's heartbeat answers (so a slow disk does not
        look like a dead follower)."""
        return (
            isinstance(m, AppendEntries | Heartbeat | HeartbeatResponse)
            and self._staged_term_vote == self._durable_term_vote
        )

    def _send(self, m: Message) -> None:
        self.io.send(m)

    def _apply_durable(self) -> None:
        """Apply committed entries, in order, as far as they are durable on this node."""
        queue = self._to_apply
        durable = self._durable_index
        if not queue or queue[0].index > durable:
            return
        ready = []
        while queue and queue[0].index <= durable:
            ready.append(queue.popleft())
        self.apply(ready)

    def apply(self, entries: list[Entry]) -> None:
        """Apply, answer the waiting clients, and queue the entries for the next
        ``committed`` event (the harness sees every committed entry before a snapshot
        can compact it: the snapshot event comes after)."""
        kv = self.kv
        pending = self._pending
        rows: list[list[Any]] = []
        for entry in entries:
            if entry.index <= kv.applied:
                continue
            command, result = kv.apply_entry(entry)
            if command is None or command.client is None or command.seq is None:
                client = None if command is None else command.client
                seq = None if command is None else command.seq
                rows.append([entry.index, entry.term, entry.digest(), client, seq, None])
            else:
                rows.append([entry.index, entry.term, entry.digest(), command.client,
                             command.seq, kv.skipped])
            waiter = pending.pop(entry.index, None)
            if waiter is None:
                continue
            if waiter.term != entry.term or result is None:
                # Our entry was overwritten by another leader's: outcome unknown.
                waiter.reply(_unknown(waiter.request_id, "entry-overwritten"))
            else:
                waiter.reply({"id": waiter.request_id, **result.reply_fields()})
        if rows:
            self.watch.applied(rows)
            self._applied_rows.extend(rows)

    def push_applied(self) -> None:
        """One ``committed`` event for the entries applied since the last one. The shell
        calls it at the end of each round of work; the host before any other event too,
        so the stream keeps the order things happened in."""
        rows = self._applied_rows
        if not rows:
            return
        self._applied_rows = []
        commit = self.core.commit_index if self.core is not None else rows[-1][0]
        self.events.emit({"event": "committed", "commit": commit, "entries": rows},
                         droppable=(rows[0][0], rows[-1][0]))

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.reply(_unknown(waiter.request_id, reason))
        reads, self._reads = self._reads, {}
        for _key, reply, request_id in reads.values():
            reply(self._not_leader(request_id))
        waiting, self._waiting_reads = self._waiting_reads, []
        for read in waiting:
            read.reply(self._not_leader(read.request_id))

    def abandon(self) -> None:
        """The process dies: nothing it was asked will be answered (the shell breaks the
        connections), and nothing staged will be written."""
        self._pending.clear()
        self._reads.clear()
        self._waiting_reads.clear()

    # ------------------------------------------------------------------ snapshots

    def _begin_install(self, rd: Any) -> None:
        """A leader's snapshot replaces state machine and log: write it before the rest."""
        snapshot = rd.snapshot
        self.watch.installing_snapshot(snapshot.meta.index, snapshot.meta.term, self.kv.applied)
        self.kv.restore(snapshot.data)
        self._installing = (rd, self.kv.digest())
        self.io.write_snapshot(snapshot, True)

    def _finish_install(self, snapshot: Snapshot) -> None:
        assert self._installing is not None
        rd, digest = self._installing
        self._installing = None
        index = snapshot.meta.index
        # The mark is staged only now that the file is durable; the snapshot-resp
        # in this Ready's messages waits for the mark's fsync.
        self.wal.stage_snapshot_mark(snapshot.meta, reset=True)
        self._durable_index = min(self._durable_index, index)
        self._cut_since_take = min(self._cut_since_take, index + 1)
        while self._to_apply and self._to_apply[0].index <= index:
            self._to_apply.popleft()
        for pending_index in [i for i in self._pending if i <= index]:
            waiter = self._pending.pop(pending_index)
            waiter.reply(_unknown(waiter.request_id, "entry-compacted"))
        self.push_applied()
        self.events.emit({"event": "snapshot", "source": "installed", "index": index,
                          "term": snapshot.meta.term, "digest": digest})
        self._handle_ready(rd)

    def _maybe_snapshot(self) -> None:
        """Snapshot the state machine once enough was applied since the last one."""
        core = self.core
        assert core is not None
        if self._snapshotting or (
            self.kv.applied - core.snapshot_index < self.settings.snapshot_threshold
        ):
            return
        index = self.kv.applied
        term = core.term_at(index)
        if term is None:
            return
        self._snapshotting = True
        self._taken_digest = self.kv.digest()  # of the state serialized: same applied index
        self.io.write_snapshot(Snapshot(SnapshotMeta(index, term), self.kv.snapshot()), False)

    def _finish_taken(self, snapshot: Snapshot) -> None:
        """Our snapshot file is durable: mark it in the WAL and compact the core's log."""
        self._snapshotting = False
        core = self.core
        assert core is not None
        if core.snapshot_index >= snapshot.meta.index:
            return  # a leader's snapshot overtook ours meanwhile
        self.wal.stage_snapshot_mark(snapshot.meta, reset=False)
        self.io.want_sync()
        core.compact(snapshot)
        self.push_applied()  # (already pushed at the round's end: it applied before)
        self.events.emit({"event": "snapshot", "source": "taken", "index": snapshot.meta.index,
                          "term": snapshot.meta.term, "digest": self._taken_digest})

    # ------------------------------------------------------------------ reads

    def _read_ready(self, ctx: int, index: int) -> None:
        read = self._reads.pop(ctx, None)
        if read is None:
            return
        key, reply, request_id = read
        heapq.heappush(
            self._waiting_reads, _WaitingRead(index, next(self._read_seq), key, reply, request_id)
        )

    def _read_rejected(self, ctx: int) -> None:
        read = self._reads.pop(ctx, None)
        if read is not None:
            _key, reply, request_id = read
            reply(self._not_leader(request_id))

    def _serve_waiting_reads(self) -> None:
        waiting = self._waiting_reads
        applied = self.kv.applied
        while waiting and waiting[0].index <= applied:
            read = heapq.heappop(waiting)
            read.reply(self._local_answer(read.request_id, read.key))

    def _local_answer(self, request_id: Any, what: Any) -> dict[str, Any]:
        """A read's answer from the local state: a key's value, or a read-only txn's reads."""
        if isinstance(what, Command):
            return {"id": request_id, **self.kv.read_txn(what.value).reply_fields()}
        return _read_answer(request_id, self.kv.read(what))

    # ------------------------------------------------------------------ clients

    def request(self, request: dict[str, Any], reply: Reply) -> None:
        """One client or admin request; ``reply`` gets its answer, now or later."""
        core = self.core
        assert core is not None
        request_id = request.get("id")
        op = request.get("op")
        if op in ADMIN_OPS:
            reply(self.admin(request_id, op, request))
            return
        try:
            command = Command.from_request(request)
        except CommandError as exc:
            reply(_bad_request(request_id, str(exc)))
            return
        mode = read_path(self.settings.read_mode, request.get("read"))
        # A read-only txn changes nothing: it takes the read path, as a read does.
        # What a read serves is the key, or the whole command for such a txn.
        what = command if command.read_only else command.key
        reads = op == "read" or command.read_only
        if reads and (mode == "stale" or (command.read_only and "txn-local-read" in self.bugs)):
            # Planted bug txn-local-read: any node answers a read-only txn from its own
            # applied state, which on a follower may lack entries committed and acked.
            reply(self._local_answer(request_id, what))
            return
        if core.role != LEADER:
            reply(self._not_leader(request_id))
            return
        if reads and mode in ("read-index", "lease"):
            ctx = next(self._read_ctx)
            self._reads[ctx] = (what, reply, request_id)
            core.request_read(ctx, self.clock.now(), lease=mode == "lease")
            return
        index = core.propose(command.encode())
        if index is None:  # cannot happen after the role check, but never hang a client
            reply(self._not_leader(request_id))
            return
        self._pending[index] = _Pending(core.term, reply, request_id)

    def _not_leader(self, request_id: Any) -> dict[str, Any]:
        assert self.core is not None
        return {
            "id": request_id, "ok": False, "error": "not-leader",
            "leader": self.core.leader_id, "definite": True,
        }

    def admin(self, request_id: Any, op: str, request: dict[str, Any]) -> dict[str, Any]:
        core = self.core
        assert core is not None
        if op == "status":
            value: Any = self.status()
        elif op == "log":
            start = request.get("from", 1)
            if isinstance(start, bool) or not isinstance(start, int):
                return _bad_request(request_id, "from must be an integer")
            value = self.log_dump(start)
        elif op == "state-digest":
            value = {"applied": self.kv.applied, "digest": self.kv.digest()}
        else:  # clock
            clock = self.clock
            if "offset" in request or "rate" in request:
                offset = request.get("offset", clock.offset)
                rate = request.get("rate", clock.rate)
                if not _is_number(offset) or not _is_number(rate) or rate <= 0:
                    return _bad_request(request_id, "clock needs numeric offset and rate > 0")
                clock.set(float(offset), float(rate))
            value = {"offset": clock.offset, "rate": clock.rate, "clock": clock.now()}
        return {"id": request_id, "ok": True, "value": value}

    def status(self) -> dict[str, Any]:
        core = self.core
        assert core is not None
        return {
            "id": self.id,
            "role": core.role,
            "term": core.term,
            "leader": core.leader_id,
            "commit": core.commit_index,
            "applied": self.kv.applied,
            "last_index": core.last_index,
        }

    def log_dump(self, start: int = 1) -> dict[str, Any]:
        core = self.core
        assert core is not None
        lo = max(start, core.first_index)
        hi = min(core.last_index + 1, lo + MAX_LOG_ENTRIES)
        return {
            "commit": core.commit_index,
            "snapshot_index": core.snapshot_index,
            "snapshot_term": core.snapshot_term,
            "entries": [log_entry(e) for e in core.entries(lo, hi)],
        }


def read_path(configured: str, asked: Any) -> str:
    """How to serve one read: the path the request asks for (``"read"``), else the node's.

    A client may pick any path per read, so one run mixes them, except a
    lease: that is only sound on a node configured for leases (its vote
    embargo), so elsewhere a lease read is served as read-index.
    """
    if asked not in READ_MODES:
        return configured
    if asked == "lease" and configured != "lease":
        return "read-index"
    return str(asked)


def _unknown(request_id: Any, reason: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": reason, "definite": False}


def _bad_request(request_id: Any, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": "bad-request", "message": message,
            "definite": True}


def _read_answer(request_id: Any, value: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "value": value, "definite": True}


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def log_entry(entry: Entry) -> dict[str, Any]:
    """One entry of a ``log`` admin answer (docs/DESIGN.md, section 3.5)."""
    client = seq = key = None
    op = "noop"
    if entry.kind is EntryKind.COMMAND:
        try:
            command = Command.decode(entry.data)
            client, seq, op, key = command.client, command.seq, command.op, command.key
        except Exception:  # an entry the state machine cannot read is still listed
            op = "undecodable"
    return {"index": entry.index, "term": entry.term, "client": client, "seq": seq,
            "digest": entry.digest(), "op": op, "key": key}


__all__ = ["ADMIN_OPS", "HostIO", "HostSettings", "NodeHost", "TakenBatch", "Wal", "read_path"]
