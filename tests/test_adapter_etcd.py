"""The etcd adapter: request/answer translation, option checks, and one short real run."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import psutil
import pytest

from harness.adapters import AdapterOptionError, check_read_mode, network_for
from harness.adapters.etcd import completion_for, decode_value, encode, etcd_binary, request_for
from harness.run import RunConfig, run_test


def netns_usable() -> bool:
    from harness.net.netns import NetnsUnavailable, check_available

    try:
        check_available()
    except NetnsUnavailable:
        return False
    return True


def test_values_round_trip_through_base64_json() -> None:
    for value in (0, 17, -3, "text", [1, 2], None):
        assert decode_value(encode(value)) == value
    assert encode("k1") == base64.b64encode(b"k1").decode()
    assert decode_value(None) == ""  # the gateway omits an empty value


def test_requests_match_the_v3_gateway() -> None:
    path, body = request_for({"f": "read", "key": "k1"}, serializable=False)
    assert path == "/v3/kv/range" and "serializable" not in body
    assert request_for({"f": "read", "key": "k1"}, serializable=True)[1]["serializable"] is True
    path, body = request_for({"f": "cas", "key": "k1", "value": [3, 4]}, serializable=False)
    assert path == "/v3/kv/txn"
    compare = body["compare"][0]
    assert (compare["target"], compare["result"]) == ("VALUE", "EQUAL")
    assert decode_value(compare["value"]) == 3
    assert decode_value(body["success"][0]["request_put"]["value"]) == 4


def test_answers_become_completions() -> None:
    read = {"f": "read", "key": "k1"}
    assert completion_for(read, {"header": {}}, "n1").value is None  # never written
    found = completion_for(read, {"kvs": [{"key": encode("k1"), "value": encode(7)}]}, "n1")
    assert (found.type, found.value) == ("ok", 7)
    cas = {"f": "cas", "key": "k1", "value": [1, 2]}
    # The gateway leaves out false fields: no "succeeded" is a failed comparison.
    assert completion_for(cas, {"header": {}}, "n1").type == "fail"
    assert completion_for(cas, {"succeeded": True}, "n1").type == "ok"


def test_network_and_read_mode_choices() -> None:
    assert network_for("raft_impl", None, {"partition"}) == "proxy"
    with pytest.raises(AdapterOptionError, match="cannot use --net proxy"):
        network_for("etcd", "proxy", set())
    with pytest.raises(AdapterOptionError, match="needs --net netns"):
        network_for("etcd", "none", {"partition"})
    assert network_for("etcd", "none", {"kill", "pause"}) == "none"
    check_read_mode("etcd", "stale")
    with pytest.raises(AdapterOptionError, match="read-index"):
        check_read_mode("etcd", "lease")


def etcd_processes_under(root: Path) -> list[int]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any(part.startswith(str(root)) for part in cmdline) and "--initial-cluster" in cmdline:
            found.append(process.pid)
    return found


@pytest.mark.etcd
@pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed (apt install etcd-server)")
def test_short_etcd_run_with_faults_is_linearizable_and_log_checks_say_unknown(tmp_path: Path):
    partitions = netns_usable()
    config = RunConfig(
        db="etcd",
        nodes=3,
        time_limit=6,
        rate=60,
        concurrency=3,
        keys=3,
        nemesis=["partition", "kill"] if partitions else ["kill"],
        nemesis_interval=1.5,
        net="netns" if partitions else "none",
        seed=7,
        store=str(tmp_path),
        quiet_period=1,
        op_timeout=2.0,
        render_report=False,
    )
    outcome = run_test(config)
    assert outcome.error is None, outcome.error
    results = outcome.results
    assert results is not None
    # etcd is linearizable with its default reads: a false here is a harness bug.
    assert results["checkers"]["linearizable"]["valid"] is True, results["checkers"]
    log_order = results["checkers"]["log-order"]
    # Checks that need etcd's Raft log cannot pass silently: unknown, with the reason.
    assert log_order["valid"] == "unknown"
    agreement = log_order["checkers"]["log-agreement"]
    assert agreement["valid"] == "unknown" and "no log dumps" in agreement["reason"]
    assert outcome.exit_code == 2  # unknown overall, never "valid"
    history = [json.loads(line) for line in (outcome.run_dir / "history.jsonl").open()]
    faults = {e["f"] for e in history if e.get("process") == "nemesis"}
    assert "kill" in faults or "start-partition" in faults, faults
    assert sum(1 for e in history if e["type"] == "ok" and e["f"] == "write") > 10
    assert (outcome.run_dir / "nodes" / "n1" / "data" / "member").is_dir()
    assert etcd_processes_under(tmp_path) == []
