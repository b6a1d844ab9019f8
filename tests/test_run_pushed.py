"""A real run whose nodes snapshot every 20 entries is judged entry by entry: the nodes
push what they apply, so nothing is left unknown because it was compacted between polls."""

from __future__ import annotations

import json
from pathlib import Path

from harness.cli.main import main as cli_main

# A follower down for 2 s falls far behind the leader's latest snapshot and catches up
# by installing one; a partition later makes another election.
SCHEDULE = [
    {"at": 0.5, "f": "kill", "value": "one"},
    {"at": 2.5, "f": "start", "value": "all"},
    {"at": 3.5, "f": "partition", "value": {"shape": "isolate-leader"}},
    {"at": 4.5, "f": "heal", "value": None},
]


def test_a_run_snapshotting_every_20_entries_is_judged_not_unknown(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.json"
    schedule.write_text(json.dumps(SCHEDULE))
    store = tmp_path / "store"
    code = cli_main([
        "run", "--nodes", "3", "--time-limit", "6", "--nemesis-schedule", str(schedule),
        "--node-arg=--snapshot-threshold=20", "--rate", "200", "--keys", "2",
        "--mix", "read=2,write=6,cas=2", "--store", str(store), "--seed", "3",
        "--no-display", "--no-report", "--quiet-period", "1",
    ])
    run = store / "latest"
    results = json.loads((run / "results.json").read_text())
    assert code == 0, results
    log_order = results["checkers"]["log-order"]
    assert log_order["checkers"]["acked-writes"]["valid"] is True
    assert results["checkers"]["node-complaints"]["valid"] is True
    pushed = log_order["observations"]["pushed"]
    assert pushed["nodes"] == ["n1", "n2", "n3"] and pushed["committed_entries"] > 100
    assert pushed["snapshots_taken"] >= 5 and pushed["snapshots_installed"] >= 1, pushed
    test = json.loads((run / "test.json").read_text())
    assert test["snapshot_threshold"] == 20
    assert test["complaint_watch"] == {"events": True, "patterns": []}
