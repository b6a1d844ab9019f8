"""The simulator's faults go through the real runs' executor (nemesis/executor.py).

One fault vocabulary, one target resolution, one heal: what a simulated
history records is what the executor records, and Trio running the executor on
the simulation's clock keeps the simulator deterministic even when several of
the executor's tasks act at one virtual instant.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from checker.history import load_history
from harness.sim import SimClusterConfig, SimTest, SimWorkload, simulate


def _nemesis(run_dir: Path) -> list[dict]:
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("process") == "nemesis"]


def _test(schedule: list[dict], seed: int = 1, **cluster: object) -> SimTest:
    return SimTest(cluster=SimClusterConfig(**cluster),
                   workload=SimWorkload(time_limit=3.0, quiet=0.5),
                   schedule=tuple(schedule), seed=seed)


def test_targets_are_resolved_among_eligible_nodes_as_in_a_real_run(tmp_path: Path) -> None:
    # The executor picks "one" among the nodes a kill can act on (live ones): two kills of
    # "one" always take two different nodes. The simulator's own copy drew among all.
    schedule = [{"at": 0.5, "f": "kill", "value": "one"},
                {"at": 0.6, "f": "kill", "value": "one"}]
    for seed in range(6):
        run_dir = tmp_path / str(seed)
        simulate(_test(schedule, seed=seed), run_dir, check=False)
        kills = [e for e in _nemesis(run_dir) if e["f"] == "kill"]
        assert len(kills) == 2
        first, second = kills[0]["value"]["nodes"], kills[1]["value"]["nodes"]
        assert len(first) == 1 and len(second) == 1 and first != second, seed


def test_the_executor_records_its_heal_all_and_nothing_left_broken(tmp_path: Path) -> None:
    schedule = [{"at": 0.5, "f": "kill", "value": "leader"},
                {"at": 0.7, "f": "pause", "value": "one"}]
    result = simulate(_test(schedule), tmp_path / "run", check=False)
    events = _nemesis(result.run_dir)
    heal = [e for e in events if e["f"] == "heal-all"]
    assert len(heal) == 1 and "errors" not in heal[0]["value"]
    # The run's last look at the nodes: every one answered (none left down or paused).
    digests = {line["node"] for line in map(json.loads, (result.run_dir / "observations.jsonl")
                                               .read_text().splitlines())
               if line["kind"] == "digest"}
    assert digests == {"n1", "n2", "n3"}


def test_a_clock_fault_is_refused_to_no_node_that_cannot_answer(tmp_path: Path) -> None:
    # As in a real run, a clock bump acts only on nodes that can answer an admin request.
    schedule = [{"at": 0.3, "f": "kill", "value": ["n1"]},
                {"at": 0.5, "f": "clock", "value": {"targets": "all", "offset": 2.0,
                                                    "rate": 1.0}}]
    result = simulate(_test(schedule), tmp_path / "run", check=False)
    bump = next(e for e in _nemesis(result.run_dir) if e["f"] == "bump-clock")
    assert bump["value"]["nodes"] == ["n2", "n3"]
    assert load_history(result.run_dir / "history.jsonl")  # a readable history


#: Several executor tasks acting at one instant: three triggered entries sharing one
#: election (delay 0), a strobe ticking on round times, a budget-free heal.
_CONCURRENT = [
    {"at": 0.2, "f": "clock", "value": {"targets": "all", "strobe": {
        "delta": 0.3, "period": 0.25, "duration": 2.0}}},
    {"at": 0.4, "f": "partition", "value": {"shape": "isolate-leader"}},
    {"at": 0.5, "f": "partition", "value": {"shape": "isolate-leader"}, "when": "new-leader"},
    {"at": 0.5, "f": "pause", "value": "one", "when": "new-leader"},
    {"at": 0.5, "f": "kill", "value": "minority", "when": "new-leader"},
    {"at": 1.5, "f": "heal", "value": None},
    {"at": 1.75, "f": "resume", "value": "all"},
    {"at": 2.0, "f": "start", "value": "all"},
]


def test_concurrent_executor_tasks_give_the_same_bytes_across_processes(
        tmp_path: Path) -> None:
    """Trio orders tasks ready at one instant by its RNG and breaks deadline ties by
    object address; harness.sim.control fixes the first, and a fresh process (other
    addresses, other hash seed) must still write the same history."""
    script = ("import sys, json; from harness.sim import SimTest, simulate; "
              "simulate(SimTest.from_json(json.loads(sys.argv[1])), sys.argv[2], check=False)")
    test = json.dumps(_test(_CONCURRENT, seed=3).to_json())
    digests = []
    for hash_seed in ("1", "4242"):
        run_dir = tmp_path / hash_seed
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        subprocess.run([sys.executable, "-c", script, test, str(run_dir)], check=True,
                       env=env, timeout=120, cwd=Path(__file__).resolve().parent.parent)
        digests.append(hashlib.sha256((run_dir / "history.jsonl").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    fired = [e for e in _nemesis(tmp_path / "1")
             if e["f"] in ("start-partition", "pause", "kill") and "skipped" not in e["value"]]
    assert len(fired) >= 3  # the group did fire: the test exercised concurrent tasks
