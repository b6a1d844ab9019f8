"""Drawn schedules that follow a planted bug's suit (harness.sim.strategies.SUITS): the
shapes of schedule the fuzzer relies on to meet a bug at all."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.sim.config import SimClusterConfig, SimTest, SimWorkload
from harness.sim.run import simulate
from harness.sim.strategies import (
    SUITS,
    TICK,
    count_faults,
    fault_groups,
    schedules,
    sim_tests,
    suits,
)
from nemesis.faults import validate_schedule

NODES = ["n1", "n2", "n3"]
_UNDO = ("heal", "start", "resume")


@settings(max_examples=80, deadline=None)
@given(st.data(), st.integers(0, 60).map(lambda k: round(k * TICK, 3)))
def test_a_group_is_faults_that_wait_for_one_election(data, after: float) -> None:
    group = data.draw(fault_groups(NODES, 4.0, after, ("partition", "kill", "pause"),
                                   max_size=3))
    assert 1 <= len(group) <= 3
    starts = [fault[0] for fault in group]
    # One ``at`` for all: they are armed together and share the next election, each
    # with its own delay; it is at most 10 ticks after ``after`` and inside the run.
    (at,) = {start["at"] for start in starts}
    assert after - 1e-9 <= at <= min(after + 10 * TICK, 4.0 - TICK) + 1e-9
    assert all(start["when"]["event"] == "new-leader" for start in starts)
    # The entries undoing them keep their places after the start, within the run.
    assert all(at <= undo["at"] <= 4.0 for fault in group for undo in fault[1:])
    entries = sorted((entry for fault in group for entry in fault), key=lambda e: e["at"])
    assert count_faults(entries) == len(group)
    assert validate_schedule(json.loads(json.dumps(entries)), NODES) == entries


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_a_group_schedule_is_one_untimed_fault_then_one_group(data) -> None:
    schedule = data.draw(schedules(NODES, 5.0, ("partition", "kill", "lose-unfsynced"),
                                   max_faults=5, shapes=("isolate-leader",), undo=False,
                                   group=True))
    assert validate_schedule(json.loads(json.dumps(schedule)), NODES) == schedule
    started = [entry for entry in schedule if entry["f"] not in _UNDO]
    untimed = [entry for entry in started if "when" not in entry]
    triggered = [entry for entry in started if "when" in entry]
    assert len(untimed) == 1 and triggered
    assert len({entry["at"] for entry in triggered}) == 1
    assert triggered[0]["at"] >= untimed[0]["at"]
    assert count_faults(schedule) == len(started) <= 5
    # Partitions stay until the final heal, but crashed nodes still come back on their
    # own: a vote is forgotten in a restart, and the double vote follows it.
    assert not any(entry["f"] == "heal" for entry in schedule)
    crashed = sum(entry["f"] in ("kill", "lose-unfsynced") for entry in started)
    assert sum(entry["f"] == "start" for entry in schedule) == crashed


@settings(max_examples=30, deadline=None)
@given(sim_tests(bugs=("forget-vote",)))
def test_forget_vote_tests_draw_a_group(test: SimTest) -> None:
    assert "forget-vote" in test.cluster.bugs
    triggered = [entry for entry in test.schedule if "when" in entry]
    assert triggered and len({entry["at"] for entry in triggered}) == 1
    assert count_faults(test.schedule) <= 5


def test_the_union_of_suits_keeps_a_group_only_when_every_bug_wants_one() -> None:
    assert SUITS["forget-vote"].group
    merged = suits(["forget-vote"])
    assert merged is not None and merged.group and merged.max_faults == 5
    both = suits(["forget-vote", "ack-before-fsync"])
    assert both is not None and not both.group


#: What `splitbrain fuzz --bug forget-vote` shrinks to. The first leader is cut off (and
#: stays a term behind: pre-vote keeps it from raising its term). The instant the next
#: leader wins, before its first append leaves, a node is crashed: with seed 1, its
#: voter. (The start at 0.05 came earlier, so the voter restarts only at the final
#: heal.) The heal reconnects the old leader, which campaigns in the term the other
#: leader won; a voter that forgot its vote grants it: two leaders in one term.
FORGET_VOTE = (
    {"at": 0.0, "f": "partition", "value": {"shape": "isolate-leader"}, "seed": 0},
    {"at": 0.0, "f": "kill", "value": "one", "seed": 0,
     "when": {"event": "new-leader", "delay": 0.0}},
    {"at": 0.05, "f": "start", "value": "all"},
)


def test_the_shrunk_forget_vote_schedule_elects_two_leaders_in_one_term_only_with_the_bug(
        tmp_path: Path) -> None:
    def run(bugs: tuple[str, ...], name: str) -> dict:
        test = SimTest(cluster=SimClusterConfig(bugs=bugs),
                       workload=SimWorkload(keys=1, rate=40.0, concurrency=2, time_limit=3.0,
                                            quiet=1.5),
                       schedule=FORGET_VOTE, seed=1)
        return simulate(test, tmp_path / name).results

    caught = run(("forget-vote",), "bug")
    assert caught["valid"] is False
    assert caught["checkers"]["log-order"]["checkers"]["leader-per-term"]["valid"] is False
    assert run((), "correct")["valid"] is True
