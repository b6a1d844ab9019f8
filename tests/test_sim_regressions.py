"""Cases the fuzzer once failed on although the implementation was correct (false
alarms of the harness): each must stay valid. A false alarm is as bad as a miss."""

from __future__ import annotations

from pathlib import Path

from harness.sim.config import SimClusterConfig, SimTest, SimWorkload
from harness.sim.run import simulate


def test_a_snapshot_installed_while_fsync_is_pending_is_reported_with_its_term(
        tmp_path: Path) -> None:
    """A node stopped from the start catches up by InstallSnapshot on resume; its log dump
    used to read the snapshot's term from disk, which lags the core while an fsync is in
    flight, and log-agreement saw "snapshot ends at index 102 in term 0"."""
    test = SimTest(
        cluster=SimClusterConfig(snapshot_threshold=50, max_entries_per_append=1),
        workload=SimWorkload(keys=1, rate=80.0, concurrency=2, time_limit=3.0, quiet=1.5),
        schedule=({"at": 0.0, "f": "pause", "value": ["n1"], "seed": 0},),
        seed=0)
    result = simulate(test, tmp_path)
    assert result.valid is True, result.results


#: Raft's Figure 8 in three election-triggered leader isolations, as `splitbrain fuzz
#: --bug commit-old-term` shrank it: cut the leader A off; the moment B wins, cut B off
#: (its no-op never leaves; A is healed); 6 ms after A wins again — it has sent the third
#: node its old-term entry but not yet its no-op — cut A off. B then wins and overwrites.
#: (8 ms when the simulator mirrored the node and sent nothing before an fsync; hosting the
#: node's own logic, a leader's appends leave before its fsync, so the window came earlier.)
FIGURE_8 = (
    {"at": 0.0, "f": "partition", "value": {"shape": "isolate-leader"}, "seed": 0,
     "when": {"event": "new-leader", "delay": 0.0}},
    {"at": 0.05, "f": "partition", "value": {"shape": "isolate-leader"}, "seed": 8},
    {"at": 0.05, "f": "partition", "value": {"shape": "isolate-leader"}, "seed": 0,
     "when": {"event": "new-leader", "delay": 0.006}},
)


def _figure_8(bugs: tuple[str, ...]) -> SimTest:
    return SimTest(
        cluster=SimClusterConfig(bugs=bugs, max_entries_per_append=1),
        workload=SimWorkload(keys=1, rate=40.0, concurrency=2, time_limit=3.0, quiet=1.5),
        schedule=FIGURE_8, seed=0)


def test_the_shrunk_figure_8_schedule_catches_commit_old_term_and_only_it(
        tmp_path: Path) -> None:
    caught = simulate(_figure_8(("commit-old-term",)), tmp_path / "bug")
    assert caught.valid is False
    assert caught.results["checkers"]["log-order"]["checkers"]["log-agreement"]["valid"] is False
    assert simulate(_figure_8(()), tmp_path / "correct").valid is True
