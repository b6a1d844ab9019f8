"""The transactional workloads (``--workload list-append|rw-register``) end to end.

Generator, wire requests, a short real run on raft_impl that the transactional
checker passes and whose files match the schemas, and the planted bug
``txn-local-read`` caught as a cycle: in process (default suite, deterministic)
and in a real run under every fault (slow).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from node_helpers import InProcessCluster

from checker.elle import check_txn_history
from checker.history import history_from_events
from harness.cli.run import config_from_args
from harness.db.wire import kv_request
from harness.run.run import RunConfig, run_test
from harness.run.workload import TxnWorkload, make_workload, op_keys

pytest_plugins = ["pytester"]


def take(workload: TxnWorkload, n: int, seed: int = 1) -> list[dict[str, Any]]:
    return list(itertools.islice(workload.operations(seed), n))


@pytest.mark.parametrize("model, write_f", [("list-append", "append"), ("rw-register", "w")])
def test_txns_write_unique_values_and_keys_retire(model: str, write_f: str) -> None:
    workload = TxnWorkload(model=model, keys=3, writes_per_key=4, read_paths=("lease",))
    ops = take(workload, 300)
    assert ops == take(workload, 300), "a seed gives the same operations"
    writes = [m for op in ops for m in op["value"] if m[0] != "r"]
    assert {m[0] for m in writes} == {write_f}
    assert len({m[2] for m in writes}) == len(writes), "every value written once"
    per_key: dict[str, int] = {}
    for _, key, _ in writes:
        per_key[key] = per_key.get(key, 0) + 1
    assert max(per_key.values()) <= 4 and len(per_key) > 3, "keys retire after 4 writes"
    for op in ops:
        assert op["f"] == "txn" and 1 <= len(op["value"]) <= 4
        read_only = all(m[0] == "r" for m in op["value"])
        assert ("read" in op) == read_only, "only read-only txns take a read path"
        assert all(m[2] is None for m in op["value"] if m[0] == "r")
    assert op_keys(ops[0]) == [m[1] for m in ops[0]["value"]]


def test_a_txn_becomes_one_request_with_its_session() -> None:
    op = {"f": "txn", "value": [["r", "k1", None]], "read": "lease"}
    assert kv_request(op, client_id="c3", seq=7) == {
        "client": "c3", "seq": 7, "op": "txn", "value": [["r", "k1", None]], "read": "lease"}


def test_workload_names_and_their_limits() -> None:
    assert isinstance(make_workload("rw-register", keys=2, rate=1, concurrency=1,
                                    ops_per_key=9), TxnWorkload)
    assert make_workload("list-append", keys=2, rate=1, concurrency=1,
                         ops_per_key=9).writes_per_key == 9
    with pytest.raises(ValueError, match="unknown workload"):
        make_workload("bank", keys=2, rate=1, concurrency=1)


@pytest.mark.parametrize("words, message", [
    (["--workload", "list-append", "--db", "pysyncobj"], "only --db raft_impl, etcd and"),
    (["--workload", "rw-register", "--mix", "read=1"], "--mix applies to --workload register"),
])
def test_run_refuses_what_a_txn_workload_cannot_do(words: list[str], message: str) -> None:
    import argparse

    from harness.cli.run import register
    from splitbrain_common.errors import UserError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    with pytest.raises(UserError, match=message):
        config_from_args(parser.parse_args(["run", *words]))


def test_a_short_real_list_append_run_is_valid_and_matches_the_schemas(tmp_path: Path) -> None:
    from test_schemas import assert_run_matches, load_schema

    outcome = run_test(RunConfig(
        nodes=3, time_limit=3.0, rate=80, concurrency=4, keys=3, seed=5, ops_per_key=8,
        workload_name="list-append", store=str(tmp_path), quiet_period=0.5,
        render_report=False, snapshot_threshold=40,
    ))
    assert outcome.error is None, outcome.error
    results = outcome.results
    assert results is not None and outcome.exit_code == 0, results
    transactional = results["checkers"]["transactional"]
    assert transactional["model"] == "list-append" and transactional["txns"] > 50
    assert transactional["stats"]["reads"] > 0 and transactional["stats"]["appends"] > 0
    acked = results["checkers"]["log-order"]["checkers"]["acked-writes"]
    assert acked["acknowledged_writes"] > 0, "txns that append are found in the log"
    validators = {n: load_schema(n) for n in ("history-line", "test", "observation")}
    history = assert_run_matches(outcome.run_dir, validators)
    assert {line["f"] for line in history if line["process"] != "nemesis"} == {"txn"}
    assert any("read" in line for line in history), "read-only txns named their read path"
    test = json.loads((outcome.run_dir / "test.json").read_text())
    assert test["workload"]["model"] == "list-append"
    coverage = json.loads((outcome.run_dir / "coverage.json").read_text())
    assert sum(c["invoked"] for c in coverage["reads"].values()) > 0, \
        "read-only txns count as reads of their path"


async def test_txn_local_read_serves_a_stale_state_that_the_checker_catches(
        nursery, tmp_path: Path) -> None:
    """Deterministically: a follower misses an acknowledged append (it is down), comes
    back alone, and with the bug answers a read-only txn from its own stale state.
    The history of the two txns is a G-single-realtime cycle; without the bug the
    node refuses (no leader), so nothing stale is ever answered."""
    cluster = InProcessCluster(nursery, tmp_path, 3, bugs=frozenset({"txn-local-read"}))
    await cluster.start_all()
    leader = await cluster.wait_leader()
    lagging = next(n for n in cluster.ids if n != leader)
    await cluster.stop(lagging)
    events: list[dict[str, Any]] = []
    clock = itertools.count(1)

    async def txn(node: str, process: int, mops: list[list[Any]]) -> dict[str, Any]:
        events.append({"process": process, "type": "invoke", "f": "txn", "value": mops,
                       "time": next(clock)})
        answer = await cluster.request(node, {"client": f"c{process}", "seq": 1, "op": "txn",
                                              "value": mops})
        events.append({"process": process, "type": "ok" if answer["ok"] else "fail",
                       "f": "txn", "value": answer.get("value", mops), "time": next(clock)})
        return answer

    assert (await txn(leader, 0, [["append", "x", 1]]))["ok"]
    for node in [n for n in cluster.ids if n != lagging]:
        await cluster.stop(node)
    await cluster.start(lagging)
    answer = await txn(lagging, 1, [["r", "x", None]])
    assert answer["value"] == [["r", "x", None]], "served from state without the append"
    history = history_from_events([{"index": i, **e} for i, e in enumerate(events)])
    result = check_txn_history(history, "list-append")
    assert result["valid"] is False
    assert "G-single-realtime" in result["anomaly_types"], result["anomaly_types"]
    with trio.fail_after(5):
        await cluster.stop(lagging)
    await cluster.start(lagging, bugs=frozenset())
    refused = await cluster.request(lagging, {"op": "txn", "value": [["r", "x", None]]})
    assert refused["error"] == "not-leader"


@pytest.mark.slow
def test_a_real_run_under_every_fault_catches_txn_local_read(tmp_path: Path) -> None:
    """The done-when command of issue 14 with the planted bug: invalid, a cycle drawn."""
    import argparse

    from harness.cli.run import handle_run, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["run", "--workload", "list-append", "--nemesis", "all",
                              "--time-limit", "30", "--bug", "txn-local-read", "--no-display",
                              "--store", str(tmp_path), "--seed", "3"])
    args.argv = []
    assert handle_run(args) == 1
    run_dir = next(tmp_path.glob("*/*/results.json")).parent
    results = json.loads((run_dir / "results.json").read_text())
    transactional = results["checkers"]["transactional"]
    assert transactional["valid"] is False
    assert any(name.startswith(("G-single", "G2-item", "G1c", "G0"))
               for name in transactional["anomaly_types"])
    assert "<svg" in (run_dir / "report.html").read_text()


def test_a_campaign_runs_its_workload_in_every_run(tmp_path: Path) -> None:
    """campaign --workload fixes the workload of every planned run (it is not rotated),
    and each planned line is an ordinary run command asking for it."""
    import argparse

    import harness.run.campaign as cmp
    from harness.cli.campaign import config_from_args as campaign_config
    from harness.cli.campaign import register as register_campaign
    from harness.cli.run import register

    parser = argparse.ArgumentParser()
    register_campaign(parser.add_subparsers())
    config = campaign_config(parser.parse_args(
        ["campaign", "--minutes", "1", "--workload", "rw-register", "--store", str(tmp_path)]))
    assert config.workload == "rw-register"
    plan = next(cmp.rotation(4))
    words = plan.run_args(db="raft_impl", bugs=[], store_dir=str(tmp_path),
                          workload=config.workload)
    run_parser = argparse.ArgumentParser()
    register(run_parser.add_subparsers())
    args = run_parser.parse_args(words)
    args.argv = words
    assert config_from_args(args).workload().to_json()["model"] == "rw-register"
    with pytest.raises(Exception, match="only --db raft_impl"):
        campaign_config(parser.parse_args(["campaign", "--minutes", "1", "--db", "etcd",
                                           "--workload", "list-append"]))


def test_the_pytest_plugin_runs_transactions_on_real_and_simulated_clusters(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_real_txns(cluster):
            result = cluster.run(nodes=3, time_limit=2, rate=30, quiet_period=0.5,
                                 render_report=False, workload="list-append")
            result.assert_valid()
            assert "transactional" in result.results["checkers"]

        def test_sim_txns(sim_cluster):
            result = sim_cluster.run(workload="rw-register", time_limit=2, report=False)
            result.assert_valid()
            assert result.results["checkers"]["transactional"]["model"] == "rw-register"
            with pytest.raises(ValueError, match="workload"):
                sim_cluster.run(workload="bank")
        """
    )
    pytester.runpytest("-p", "no:randomly", "-q").assert_outcomes(passed=2)
