"""``splitbrain fuzz --workers N`` and the shared example database (harness/sim/workers.py).

The searches run as real processes (the CLI, as a user runs it); the Redis test
starts a real ``redis-server`` on loopback (scripts/setup.sh installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis.database import InMemoryExampleDatabase

from harness.sim.workers import Announcements, CampaignDatabase, campaign_key

ROOT = Path(__file__).resolve().parent.parent
FUZZ = [sys.executable, "-m", "harness", "fuzz"]


def _campaign(**changes: object) -> bytes:
    definition: dict[str, object] = {"bugs": ["no-dedup"], "nodes": 3, "read_modes": [],
                                     "time_limit": None, "max_faults": 8,
                                     "workload": "register"}
    return campaign_key(**{**definition, **changes})


def test_a_campaign_key_names_the_property_not_the_seed() -> None:
    assert _campaign() == _campaign()
    assert _campaign() != _campaign(bugs=["forget-vote"])
    assert _campaign() != _campaign(nodes=5)


def test_campaigns_sharing_a_database_keep_their_examples_apart() -> None:
    shared = InMemoryExampleDatabase()
    a, b = CampaignDatabase(shared, _campaign()), CampaignDatabase(shared, _campaign(nodes=5))
    a.save(b"test", b"choices")
    assert list(a.fetch(b"test")) == [b"choices"] and list(b.fetch(b"test")) == []


def test_a_worker_sees_the_others_announcements_not_its_own() -> None:
    shared = InMemoryExampleDatabase()
    one = Announcements(shared, _campaign(), "host:1")
    two = Announcements(shared, _campaign(), "host:2")
    one.announce({"seed": 1})
    assert one.find() is None
    found = two.find()
    assert found == {"worker": "host:1", "test": {"seed": 1}}
    two.withdraw(found)
    assert two.find() is None


def _run(argv: list[str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_two_workers_find_a_planted_bug_and_the_other_replays_it(tmp_path: Path) -> None:
    done = _run([*FUZZ, "--bug", "no-dedup", "--seed", "1", "--workers", "2",
                 "--db-dir", str(tmp_path / "db"), "--store", str(tmp_path / "store"),
                 "--shrink-seconds", "5"])
    assert done.returncode == 1, done.stderr
    assert "found a failure" in done.stdout and "repro.json" in done.stdout
    # Each worker either found it or replayed what the other announced.
    for index in (0, 1):
        assert (f"worker {index} found a failure" in done.stdout
                or f"worker {index} replayed it" in done.stdout), done.stdout
    assert "[w0]" in done.stderr and "[w1]" in done.stderr
    assert list((tmp_path / "db").iterdir()), "Hypothesis saved nothing in the shared db"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _redis_server(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/setup.sh installs it)")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_failure_found_on_one_machine_is_replayed_on_another_through_redis(
        tmp_path: Path) -> None:
    redis = pytest.importorskip("redis", reason="the redis package (test extra): re-run "
                                                "scripts/setup.sh")
    with _redis_server(tmp_path) as url:
        # "Machine" A finds the bug and announces it; B (another seed, another store)
        # replays it from Redis before searching, and fails the same way.
        first = _run([*FUZZ, "--bug", "no-dedup", "--seed", "1", "--redis", url,
                      "--store", str(tmp_path / "a"), "--shrink-seconds", "5"])
        assert first.returncode == 1 and "FAILURE found" in first.stdout, first.stderr
        second = _run([*FUZZ, "--bug", "no-dedup", "--seed", "99", "--redis", url,
                       "--store", str(tmp_path / "b")])
        assert second.returncode == 1, second.stderr
        assert "replayed the failure" in second.stdout and "fails here too" in second.stdout
        keys = redis.Redis.from_url(url).keys("splitbrain-hypothesis:*")
        assert keys, "Hypothesis's examples are not in Redis"
        # Another campaign (another bug) is not stopped by it.
        other = _run([*FUZZ, "--bug", "forget-vote", "--examples", "2",
                      "--search-seconds", "60", "--redis", url,
                      "--store", str(tmp_path / "c")])
        assert "replayed" not in other.stdout + other.stderr


def test_sigterm_stops_every_worker_and_exits_2(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [*FUZZ, "--workers", "2", "--examples", "100000", "--db-dir", str(tmp_path / "db"),
         "--store", str(tmp_path / "store")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        assert parent.stderr is not None
        started = set()
        for line in parent.stderr:  # both workers are searching
            if "splitbrain fuzz: up to" in line and line.startswith("[w"):
                started.add(line[:4])
            if len(started) == 2:
                break
        workers = psutil.Process(parent.pid).children(recursive=True)
        assert len(workers) == 2
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 2
        _, still_running = psutil.wait_procs(workers, timeout=10)
        assert still_running == []
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
