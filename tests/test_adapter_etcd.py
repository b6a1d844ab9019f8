"""The etcd adapter: request/answer translation, option checks, and one short real run."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import psutil
import pytest
from adapter_helpers import short_run_with_faults

from harness.db.etcd import (
    apply_txn,
    completion_for,
    decode_value,
    encode,
    etcd_binary,
    raft_status_fields,
    request_for,
    txn_commit_request,
    txn_keys,
    txn_snapshot,
    txn_snapshot_request,
)
from harness.db.options import AdapterOptionError, check_read_mode, network_for


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


def test_a_txn_is_a_snapshot_then_a_commit_on_unchanged_mod_revisions() -> None:
    mops = [["r", "k1", None], ["append", "k1", 5], ["r", "k1", None], ["append", "k2", 6],
            ["r", "k3", None]]
    keys = txn_keys(mops)
    assert keys == ["k1", "k2", "k3"]
    snap = txn_snapshot_request(keys, serializable=False)
    assert [base64.b64decode(r["request_range"]["key"]).decode()
            for r in snap["success"]] == keys
    assert "compare" not in snap and "serializable" not in snap["success"][0]["request_range"]
    assert txn_snapshot_request(keys, True)["success"][0]["request_range"]["serializable"]
    # the gateway's answer: k1 = [3] at revision 7; k2 and k3 absent (no kvs)
    answer = {"responses": [
        {"response_range": {"kvs": [{"key": encode("k1"), "value": encode([3]),
                                     "mod_revision": "7"}], "count": "1"}},
        {"response_range": {}}, {"response_range": {"header": {}}}]}
    snapshot = txn_snapshot(keys, answer)
    assert snapshot == {"k1": ([3], 7), "k2": (None, 0), "k3": (None, 0)}
    done, written = apply_txn(mops, snapshot)
    assert done == [["r", "k1", [3]], ["append", "k1", 5], ["r", "k1", [3, 5]],
                    ["append", "k2", 6], ["r", "k3", None]]
    assert written == {"k1": [3, 5], "k2": [6]}
    commit = txn_commit_request(snapshot, written)
    assert [(base64.b64decode(c["key"]).decode(), c["target"], c["mod_revision"])
            for c in commit["compare"]] == [("k1", "MOD", "7"), ("k2", "MOD", "0"),
                                            ("k3", "MOD", "0")]
    assert {base64.b64decode(p["request_put"]["key"]).decode():
            decode_value(p["request_put"]["value"]) for p in commit["success"]} == written
    registers, wrote = apply_txn([["w", "k1", 9], ["r", "k1", None]], snapshot)
    assert registers == [["w", "k1", 9], ["r", "k1", 9]] and wrote == {"k1": 9}


def test_status_comes_from_raft_itself_with_its_current_term() -> None:
    """raft.status (``/debug/vars``): ids in hex, the term raft is in (the maintenance
    API's raftTerm is the last applied entry's, which lags a new leader's)."""

    class Members:
        def __init__(self) -> None:
            self.member_ids = {"n2": 0x1F}

        def node_of(self, member: int) -> str | None:
            return next((n for n, m in self.member_ids.items() if m == member), None)

    members = Members()
    raft = {"id": "8e9e05c52164694d", "term": 13, "vote": "8e9e05c52164694d",
            "commit": 994, "lead": "8e9e05c52164694d", "raftState": "StateLeader",
            "applied": 986}
    assert raft_status_fields("n4", raft, members) == {
        "id": "n4", "role": "leader", "term": 13, "leader": "n4", "commit": 994,
        "applied": 986}
    assert members.member_ids["n4"] == 10276657743932975437  # the header's member_id
    follower = {"id": "1f", "term": 13, "lead": "0", "raftState": "StatePreCandidate"}
    assert raft_status_fields("n2", follower, members)["role"] == "pre-candidate"
    assert raft_status_fields("n2", follower, members)["leader"] is None


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



def test_adapter_refuses_options_it_cannot_honour_when_built_without_the_cli() -> None:
    from harness.db.base import DBOptions
    from harness.db.etcd import EtcdDB

    with pytest.raises(AdapterOptionError, match="read-index"):
        EtcdDB(DBOptions(read_mode="lease"))
    with pytest.raises(AdapterOptionError, match="only in raft_impl"):
        EtcdDB(DBOptions(bugs=("no-dedup",)))

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
    outcome = short_run_with_faults("etcd", tmp_path, rate=60, seed=7)
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
    assert "no dump of its Raft log" in log_order["unobservable"]["log"]
    # The log checks stay unknown (visible, with the reason) but are advisory for a
    # database that cannot feed them, so a correct etcd passes on what can be checked.
    assert results["advisory"] == ["log-order"]
    # What etcd's raft says when it breaks safety was watched for in its log: none.
    complaints = results["checkers"]["node-complaints"]
    assert complaints["valid"] is True and len(complaints["output_patterns"]) == 3
    assert results["checkers"]["linearizable"]["valid"] is True
    assert outcome.exit_code == 0
    history = [json.loads(line) for line in (outcome.run_dir / "history.jsonl").open()]
    faults = {e["f"] for e in history if e.get("process") == "nemesis"}
    assert "kill" in faults or "start-partition" in faults, faults
    assert sum(1 for e in history if e["type"] == "ok" and e["f"] == "write") >= 5
    assert (outcome.run_dir / "nodes" / "n1" / "data" / "member").is_dir()
    assert etcd_processes_under(tmp_path) == []


async def serve_json_once_per_connection(stream, connections: list[int], closed) -> None:
    """A tiny h11 server: answers one POST with its body echoed, then closes abruptly.

    It does not announce the close (no ``Connection: close``), as a killed server would not.
    """
    import h11

    connections.append(1)
    protocol = h11.Connection(h11.SERVER)
    body = b""
    while True:
        event = protocol.next_event()
        if event is h11.NEED_DATA:
            protocol.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            break
    answer = json.dumps({"echo": json.loads(body), "connection": len(connections)}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    data = protocol.send(h11.Response(status_code=200, headers=headers))
    data += protocol.send(h11.Data(data=answer)) + protocol.send(h11.EndOfMessage())
    await stream.send_all(data)
    await stream.aclose()
    closed.set()


async def test_http_client_posts_json_and_reconnects_after_the_server_closed() -> None:
    import functools

    import trio

    from harness.db.http import HttpConnection
    from harness.db.wire_client import ConnectionLost

    connections: list[int] = []
    closed = trio.Event()
    async with trio.open_nursery() as nursery:
        handler = functools.partial(serve_json_once_per_connection, connections=connections,
                                    closed=closed)
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        client = HttpConnection("127.0.0.1", port)
        with trio.fail_after(10):
            assert await client.post("/v3/kv/put", {"a": 1}) == (200, {"echo": {"a": 1},
                                                                       "connection": 1})
            # The server closed the kept-alive connection while it was idle: the next
            # request must notice and use a new one, not fail as "sent and lost".
            await closed.wait()
            status, answer = await client.post("/x", {"b": 2})
        assert (status, answer["connection"]) == (200, 2)
        await client.aclose()
        nursery.cancel_scope.cancel()
    refused = HttpConnection("127.0.0.1", port)  # nothing listens any more
    with pytest.raises(ConnectionLost) as lost:
        await refused.post("/", {})
    assert lost.value.sent is False


def test_cli_refuses_relays_and_unsupported_read_modes_for_etcd(capsys, tmp_path: Path) -> None:
    from harness.cli.main import main

    store = str(tmp_path / "store")
    assert main(["run", "--db", "etcd", "--net", "proxy", "--store", store]) == 2
    assert "cannot use --net proxy" in capsys.readouterr().err
    assert main(["run", "--db", "etcd", "--read-mode", "lease", "--net", "none",
                 "--store", store]) == 2
    assert "--read-mode" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # refused before any run started


@pytest.mark.etcd
@pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed (apt install etcd-server)")
def test_etcd_list_append_through_its_txn_api_is_strictly_serializable(tmp_path: Path):
    """A real 3-member etcd under a kill and (where netns works) a partition."""
    outcome = short_run_with_faults("etcd", tmp_path, rate=40, seed=8, workload="list-append")
    assert outcome.error is None, outcome.error
    results = outcome.results
    assert results is not None
    checker = results["checkers"]["transactional"]
    assert checker["valid"] is True, checker.get("anomaly_types")
    assert checker["model"] == "list-append" and checker["txns"] >= 20
    assert outcome.exit_code == 0
    history = [json.loads(line) for line in (outcome.run_dir / "history.jsonl").open()]
    ops = [e for e in history if e.get("process") != "nemesis"]
    done = [e for e in ops if e["type"] == "ok"]
    # some committed txns appended, and some reads saw lists of more than one element
    assert any(m[0] == "append" for e in done for m in e["value"])
    assert any(m[0] == "r" and isinstance(m[2], list) and len(m[2]) > 1
               for e in done for m in e["value"])
    assert etcd_processes_under(tmp_path) == []


@pytest.mark.slow
@pytest.mark.etcd
@pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed (apt install etcd-server)")
def test_etcd_stale_snapshots_under_partitions_are_a_cycle(tmp_path: Path):
    """--read-mode stale: each member answers read-only txns from its own state; a
    member cut off serves old lists, which the checker must see as a cycle."""
    from adapter_helpers import netns_usable

    from harness.run.run import RunConfig, run_test

    if not netns_usable():
        pytest.skip("partitions of etcd need network namespaces (root)")
    outcome = run_test(RunConfig(
        db="etcd", nodes=5, time_limit=20, nemesis=["partition"], net="netns", seed=1,
        read_mode="stale", workload_name="list-append", store=str(tmp_path),
        render_report=False))
    assert outcome.error is None, outcome.error
    checker = outcome.results["checkers"]["transactional"]
    assert checker["valid"] is False
    assert any(name.startswith(("G-single", "G2-item")) for name in checker["anomaly_types"])
