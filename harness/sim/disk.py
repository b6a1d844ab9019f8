"""A simulated disk per node: what a node wrote, and what of it survives a crash.

A real node appends records to its write-ahead log and later fsyncs. A process
crash (SIGKILL) loses nothing that was written, because the kernel's page cache
still has it; a machine crash (the nemesis ``lose-unfsynced``) loses every
record written after the last completed fsync, and may leave a torn record at
the tail that recovery truncates. The simulated disk keeps the records in the
same two parts — ``durable`` and ``unsynced`` — so both kinds of crash, and the
planted bugs that skip or delay an fsync, behave as on a real machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raft_impl.types import Entry, HardState, Snapshot

# One WAL record: ("hard_state", HardState) | ("entries", list[Entry]) | ("snapshot", Snapshot)
Record = tuple[str, object]


@dataclass
class DiskImage:
    """What a restarting node reads back: hard state, latest snapshot, retained log."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def apply(self, record: Record) -> None:
        """Replay one WAL record, with the node's truncate-then-append semantics."""
        kind, payload = record
        if kind == "hard_state":
            assert isinstance(payload, HardState)
            self.hard_state = payload
        elif kind == "entries":
            assert isinstance(payload, list)
            floor = self.snapshot.meta.index if self.snapshot is not None else 0
            if payload and payload[0].index <= floor:
                payload = [e for e in payload if e.index > floor]  # already in the snapshot
            if not payload:
                return
            first = payload[0].index
            entries = self.entries
            # The retained log is contiguous, so the position of an index is arithmetic.
            # A first index at or below the last means the leader overwrote a
            # conflicting suffix: drop it before appending.
            if entries and entries[0].index <= first <= entries[-1].index + 1:
                del entries[first - entries[0].index :]
            else:
                entries.clear()  # before the retained log, or after a gap: start afresh
            entries.extend(payload)
        elif kind == "snapshot":
            assert isinstance(payload, Snapshot)
            # An installed snapshot replaces the whole log, as the core's does.
            self.snapshot = payload
            self.entries = []
        elif kind == "compact":
            assert isinstance(payload, Snapshot)
            # Compaction keeps the log after the snapshot point; a later install wins.
            if self.snapshot is None or payload.meta.index >= self.snapshot.meta.index:
                self.snapshot = payload
                self.entries = [e for e in self.entries if e.index > payload.meta.index]
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown WAL record kind {kind!r}")


class SimDisk:
    """Durable image plus the records written since the last fsync."""

    def __init__(self) -> None:
        self.durable = DiskImage()
        self.unsynced: list[Record] = []
        self.fsyncs = 0
        #: Snapshot files by index: each written whole and fsynced on its own.
        self.snapshot_files: dict[int, Snapshot] = {}

    def write(self, record: Record) -> None:
        self.unsynced.append(record)

    def write_durable(self, record: Record) -> None:
        """A file written whole and fsynced on its own (a snapshot): durable at once,
        whatever is still unsynced in the log. It is also kept in the unsynced tail so a
        later replay of that tail keeps the order (snapshot records are idempotent)."""
        self.durable.apply(record)
        self.unsynced.append(record)

    def fsync(self) -> None:
        """Everything written so far becomes durable."""
        for record in self.unsynced:
            self.durable.apply(record)
        self.unsynced.clear()
        self.fsyncs += 1

    def process_crash(self) -> None:
        """SIGKILL: the page cache survives, so every written record is kept."""
        self.fsync()

    def machine_crash(self, rng: random.Random, torn: bool) -> int:
        """Power loss: unsynced records are lost; with ``torn``, a random prefix of them
        reached the platter (a torn tail is truncated on recovery, so a prefix is what
        survives). Returns how many records were lost."""
        keep = rng.randrange(len(self.unsynced) + 1) if torn and self.unsynced else 0
        for record in self.unsynced[:keep]:
            self.durable.apply(record)
        lost = len(self.unsynced) - keep
        self.unsynced.clear()
        return lost

    def image(self) -> DiskImage:
        """A copy of the durable image, for rebuilding a node after a crash."""
        return DiskImage(
            hard_state=self.durable.hard_state,
            snapshot=self.durable.snapshot,
            entries=list(self.durable.entries),
        )
