"""The observations of one run, digested as they are read.

A run's observations can hold hundreds of log dumps of ~100k entries each, far
too much to keep. So :class:`Observations` does not store records: each record
is fed, in file order, to the trackers (logs, leaders, digests) as it is read,
and only what the invariants need survives (per index the committed entry, per
node its committed entries and its last dump). Checking is then a cheap pass
over that state, and can be repeated (e.g. with and without a history).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from checker.logorder.complaints import ComplaintTracker
from checker.logorder.digests import DigestTracker
from checker.logorder.leaders import LeaderTracker
from checker.logorder.logs import LogTracker
from checker.logorder.records import (
    CommittedRecord,
    ComplaintRecord,
    DigestRecord,
    DroppedRecord,
    HealedRecord,
    LifecycleRecord,
    LogRecord,
    Record,
    RoleRecord,
    SnapshotRecord,
    StatusRecord,
    iter_file,
    parse_record,
    record_kind,
)


class Observations:
    """Accumulated state of a run's observations. Build with :func:`load_observations`,
    :meth:`from_records`, or :meth:`add` record by record."""

    def __init__(self, source: str | None = None) -> None:
        self.source = source
        #: what reading the file noticed (a torn last line left out)
        self.notes: list[str] = []
        self.logs = LogTracker()
        self.leaders = LeaderTracker()
        self.digests = DigestTracker()
        self.complaints = ComplaintTracker()
        #: Nodes that pushed committed entries or snapshots (raft_impl does; polled
        #: systems do not), and the index ranges they could not push.
        self.pushing: set[str] = set()
        self.dropped: list[tuple[str, int, int]] = []
        self.snapshots: Counter[str] = Counter()
        self.nodes: set[str] = set()
        self.counts: Counter[str] = Counter()
        #: node -> how many crash / lose-unfsynced / restart marks it has had.
        self.incarnation: Counter[str] = Counter()
        self.healed_time: int | None = None
        self.first_time: int | None = None
        self.last_time: int | None = None

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], source: str | None = None
                     ) -> Observations:
        """Build from decoded JSON objects (lines are numbered from 1 in errors)."""
        observations = cls(source)
        with _no_cyclic_gc():
            for line, raw in enumerate(records, start=1):
                observations.add(parse_record(raw, source, line))
        return observations

    def add(self, record: Record) -> None:
        """Feed one record; records must come in the order the harness wrote them."""
        where = record.where
        self.counts[record_kind(record)] += 1
        if self.first_time is None or where.time < self.first_time:
            self.first_time = where.time
        if self.last_time is None or where.time > self.last_time:
            self.last_time = where.time
        if isinstance(record, HealedRecord):
            self.healed_time = where.time
            self.digests.on_healed(where)
            return
        node = where.node
        assert node is not None
        self.nodes.add(node)
        if isinstance(record, LogRecord):
            self.logs.on_log(record)
        elif isinstance(record, (StatusRecord, RoleRecord)):
            self.leaders.on_role(record, self.incarnation[node])
            if isinstance(record, StatusRecord):
                self.logs.on_applied(node, record.applied)
        elif isinstance(record, DigestRecord):
            self.digests.on_digest(record)
            self.logs.on_applied(node, record.applied)
        elif isinstance(record, LifecycleRecord):
            self.incarnation[node] += 1
            self.logs.on_lifecycle(node, record.kind)
        elif isinstance(record, CommittedRecord):
            self.pushing.add(node)
            self.logs.on_committed(record)
        elif isinstance(record, SnapshotRecord):
            self.pushing.add(node)
            self.snapshots[record.source] += 1
            self.logs.on_snapshot(record)
            if record.digest is not None:
                # A snapshot's digest is the state digest at its index, like a digest record.
                self.digests.on_digest(DigestRecord(where, record.index, record.digest))
        elif isinstance(record, ComplaintRecord):
            self.complaints.on_complaint(record)
        elif isinstance(record, DroppedRecord):
            self.dropped.append((node, record.first, record.last))

    def summary(self) -> dict[str, Any]:
        """What was read, for results: counts per kind, nodes, time span."""
        return {
            "source": self.source,
            "nodes": sorted(self.nodes),
            "records": {kind: n for kind, n in sorted(self.counts.items())},
            "first_time": self.first_time,
            "last_time": self.last_time,
            "healed_time": self.healed_time,
            "pushed": {
                "nodes": sorted(self.pushing),
                "committed_entries": self.logs.pushed_entries,
                "snapshots_taken": self.snapshots["taken"],
                "snapshots_installed": self.snapshots["installed"],
                "dropped_ranges": [list(d) for d in self.dropped[:20]],
            },
        }


def load_observations(path: str | Path) -> Observations:
    """Read ``observations.jsonl``; raises :class:`checker.errors.InputError` on a bad line."""
    observations = Observations(str(path))
    with _no_cyclic_gc():
        for record in iter_file(path, observations.notes):
            observations.add(record)
    return observations


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while loading.

    Loading allocates millions of small tuples and no reference cycles; the
    collector's generation-2 passes over them cost seconds (measured: 1-2 s
    pauses per 100k-entry dump) and free nothing. Reference counting still
    frees every dump as soon as the next one replaces it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
