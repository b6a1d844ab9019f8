"""One simulated raft_impl node: the simulator's I/O shell around the node's own logic.

Everything a raft_impl node decides lives in :class:`raft_impl.host.NodeHost`
(durability ordering and group commit, early sends and the durability
reports to the core, client and admin answers, snapshots, the node-level planted bugs). The real
node process drives it with sockets, a WAL and threads; this shell drives
the same object with the simulator's virtual network, disk and clock:

- messages from :class:`~harness.sim.network.SimNetwork` are stepped in, and
  the host's sends go back to it;
- the host stages WAL records into a :class:`SimWal`; when it wants a sync,
  the shell takes the batch, writes it to the :class:`~harness.sim.disk.SimDisk`
  (page cache) and, one simulated fsync later, makes it durable and reports
  it (``batch_durable``) — one write at a time, so what arrives meanwhile
  shares the next fsync, as on a real node;
- snapshot files are written whole and durable after one fsync latency;
- ticks come from the event loop at the node's (skewable) clock.

A paused node (SIGSTOP) queues its inputs and runs them on resume; a crash
drops the host, and a restart builds a new one from what the disk kept.
``ack-before-fsync`` follows the real node: its WAL is never fsynced, so a
SIGKILL loses nothing and a machine crash (``lose-unfsynced``) loses
everything the WAL got since the start.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.sim.disk import Record, SimDisk
from raft_impl.core import RaftConfig, RaftCore
from raft_impl.host import HostSettings, NodeHost, TakenBatch
from raft_impl.kv import KVStateMachine
from raft_impl.messages import Message
from raft_impl.types import Entry, HardState, Snapshot, SnapshotMeta

if TYPE_CHECKING:
    from harness.sim.cluster import SimCluster

#: A reply callback: the answer map, or None when the connection was lost.
Reply = Callable[[dict[str, Any] | None], None]


@dataclass
class SimBatch:
    """Records staged since the last batch, written and fsynced as one unit."""

    records: list[Record]
    last_index: int
    compact: bool


class SimWal:
    """The host's WAL staging (``raft_impl.host.Wal``) as simulated disk records.

    Same rules as ``raft_impl.storage.Storage``: entries, a snapshot mark or a
    changed term/vote need an fsync; a hard state that only moves the commit
    index rides along with the next batch.
    """

    def __init__(self, disk: SimDisk, hard_state: HardState, last_index: int) -> None:
        self._disk = disk
        self._records: list[Record] = []
        self._hard_state = hard_state
        self._last_index = last_index
        self._must_sync = False
        self._compact = False

    @property
    def last_index(self) -> int:
        return self._last_index

    @property
    def needs_sync(self) -> bool:
        return self._must_sync

    def stage_hard_state(self, hs: HardState) -> None:
        old = self._hard_state
        self._records.append(("hard_state", hs))
        if hs.term != old.term or hs.vote != old.vote:
            self._must_sync = True
        self._hard_state = hs

    def stage_entries(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        self._records.append(("entries", list(entries)))
        self._must_sync = True
        self._last_index = entries[-1].index

    def stage_snapshot_mark(self, meta: SnapshotMeta, *, reset: bool) -> None:
        snapshot = self._disk.snapshot_files.get(meta.index)
        assert snapshot is not None, "a snapshot mark for a file never written"
        base = self._disk.durable.snapshot
        if not reset and base is not None and meta.index <= base.meta.index:
            return
        self._records.append(("snapshot" if reset else "compact", snapshot))
        if reset or self._last_index < meta.index:
            self._last_index = meta.index
        self._must_sync = True
        self._compact = True

    def take_staged(self) -> SimBatch | None:
        if not self._records:
            return None
        batch = SimBatch(self._records, self._last_index, self._compact)
        self._records = []
        self._must_sync = False
        self._compact = False
        return batch


class SimClock:
    """The real node's clock (``real + offset + (rate - 1) * (real - set_at)``) on
    virtual time. A strobe is the executor's: it sets the clock every period."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._real = now
        self.offset = 0.0
        self.rate = 1.0
        self.set_at = 0.0

    def now(self) -> float:
        t = self._real()
        return t + self.offset + (self.rate - 1.0) * (t - self.set_at)

    def set(self, offset: float, rate: float) -> None:
        self.offset, self.rate, self.set_at = offset, rate, self._real()


