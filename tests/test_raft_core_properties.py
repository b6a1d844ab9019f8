"""Hypothesis properties of the Raft core: the message codec round trip through the
real frame codec, and safety of a 3-node cluster under any schedule of message
drops, duplicates, reorders, partitions, crashes and compactions."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raft_sim_helpers import FAST, SafetyViolation, SimCluster

from raft_impl.core import LEADER
from raft_impl.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    MessageError,
    RequestVote,
    SnapshotResponse,
    VoteResponse,
)
from raft_impl.types import Entry, EntryKind, Snapshot, SnapshotMeta
from splitbrain_common.wire import decode_body, encode_frame

# --------------------------------------------------------------------- codec round trip

ids = st.text(min_size=1, max_size=8)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
small = st.integers(min_value=0, max_value=2**40)


@st.composite
def entry_runs(draw: st.DrawFn) -> list[Entry]:
    start = draw(st.integers(min_value=1, max_value=2**40))
    specs = draw(
        st.lists(
            st.tuples(small, st.sampled_from(list(EntryKind)), st.binary(max_size=64)),
            max_size=8,
        )
    )
    return [Entry(start + i, term, kind, data) for i, (term, kind, data) in enumerate(specs)]


messages = st.one_of(
    st.builds(AppendEntries, ids, ids, u64, u64, u64, entry_runs(), u64),
    st.builds(AppendResponse, ids, ids, u64, u64, st.booleans(), u64, u64),
    st.builds(RequestVote, ids, ids, u64, u64, u64, st.booleans()),
    st.builds(VoteResponse, ids, ids, u64, st.booleans(), st.booleans()),
    st.builds(Heartbeat, ids, ids, u64, u64, u64),
    st.builds(HeartbeatResponse, ids, ids, u64, u64),
    st.builds(
        InstallSnapshot, ids, ids, u64,
        st.builds(Snapshot, st.builds(SnapshotMeta, u64, u64), st.binary(max_size=256)),
    ),
    st.builds(SnapshotResponse, ids, ids, u64, u64, st.booleans()),
)


@given(messages)
def test_message_wire_round_trip(message: Message) -> None:
    wire = message.to_wire()
    assert wire["type"] in MESSAGE_TYPES
    assert {"type", "from", "to", "term"} <= wire.keys()
    frame = encode_frame(wire)
    assert Message.from_wire(decode_body(frame[4:])) == message


wire_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=5), st.binary(max_size=5),
    st.lists(st.one_of(st.integers(-3, 3), st.binary(max_size=3), st.text(max_size=3)),
             max_size=4),
)


@given(
    st.sampled_from([*sorted(MESSAGE_TYPES), "bogus"]),
    st.dictionaries(
        st.sampled_from(["from", "to", "term", "prev_index", "prev_term", "entries", "commit",
                         "index", "reject", "hint_index", "hint_term", "last_index",
                         "last_term", "granted", "seq", "snapshot"]),
        wire_values,
    ),
)
def test_malformed_wire_maps_raise_message_error_only(kind: str, fields: dict[str, Any]) -> None:
    try:
        message = Message.from_wire({"type": kind, **fields})
    except MessageError:
        return
    # Whatever decodes must encode back to an equivalent message.
    assert Message.from_wire(message.to_wire()) == message


def test_known_malformed_maps_are_rejected() -> None:
    good = AppendEntries("n1", "n2", 3, 1, 1, [Entry(2, 3)], 1).to_wire()
    for bad in (
        {**good, "term": -1},
        {**good, "term": True},
        {**good, "entries": [[2, 3, "command"]]},
        {**good, "entries": [[2, 3, "strange", b""]]},
        {**good, "entries": [[2, 3, "command", b""], [4, 3, "command", b""]]},
        {k: v for k, v in good.items() if k != "from"},
        [1, 2],
    ):
        try:
            Message.from_wire(bad)  # type: ignore[arg-type]
        except MessageError:
            continue
        raise AssertionError(f"accepted {bad!r}")


# --------------------------------------------------------------------- safety under chaos

NODES = ["n1", "n2", "n3"]
#: a node by number, the leader of the highest term, or the leader of the lowest term (a
#: deposed leader that has not noticed yet, when there are two)
TARGETS = [0, 1, 2, "leader", "oldest-leader"]


@dataclass(frozen=True)
class Faults:
    """Per-message fault probabilities of the simulated network for one example."""

    drop: float
    duplicate: float  # a copy is delivered again in a later step (a delayed duplicate)
    delay: float  # the message is held back to a later step (reordering)


faults = st.builds(
    Faults,
    st.sampled_from([0.0, 0.05, 0.2]),
    st.sampled_from([0.0, 0.05, 0.2]),
    st.sampled_from([0.0, 0.1, 0.4]),
)

# Running and proposing are listed twice: they should dominate a schedule.
actions = st.one_of(
    st.tuples(st.just("run"), st.integers(1, 40)),
    st.tuples(st.just("run"), st.integers(1, 40)),
    st.tuples(st.just("propose"), st.integers(1, 4)),
    st.tuples(st.just("propose"), st.integers(1, 4)),
    st.tuples(st.just("read"), st.sampled_from(TARGETS)),
    st.tuples(st.just("isolate"), st.sampled_from(TARGETS)),
    st.tuples(st.just("heal"), st.just(0)),
    st.tuples(st.just("crash"), st.sampled_from(TARGETS)),
    st.tuples(st.just("restart"), st.integers(0, 2)),
    st.tuples(st.just("snapshot"), st.integers(0, 2)),
)

STEP = 0.02  # virtual seconds per network step


def chaos_step(cluster: SimCluster, rng: random.Random, f: Faults) -> None:
    """One step of a faulty network: time passes, then every message in flight is
    dropped, delayed, delivered, or delivered and kept for a later duplicate."""
    cluster.tick(STEP)
    cluster.settle()
    in_flight, cluster.network = cluster.network, []
    later: list[Message] = []
    for message in in_flight:
        roll = rng.random()
        if roll < f.drop:
            continue
        if roll < f.drop + f.delay:
            later.append(message)
            continue
        cluster.deliver(message)
        if rng.random() < f.duplicate:
            later.append(message)
    cluster.settle()
    cluster.network[:0] = later


def run_chaos(
    seed: int,
    schedule: list[tuple[str, Any]],
    f: Faults = Faults(0.0, 0.0, 0.0),
    bugs: frozenset[str] = frozenset(),
    read_mode: str = "read-index",
) -> tuple[SimCluster, str]:
    """Apply a schedule to a 3-node cluster on a faulty network. SimCluster raises
    SafetyViolation if two nodes apply different entries at one index, two nodes lead one
    term, or a read point misses an entry known committed when the read was asked. Then
    heal everything and run until the cluster converges."""
    config = replace(FAST, bugs=bugs, read_mode=read_mode)
    cluster = SimCluster(3, seed=seed, config=config)
    rng = random.Random(seed)
    proposals = reads = 0

    def target(which: int | str) -> str | None:
        if which == "leader":
            return cluster.leader()
        if which == "oldest-leader":
            leaders = sorted(cluster.leaders(), key=lambda i: cluster.core(i).term)
            return leaders[0] if leaders else None
        return NODES[int(which)]

    for kind, arg in schedule:
        if kind == "run":
            for _ in range(arg):
                chaos_step(cluster, rng, f)
        elif kind == "propose":
            for leader in cluster.leaders():
                for _ in range(arg):
                    proposals += 1
                    cluster.nodes[leader].core.propose(b"p%d" % proposals)
            cluster.settle()
        elif kind == "read":
            node_id = target(arg)
            if node_id is not None and cluster.nodes[node_id].up:
                reads += 1
                cluster.request_read(node_id, reads)
                cluster.settle()
        elif kind == "isolate":
            node_id = target(arg)
            if node_id is not None:
                cluster.isolate(node_id)
        elif kind == "heal":
            cluster.heal()
        elif kind == "crash":
            node_id = target(arg)
            if node_id is not None and sum(n.up for n in cluster.nodes.values()) > 1:
                cluster.crash(node_id)
        elif kind == "restart" and not cluster.nodes[NODES[arg]].up:
            cluster.restart(NODES[arg])
        elif kind == "snapshot":
            node = cluster.nodes[NODES[arg]]
            if node.up and node.core.applied > node.core.snapshot_index:
                cluster.take_snapshot(node.id)
    cluster.heal()
    for node_id in NODES:
        if not cluster.nodes[node_id].up:
            cluster.restart(node_id)
    leader = cluster.elect(timeout=10.0)
    cluster.propose(b"final")
    cluster.run(1.0)
    return cluster, leader


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.integers(0, 2**32),
    st.lists(actions, min_size=20, max_size=50),
    faults,
    st.sampled_from(["read-index", "lease"]),
)
def test_no_schedule_breaks_safety(
    seed: int, schedule: list[tuple[str, Any]], f: Faults, read_mode: str
) -> None:
    cluster, leader = run_chaos(seed, schedule, f, read_mode=read_mode)
    lead = cluster.core(leader)
    assert lead.role == LEADER
    # After healing, every node has applied the same, complete committed log.
    for node in cluster.nodes.values():
        assert node.last_applied == lead.commit_index
        assert node.core.commit_index == lead.commit_index


def test_chaos_driver_catches_a_planted_bug() -> None:
    """The chaos driver has teeth: isolating the leader while writing exposes
    commit-without-quorum (the isolated leader applies writes the majority overwrites),
    and the same schedule is safe without the bug."""
    schedule = [
        ("run", 40), ("isolate", "leader"), ("propose", 3), ("run", 60),
        ("propose", 2), ("run", 5), ("heal", 0),
    ]
    run_chaos(1, schedule)
    with pytest.raises(SafetyViolation):
        run_chaos(1, schedule, bugs=frozenset({"commit-without-quorum"}))
