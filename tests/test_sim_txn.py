"""The transactional workloads in the simulator: ``fuzz --workload`` and ``sim_cluster``.

The simulated nodes run the node's own logic (``raft_impl/host.py``), so a
``txn`` request is applied exactly as a real node applies it; the history is
checked by ``checker.elle`` as a real run's is. A follower cut off from the
leader holds an old state: with the planted bug ``txn-local-read`` it answers
read-only transactions from it, and the checker must say so; without the bug
the same schedule must stay valid (a false alarm is as bad as a miss).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sim.config import SimClusterConfig, SimTest, SimWorkload
from harness.sim.run import simulate

#: The leader cut off for 2.5 s. Its clients' writes time out there (op_timeout
#: 0.5 s) and their processes are retired; a fresh process that starts at the
#: cut-off node and whose first transaction is read-only gets, with the bug, the
#: node's old state. Only some seeds draw that in time (1 of seeds 0-5 does for
#: list-append); seed 1 is one, and no seed makes the correct node invalid.
ISOLATE_LEADER = (
    {"at": 0.5, "f": "partition", "value": {"shape": "isolate-leader"}, "seed": 0},
    {"at": 3.0, "f": "heal", "value": None},
)


def _test(model: str, bugs: tuple[str, ...] = (), seed: int = 1) -> SimTest:
    return SimTest(cluster=SimClusterConfig(bugs=bugs),
                   workload=SimWorkload(name=model, keys=2, rate=60.0, concurrency=6,
                                        time_limit=4.0, quiet=1.0, op_timeout=0.5),
                   schedule=ISOLATE_LEADER, seed=seed)


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model", ["list-append", "rw-register"])
def test_a_simulated_txn_run_of_the_correct_node_is_valid(model: str, tmp_path: Path) -> None:
    result = simulate(_test(model), tmp_path)
    assert result.valid is True, result.results
    checker = result.results["checkers"]["transactional"]
    assert checker["model"] == model and checker["txns"] > 100
    ops = [e for e in _lines(tmp_path) if e["process"] != "nemesis"]
    assert ops and all(e["f"] == "txn" and "key" not in e for e in ops)
    written = "append" if model == "list-append" else "w"
    assert any(m[0] == written for e in ops for m in e["value"])
    # reads come back filled in, and every key is read once more at the end
    assert any(m[0] == "r" and m[2] is not None for e in ops if e["type"] == "ok"
               for m in e["value"])
    finals = [e for e in ops if e["process"] >= 10_000_000 and e["type"] == "ok"]
    assert finals and all(len(e["value"]) == 1 and e["value"][0][0] == "r" for e in finals)
    test = json.loads((tmp_path / "test.json").read_text())
    assert test["model"] == model and test["workload"]["name"] == model
    assert test["workload_name"] == model


def test_a_simulated_txn_run_is_byte_identical_for_one_seed(tmp_path: Path) -> None:
    simulate(_test("list-append", seed=5), tmp_path / "a", check=False)
    simulate(_test("list-append", seed=5), tmp_path / "b", check=False)
    first, second = (tmp_path / name / "history.jsonl" for name in ("a", "b"))
    assert first.read_bytes() == second.read_bytes()


def test_txn_local_read_on_a_cut_off_follower_is_a_cycle(tmp_path: Path) -> None:
    result = simulate(_test("list-append", ("txn-local-read",)), tmp_path)
    assert result.valid is False
    checker = result.results["checkers"]["transactional"]
    assert checker["valid"] is False
    cycles = [n for n in checker["anomaly_types"] if n.startswith(("G-single", "G2-item"))]
    assert cycles, checker["anomaly_types"]
    cycle = checker["anomalies"][cycles[0]][0]
    assert any(step["type"] == "rw" for step in cycle["steps"])


def test_a_saved_txn_repro_replays_to_the_same_history(tmp_path: Path) -> None:
    """repro.json carries the workload's name: an old one without it is a register run."""
    test = _test("rw-register", ("txn-local-read",))
    again = SimTest.from_json(json.loads(json.dumps(test.to_json())))
    assert again == test and again.workload.name == "rw-register"
    data = test.to_json()
    del data["workload"]["name"]
    assert SimTest.from_json(data).workload.name == "register"
    data["workload"]["name"] = "bank"
    with pytest.raises(ValueError, match=r"workload\.name"):
        SimTest.from_json(data)


def test_fuzz_takes_a_txn_workload(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness", "fuzz", "--workload", "rw-register", "--examples",
         "2", "--time-limit", "2", "--seed", "3", "--store", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "no failure in 2 tests" in done.stdout


def test_sim_cluster_takes_a_txn_workload(tmp_path: Path) -> None:
    from harness.pytest.fixtures import SimClusterFixture

    fixture = SimClusterFixture(tmp_path, 1, "t", lambda *a, **k: None)
    test = fixture.test(workload="list-append", time_limit=2.0, keys=2)
    assert test.workload.name == "list-append" and test.workload.keys == 2
    with pytest.raises(ValueError, match=r"workload\.name"):
        fixture.test(workload="bank")


@pytest.mark.slow
def test_fuzz_finds_txn_local_read(tmp_path: Path) -> None:
    """No hint but the bug's name: the fuzzer's generic faults cut followers off."""
    from harness.sim.fuzz import fuzz

    outcome = fuzz(examples=400, bugs=["txn-local-read"], seed=1, store_dir=tmp_path,
                   workload="list-append", shrink_seconds=30, search_seconds=240)
    assert outcome.found
    assert "transactional" in outcome.failing
