"""Feedback and behaviour coverage of simulated runs (harness.sim.guidance): what the
observer reports for known schedules, that observing changes nothing a run records,
and how a campaign's coverage and unknown verdicts are summed up."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sim_regressions import _figure_8

import harness.sim.run as sim_run
from harness.sim import SimClusterConfig, SimTest, SimWorkload, simulate
from harness.sim.fuzz import NO_REASON, history_digest, unknown_reasons
from harness.sim.guidance import Coverage, Observer


def test_observing_a_run_changes_nothing_it_records(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The observer only reads the nodes and draws no random numbers: a history is the
    same with samples every 20 ms and with none, so repro.json digests stay valid."""
    observed = simulate(_figure_8(("commit-old-term",)), tmp_path / "observed")
    monkeypatch.setattr(sim_run, "Observer", lambda cluster: Observer(cluster, 1e9))
    unobserved = simulate(_figure_8(("commit-old-term",)), tmp_path / "unobserved")
    assert history_digest(observed.run_dir) == history_digest(unobserved.run_dir)
    assert len(observed.states) > len(unobserved.states) == 0


def test_a_run_without_faults_scores_nothing_and_has_one_leader(tmp_path: Path) -> None:
    test = SimTest(workload=SimWorkload(keys=1, concurrency=2, time_limit=2.0, quiet=1.0),
                   seed=3)
    result = simulate(test, tmp_path / "calm")
    scores = result.stats["feedback"]
    assert scores["leaders at once"] == 1
    assert scores["log divergence"] == scores["entries truncated"] == 0
    assert scores["in-doubt retries"] == scores["electable node's lag"] == 0
    assert result.states and all(state.count("L") <= 1 for state in result.states)


def test_figure_8_setting_scores_two_leaders_and_diverging_logs(tmp_path: Path) -> None:
    """The correct code under Figure 8's schedule: no failure, but the situation the
    search should climb toward (deposed leaders with uncommitted entries that
    disagree with the new leader's) is scored."""
    result = simulate(_figure_8(()), tmp_path / "correct")
    assert result.valid is True
    scores = result.stats["feedback"]
    assert scores["leaders at once"] == 2
    assert scores["log divergence"] > 0
    assert scores["terms"] >= 3
    assert any(state.count("L") == 2 for state in result.states)


def test_retries_in_doubt_are_counted(tmp_path: Path) -> None:
    """Clients that retry with their session while the leader is cut off."""
    schedule = ({"at": 0.5, "f": "partition", "value": {"shape": "isolate-leader"},
                 "seed": 0}, {"at": 1.5, "f": "heal", "value": None})
    test = SimTest(cluster=SimClusterConfig(),
                   workload=SimWorkload(keys=1, concurrency=3, time_limit=2.5, quiet=1.0,
                                        retry_indefinite=True),
                   schedule=schedule, seed=1)
    assert simulate(test, tmp_path / "retries").stats["feedback"]["in-doubt retries"] > 0


def test_coverage_sums_states_over_runs() -> None:
    coverage = Coverage()
    assert coverage.add({"F0=c|F0=c|L0=c", "D|F0=c|L0=c"}) == 2
    assert coverage.add({"F0=c|F0=c|L0=c", "F0=c|L0=c|L1<bu"}) == 1
    summary = coverage.summary()
    assert summary == {"abstract_states": 3, "runs": 2,
                       "states_by_leaders": {"1": 2, "2": 1}, "runs_with_two_leaders": 1}
    assert "3 distinct abstract cluster states" in coverage.describe()
    assert "in 2 tests" in coverage.describe()


def test_every_unknown_verdict_names_its_checker_and_reason() -> None:
    results = {"valid": "unknown", "checkers": {
        "linearizable": {"valid": True},
        "log-order": {"valid": "unknown", "checkers": {
            "acked-writes": {"valid": "unknown", "reason": "no write was acknowledged"},
            "digests": {"valid": True}}},
        "node-complaints": {"valid": "unknown"}}}
    assert unknown_reasons(results) == [
        "log-order.acked-writes: no write was acknowledged",
        f"node-complaints: {NO_REASON}"]
    assert unknown_reasons({"valid": "unknown", "reason": "no checker ran"}) == [
        "no checker ran"]
    assert unknown_reasons({"valid": True, "checkers": {}}) == []
