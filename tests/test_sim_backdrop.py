"""The backdrop draw (message faults on every link for the whole run, one of the
search's styles): what is drawn, and that the shrunk truncate-on-append schedule
found against a backdrop catches the bug and only the bug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.sim import SimClusterConfig, SimTest, SimWorkload, simulate
from harness.sim.fuzz import fuzz
from harness.sim.strategies import (
    MESSAGE_FAULTS,
    PACKAGES,
    backdrops,
    count_faults,
    schedules,
)
from nemesis.faults import validate_schedule

NODES = ["n1", "n2", "n3"]


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from([3.0, 5.5, 8.0]), st.booleans())
def test_a_backdrop_is_at_most_one_fault_of_each_message_kind_on_every_link(
        data, time_limit: float, undo: bool) -> None:
    drawn = data.draw(backdrops(time_limit, PACKAGES, undo))
    kinds = [fault[0]["f"] for fault in drawn]
    assert len(kinds) == len(set(kinds))
    assert set(kinds) <= set(MESSAGE_FAULTS)
    for fault in drawn:
        start = fault[0]
        assert start["at"] == 0.0 and start["value"]["links"] is None
        if start["f"] == "delay":
            # Well under the election timeout (0.3 s): leaders must still hold office.
            assert 0.01 <= start["value"]["mean"] <= 0.05
        else:
            assert 0.05 <= start["value"]["p"] <= 0.5
        if undo:
            assert len(fault) == 2 and fault[1]["at"] == time_limit
            assert count_faults(fault[1:]) == 0
        else:
            assert len(fault) == 1


def test_a_backdrop_draws_nothing_outside_its_packages() -> None:
    @settings(max_examples=30, deadline=None)
    @given(backdrops(4.0, ("partition", "reorder", "kill")))
    def check(drawn: list) -> None:
        assert all(fault[0]["f"] == "reorder" for fault in drawn)

    check()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_backdrop_schedules_are_valid_within_max_faults_and_untimed(data) -> None:
    packages = ("reorder", "delay", "partition")
    schedule = data.draw(schedules(NODES, 4.0, packages, 4, ("isolate-leader",),
                                   undo=False, style="backdrop"))
    assert validate_schedule(json.loads(json.dumps(schedule)), NODES) == schedule
    assert count_faults(schedule) <= 4
    others = [entry for entry in schedule if entry["f"] not in MESSAGE_FAULTS]
    # At least one fault acts against the backdrop, at a drawn time, not on an election.
    assert others and all(entry["f"] == "partition" for entry in others)
    assert all(entry["value"] == {"shape": "isolate-leader"} and "when" not in entry
               for entry in others)
    # No heals and no message-fault stops: the faults stay until the final heal.
    assert count_faults(schedule) == len(schedule)


#: What the fuzzer found and shrank for truncate-on-append (seed 1 of
#: benchmarks/detection_sim.py): links 10 ms slow and half the messages overtaken,
#: the first leader cut off for the rest of the run. The other two go on without it;
#: overtaken appends make the follower drop entries it acked, which the new leader,
#: trusting the ack, counts as committed. At the heal the old leader, whose term grew
#: while it was cut off (no pre-vote), forces an election the truncated follower
#: wins, and it overwrites those committed entries.
TRUNCATE_ON_APPEND = (
    {"at": 0.0, "f": "delay", "value": {"mean": 0.01, "jitter": 0.005, "links": None}},
    {"at": 0.0, "f": "reorder", "value": {"p": 0.5, "links": None}},
    {"at": 0.0, "f": "partition", "value": {"shape": "isolate-leader"}, "seed": 0},
)


def test_the_shrunk_truncate_on_append_schedule_loses_committed_entries_only_with_the_bug(
        tmp_path: Path) -> None:
    def run(bugs: tuple[str, ...], name: str) -> dict:
        test = SimTest(cluster=SimClusterConfig(bugs=bugs, pre_vote=False),
                       workload=SimWorkload(keys=1, rate=40.0, concurrency=3, time_limit=3.0,
                                            quiet=1.5),
                       schedule=TRUNCATE_ON_APPEND, seed=1137)
        return simulate(test, tmp_path / name).results

    assert count_faults(TRUNCATE_ON_APPEND) == 3
    caught = run(("truncate-on-append",), "bug")
    assert caught["valid"] is False
    assert caught["checkers"]["log-order"]["checkers"]["log-agreement"]["valid"] is False
    assert run((), "correct")["valid"] is True


@pytest.mark.slow
def test_fuzz_finds_truncate_on_append_and_shrinks_it_to_at_most_five_faults(
        tmp_path: Path) -> None:
    """With no hint: the bug is only switched on. Budgeted by time, not by a count of
    examples (which example first fails depends on every project module loaded)."""
    outcome = fuzz(examples=100_000, bugs=["truncate-on-append"], seed=1, store_dir=tmp_path,
                   search_seconds=240, shrink_seconds=60)
    assert outcome.found, f"not found in {outcome.examples} examples"
    assert outcome.seconds_to_first_failure is not None
    assert outcome.faults is not None and outcome.faults <= 5, outcome.failure
