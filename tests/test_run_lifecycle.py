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
    from harness.cli.main import main as cli_main
    from harness.run.workload import MAX_CONCURRENCY

    assert cli_main(["run", "--concurrency", "100000000", "--time-limit", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--concurrency" in err and str(MAX_CONCURRENCY) in err
    assert cli_main(["run", "--concurrency", str(MAX_CONCURRENCY + 1)]) == 2
    from harness.run.workload import RegisterWorkload

    with pytest.raises(ValueError, match="concurrency"):
        RegisterWorkload(concurrency=MAX_CONCURRENCY + 1)


def test_keys_beyond_the_maximum_are_refused_in_one_line(tmp_path, capsys):
    """--keys 100000000 --time-limit 2 spent minutes making keys, ran no operation,
    and outlived SIGINT by over a minute: the same bound as --concurrency's."""
    from harness.cli.main import main as cli_main
    from harness.run.workload import MAX_KEYS, RegisterWorkload, TxnWorkload

    assert cli_main(["run", "--keys", "100000000", "--time-limit", "2",
                     "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--keys" in err and str(MAX_KEYS) in err
    assert not any(tmp_path.iterdir())
    for workload in (RegisterWorkload, TxnWorkload):
        with pytest.raises(ValueError, match="keys"):
            workload(keys=MAX_KEYS + 1)


async def test_the_most_clients_allowed_still_stop_on_time(tmp_path: Path, autojump_clock):
    """At the maximum every worker starts, runs, and stops within one operation timeout
    of the end of the time limit (virtual time: nothing here waits for real)."""
    import trio

    from harness.run.clients import HistoryRecorder, ProcessPool
    from harness.run.cluster import RunClock
    from harness.run.workload import MAX_CONCURRENCY, RegisterWorkload
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


# -- a store that cannot be written ------------------------------------------------------------


def _enospc_after(limit: int, monkeypatch) -> None:
    """Make os.write behave like a disk with ``limit`` bytes left: short writes, then
    ENOSPC (how a filling filesystem tears a buffered line)."""
    import errno
    import os

    real_write = os.write
    left = [limit]

    def write(fd: int, data) -> int:
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        chunk = bytes(data[: left[0]])
        left[0] -= len(chunk)
        return real_write(fd, chunk)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("limit", [0, 1, 37, 100, 1000])
def test_a_full_disk_leaves_whole_lines_and_says_so(tmp_path: Path, monkeypatch, limit):
    from checker.history import HistoryWriter
    from checker.lines import LineWriteError

    path = tmp_path / "history.jsonl"
    path.write_text('{"index":0,"type":"invoke","process":1,"f":"read"}\n')
    writer = HistoryWriter(path)
    _enospc_after(limit, monkeypatch)
    written = 0
    with pytest.raises(LineWriteError) as raised:
        for i in range(100):
            writer.write({"index": i + 1, "type": "ok", "process": 1, "f": "read",
                          "value": "x" * 20})
            written += 1
    import errno

    assert raised.value.errno == errno.ENOSPC and "history.jsonl" in str(raised.value)
    monkeypatch.undo()
    text = path.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 1 + written
    assert all(json.loads(line) for line in lines)
    with pytest.raises(LineWriteError):  # broken for good: nothing more is appended
        writer.write({"index": 999, "type": "ok", "process": 1, "f": "read"})
    assert path.read_text() == text
    writer.close()


def test_write_json_that_fails_keeps_the_old_file_and_no_temporary(tmp_path: Path,
                                                                  monkeypatch):
    import errno

    from harness.run import store

    path = tmp_path / "test.json"
    store.write_json(path, {"a": 1})
    real_write_text = Path.write_text

    def full_disk(self: Path, text: str, *args, **kwargs) -> int:
        real_write_text(self, text[:5])  # what a filling disk takes, then refuses
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError):
        store.write_json(path, {"a": 2, "b": "x" * 100})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.json"]


def test_a_store_that_cannot_be_created_is_one_line_and_exit_2(tmp_path, monkeypatch,
                                                                capsys):
    """A read-only store failed with a traceback and exit 1 (issue 16 item 3)."""
    import errno

    from harness.cli.main import main as cli_main
    from harness.run import store

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store, "create_run_dir", read_only)
    assert cli_main(["run", "--nodes", "1", "--time-limit", "1", "--store",
                     str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err and "Traceback" not in err


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 1 MB tmpfs (root only: a real full disk, not an injected one); unmounted after."""
    import os

    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_read_only_store_is_one_line_and_exit_2(small_tmpfs: Path):
    (small_tmpfs / "store").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--nodes", "1", "--time-limit", "1",
         "--store", str(small_tmpfs / "store"), "--no-display"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "Read-only file system" in done.stderr


def test_a_disk_that_fills_mid_run_stops_it_and_leaves_it_checkable(small_tmpfs: Path):
    """The run used to notice only at its end, exit 1 with a traceback, leave torn
    JSONL lines and an empty .test.json.tmp, and `check` then refused the run."""
    store_dir = small_tmpfs / "store"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--nodes", "3", "--time-limit", "120",
         "--store", str(store_dir), "--no-display"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], done.stdout
    run_dir = next(store_dir.glob("*/2*"))
    assert not list(run_dir.rglob(".*.tmp")), "a temporary file was left"
    for path in [*run_dir.glob("*.jsonl"), *run_dir.glob("nodes/*/stdout.jsonl")]:
        text = path.read_text()
        assert not text or text.endswith("\n"), f"{path.name} ends in a torn line"
        for line in text.splitlines():
            json.loads(line)
    history = _history(store_dir)
    last = max(event["time"] for event in history)
    assert last < 120e9, "the run went on to its time limit"
    assert json.loads((run_dir / "test.json").read_text())["nodes"]
    checked = subprocess.run([sys.executable, "-m", "harness", "check", str(run_dir)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode in (0, 1, 2) and "Traceback" not in checked.stderr
    assert "not valid JSON" not in checked.stdout + checked.stderr