class SimNode:
    def __init__(self, cluster: SimCluster, node_id: str, peers: list[str],
                 raft_config: RaftConfig) -> None:
        self.cluster = cluster
        self.loop = cluster.loop
        self.rng = cluster.rng
        self.id = node_id
        self.peers = peers
        self.settings = HostSettings(raft_config, read_mode=raft_config.read_mode,
                                     snapshot_threshold=raft_config.snapshot_threshold)
        self.bugs = frozenset(raft_config.bugs)
        self.disk = SimDisk()
        self.clock_state = SimClock(lambda: self.loop.now)
        self.up = False
        self.paused = False
        self.incarnation = 0
        self.host: NodeHost | None = None
        self._backlog: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._inflight: list[Reply] = []
        self._writing = False
        #: Role and snapshot events of the current step, told to the cluster after it.
        self._told: list[tuple[str, dict[str, Any]]] = []

    # -- what the cluster reads ----------------------------------------------------------

    @property
    def core(self) -> RaftCore | None:
        return None if self.host is None else self.host.core

    @property
    def kv(self) -> KVStateMachine | None:
        return None if self.host is None else self.host.kv

    def clock(self) -> float:
        return self.clock_state.now()

    def set_clock(self, offset: float, rate: float) -> None:
        """The ``clock`` admin op of the real node."""
        self.clock_state.set(offset, rate)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.up:
            return
        image = self.disk.image()
        wal = SimWal(self.disk, image.hard_state, _last_index(image))
        self.clock_state.set(0.0, 1.0)  # a new process: its clock is true again
        self.host = NodeHost(self.id, [self.id, *self.peers], self.settings,
                             random.Random(self.rng.getrandbits(64)), wal, self, self,
                             self.clock_state)
        self.host.recover(image.hard_state, image.snapshot, image.entries)
        self.up = True
        self.paused = False
        self._writing = False
        self.incarnation += 1
        if self.incarnation > 1:
            self.cluster.observe(self.id, "restart")
            self.cluster.observe_log(self.id, full_log=True)  # what survived on disk
        self._schedule_tick(self.incarnation)

    def crash(self, lose_unfsynced: bool = False, torn: bool = False) -> None:
        """SIGKILL (page cache survives) or, with ``lose_unfsynced``, a machine crash."""
        if not self.up:
            return
        self.up = False
        self.paused = False
        if self.host is not None:
            self.host.abandon()
        self.host = None
        self._writing = False
        self._backlog.clear()
        self._told.clear()
        for reply in self._inflight:
            reply(None)  # the client's connection breaks: outcome unknown
        self._inflight.clear()
        if lose_unfsynced:
            self.disk.machine_crash(self.rng, torn)
            self.cluster.observe(self.id, "lose-unfsynced")
        else:
            self.disk.process_crash()
            self.cluster.observe(self.id, "crash")

    def pause(self) -> None:
        if self.up:
            self.paused = True

    def resume(self) -> None:
        if not (self.up and self.paused):
            return
        self.paused = False
        backlog, self._backlog = self._backlog, []
        for fn, args in backlog:
            if not self.up or self.paused:
                break
            fn(*args)

    def _run(self, fn: Callable[..., None], *args: Any) -> bool:
        """Run now, or queue until resume if the process is stopped. False if down."""
        if not self.up:
            return False
        if self.paused:
            self._backlog.append((fn, args))
            return True
        fn(*args)
        return True

    def _live(self, incarnation: int, fn: Callable[..., None], *args: Any) -> bool:
        """For timers: True when ``fn`` ran or was queued for resume (same incarnation)."""
        if not self.up or incarnation != self.incarnation:
            return False
        return self._run(fn, *args)

    # -- inputs --------------------------------------------------------------------------

    def _schedule_tick(self, incarnation: int) -> None:
        self.loop.call_later(self.cluster.config.tick_interval, self._on_tick, incarnation)

    def _on_tick(self, incarnation: int) -> None:
        if not self.up or incarnation != self.incarnation:
            return
        self._schedule_tick(incarnation)
        if self.paused:
            return  # a stopped process does not tick; its timers fire late on resume
        assert self.host is not None
        if self.host.tick():
            self._round()

    def receive(self, message: Message) -> None:
        self._run(self._step, message)

    def _step(self, message: Message) -> None:
        assert self.host is not None
        self.host.step(message)
        self._round()

    def request(self, request: dict[str, Any], reply: Reply) -> bool:
        """A client request arrives; False when the node is down (connection refused)."""
        if not self.up:
            return False
        self._inflight.append(reply)
        return self._run(self._handle, request, reply)

    def _handle(self, request: dict[str, Any], reply: Reply) -> None:
        assert self.host is not None
        self.host.request(request, lambda answer: self._answer(reply, answer))
        self._round()

    def _answer(self, reply: Reply, answer: dict[str, Any]) -> None:
        try:
            self._inflight.remove(reply)
        except ValueError:
            return  # already answered (or the connection broke)
        self.cluster.client_reply(reply, answer)

    def _round(self) -> None:
        """After an input: the host acts on the core's output, then the cluster hears
        the role and snapshot events (a nemesis trigger may crash this node there)."""
        host = self.host
        assert host is not None
        handled = host.process()
        if handled:
            self.loop.charge(handled)
        host.push_applied()
        self._tell()

    def _tell(self) -> None:
        told = self._told
        if not told:
            return
        self._told = []
        incarnation = self.incarnation
        for kind, fields in told:
            if not self.up or incarnation != self.incarnation:
                return
            if kind == "vote":  # a trigger event only (the collector keeps no record)
                self.cluster.control.notify("vote", self.id)
                continue
            self.cluster.observe(self.id, kind, **fields)
            if kind == "snapshot":
                self.cluster.control.notify("snapshot", self.id)
                if fields["source"] == "installed":
                    self.cluster.control.notify("snapshot-installed", self.id)

    # -- HostIO and the event sink -------------------------------------------------------

    def send(self, message: Message) -> None:
        self.cluster.network.send(self.id, message.to, message)

    def want_sync(self) -> None:
        if not self._writing:
            self._write()

    def _write(self) -> None:
        """Group commit: write what is staged now; it is durable one fsync later."""
        assert self.host is not None
        taken = self.host.take_batch()
        if taken is None:
            return
        for record in taken.batch.records:
            self.disk.write(record)
        self._writing = True
        self.loop.call_later(self.cluster.fsync_latency(), self._live, self.incarnation,
                             self._fsynced, taken)

    def _fsynced(self, taken: TakenBatch) -> None:
        host = self.host
        assert host is not None
        if "ack-before-fsync" not in self.bugs:
            self.disk.fsync()  # the bug's WAL is never fsynced, as the real node's
        self._writing = False
        host.batch_durable(taken)
        if host.wal.needs_sync:
            self._write()
        self._round()

    def write_snapshot(self, snapshot: Snapshot, installed: bool) -> None:
        if not installed:
            # Show the collector the entries about to vanish under the snapshot: a real
            # collector may miss them between two polls, the simulator need not.
            self.cluster.observe_log(self.id)
        self.loop.call_later(self.cluster.fsync_latency(), self._live, self.incarnation,
                             self._snapshot_written, snapshot, installed)

    def _snapshot_written(self, snapshot: Snapshot, installed: bool) -> None:
        host = self.host
        assert host is not None
        files = self.disk.snapshot_files
        files[snapshot.meta.index] = snapshot
        base = self.disk.durable.snapshot
        if base is not None:  # files older than the durable base are never read again
            for index in [i for i in files if i < base.meta.index]:
                del files[index]
        host.snapshot_written(snapshot, installed)
        self._round()

    def emit(self, event: dict[str, Any], droppable: tuple[int, int] | None = None) -> None:
        """What the real node pushes on stdout, turned into the observations the real
        collector (``harness/run/collect.py``) writes for it. Role and snapshot events are
        told at the end of the step: a nemesis trigger may crash this node there."""
        kind = event.get("event")
        if kind == "committed":
            self.cluster.observe(self.id, "committed", commit=event["commit"], entries=[
                {"index": index, "term": term, "digest": digest, "client": client,
                 "seq": seq, "duplicate": duplicate}
                for index, term, digest, client, seq, duplicate in event["entries"]])
        elif kind == "role":
            self._told.append(("role", {"term": event["term"], "role": event["role"],
                                        "leader": event.get("leader")}))
        elif kind == "vote":
            self._told.append(("vote", {"term": event["term"], "for": event["for"]}))
        elif kind == "snapshot":
            self._told.append(("snapshot", {
                "source": event.get("source"), "index": event.get("index"),
                "term": event.get("term"), "digest": event.get("digest")}))
        elif kind == "complaint":
            details = {k: v for k, v in event.items()
                       if k not in ("event", "complaint", "severity", "message")}
            self.cluster.observe(self.id, "complaint", complaint=event.get("complaint"),
                                 severity=event.get("severity", "violation"),
                                 message=event.get("message"), source="event",
                                 details=details)

    # -- introspection (the admin API) ---------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``status`` admin answer (with the node's ``id``, as a real node's)."""
        assert self.host is not None
        return self.host.status()

    def log_dump(self, from_index: int | None = None) -> dict[str, Any]:
        """The ``log`` admin answer, with ``from`` as the real collector adds it."""
        host = self.host
        assert host is not None and host.core is not None
        dump = host.log_dump(from_index or 1)
        if from_index is not None:
            dump["from"] = max(host.core.first_index, from_index)
        return dump

    def digest(self) -> dict[str, Any]:
        assert self.host is not None
        return {"applied": self.host.kv.applied, "digest": self.host.kv.digest()}


def _last_index(image: Any) -> int:
    if image.entries:
        return int(image.entries[-1].index)
    return image.snapshot.meta.index if image.snapshot is not None else 0
