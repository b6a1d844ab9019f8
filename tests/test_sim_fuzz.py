"""Fuzzing in the simulator: the correct implementation passes, planted bugs are found,
shrunk to a few faults, saved as repro.json and replayed identically."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli.main import main
from harness.sim.config import SimTest
from harness.sim.fuzz import NO_REASON, fuzz, load_repro
from harness.sim.strategies import count_faults, schedules, sim_tests
from nemesis.faults import validate_schedule


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_drawn_schedules_are_valid_and_json(data) -> None:
    nodes = ["n1", "n2", "n3"]
    schedule = data.draw(schedules(nodes, 4.0))
    assert validate_schedule(json.loads(json.dumps(schedule)), nodes) == schedule
    assert count_faults(schedule) <= 8
    test = data.draw(sim_tests(bugs=("no-dedup",)))
    assert SimTest.from_json(json.loads(json.dumps(test.to_json()))) == test


def test_correct_implementation_passes_a_short_fuzz(tmp_path) -> None:
    outcome = fuzz(examples=50, seed=20261128, time_limit=3.0, store_dir=tmp_path)
    assert not outcome.found, (outcome.failing, outcome.run_dir)
    assert outcome.examples == 50
    assert outcome.unknown <= 5
    # Every unknown says why, and the search reports the behaviour it covered.
    assert sum(outcome.unknown_reasons.values()) >= outcome.unknown
    assert not any(NO_REASON in reason for reason in outcome.unknown_reasons)
    assert outcome.coverage["runs"] == 50
    assert outcome.coverage["abstract_states"] >= 10
    assert "distinct abstract cluster states" in outcome.coverage_text


# No hint: the bug is only switched on and the search is the one correct code gets.
# Budgeted in CPU seconds, never by an example number: which example first fails
# depends on every project module loaded (Hypothesis mixes their constants into its
# draws), so a count tuned today breaks with any change. Each of these is found
# within seconds on one core (benchmarks/detection_sim.py); the budget leaves room.
FAST_BUGS = ("commit-without-quorum", "ack-before-fsync")
#: The rest of the matrix takes longer, or longer to shrink: slow marker.
SLOW_BUGS = ("truncate-on-append", "no-prev-check", "no-noop", "no-dedup", "forget-vote",
             "stale-leader-read", "lease-too-long")


def _found_shrunk_and_replayed(tmp_path, capsys, bug: str, seed: int, budget: float,
                               replays: int = 1) -> None:
    outcome = fuzz(examples=100_000, bugs=[bug], seed=seed, store_dir=tmp_path,
                   search_seconds=budget, shrink_seconds=120, clock=time.process_time)
    assert outcome.found, f"{bug} not found in {outcome.examples} examples"
    assert outcome.faults is not None and outcome.faults <= 5, outcome.failure
    assert outcome.repro is not None and outcome.repro.is_file()
    test, expect = load_repro(outcome.repro)
    assert bug in test.cluster.bugs and expect["valid"] is False
    assert expect["faults"] == count_faults(test.schedule)
    saved = json.loads(outcome.repro.read_text())
    assert saved["coverage"]["abstract_states"] >= 1
    for _ in range(replays):
        code = main(["replay", str(outcome.repro), "--store", str(tmp_path / "replays")])
        assert code == 1
        out = capsys.readouterr().out
        assert "INVALID" in out
        assert "history identical to the recorded one: yes" in out


@pytest.mark.parametrize("bug", FAST_BUGS)
def test_planted_bug_is_found_without_a_hint_shrunk_and_replayed(tmp_path, capsys,
                                                                 bug) -> None:
    _found_shrunk_and_replayed(tmp_path, capsys, bug, seed=1, budget=60, replays=2)


@pytest.mark.slow
@pytest.mark.parametrize("bug", SLOW_BUGS)
def test_slower_planted_bug_is_found_without_a_hint(tmp_path, capsys, bug) -> None:
    _found_shrunk_and_replayed(tmp_path, capsys, bug, seed=1, budget=240)


def test_fuzz_command_line(tmp_path, capsys) -> None:
    code = main(["fuzz", "--examples", "3", "--seed", "3", "--time-limit", "2",
                 "--store", str(tmp_path), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "no failure in 3 tests" in out
    assert "behaviour coverage: " in out and "distinct abstract cluster states" in out


def test_a_bug_fuzz_searches_on_until_its_time_budget(tmp_path, capsys) -> None:
    """With --bug the user wants the bug found: no example cap of 100, a time bound."""
    code = main(["fuzz", "--bug", "no-dedup", "--seed", "1", "--search-seconds", "0.5",
                 "--store", str(tmp_path), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "up to 100000 simulated tests of no-dedup, searching for at most 0.5 s" in err
    assert "the search budget of 0.5 s ran out" in out


def test_fuzz_and_replay_refuse_bad_input(tmp_path, capsys) -> None:
    assert main(["fuzz", "--bug", "no-such-bug", "--store", str(tmp_path)]) == 2
    assert "unknown bug" in capsys.readouterr().err
    assert main(["fuzz", "--examples", "0"]) == 2
    assert main(["fuzz", "--search-seconds", "-1"]) == 2
    assert main(["replay", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a repro"}')
    assert main(["replay", str(bad)]) == 2
    assert "not a repro.json" in capsys.readouterr().err


SEARCH_TWICE = """
import json, sys, tempfile
from harness.sim.fuzz import fuzz

def search():
    drawn = []
    def record(number, result):
        drawn.append({k: v for k, v in result.stats.items() if not k.endswith("wall_s")})
    fuzz(examples=200, seed=11, time_limit=1.0, store_dir=tempfile.mkdtemp(), progress=record)
    return drawn

first = search()
found = fuzz(examples=1000, bugs=["commit-without-quorum"], seed=1, store_dir=sys.argv[1],
             shrink_seconds=1, search_seconds=60)
assert found.repro is not None, "the bug search found nothing: the test proves nothing"
print(json.dumps(first == search()))
"""


def test_a_seed_names_one_search_whatever_ran_before(tmp_path) -> None:
    """Saving a failure loads the report renderer; the next search must not change.

    Runs in a fresh interpreter: this process has long loaded every module.
    """
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", SEARCH_TWICE, str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.strip().splitlines()[-1] == "true"
