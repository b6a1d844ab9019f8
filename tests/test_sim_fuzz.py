"""Fuzzing in the simulator: the correct implementation passes, planted bugs are found,
shrunk to a few faults, saved as repro.json and replayed identically."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli.main import main
from harness.sim.config import SimTest
from harness.sim.fuzz import fuzz, load_repro
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
    assert test.workload.retry_indefinite  # what exposes no-dedup is drawn for it


def test_correct_implementation_passes_a_short_fuzz(tmp_path) -> None:
    outcome = fuzz(examples=50, seed=20261128, time_limit=3.0, store_dir=tmp_path)
    assert not outcome.found, (outcome.failing, outcome.run_dir)
    assert outcome.examples == 50
    assert outcome.unknown <= 5


# The search is deterministic for a seed; these seeds meet each bug within a few CPU
# seconds (benchmarks/detection_sim.py measures detection over the general search).
@pytest.mark.parametrize(("bug", "seed", "replays"),
                         [("no-dedup", 1, 2), ("stale-leader-read", 5, 1),
                          ("forget-vote", 6, 1), ("no-noop", 1, 1),
                          ("commit-without-quorum", 1, 1), ("ack-before-fsync", 2, 1)])
def test_planted_bug_is_found_shrunk_and_replayed(tmp_path, capsys, bug, seed,
                                                  replays) -> None:
    outcome = fuzz(examples=400, bugs=[bug], seed=seed, store_dir=tmp_path,
                   shrink_seconds=60)
    assert outcome.found, f"{bug} not found in {outcome.examples} examples"
    assert outcome.faults is not None and outcome.faults <= 5, outcome.failure
    assert outcome.repro is not None and outcome.repro.is_file()
    test, expect = load_repro(outcome.repro)
    assert bug in test.cluster.bugs and expect["valid"] is False
    assert expect["faults"] == count_faults(test.schedule)
    for _ in range(replays):
        code = main(["replay", str(outcome.repro), "--store", str(tmp_path / "replays")])
        assert code == 1
        out = capsys.readouterr().out
        assert "INVALID" in out
        assert "history identical to the recorded one: yes" in out


def test_fuzz_command_line(tmp_path, capsys) -> None:
    code = main(["fuzz", "--examples", "3", "--seed", "3", "--time-limit", "2",
                 "--store", str(tmp_path), "--quiet"])
    assert code == 0
    assert "no failure in 3 tests" in capsys.readouterr().out


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
found = fuzz(examples=1000, bugs=["no-noop"], seed=1, store_dir=sys.argv[1],
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
