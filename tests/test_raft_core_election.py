"""Elections: timeouts, one leader per term, dueling candidates, the election
restriction, pre-vote and check-quorum (in the spirit of etcd's raft paper tests)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from raft_sim_helpers import FAST, SimCluster

from raft_impl.core import CANDIDATE, FOLLOWER, LEADER, PRE_CANDIDATE, RaftConfig, RaftCore
from raft_impl.messages import RequestVote, VoteResponse
from raft_impl.types import Entry, HardState

NO_PREVOTE = replace(FAST, pre_vote=False, check_quorum=False)


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("seed", range(5))
def test_leader_elected_within_timeouts(n: int, seed: int) -> None:
    cluster = SimCluster(n, seed=seed)
    took = cluster.run_until(lambda: cluster.leader() is not None, timeout=5.0)
    # A quiet cluster elects within a couple of election timeouts (pre-vote round included).
    assert took <= 2 * FAST.election_timeout_max
    leader = cluster.leader()
    assert leader is not None
    term = cluster.core(leader).term
    cluster.run(2.0)
    assert cluster.leader() == leader
    assert cluster.core(leader).term == term, "a healthy leader must not be disturbed"
    for node_id in cluster.ids:
        assert cluster.core(node_id).leader_id == leader
        assert cluster.core(node_id).term == term


def test_election_timeouts_are_randomized_from_injected_rng() -> None:
    def first_campaign_time(seed: int) -> float:
        core = RaftCore("n1", ["n1", "n2", "n3"], FAST, random.Random(seed), HardState(), None,
                        [], now=0.0)
        now = 0.0
        while core.role == FOLLOWER:
            now += 0.001
            core.tick(now)
        assert core.role == PRE_CANDIDATE
        return now

    times = {round(first_campaign_time(seed), 3) for seed in range(20)}
    assert len(times) > 10
    assert all(FAST.election_timeout_min <= t <= FAST.election_timeout_max + 0.001 for t in times)
    # Same seed, same behaviour: the core draws randomness only from its rng.
    assert first_campaign_time(7) == first_campaign_time(7)


def test_one_leader_per_term_under_repeated_leader_crashes() -> None:
    cluster = SimCluster(5, seed=3)
    for _ in range(6):
        leader = cluster.elect()
        cluster.propose(b"x")
        cluster.run(0.2)
        cluster.crash(leader)
        cluster.elect()
        cluster.restart(leader)
    # SimCluster raises SafetyViolation on a second leader in any term; check we saw terms.
    assert len(cluster.leaders_by_term) >= 6


def test_dueling_candidates_resolve() -> None:
    cluster = SimCluster(3, seed=1, config=NO_PREVOTE)
    cluster.partition({"n1"}, {"n2"}, {"n3"})
    # n1 and n3 campaign at once and split the vote (each votes for itself).
    cluster.core("n1").campaign(cluster.now)
    cluster.core("n3").campaign(cluster.now)
    cluster.deliver_all()
    cluster.heal()
    cluster.deliver_all()
    assert cluster.core("n1").role == CANDIDATE and cluster.core("n3").role == CANDIDATE
    assert cluster.core("n1").term == cluster.core("n3").term == 1
    # n2 grants one of them; or randomized timeouts break the tie in a later term.
    leader = cluster.elect(timeout=5.0)
    cluster.run(1.0)
    assert cluster.leaders() == [leader]


def test_split_vote_is_retried_in_a_higher_term() -> None:
    cluster = SimCluster(4, seed=2, config=NO_PREVOTE)
    cluster.partition({"n1", "n2"}, {"n3", "n4"})
    cluster.core("n1").campaign(cluster.now)
    cluster.core("n3").campaign(cluster.now)
    cluster.deliver_all()
    # 2 of 4 votes each: nobody wins term 1.
    assert cluster.leaders() == []
    cluster.heal()
    leader = cluster.elect()
    assert cluster.core(leader).term >= 2


def test_candidate_with_stale_log_loses() -> None:
    cluster = SimCluster(3, seed=4, config=NO_PREVOTE)
    cluster.load("n1", [1, 1, 2], term=2)
    cluster.load("n2", [1, 1, 2], term=2)
    cluster.load("n3", [1, 1], term=2)
    cluster.core("n3").campaign(cluster.now)
    cluster.deliver_all()
    n3 = cluster.core("n3")
    assert n3.role != LEADER
    # Both voters refused: their logs end in a later term.
    refusals = [m for m in cluster.sent if isinstance(m, VoteResponse) and m.to == "n3"]
    assert len(refusals) == 2 and not any(m.granted for m in refusals)
    leader = cluster.elect()
    assert leader in ("n1", "n2")
    cluster.run(0.5)
    assert cluster.log_terms("n3")[:3] == [(1, 1), (2, 1), (3, 2)]


def test_up_to_date_check_compares_last_term_before_length() -> None:
    core = RaftCore("n1", ["n1", "n2", "n3"], NO_PREVOTE, random.Random(0),
                    HardState(term=3), None, [Entry(1, 1), Entry(2, 3)], now=0.0)
    # Longer log, older last term: refused.
    core.step(RequestVote("n2", "n1", 4, last_index=5, last_term=2), 0.0)
    # Shorter log, newer last term: granted.
    core.step(RequestVote("n3", "n1", 4, last_index=1, last_term=4), 0.0)
    answers = {m.to: m.granted for m in core.ready().messages if isinstance(m, VoteResponse)}
    assert answers == {"n2": False, "n3": True}
    assert core.vote == "n3"


def test_vote_is_granted_once_per_term() -> None:
    core = RaftCore("n1", ["n1", "n2", "n3"], NO_PREVOTE, random.Random(0), HardState(), None,
                    [], now=0.0)
    core.step(RequestVote("n2", "n1", 1, 0, 0), 0.0)
    core.step(RequestVote("n3", "n1", 1, 0, 0), 0.0)
    core.step(RequestVote("n2", "n1", 1, 0, 0), 0.0)  # a retry by the same candidate
    granted = [(m.to, m.granted) for m in core.ready().messages]
    assert granted == [("n2", True), ("n3", False), ("n2", True)]
    rd = core.ready()
    assert rd.hard_state == HardState(1, "n2", 0), "the vote must be persisted"


def test_prevote_keeps_rejoining_partitioned_node_from_disrupting() -> None:
    cluster = SimCluster(3, seed=5)
    leader = cluster.elect()
    term = cluster.core(leader).term
    cluster.propose(b"a")
    cluster.run(0.1)
    lonely = next(i for i in cluster.ids if i != leader)
    cluster.isolate(lonely)
    cluster.run(5.0)  # many election timeouts alone
    assert cluster.core(lonely).term == term, "pre-vote failures must not bump the term"
    assert cluster.core(lonely).role in (PRE_CANDIDATE, FOLLOWER)
    cluster.heal()
    cluster.run(2.0)
    assert cluster.leader() == leader
    assert cluster.core(leader).term == term
    assert cluster.core(lonely).leader_id == leader


def test_without_prevote_rejoining_node_disrupts_the_leader() -> None:
    # The contrast that shows what pre-vote buys: the same scenario deposes the leader.
    cluster = SimCluster(3, seed=5, config=NO_PREVOTE)
    leader = cluster.elect()
    term = cluster.core(leader).term
    lonely = next(i for i in cluster.ids if i != leader)
    cluster.isolate(lonely)
    cluster.run(5.0)
    assert cluster.core(lonely).term > term + 3
    cluster.heal()
    cluster.run(2.0)
    assert cluster.core(cluster.elect()).term > term


def test_prevote_granted_only_if_voter_lost_its_leader() -> None:
    cluster = SimCluster(3, seed=6)
    leader = cluster.elect()
    follower = next(i for i in cluster.ids if i != leader)
    core = cluster.core(follower)
    term = core.term
    core.ready()
    other = next(i for i in cluster.ids if i not in (leader, follower))
    last = (core.last_index, core.last_term)
    # Heard from the leader just now: the pre-vote is ignored (leader stickiness).
    core.step(RequestVote(other, follower, term + 1, *last, pre=True), cluster.now)
    assert not [m for m in core.ready().messages if isinstance(m, VoteResponse)]
    # After an election timeout of silence the same pre-vote is granted, term unchanged.
    later = cluster.now + FAST.election_timeout_min + 0.01
    core.step(RequestVote(other, follower, term + 1, *last, pre=True), later)
    answers = [m for m in core.ready().messages if isinstance(m, VoteResponse)]
    assert [(m.pre, m.granted, m.term) for m in answers] == [(True, True, term + 1)]
    assert core.term == term and core.vote == leader


def test_check_quorum_rejects_real_votes_while_leader_is_alive() -> None:
    cluster = SimCluster(3, seed=7)
    leader = cluster.elect()
    follower = next(i for i in cluster.ids if i != leader)
    core = cluster.core(follower)
    term = core.term
    core.ready()
    core.step(RequestVote("n9", follower, term + 5, 100, 100), cluster.now)  # unknown node
    other = next(i for i in cluster.ids if i not in (leader, follower))
    core.step(RequestVote(other, follower, term + 5, 100, 100), cluster.now)
    assert core.term == term, "a sticky follower must not even adopt the higher term"
    assert not [m for m in core.ready().messages if isinstance(m, VoteResponse)]


def test_check_quorum_steps_a_cut_off_leader_down() -> None:
    cluster = SimCluster(3, seed=8)
    leader = cluster.elect()
    cluster.isolate(leader)
    took = cluster.run_until(lambda: cluster.core(leader).role != LEADER, timeout=3.0)
    assert took <= 2 * FAST.election_timeout_min + 0.05
    # Meanwhile the majority elected someone else in a higher term.
    cluster.run(2.0)
    new = [i for i in cluster.leaders() if i != leader]
    assert len(new) == 1 and cluster.core(new[0]).term > cluster.core(leader).term
    cluster.heal()
    cluster.run(1.0)
    assert cluster.leaders() == new
    assert cluster.core(leader).leader_id == new[0]


def test_without_check_quorum_cut_off_leader_stays_leader() -> None:
    config = replace(FAST, check_quorum=False)
    cluster = SimCluster(3, seed=8, config=config)
    leader = cluster.elect()
    cluster.isolate(leader)
    cluster.run(3.0)
    assert cluster.core(leader).role == LEADER


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="election_timeout"):
        RaftConfig(election_timeout_min=0.5, election_timeout_max=0.4)
    with pytest.raises(ValueError, match="read_mode"):
        RaftConfig(read_mode="quorum")
    with pytest.raises(ValueError, match=r"known bugs: .*no-prev-check"):
        RaftConfig(bugs=frozenset({"no-such-bug"}))
