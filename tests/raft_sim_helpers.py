"""A tiny deterministic in-memory network that drives N RaftCores in tests.

Virtual time, one seeded RNG, a FIFO of messages in flight that tests can
cut (partitions), filter, drop, duplicate and reorder. Every Ready is handled
as the node process would: persist, send, apply, advance. The cluster checks
two safety invariants as it goes, so every test that drives it checks them:

- at most one node becomes leader per term (election safety);
- no two nodes apply different entries at the same index (state machine safety).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from raft_impl.core import LEADER, RaftConfig, RaftCore, ReadState
from raft_impl.messages import Message
from raft_impl.types import Entry, HardState, Snapshot, SnapshotMeta
from splitbrain_common.wire import decode_body, encode_frame

FAST = RaftConfig(
    election_timeout_min=0.30,
    election_timeout_max=0.60,
    heartbeat_interval=0.05,
)


class SafetyViolation(AssertionError):
    """The simulated cluster broke a Raft safety property."""


@dataclass
class Storage:
    """What a node's disk holds: the part of the core's output that survives a crash."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        base = self.snapshot.meta.index if self.snapshot else 0
        del self.entries[max(first - base - 1, 0) :]
        if self.entries and self.entries[-1].index + 1 != first:
            raise AssertionError(f"gap in stored log before {first}")
        self.entries.extend(entries)

    def install(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.entries = []

    def compact(self, snapshot: Snapshot) -> None:
        base = self.snapshot.meta.index if self.snapshot else 0
        del self.entries[: snapshot.meta.index - base]
        self.snapshot = snapshot


@dataclass
class SimNode:
    id: str
    core: RaftCore
    storage: Storage
    #: state machine: the applied entries in order (index -> entry)
    applied: dict[int, Entry] = field(default_factory=dict)
    read_states: list[ReadState] = field(default_factory=list)
    rejected_reads: list[int] = field(default_factory=list)
    up: bool = True
    last_applied: int = 0


class SimCluster:
    """N cores on a virtual network. Message delivery is FIFO unless a test says otherwise."""

    def __init__(
        self,
        n: int = 3,
        *,
        seed: int = 0,
        config: RaftConfig = FAST,
        configs: dict[str, RaftConfig] | None = None,
        through_wire: bool = False,
        snapshot_every: int | None = None,
    ) -> None:
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.now = 0.0
        self.rng = random.Random(seed)
        self.configs = {i: (configs or {}).get(i, config) for i in self.ids}
        self.through_wire = through_wire
        self.snapshot_every = snapshot_every
        self.network: list[Message] = []
        #: directed links (from, to) that drop everything
        self.cut: set[tuple[str, str]] = set()
        #: extra drop rule: return True to drop the message
        self.drop_if: Callable[[Message], bool] | None = None
        self.sent: list[Message] = []
        #: (node, ctx) -> the highest commit index any node knew when the read was asked
        self.read_floor: dict[tuple[str, int], int] = {}
        self.leaders_by_term: dict[int, str] = {}
        self.committed: dict[int, Entry] = {}
        self.nodes: dict[str, SimNode] = {}
        for node_id in self.ids:
            storage = Storage()
            self.nodes[node_id] = SimNode(node_id, self._make_core(node_id, storage), storage)

    # ------------------------------------------------------------------ lifecycle

    def _make_core(self, node_id: str, storage: Storage, applied: int = 0) -> RaftCore:
        return RaftCore(
            node_id,
            self.ids,
            self.configs[node_id],
            random.Random(self.rng.random()),
            storage.hard_state,
            storage.snapshot,
            list(storage.entries),
            self.now,
            applied=applied,
        )

    def load(self, node_id: str, terms: list[int], term: int | None = None) -> None:
        """Replace a node's disk by a log whose entry ``i`` has term ``terms[i - 1]``
        (the paper's figures written as term lists), and restart it from there."""
        node = self.nodes[node_id]
        entries = [Entry(i + 1, t, data=f"{t}@{i + 1}".encode()) for i, t in enumerate(terms)]
        current = max(terms, default=0) if term is None else term
        node.storage = Storage(HardState(current, None, 0), None, entries)
        node.applied = {}
        node.last_applied = 0
        node.core = self._make_core(node_id, node.storage)

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.up = False
        self.network = [m for m in self.network if m.to != node_id and m.from_ != node_id]

    def restart(self, node_id: str) -> None:
        """Bring a crashed node back from its storage; the state machine is rebuilt by
        replaying from the snapshot."""
        node = self.nodes[node_id]
        snap_index = node.storage.snapshot.meta.index if node.storage.snapshot else 0
        node.applied = {i: e for i, e in node.applied.items() if i <= snap_index}
        node.last_applied = snap_index
        node.core = self._make_core(node_id, node.storage, applied=snap_index)
        node.up = True

    # ------------------------------------------------------------------ network

    def isolate(self, node_id: str) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def partition(self, *groups: Iterable[str]) -> None:
        sets = [set(g) for g in groups]
        for a in self.ids:
            for b in self.ids:
                if a != b and not any(a in s and b in s for s in sets):
                    self.cut.add((a, b))

    def heal(self) -> None:
        self.cut.clear()

    def _dropped(self, m: Message) -> bool:
        if (m.from_, m.to) in self.cut or not self.nodes[m.to].up:
            return True
        return self.drop_if is not None and self.drop_if(m)

    # ------------------------------------------------------------------ driving

    def handle_ready(self, node: SimNode) -> bool:
        core = node.core
        if not node.up or not core.has_ready():
            return False
        rd = core.ready()
        storage = node.storage
        if rd.snapshot is not None:
            storage.install(rd.snapshot)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.hard_state = rd.hard_state
        for m in rd.messages:
            if self.through_wire:
                m = Message.from_wire(decode_body(encode_frame(m.to_wire())[4:]))
            self.sent.append(m)
            self.network.append(m)
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            node.applied = {i: e for i, e in node.applied.items() if i <= meta.index}
            node.last_applied = meta.index
            self._record_snapshot(node, rd.snapshot)
        for entry in rd.committed_entries:
            self._apply(node, entry)
        for state in rd.read_states:
            floor = self.read_floor.pop((node.id, state.ctx), None)
            if floor is not None and state.index < floor:
                raise SafetyViolation(
                    f"stale read on {node.id}: read index {state.index} but index {floor} "
                    "was already committed when the read was asked"
                )
        node.read_states.extend(rd.read_states)
        node.rejected_reads.extend(rd.rejected_reads)
        if rd.role_changed is not None:
            role, term = rd.role_changed
            if role == LEADER:
                holder = self.leaders_by_term.setdefault(term, node.id)
                if holder != node.id:
                    raise SafetyViolation(f"two leaders in term {term}: {holder} and {node.id}")
        core.advance(rd)
        every = self.snapshot_every
        if every and core.applied - core.snapshot_index >= every:
            self.take_snapshot(node.id)
        return True

    def _apply(self, node: SimNode, entry: Entry) -> None:
        expected = node.last_applied + 1
        if entry.index != expected:
            raise SafetyViolation(f"{node.id} applied {entry.index}, expected {expected}")
        node.applied[entry.index] = entry
        node.last_applied = entry.index
        known = self.committed.setdefault(entry.index, entry)
        if known != entry:
            raise SafetyViolation(
                f"{node.id} applied {entry} at {entry.index}, another node applied {known}"
            )

    def _record_snapshot(self, node: SimNode, snapshot: Snapshot) -> None:
        # The snapshot "data" of the simulator is the applied entries' indexes and terms,
        # enough to check that what a follower installs agrees with what others applied.
        for index, entry in self.committed.items():
            if index <= snapshot.meta.index:
                node.applied[index] = entry

    def request_read(self, node_id: str, ctx: int) -> None:
        """Ask ``node_id`` for a read point; the cluster checks it is not stale: the read
        index must cover every entry any node knew committed when the read was asked."""
        floor = max(n.core.commit_index for n in self.nodes.values())
        self.read_floor[(node_id, ctx)] = floor
        self.nodes[node_id].core.request_read(ctx, self.now)

    def take_snapshot(self, node_id: str) -> Snapshot:
        node = self.nodes[node_id]
        core = node.core
        index = core.applied
        term = core.term_at(index)
        assert term is not None
        snapshot = Snapshot(SnapshotMeta(index, term), f"state@{index}".encode())
        core.compact(snapshot)
        node.storage.compact(snapshot)
        return snapshot

    def settle(self) -> None:
        """Handle Readys until no node has anything left to do (no delivery)."""
        busy = True
        while busy:
            busy = False
            for node in self.nodes.values():
                busy |= self.handle_ready(node)

    def deliver(self, m: Message) -> None:
        if self._dropped(m):
            return
        self.nodes[m.to].core.step(m, self.now)

    def deliver_all(self, limit: int = 100_000) -> int:
        """Deliver messages (and the messages they cause) until the network is quiet."""
        delivered = 0
        self.settle()
        while self.network and delivered < limit:
            batch, self.network = self.network, []
            for m in batch:
                self.deliver(m)
                delivered += 1
            self.settle()
        return delivered

    def tick(self, dt: float) -> None:
        self.now += dt
        for node in self.nodes.values():
            if node.up:
                node.core.tick(self.now)

    def run(self, duration: float, step: float = 0.01) -> None:
        """Advance virtual time by ``duration``, delivering everything after each tick."""
        end = self.now + duration
        while self.now < end - 1e-9:
            self.tick(step)
            self.deliver_all()

    def run_until(self, predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
        """Run until ``predicate()`` holds; return the virtual time it took. Fails on timeout."""
        start = self.now
        self.deliver_all()
        while not predicate():
            if self.now - start > timeout:
                raise AssertionError(f"condition not reached within {timeout}s of virtual time")
            self.tick(step)
            self.deliver_all()
        return self.now - start

    # ------------------------------------------------------------------ queries

    def leaders(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.up and n.core.role == LEADER]

    def leader(self) -> str | None:
        """The leader of the highest term among live nodes, if any."""
        best = None
        for node in self.nodes.values():
            if node.up and node.core.role == LEADER and (
                best is None or node.core.term > self.nodes[best].core.term
            ):
                best = node.id
        return best

    def elect(self, timeout: float = 5.0) -> str:
        self.run_until(lambda: self.leader() is not None, timeout)
        leader = self.leader()
        assert leader is not None
        return leader

    def propose(self, data: bytes, node_id: str | None = None) -> int:
        node_id = node_id or self.leader()
        assert node_id is not None, "no leader"
        index = self.nodes[node_id].core.propose(data)
        assert index is not None, f"{node_id} is not leader"
        return index

    def core(self, node_id: str) -> RaftCore:
        return self.nodes[node_id].core

    def log_terms(self, node_id: str) -> list[tuple[int, int]]:
        core = self.core(node_id)
        return [(e.index, e.term) for e in core.entries(core.first_index, core.last_index + 1)]


def with_bugs(config: RaftConfig, *bugs: str) -> RaftConfig:
    return replace(config, bugs=frozenset(bugs))
