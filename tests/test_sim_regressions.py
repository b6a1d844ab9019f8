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
