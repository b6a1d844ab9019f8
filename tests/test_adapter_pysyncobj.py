"""The PySyncObj adapter: its node program's answers, and one short real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip(
    "pysyncobj", reason="PySyncObj is not installed: pip install -e '.[adapters]'"
)

# Imported after PySyncObj on purpose: this module repairs socket.inet_ntop, which
# importing PySyncObj breaks for the whole process (and so for the other tests here).
from harness.adapters.pysyncobj_node import describe_entry, parse_args
from harness.run import RunConfig, run_test


def short_schedule(tmp_path: Path, partitions: bool) -> Path:
    """Isolate one node (with netns), heal, then kill one node and restart it."""
    steps = [{"at": 3.5, "f": "kill", "value": "one"}, {"at": 5.0, "f": "start", "value": "all"}]
    if partitions:
        steps = [{"at": 1.0, "f": "partition", "value": {"shape": "isolate-one"}},
                 {"at": 2.5, "f": "heal", "value": None}, *steps]
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(steps))
    return path


def netns_usable() -> bool:
    from harness.net.netns import NetnsUnavailable, check_available

    try:
        check_available()
    except NetnsUnavailable:
        return False
    return True


def test_node_command_line_is_raft_impl_shaped() -> None:
    args = parse_args(["--id", "n1", "--data-dir", "/tmp/x", "--peer-listen", "127.0.0.1:1",
                       "--client-listen", "127.0.0.1:2", "--peer", "n2=127.0.0.1:3",
                       "--election-timeout", "0.2,0.5"])
    assert args.peers == {"n2": "127.0.0.1:3"}
    assert args.election_timeout == (0.2, 0.5)
    with pytest.raises(SystemExit):
        parse_args(["--id", "n1", "--data-dir", "d", "--peer-listen", "127.0.0.1:1",
                    "--client-listen", "127.0.0.1:2", "--peer", "n2"])


def test_short_pysyncobj_run_with_faults(tmp_path: Path) -> None:
    partitions = netns_usable()
    config = RunConfig(
        db="pysyncobj",
        nodes=3,
        time_limit=6,
        rate=50,
        concurrency=3,
        keys=3,
        nemesis_schedule=str(short_schedule(tmp_path, partitions)),
        net="netns" if partitions else "none",
        seed=11,
        store=str(tmp_path),
        quiet_period=1,
        op_timeout=2.0,
        render_report=False,
    )
    outcome = run_test(config)
    assert outcome.error is None, outcome.error
    assert outcome.results is not None
    checkers = outcome.results["checkers"]
    # Whatever PySyncObj does, the run must be judged: a verdict, never a crash.
    assert checkers["linearizable"]["valid"] in (True, False, "unknown")
    # The node dumps PySyncObj's log and state digests: the log checks must judge.
    log_checks = checkers["log-order"]["checkers"]
    for name in ("log-agreement", "committed-durability", "acked-writes", "digests"):
        assert log_checks[name]["valid"] in (True, False), (name, log_checks[name])
    assert log_checks["acked-writes"]["acknowledged_writes"] > 0
    history = [json.loads(line) for line in (outcome.run_dir / "history.jsonl").open()]
    assert sum(1 for e in history if e["type"] == "ok" and e["f"] == "write") > 0
    assert any(e["f"] in ("kill", "start-partition") for e in history
               if e.get("process") == "nemesis")
    stdouts = {node: (outcome.run_dir / "nodes" / node / "stdout.log").read_text().splitlines()
               for node in ("n1", "n2", "n3")}
    assert all(json.loads(lines[0])["event"] == "ready" for lines in stdouts.values())
    # PySyncObj reports role *changes*: a node that stays a follower prints none, but
    # whoever won an election did.
    assert any(json.loads(line).get("event") == "role"
               for lines in stdouts.values() for line in lines)
    assert (outcome.run_dir / "nodes" / "n1" / "data" / "journal").exists()


def test_log_entries_carry_the_session_of_their_command() -> None:
    from pysyncobj import pickle

    command = b"\x00" + pickle.dumps((7, ("k1", 42, "c3", 9)))
    entry = describe_entry(command, 12, 3, applied=12, method_names={7: "write_v0"})
    assert (entry["index"], entry["term"], entry["op"], entry["key"]) == (12, 3, "write", "k1")
    assert (entry["client"], entry["seq"], entry["duplicate"]) == ("c3", 9, False)
    pending = describe_entry(command, 13, 3, applied=12, method_names={7: "write_v0"})
    assert "duplicate" not in pending  # not applied yet: unknown
    assert pending["digest"] == entry["digest"]  # same command, same term: same digest
    noop = describe_entry(b"\x01", 14, 4, applied=0, method_names={})
    assert (noop["op"], noop["client"], noop["seq"]) == ("no-op", None, None)


def test_importing_the_node_leaves_socket_inet_ntop_working() -> None:
    import socket

    assert socket.inet_ntop(socket.AF_INET, bytes([127, 0, 0, 1])) == "127.0.0.1"
