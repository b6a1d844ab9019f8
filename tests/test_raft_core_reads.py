"""Reads: read-index needs a quorum round after the leader's no-op commits; lease
reads skip the round while the lease lasts; followers reject. And the planted
read bugs (stale-leader-read, no-noop, lease-too-long) make stale reads possible."""

from __future__ import annotations

import random
from dataclasses import replace

from raft_sim_helpers import FAST, SimCluster, with_bugs

from raft_impl.core import LEADER, RaftCore, ReadState
from raft_impl.messages import AppendEntries, Heartbeat, RequestVote, VoteResponse
from raft_impl.types import HardState

LEASE = replace(FAST, read_mode="lease")


def settled_cluster(config=FAST, seed: int = 1) -> tuple[SimCluster, str]:
    cluster = SimCluster(3, seed=seed, config=config)
    leader = cluster.elect()
    cluster.run(0.2)
    return cluster, leader


def test_read_index_waits_for_a_heartbeat_quorum() -> None:
    cluster, leader = settled_cluster()
    core = cluster.core(leader)
    commit = core.commit_index
    core.request_read(1, cluster.now)
    core.request_read(2, cluster.now)  # joins the same round
    cluster.settle()
    node = cluster.nodes[leader]
    assert node.read_states == [], "not before a quorum confirmed leadership"
    rounds = [m for m in cluster.network if isinstance(m, Heartbeat)]
    assert len(rounds) == 2 and len({m.seq for m in rounds}) == 1
    cluster.deliver_all()
    assert node.read_states == [ReadState(1, commit), ReadState(2, commit)]


def test_read_index_confirmed_by_one_follower_of_two() -> None:
    cluster, leader = settled_cluster()
    slow = next(i for i in cluster.ids if i != leader)
    cluster.isolate(slow)
    cluster.core(leader).request_read(7, cluster.now)
    cluster.deliver_all()
    assert [r.ctx for r in cluster.nodes[leader].read_states] == [7]


def test_cut_off_leader_never_serves_read_index_and_rejects_on_step_down() -> None:
    cluster, leader = settled_cluster()
    cluster.isolate(leader)
    cluster.core(leader).request_read(3, cluster.now)
    cluster.run_until(lambda: cluster.core(leader).role != LEADER, timeout=2.0)
    cluster.settle()
    node = cluster.nodes[leader]
    assert node.read_states == []
    assert node.rejected_reads == [3]


def test_stale_leader_read_bug_serves_a_deposed_leader() -> None:
    config = with_bugs(replace(FAST, check_quorum=False), "stale-leader-read")
    cluster, old = settled_cluster(config)
    cluster.isolate(old)
    cluster.run_until(lambda: any(i != old for i in cluster.leaders()), timeout=3.0)
    new = next(i for i in cluster.leaders() if i != old)
    written = cluster.propose(b"new value", new)
    cluster.run(0.2)
    assert cluster.core(new).commit_index >= written
    cluster.core(old).request_read(9, cluster.now)
    cluster.settle()
    (state,) = cluster.nodes[old].read_states
    assert state.index < written, "the deposed leader serves a read that misses the write"


def test_followers_reject_reads() -> None:
    cluster, leader = settled_cluster()
    fol = next(i for i in cluster.ids if i != leader)
    cluster.core(fol).request_read(5, cluster.now)
    cluster.settle()
    assert cluster.nodes[fol].rejected_reads == [5]


def _read_on_new_leader(config) -> tuple[int, int]:
    """L commits a write that only L knows is committed, dies; F takes over and serves a
    read at once. Returns (index of the write, index of the read)."""
    cluster, old = settled_cluster(config, seed=4)
    fol, other = (i for i in cluster.ids if i != old)
    cluster.isolate(other)
    cluster.cut -= {(old, fol), (fol, old)}
    # The commit index never reaches F (commit-only appends and heartbeats are lost).
    cluster.drop_if = lambda m: m.to == fol and (
        isinstance(m, Heartbeat) or (isinstance(m, AppendEntries) and not m.entries)
    )
    written = cluster.propose(b"acked write")
    cluster.deliver_all()
    assert cluster.core(old).commit_index >= written
    assert cluster.core(fol).commit_index < written
    cluster.crash(old)
    cluster.drop_if = None
    cluster.heal()
    # Let the voter's memory of the old leader expire (without ticking: nobody else moves).
    cluster.now += FAST.election_timeout_min
    cluster.core(fol).campaign(cluster.now)
    cluster.deliver_all()
    new = cluster.core(fol)
    assert new.role == LEADER
    new.request_read(11, cluster.now)
    cluster.run(0.3)
    (state,) = cluster.nodes[fol].read_states
    return written, state.index


