"""The driver contract of RaftCore (ready / advance), recovery from storage, and the
bug registry."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from raft_sim_helpers import FAST, SimCluster

import raft_impl.core
from raft_impl.bugs import BUGS, CORE_BUGS, validate_bugs
from raft_impl.core import FOLLOWER, LEADER, RaftCore
from raft_impl.messages import AppendEntries, AppendResponse, Heartbeat
from raft_impl.types import Entry, HardState


def fresh(entries=(), hard_state: HardState | None = None, applied: int = 0) -> RaftCore:
    return RaftCore("f", ["f", "l", "x"], FAST, random.Random(1), hard_state or HardState(), None,
                    list(entries), now=0.0, applied=applied)


def test_outputs_produced_between_ready_and_advance_survive() -> None:
    cluster = SimCluster(3, seed=1)
    leader = cluster.elect()
    cluster.run(0.2)
    core = cluster.core(leader)
    core.propose(b"a")
    rd = core.ready()
    assert [e.data for e in rd.entries] == [b"a"] and len(rd.messages) == 2
    # While the driver awaits fsync, more input arrives.
    core.propose(b"b")
    fol = next(i for i in cluster.ids if i != leader)
    core.request_read(5, cluster.now)
    core.advance(rd)
    rd2 = core.ready()
    assert [e.data for e in rd2.entries] == [b"b"], "entries after the Ready stay unstable"
    assert rd2.messages and all(m not in rd.messages for m in rd2.messages)
    assert any(isinstance(m, Heartbeat) for m in rd2.messages)
    assert fol in {m.to for m in rd2.messages}


def test_calling_ready_twice_without_advance_returns_the_same_work() -> None:
    core = fresh()
    core.step(AppendEntries("l", "f", 1, 0, 0, [Entry(1, 1), Entry(2, 1)], 1), 0.0)
    first, second = core.ready(), core.ready()
    assert first == second
    core.advance(second)
    assert not core.has_ready()


def test_a_truncation_between_ready_and_advance_is_written_again() -> None:
    core = fresh()
    core.step(AppendEntries("l", "f", 1, 0, 0, [Entry(1, 1), Entry(2, 1), Entry(3, 1)], 0), 0.0)
    rd = core.ready()
    # A new leader overwrites the uncommitted tail before the driver finished the fsync.
    core.step(AppendEntries("x", "f", 2, 1, 1, [Entry(2, 2)], 0), 0.0)
    core.advance(rd)
    rd2 = core.ready()
    assert (rd2.entries[-1].index, rd2.entries[-1].term) == (2, 2)
    assert rd2.entries[0].index <= 2, "the WAL must truncate the stale entry 2 and 3"
    core.advance(rd2)
    assert not core.ready().entries


def test_role_changes_and_hard_state_come_out_in_ready() -> None:
    core = RaftCore("n1", ["n1"], FAST, random.Random(0), HardState(), None, [], now=0.0)
    rd = core.ready()
    assert rd.role_changed == (FOLLOWER, 0)
    core.advance(rd)
    core.tick(FAST.election_timeout_max)
    rd = core.ready()
    assert rd.role_changed == (LEADER, 1)
    # Single node: its no-op commits once its own copy is durable (the driver advances
    # after persisting: the leader's self-acknowledgement), not before.
    assert [e.kind.value for e in rd.entries] == ["noop"]
    assert rd.hard_state == HardState(1, "n1", 0) and not rd.committed_entries
    core.advance(rd)
    rd = core.ready()
    assert rd.hard_state == HardState(1, "n1", 1)
    assert [e.kind.value for e in rd.committed_entries] == ["noop"]


def test_an_async_driver_commits_only_what_it_reported_durable() -> None:
    """With async_storage_writes, advance() is no acknowledgement: persisted() is."""
    config = dataclasses.replace(FAST, async_storage_writes=True)
    core = RaftCore("n1", ["n1"], config, random.Random(0), HardState(), None, [], now=0.0)
    core.advance(core.ready())
    core.tick(FAST.election_timeout_max)
    core.advance(core.ready())  # the no-op staged, its fsync still running
    assert core.propose(b"x") == 2
    core.advance(core.ready())
    assert core.commit_index == 0
    core.persisted(1)
    assert core.commit_index == 1
    core.persisted(5)  # beyond our log: only what we hold counts
    assert core.commit_index == 2


def test_recovery_clamps_and_replays_committed_entries() -> None:
    entries = [Entry(i, 1, data=b"%d" % i) for i in range(1, 6)]
    # Hard state says commit 9 but the WAL kept only 5 entries (lost unsynced tail).
    core = fresh(entries=entries, hard_state=HardState(1, "l", 9), applied=2)
    assert core.commit_index == 5 and core.applied == 2
    rd = core.ready()
    assert [e.index for e in rd.committed_entries] == [3, 4, 5]
    assert rd.entries == [], "recovered entries are already stable"


def test_crashed_follower_replays_and_catches_up() -> None:
    cluster = SimCluster(3, seed=3)
    leader = cluster.elect()
    for i in range(10):
        cluster.propose(b"w%d" % i)
    cluster.run(0.2)
    fol = next(i for i in cluster.ids if i != leader)
    cluster.crash(fol)
    cluster.propose(b"while down")
    cluster.run(0.2)
    cluster.restart(fol)
    cluster.run(0.5)
    assert cluster.nodes[fol].applied == cluster.nodes[leader].applied


def test_heartbeats_never_carry_a_commit_beyond_the_followers_match() -> None:
    cluster = SimCluster(3, seed=4)
    leader = cluster.elect()
    cluster.run(0.2)
    lag = next(i for i in cluster.ids if i != leader)
    cluster.drop_if = lambda m: isinstance(m, AppendEntries) and m.to == lag
    for _ in range(5):
        cluster.propose(b"x")
    cluster.run(0.3)
    match = cluster.core(leader).progress(lag).match
    beats = [m for m in cluster.sent if isinstance(m, Heartbeat) and m.to == lag]
    assert beats and all(m.commit <= match for m in beats[-3:])
    assert cluster.core(lag).commit_index <= cluster.core(lag).last_index


def test_messages_for_someone_else_or_from_strangers_are_ignored() -> None:
    core = fresh()
    core.step(AppendEntries("l", "nobody", 5, 0, 0, [Entry(1, 5)], 0), 0.0)
    core.step(AppendEntries("intruder", "f", 5, 0, 0, [Entry(1, 5)], 0), 0.0)
    assert core.term == 0 and core.last_index == 0
    core.step(AppendEntries("l", "f", 5, 0, 0, [Entry(1, 5)], 0), 0.0)
    assert core.term == 5 and core.leader_id == "l"
    assert isinstance(core.ready().messages[0], AppendResponse)


def test_bug_registry_lists_every_bug_once() -> None:
    assert set(BUGS) == {
        "no-prev-check", "truncate-on-append", "commit-old-term", "commit-without-quorum",
        "stale-leader-read", "no-noop", "lease-too-long", "ack-before-fsync", "forget-vote",
        "no-dedup", "txn-local-read",
    }
    assert BUGS.keys() >= CORE_BUGS
    assert all(line and "\n" not in line for line in BUGS.values())
    assert validate_bugs(["no-noop"]) == frozenset({"no-noop"})
    with pytest.raises(ValueError, match=r"unknown bug.*nope.*known bugs: ack-before-fsync"):
        validate_bugs(["nope", "no-noop"])


def test_every_core_bug_is_wired_into_the_core() -> None:
    source = Path(raft_impl.core.__file__).read_text()
    for name in CORE_BUGS:
        assert f'"{name}"' in source, name
