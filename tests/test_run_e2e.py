"""End-to-end runs with real node processes (kept short: the whole file < ~90 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import trio

from harness.cli.main import main as cli_main
from harness.db.raft_impl import RaftImplDB
from harness.run.cluster import node_names, open_cluster
from harness.run.run import RunConfig, run_test


def raft_impl_processes(root_pid: int | None = None) -> list[psutil.Process]:
    """Live `python -m raft_impl` processes (children of root_pid if given)."""
    if root_pid is not None:
        try:
            candidates = psutil.Process(root_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
    else:
        candidates = list(psutil.process_iter())
    found = []
    for process in candidates:
        try:
            if "raft_impl" in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_all_dead(pids: list[int]) -> None:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    assert not alive, f"node processes survived: {alive}"


def test_short_run_gives_a_verdict_and_a_complete_store(tmp_path: Path):
    config = RunConfig(
        nodes=3,
        time_limit=5,
        rate=80,
        concurrency=4,
        keys=3,
        nemesis=["partition", "kill"],
        nemesis_interval=2,
        seed=42,
        store=str(tmp_path),
        quiet_period=1,
    )
    outcome = run_test(config)
    run_dir = outcome.run_dir
    assert outcome.error is None, outcome.error
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
    for name in ("test.json", "history.jsonl", "observations.jsonl", "results.json",
                 "messages.jsonl"):
        assert (run_dir / name).stat().st_size > 0, name
    for node in node_names(3):
        node_dir = run_dir / "nodes" / node
        ready = json.loads((node_dir / "stdout.jsonl").read_text().splitlines()[0])
        assert ready["event"] == "ready" and ready["id"] == node
        assert (node_dir / "stderr.log").exists()
        assert (node_dir / "data").is_dir()
        assert (node_dir / "final-log.json").exists()
    test = json.loads((run_dir / "test.json").read_text())
    assert test["seed"] == 42 and test["nemesis"] == ["partition", "kill"]
    assert test["nemesis_schedule"], "the schedule is stored with the test"
    assert test["workload"]["name"] == "register"
    events = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    fs = {e["f"] for e in events if e["process"] == "nemesis"}
    assert "heal-all" in fs
    invokes = [e for e in events if e["type"] == "invoke"]
    assert invokes and all("client" in e and "seq" in e for e in invokes)
    final_reads = [e for e in events if isinstance(e["process"], int)
                   and e["process"] >= 10_000_000 and e["type"] == "ok"]
    assert {e["key"] for e in final_reads} >= {e["key"] for e in invokes}
    kinds = {json.loads(line)["kind"]
             for line in (run_dir / "observations.jsonl").read_text().splitlines()}
    assert {"status", "log", "digest", "role", "healed"} <= kinds
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True, results
    assert outcome.exit_code == 0
    assert (run_dir / "report.html").exists()
    # workload variety by default: both read paths, two of four processes retry in doubt
    assert test["read_mode"] == "mixed" and test["retry_slots"] == 2
    assert test["workload"]["read_paths"] == ["read-index", "lease"]
    worker_reads = [e for e in invokes if e["f"] == "read" and e["process"] < 10_000_000]
    assert {e["read"] for e in worker_reads} == {"read-index", "lease"}
    coverage = json.loads((run_dir / "coverage.json").read_text())
    assert coverage == outcome.coverage
    assert sum(c["invoked"] for c in coverage["reads"].values()) == sum(
        1 for e in invokes if e["f"] == "read")
    assert coverage["elections"] >= 1 and coverage["faults"]


async def test_five_nodes_start_within_three_seconds(tmp_path: Path):
    db = RaftImplDB()
    pids: list[int] = []
    began = trio.current_time()
    async with open_cluster(db, None, node_names(5), tmp_path) as cluster:
        elapsed = trio.current_time() - began
        assert cluster.last_leader in cluster.nodes
        pids = [node.process.pid for node in db.nodes.values() if node.process]
        assert len(pids) == 5
    # The target (3 s) is for an idle machine; on a loaded CI box (load above
    # the core count) the bound stretches with the load instead of flaking.
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    bound = 3.0 * max(1.0, load)
    assert elapsed < bound, (
        f"5-node cluster took {elapsed:.2f} s to be ready with a leader (load {load:.1f}/cpu)"
    )
    assert_all_dead(pids)


async def test_cancellation_and_errors_leave_no_process(tmp_path: Path):
    pids: list[int] = []
    with trio.move_on_after(30):  # a safety net: the test itself must not hang
        with pytest.raises(RuntimeError, match="boom"):
            async with open_cluster(RaftImplDB(), None, node_names(3), tmp_path / "a") as c:
                pids += [n.process.pid for n in c.db.nodes.values() if n.process]
                await c.pause(c.nodes[0])  # a stopped process must die too
                raise RuntimeError("boom")
        assert_all_dead(pids)
        with trio.move_on_after(0.5) as scope:
            async with open_cluster(RaftImplDB(), None, node_names(3), tmp_path / "b") as c:
                pids += [n.process.pid for n in c.db.nodes.values() if n.process]
                await trio.sleep_forever()
        assert scope.cancelled_caught or len(pids) == 3
    assert_all_dead(pids)


@pytest.mark.skipif(sys.platform != "linux", reason="signals and psutil children")
def test_ctrl_c_keeps_history_and_kills_nodes(tmp_path: Path):
    command = [sys.executable, "-m", "harness", "run", "--nodes", "3", "--time-limit", "30",
               "--nemesis", "partition", "--nemesis-interval", "2", "--store", str(tmp_path),
               "--seed", "3", "--no-display"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 20
        history = None
        while time.monotonic() < deadline:
            runs = list(tmp_path.glob("*/*/history.jsonl"))
            nodes = raft_impl_processes(process.pid)
            pids = sorted({*pids, *(p.pid for p in nodes)})
            if runs and len(nodes) == 3 and runs[0].stat().st_size > 2000:
                history = runs[0]
                break
            time.sleep(0.1)
        assert history is not None, "the run did not get going"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 2, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert b"splitbrain check" in out
    assert_all_dead(pids)
    lines = history.read_text().splitlines()
    assert len(lines) > 10 and all(json.loads(line) for line in lines)
    test = json.loads((history.parent / "test.json").read_text())
    assert test["interrupted"] is True
    from checker.history import load_history

    assert load_history(history).ops, "the interrupted history loads for checking"
    checked = subprocess.run([sys.executable, "-m", "harness", "check", str(history.parent)],
                             capture_output=True, timeout=60)
    assert checked.returncode in (0, 1, 2), checked.stderr.decode()
    assert b"Traceback" not in checked.stderr, checked.stderr.decode()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--nodes", "4"], "--nodes"),
        (["run", "--time-limit", "-1"], "--time-limit"),
        (["run", "--nemesis", "flood"], "nemesis package"),
        (["run", "--bug", "no-such-bug"], "--bug"),
        (["run", "--mix", "read=x"], "--mix"),
        (["run", "--nemesis", "kill", "--nemesis-schedule", "x.json"], "either"),
        (["run", "--nemesis-schedule", "/nonexistent/schedule.json"], "cannot read"),
        (["run", "--db", "nosuchdb"], "--db"),
    ],
)
def test_bad_arguments_give_a_clean_error(argv, message, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_process_left_behind_by_this_module():
    own = [p for p in raft_impl_processes(os.getpid())]
    assert own == []