def test_read_waits_for_the_new_leaders_noop_to_commit() -> None:
    written, read_index = _read_on_new_leader(FAST)
    assert read_index > written


def test_no_noop_bug_serves_a_read_that_misses_a_committed_write() -> None:
    written, read_index = _read_on_new_leader(with_bugs(FAST, "no-noop"))
    assert read_index < written


def test_lease_read_skips_the_round_while_the_lease_lasts() -> None:
    cluster, leader = settled_cluster(LEASE)
    core = cluster.core(leader)
    assert core.lease_expiry > cluster.now
    # The lease runs from the send time of a quorum-acked heartbeat round.
    assert core.lease_expiry - cluster.now <= LEASE.lease_duration
    core.request_read(1, cluster.now)
    cluster.settle()
    assert cluster.nodes[leader].read_states == [ReadState(1, core.commit_index)]
    assert not [m for m in cluster.network if isinstance(m, Heartbeat)]


def test_a_lease_node_serves_a_read_index_read_when_asked() -> None:
    """A lease-configured leader holding a valid lease still runs a quorum round for a
    read asked with ``lease=False``: one run can exercise both read paths."""
    cluster, leader = settled_cluster(LEASE)
    core = cluster.core(leader)
    assert core.lease_expiry > cluster.now
    core.request_read(1, cluster.now, lease=False)
    cluster.settle()
    node = cluster.nodes[leader]
    assert node.read_states == [], "not before a quorum confirmed leadership"
    assert [m for m in cluster.network if isinstance(m, Heartbeat)]
    cluster.deliver_all()
    assert node.read_states == [ReadState(1, core.commit_index)]
    core.request_read(2, cluster.now)  # the next lease read skips the round again
    cluster.settle()
    assert node.read_states[-1] == ReadState(2, core.commit_index)


def test_expired_lease_falls_back_to_read_index() -> None:
    cluster, leader = settled_cluster(replace(LEASE, check_quorum=False))
    cluster.isolate(leader)
    cluster.run(LEASE.lease_duration + 0.01)
    core = cluster.core(leader)
    assert core.role == LEADER and cluster.now >= core.lease_expiry
    core.request_read(2, cluster.now)
    cluster.settle()
    assert cluster.nodes[leader].read_states == []
    cluster.heal()
    cluster.deliver_all()
    assert [r.ctx for r in cluster.nodes[leader].read_states] == [2]


def _lease_read_after_new_leader(config) -> list[ReadState]:
    cluster, old = settled_cluster(replace(config, check_quorum=False), seed=6)
    cluster.isolate(old)
    cluster.run_until(lambda: any(i != old for i in cluster.leaders()), timeout=3.0)
    new = next(i for i in cluster.leaders() if i != old)
    cluster.propose(b"new value", new)
    cluster.run(0.05)
    cluster.core(old).request_read(4, cluster.now)
    cluster.settle()
    return cluster.nodes[old].read_states


def test_lease_never_outlives_the_election_of_a_new_leader() -> None:
    assert _lease_read_after_new_leader(LEASE) == []


def test_lease_too_long_bug_serves_stale_reads_after_a_new_leader() -> None:
    states = _lease_read_after_new_leader(with_bugs(LEASE, "lease-too-long"))
    assert [s.ctx for s in states] == [4]


def test_with_leases_a_restarted_node_waits_an_election_timeout_before_voting() -> None:
    # It may have acked the lease of a leader just before crashing; voting at once could
    # elect a second leader while that lease still runs.
    for config, granted_early in ((LEASE, False), (FAST, True)):
        core = RaftCore("n1", ["n1", "n2", "n3"], config, random.Random(0), HardState(term=2),
                        None, [], now=10.0)
        core.step(RequestVote("n2", "n1", 3, 0, 0), 10.1)
        early = [m.granted for m in core.ready().messages if isinstance(m, VoteResponse)]
        assert early == ([True] if granted_early else [])
        core.step(RequestVote("n3", "n1", 4, 0, 0), 10.0 + config.election_timeout_min)
        late = [m for m in core.ready().messages if isinstance(m, VoteResponse)]
        assert late[-1].granted and late[-1].to == "n3"
