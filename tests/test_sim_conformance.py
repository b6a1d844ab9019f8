"""One schedule and workload through the simulator and through real node processes:
both hosts run the same node logic (raft_impl/host.py), so what a run records about
the nodes must have the same shape — the observation kinds and their fields, the
log-dump and committed-entry fields, the answer codes, the store layout.

Timings differ between the worlds, so values are not compared; shapes and
vocabularies are. A field the simulator writes and a real run does not (or the
reverse) is how the two hosts drifted apart before (issue 13).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.run.run import RunConfig, run_test
from harness.sim import SimClusterConfig, SimTest, SimWorkload, simulate

SCHEDULE = [
    {"at": 1.5, "f": "partition", "value": {"shape": "isolate-leader"}},
    {"at": 3.0, "f": "heal", "value": None},
]
#: Errors either world's history may hold: the node's answer codes (raft_impl/host.py,
#: docs/DESIGN.md section 3) and the client's own (an attempt cut off or timed out).
ERRORS = {None, "cas-mismatch", "leadership-lost", "entry-overwritten", "entry-compacted",
          "timeout", "connection lost"}


def _shapes(run_dir: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Fields per observation kind, and fields of the entries of log and committed ones."""
    kinds: dict[str, set[str]] = defaultdict(set)
    entries: dict[str, set[str]] = defaultdict(set)
    for line in (run_dir / "observations.jsonl").read_text().splitlines():
        record = json.loads(line)
        kinds[record["kind"]] |= set(record)
        for entry in record.get("entries", ()) if record["kind"] in ("log", "committed") else ():
            entries[record["kind"]] |= set(entry)
    return kinds, entries


def _errors(run_dir: Path) -> set[Any]:
    errors = set()
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") in ("fail", "info"):
            error = event.get("error")
            # "connection lost: <the socket's words>" in a real run: the code is the prefix.
            errors.add(error.split(":")[0] if isinstance(error, str) else error)
    return errors


def test_a_simulated_and_a_real_run_record_the_same_shapes(tmp_path: Path) -> None:
    schedule_file = tmp_path / "schedule.json"
    schedule_file.write_text(json.dumps(SCHEDULE))
    real = run_test(RunConfig(
        nodes=3, time_limit=4, rate=40, concurrency=3, keys=2, seed=7,
        nemesis_schedule=str(schedule_file), store=str(tmp_path / "real"), quiet_period=1,
        snapshot_threshold=30, render_report=False))
    assert real.error is None, real.error
    sim = simulate(SimTest(
        cluster=SimClusterConfig(nodes=3, snapshot_threshold=30),
        workload=SimWorkload(time_limit=4, rate=40, concurrency=3, keys=2, quiet=1),
        schedule=tuple(SCHEDULE), seed=7), tmp_path / "sim")

    real_kinds, real_entries = _shapes(real.run_dir)
    sim_kinds, sim_entries = _shapes(sim.run_dir)
    # Both compact (threshold 30) and elect after the isolation: these kinds occur in both.
    for kind in ("status", "log", "role", "committed", "snapshot", "digest", "healed"):
        assert kind in real_kinds and kind in sim_kinds, kind
        assert sim_kinds[kind] == real_kinds[kind], kind
    assert sim_entries == real_entries
    # No kind only the simulator writes (these four need faults or bugs this run lacks).
    assert set(sim_kinds) <= set(real_kinds) | {"crash", "restart", "lose-unfsynced",
                                                 "complaint"}

    assert _errors(sim.run_dir) <= ERRORS
    assert _errors(real.run_dir) <= ERRORS

    # Store layout: what the simulator writes, a real run writes too, with the same shape.
    simulated = {p.relative_to(sim.run_dir).as_posix() for p in sim.run_dir.rglob("*")}
    recorded = {p.relative_to(real.run_dir).as_posix() for p in real.run_dir.rglob("*")}
    assert simulated - {"report-error.txt"} <= recorded
    for node in ("n1", "n2", "n3"):
        sim_log = json.loads((sim.run_dir / "nodes" / node / "final-log.json").read_text())
        real_log = json.loads((real.run_dir / "nodes" / node / "final-log.json").read_text())
        assert set(sim_log) == set(real_log)
        assert {k for e in sim_log["entries"] for k in e} == {
            k for e in real_log["entries"] for k in e}
