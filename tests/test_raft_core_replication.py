"""Log replication: the consistency check, conflict hints, Figure 7 and Figure 8,
truncation only on conflict, pipelining and batching, snapshots (and the
planted bugs that break these rules)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from raft_sim_helpers import FAST, SafetyViolation, SimCluster, with_bugs

from raft_impl.core import LEADER, RaftCore
from raft_impl.messages import AppendEntries, AppendResponse, InstallSnapshot, Message
from raft_impl.progress import REPLICATE
from raft_impl.types import Entry, HardState

NO_PREVOTE = replace(FAST, pre_vote=False, check_quorum=False)


def follower(terms: list[int], term: int, config=FAST) -> RaftCore:
    entries = [Entry(i + 1, t, data=f"{t}@{i + 1}".encode()) for i, t in enumerate(terms)]
    return RaftCore("f", ["f", "l", "x"], config, random.Random(0), HardState(term=term), None,
                    entries, now=0.0)


def replies(core: RaftCore) -> list[Message]:
    rd = core.ready()
    core.advance(rd)
    return rd.messages


def append(prev: tuple[int, int], terms_from: int, terms: list[int], term: int,
           commit: int = 0) -> AppendEntries:
    entries = [Entry(terms_from + i, t, data=f"{t}@{terms_from + i}".encode())
               for i, t in enumerate(terms)]
    return AppendEntries("l", "f", term, prev[0], prev[1], entries, commit)


# --------------------------------------------------------------------- the consistency check


@pytest.mark.parametrize(
    ("log", "prev", "hint"),
    [
        ([1, 1, 2, 2, 2], (5, 3), (5, 2)),  # same length, last term differs
        ([1, 1, 2, 2, 2], (8, 4), (5, 2)),  # follower shorter than prev
        ([1, 1, 3, 3, 3], (5, 2), (2, 1)),  # follower's later-term tail skipped in one go
        ([], (3, 1), (0, 0)),
    ],
)
def test_follower_rejects_mismatched_prev_and_hints(log, prev, hint) -> None:
    core = follower(log, term=3)
    core.step(append(prev, prev[0] + 1, [4], term=4), 0.0)
    (resp,) = replies(core)
    assert isinstance(resp, AppendResponse)
    assert resp.reject and resp.index == prev[0]
    assert (resp.hint_index, resp.hint_term) == hint
    assert [e.term for e in core.entries(1, 100)] == log, "a rejected append changes nothing"


def test_follower_accepts_matching_prev_and_commits_only_what_matched() -> None:
    core = follower([1, 1, 2, 2, 2, 2, 2], term=3)
    # Matches at 3; the leader's commit is 9 but only index 4 is proven equal to the leader's.
    core.step(append((3, 2), 4, [3], term=3, commit=9), 0.0)
    (resp,) = replies(core)
    assert not resp.reject and resp.index == 4
    assert [e.term for e in core.entries(1, 100)] == [1, 1, 2, 3], "conflict at 4 truncates"
    assert core.commit_index == 4


def test_no_prev_check_bug_accepts_a_divergent_log_and_commits_it() -> None:
    good = follower([1, 1, 2], term=3)
    good.step(append((3, 3), 4, [3], term=3, commit=4), 0.0)
    assert replies(good)[0].reject
    bad = follower([1, 1, 2], term=3, config=with_bugs(FAST, "no-prev-check"))
    bad.step(append((3, 3), 4, [3], term=3, commit=4), 0.0)
    rd = bad.ready()
    assert not rd.messages[0].reject
    # The follower now applies its own term-2 entry at 3, which the leader never had.
    assert [(e.index, e.term) for e in rd.committed_entries][-2:] == [(3, 2), (4, 3)]


def _divergent_entry_at_prev(bugs: tuple[str, ...]) -> SimCluster:
    """A (isolated leader) appends X at i; the majority commits another entry Y at i under
    a new leader, which then dies; the third node leads and probes A at prev = (i, term(Y))."""
    cluster = SimCluster(3, seed=12, config=with_bugs(FAST, *bugs))
    a = cluster.elect()
    cluster.run(0.2)
    cluster.isolate(a)
    index = cluster.propose(b"X", a)
    cluster.settle()
    cluster.run_until(lambda: any(i != a for i in cluster.leaders()), timeout=3.0)
    second = next(i for i in cluster.leaders() if i != a)
    cluster.run(0.2)
    third = next(i for i in cluster.ids if i not in (a, second))
    assert cluster.core(third).term_at(index) != cluster.core(a).term_at(index)
    cluster.crash(second)
    cluster.heal()
    cluster.run_until(lambda: cluster.core(third).role == LEADER, timeout=5.0)
    cluster.run(0.5)
    return cluster


def test_divergent_entry_at_prev_index_is_replaced() -> None:
    cluster = _divergent_entry_at_prev(())
    leader = cluster.leader()
    assert leader is not None
    for node_id in cluster.ids:
        if cluster.nodes[node_id].up:
            assert cluster.log_terms(node_id) == cluster.log_terms(leader)


def test_no_prev_check_bug_applies_a_divergent_entry() -> None:
    with pytest.raises(SafetyViolation):
        _divergent_entry_at_prev(("no-prev-check",))


# --------------------------------------------------------------------- truncation


def test_stale_or_duplicate_append_never_truncates() -> None:
    core = follower([], term=1)
    core.step(append((0, 0), 1, [1, 1], term=1), 0.0)
    core.step(append((2, 1), 3, [1, 1, 1], term=1), 0.0)
    core.step(append((0, 0), 1, [1], term=1), 0.0)  # a delayed, shorter append
    core.step(append((1, 1), 2, [1, 1], term=1), 0.0)  # a duplicate in the middle
    resps = replies(core)
    assert [m.index for m in resps] == [2, 5, 1, 3]
    assert core.last_index == 5


def test_truncate_on_append_bug_erases_acked_entries() -> None:
    core = follower([], term=1, config=with_bugs(FAST, "truncate-on-append"))
    core.step(append((0, 0), 1, [1, 1, 1, 1, 1], term=1), 0.0)
    assert replies(core)[0].index == 5  # acked 1..5
    core.step(append((0, 0), 1, [1], term=1), 0.0)
    rd = core.ready()
    assert core.last_index == 1
    assert rd.entries[0].index == 1, "the WAL is told to truncate too"


def _lose_acked_write_via_duplicate(bugs: tuple[str, ...]) -> SimCluster:
    """Leader L pipelines two appends to F while O is cut off; a delayed duplicate of the
    first reaches F after L committed both; then L dies and F must lead O."""
    cluster = SimCluster(3, seed=11, config=with_bugs(NO_PREVOTE, *bugs))
    leader = cluster.elect()
    cluster.run(0.2)
    fol, other = (i for i in cluster.ids if i != leader)
    assert cluster.core(leader).progress(fol).state == REPLICATE
    cluster.isolate(other)
    cluster.cut.discard((leader, fol))
    cluster.cut.discard((fol, leader))
    # Commit-only appends to F are lost, so F does not learn the commit index.
    cluster.drop_if = lambda m: isinstance(m, AppendEntries) and m.to == fol and not m.entries
    cluster.propose(b"e1")
    cluster.settle()
    first = next(m for m in cluster.network if isinstance(m, AppendEntries) and m.to == fol)
    cluster.propose(b"e2")
    cluster.propose(b"e3")
    cluster.deliver_all()
    lead = cluster.core(leader)
    assert lead.commit_index == lead.last_index, "e1..e3 committed and acked to clients"
    cluster.deliver(first)  # the delayed duplicate
    cluster.deliver_all()
    cluster.crash(leader)
    cluster.drop_if = None
    cluster.heal()
    cluster.core(fol).campaign(cluster.now)
    cluster.run(1.0)
    return cluster


def test_duplicate_append_keeps_acked_entries_without_the_bug() -> None:
    cluster = _lose_acked_write_via_duplicate(())
    new = cluster.leader()
    assert new is not None
    data = [e.data for e in cluster.core(new).entries(1, 100)]
    assert data[-4:-1] == [b"e1", b"e2", b"e3"]


def test_truncate_on_append_bug_loses_committed_writes() -> None:
    with pytest.raises(SafetyViolation, match="applied"):
        _lose_acked_write_via_duplicate(("truncate-on-append",))


# --------------------------------------------------------------------- Figure 7 and 8


FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def test_figure_7_divergent_logs_converge_to_the_leaders() -> None:
    cluster = SimCluster(7, seed=7, config=NO_PREVOTE)
    cluster.load("n1", FIGURE_7_LEADER, term=7)
    for node_id, terms in zip(cluster.ids[1:], FIGURE_7_FOLLOWERS.values(), strict=True):
        cluster.load(node_id, terms, term=7)
    cluster.core("n1").campaign(cluster.now)
    cluster.deliver_all()  # no time passes: nobody else campaigns
    leader = cluster.core("n1")
    assert leader.role == LEADER and leader.term == 8
    expected = [(i + 1, t) for i, t in enumerate([*FIGURE_7_LEADER, 8])]
    for node_id in cluster.ids:
        assert cluster.log_terms(node_id) == expected, node_id
        assert cluster.core(node_id).commit_index == 11
    # Fast backtracking: each follower needs at most a few rejected probes, not one per entry.
    rejections: dict[str, int] = {}
    for m in cluster.sent:
        if isinstance(m, AppendResponse) and m.reject:
            rejections[m.from_] = rejections.get(m.from_, 0) + 1
    assert max(rejections.values()) <= 3
    assert rejections["n7"] <= 2, "f's 8 conflicting entries go in one or two round trips"


def _figure_8(bugs: tuple[str, ...]) -> SimCluster:
    """Figure 8 (c)-(d): S1, leader of term 4, replicates the term-2 entry at index 2 to a
    majority; S5 (log ending in term 3) can still win and overwrite it."""
    config = replace(with_bugs(NO_PREVOTE, *bugs), max_entries_per_append=1)
    cluster = SimCluster(5, seed=8, config=config)
    for node_id, terms in {"n1": [1, 2], "n2": [1], "n3": [1], "n4": [1], "n5": [1, 3]}.items():
        cluster.load(node_id, terms, term=3)
    # Once a follower holds the term-2 entry, S1's term-4 no-op (index 3) no longer reaches
    # it: the no-op stays on S1 alone, as if S1 crashed right after appending it.
    cluster.drop_if = lambda m: (
        isinstance(m, AppendEntries)
        and any(e.index >= 3 for e in m.entries)
        and cluster.core(m.to).term_at(2) == 2
    )
    cluster.cut.add(("n1", "n5"))  # S5 never hears from S1
    cluster.core("n1").campaign(cluster.now)
    cluster.deliver_all()
    s1 = cluster.core("n1")
    assert s1.role == LEADER and s1.term == 4
    holders = [i for i in cluster.ids if cluster.core(i).term_at(2) == 2]
    assert holders == ["n1", "n2", "n3", "n4"], "the term-2 entry is on a majority"
    commit_seen_by_s1 = s1.commit_index
    cluster.crash("n1")
    cluster.drop_if = None
    cluster.heal()
    for _ in range(2):  # term 4: the others already voted for S1; term 5: S5 wins
        cluster.core("n5").campaign(cluster.now)
        cluster.deliver_all()
    assert cluster.core("n5").role == LEADER, "S5's log (last term 3) wins over term-2 logs"
    cluster.run(0.5)
    cluster.commit_seen_by_s1 = commit_seen_by_s1  # type: ignore[attr-defined]
    return cluster


def test_figure_8_leader_commits_only_current_term_entries() -> None:
    cluster = _figure_8(())
    assert cluster.commit_seen_by_s1 == 0  # type: ignore[attr-defined]
    # S5 overwrote index 2 with its term-3 entry: allowed, it was never committed.
    for node_id in ("n2", "n3", "n4", "n5"):
        assert cluster.log_terms(node_id)[:2] == [(1, 1), (2, 3)]


def test_commit_old_term_bug_loses_a_committed_entry() -> None:
    with pytest.raises(SafetyViolation, match="at 2"):
        _figure_8(("commit-old-term",))


def test_commit_without_quorum_bug_commits_on_a_lone_leader() -> None:
    for bugs, expect_commit in (((), False), (("commit-without-quorum",), True)):
        cluster = SimCluster(3, seed=2, config=with_bugs(FAST, *bugs))
        leader = cluster.elect()
        cluster.run(0.2)
        cluster.isolate(leader)
        index = cluster.propose(b"lost?")
        cluster.run(0.1)
        assert (cluster.core(leader).commit_index >= index) is expect_commit


# --------------------------------------------------------------------- pipelining, batching


def test_pipelining_keeps_a_window_of_appends_in_flight() -> None:
    config = replace(FAST, max_entries_per_append=4, max_inflight_appends=3)
    cluster = SimCluster(3, seed=3, config=config)
    leader = cluster.elect()
    cluster.run(0.2)
    for _ in range(50):
        cluster.propose(b"w")
    cluster.settle()  # the leader sends; nothing is delivered yet
    for fol in (i for i in cluster.ids if i != leader):
        appends = [m for m in cluster.network if isinstance(m, AppendEntries) and m.to == fol]
        assert [len(m.entries) for m in appends] == [4, 4, 4], "3 in flight, 4 entries each"
        assert appends[1].prev_index == appends[0].entries[-1].index, "optimistic next index"
    cluster.deliver_all()
    last = cluster.core(leader).last_index
    for node_id in cluster.ids:
        assert cluster.core(node_id).commit_index == last
        assert cluster.nodes[node_id].last_applied == last


def test_many_proposals_between_readys_travel_in_one_append() -> None:
    cluster = SimCluster(3, seed=4)
    leader = cluster.elect()
    cluster.run(0.2)
    for i in range(100):
        cluster.propose(b"%d" % i)
    cluster.settle()
    appends = [m for m in cluster.network if isinstance(m, AppendEntries)]
    assert sorted(len(m.entries) for m in appends) == [100, 100]
    cluster.deliver_all()
    # The commit index reaches followers piggybacked, without any heartbeat (no time passed).
    assert {cluster.core(i).commit_index for i in cluster.ids} == {
        cluster.core(leader).last_index
    }


def test_replication_recovers_when_a_whole_window_is_lost() -> None:
    config = replace(FAST, max_entries_per_append=2, max_inflight_appends=2)
    cluster = SimCluster(3, seed=5, config=config)
    leader = cluster.elect()
    cluster.run(0.2)
    fol = next(i for i in cluster.ids if i != leader)
    cluster.drop_if = lambda m: isinstance(m, AppendEntries) and m.to == fol
    for _ in range(20):
        cluster.propose(b"x")
    cluster.run(0.3)
    assert cluster.core(fol).last_index < cluster.core(leader).last_index
    cluster.drop_if = None
    cluster.run(0.5)
    assert cluster.log_terms(fol) == cluster.log_terms(leader)


# --------------------------------------------------------------------- snapshots


def test_lagging_follower_catches_up_by_install_snapshot() -> None:
    cluster = SimCluster(3, seed=6)
    leader = cluster.elect()
    lag = next(i for i in cluster.ids if i != leader)
    cluster.crash(lag)
    for i in range(40):
        cluster.propose(b"v%d" % i)
    cluster.run(0.3)
    for node_id in cluster.ids:
        if node_id != lag:
            cluster.take_snapshot(node_id)
    snap_index = cluster.core(leader).snapshot_index
    assert snap_index >= 41
    cluster.restart(lag)
    cluster.run(1.0)
    snaps = [m for m in cluster.sent if isinstance(m, InstallSnapshot) and m.to == lag]
    assert len(snaps) == 1 and snaps[0].snapshot.meta.index == snap_index
    core = cluster.core(lag)
    assert core.snapshot_index == snap_index and core.applied == cluster.core(leader).applied
    index = cluster.propose(b"after")
    cluster.run(0.2)
    assert cluster.nodes[lag].applied[index].data == b"after"


def test_lost_snapshot_is_resent() -> None:
    cluster = SimCluster(3, seed=7)
    leader = cluster.elect()
    lag = next(i for i in cluster.ids if i != leader)
    cluster.crash(lag)
    for _ in range(10):
        cluster.propose(b"v")
    cluster.run(0.3)
    cluster.take_snapshot(leader)
    cluster.restart(lag)
    dropped = []

    def drop_first_snapshot(m: Message) -> bool:
        if isinstance(m, InstallSnapshot) and not dropped:
            dropped.append(m)
            return True
        return False

    cluster.drop_if = drop_first_snapshot
    cluster.run(2.0)
    assert dropped
    assert cluster.core(lag).commit_index == cluster.core(leader).commit_index
    assert cluster.core(leader).progress(lag).state == REPLICATE


def test_compact_validates_its_snapshot() -> None:
    cluster = SimCluster(1, seed=1)
    leader = cluster.elect()
    core = cluster.core(leader)
    cluster.propose(b"a")
    cluster.settle()
    from raft_impl.types import Snapshot, SnapshotMeta

    with pytest.raises(ValueError, match="beyond applied"):
        core.compact(Snapshot(SnapshotMeta(core.applied + 1, core.term), b""))
    with pytest.raises(ValueError, match="does not match"):
        core.compact(Snapshot(SnapshotMeta(core.applied, core.term + 1), b""))


def test_a_follower_that_lost_acknowledged_entries_gets_one_probe_per_heartbeat() -> None:
    """A follower whose disk broke its promise (acked entries gone after a restart)
    rejects every probe at the leader's match index, below which the leader may not
    go. The leader must not answer each such rejection with another probe: that
    loop runs as fast as the network, and every heartbeat would start one more."""
    cluster = SimCluster(3, seed=5, config=FAST)
    leader = cluster.elect()
    for i in range(6):
        cluster.propose(f"w{i}".encode())
    cluster.run(0.2)
    follower = next(n for n in cluster.nodes if n != leader)
    assert cluster.core(leader)._progress[follower].match == cluster.core(leader).last_index
    cluster.crash(follower)
    storage = cluster.nodes[follower].storage
    del storage.entries[-3:]  # the lost writes
    storage.hard_state = replace(storage.hard_state, commit=storage.entries[-1].index)
    cluster.restart(follower)
    appends: list[Message] = []

    def count(m: Message) -> bool:
        if isinstance(m, AppendEntries) and m.to == follower:
            appends.append(m)
        return False

    cluster.drop_if = count
    seconds = 1.0
    for i in range(4):  # new writes, one append each: a rejection above match sends the
        cluster.propose(f"x{i}".encode(), leader)  # leader back to probing
        cluster.settle()
    cluster.run(seconds)
    heartbeats = seconds / FAST.heartbeat_interval
    assert len(appends) <= 2 * heartbeats + 5
    assert cluster.leader() == leader  # it still leads the healthy majority
