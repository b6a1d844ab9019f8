"""The run's lifecycle as a user meets it: stopping it, bounds, and a store that fails.

Real `splitbrain run` subprocesses where the behaviour is the process's (signals,
exit codes); each waits for conditions (events in the history), never a fixed time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_run_e2e import assert_all_dead, raft_impl_processes


def _wait_for(predicate, within: float, what: str, process: subprocess.Popen) -> None:
    """Poll ``predicate`` until true; fail (not hang) if the run ends or time runs out."""
    deadline = time.monotonic() + within
    while not predicate():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {within} s"
        time.sleep(0.05)


def _history(store: Path) -> list[dict]:
    runs = list(store.glob("*/*/history.jsonl"))
    if not runs:
        return []
    return [json.loads(line) for line in runs[0].read_text().splitlines()
            if line.endswith("}")]


@pytest.mark.skipif(sys.platform != "linux", reason="signals and psutil children")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stopping_a_run_with_nodes_down_restarts_none_of_them(tmp_path: Path, signum):
    """Issue 16 item 5: Ctrl-C/SIGTERM while the nemesis holds nodes down used to
    restart them in the final heal, wait 10 s for each to get ready (they never
    did), and write heal errors into the history."""
    schedule = tmp_path / "kill.json"
    schedule.write_text(json.dumps([{"at": 0.5, "f": "kill", "value": ["n3"]},
                                    {"at": 60, "f": "start", "value": ["n3"]}]))
    store = tmp_path / "store"
    command = [sys.executable, "-m", "harness", "run", "--nodes", "3", "--time-limit", "60",
               "--nemesis-schedule", str(schedule), "--store", str(store), "--no-display",
               "--no-report"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids: list[int] = []
    try:
        def killed_and_going() -> bool:
            pids.extend(p.pid for p in raft_impl_processes(process.pid))
            events = _history(store)
            kills = [i for i, e in enumerate(events) if e.get("f") == "kill"]
            return bool(kills) and any(e.get("type") == "ok" for e in events[kills[0]:])

        _wait_for(killed_and_going, 30, "kill of n3 followed by an operation", process)
        process.send_signal(signum)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 2, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert_all_dead(sorted(set(pids)))
    events = _history(store)
    heal = [e for e in events if e.get("f") == "heal-all"]
    assert len(heal) == 1 and "errors" not in heal[0]["value"], heal
    assert heal[0]["value"]["started"] == [] and heal[0]["value"]["left_down"] == ["n3"]
    stderr_log = next(store.glob("*/*/nodes/n3/stderr.log")).read_text()
    assert stderr_log.count("recovered") == 1, "n3 was started again during shutdown"


# -- bounds ----------------------------------------------------------------------------


def test_concurrency_beyond_the_maximum_is_refused_in_one_line(capsys):
    """Issue 16 item 6: --concurrency 100000000 started workers until memory ran out,
    never ran an operation, and ignored its time limit and Ctrl-C."""
    from harness.cli import main as cli_main
    from harness.workload import MAX_CONCURRENCY

    assert cli_main(["run", "--concurrency", "100000000", "--time-limit", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--concurrency" in err and str(MAX_CONCURRENCY) in err
    assert cli_main(["run", "--concurrency", str(MAX_CONCURRENCY + 1)]) == 2
    from harness.workload import RegisterWorkload

    with pytest.raises(ValueError, match="concurrency"):
        RegisterWorkload(concurrency=MAX_CONCURRENCY + 1)


async def test_the_most_clients_allowed_still_stop_on_time(tmp_path: Path, autojump_clock):
    """At the maximum every worker starts, runs, and stops within one operation timeout
    of the end of the time limit (virtual time: nothing here waits for real)."""
    import trio

    from harness.clients import HistoryRecorder, ProcessPool
    from harness.cluster import RunClock
    from harness.workload import MAX_CONCURRENCY, RegisterWorkload
    from tests.test_harness_units import FakeDB

    db = FakeDB()
    db.script = ["hang"] * (100 * MAX_CONCURRENCY)  # every operation in doubt: the slow case
    recorder = HistoryRecorder(tmp_path / "history.jsonl", RunClock())
    pool = ProcessPool(db, ["n1", "n2", "n3"], recorder, concurrency=MAX_CONCURRENCY,
                       op_timeout=1.0)
    workload = RegisterWorkload(concurrency=MAX_CONCURRENCY, rate=0)
    stop = trio.Event()
    began = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.run_workers, workload.operations(1), 0, stop)
        await trio.sleep(2.0)
        stop.set()
    recorder.close()
    assert trio.current_time() - began <= 2.0 + 1.0 + 0.01
    assert len({client for client, _seq in db.sessions}) >= MAX_CONCURRENCY


# -- serve -----------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_ctrl_c_and_sigterm(tmp_path: Path, signum):
    """Ctrl-C is serve's documented way to stop; it printed a traceback and exited 1."""
    import urllib.request

    (tmp_path / "store").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--store", str(tmp_path / "store"),
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # the server announces its port when it listens
        assert "http://127.0.0.1:" in line, line + process.stderr.read()
        url = line.split()[3]
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.status == 200
        process.send_signal(signum)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err and err.strip() == "stopped", err
