"""Coverage of a run, computed from crafted histories and observations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.run.coverage import (
    client_coverage,
    describe,
    fault_coverage,
    merge,
    node_coverage,
    run_coverage,
)


def nemesis(f: str, value: Any = None) -> dict[str, Any]:
    return {"process": "nemesis", "type": "info", "f": f, "value": value}


def nodes(*names: str) -> dict[str, Any]:
    return {"target": "one", "nodes": list(names)}


def test_faults_one_at_a_time_compose_nothing() -> None:
    history = [
        nemesis("start-partition", {"shape": "halves"}), nemesis("stop-partition"),
        nemesis("kill", nodes("n1")), nemesis("start", nodes("n1")),
        nemesis("pause", nodes("n2")), nemesis("resume", nodes("n2")),
        nemesis("start-loss", {"p": 0.2}), nemesis("stop-loss", {"p": 0.0}),
    ]
    assert fault_coverage(history) == {
        "faults": {"kill": 1, "loss": 1, "partition": 1, "pause": 1}, "compositions": {},
        "scenarios": {},
    }


def test_overlapping_faults_are_compositions() -> None:
    history = [
        nemesis("start-partition", {"shape": "halves"}),
        nemesis("kill", nodes("n1")),  # kill during a partition
        nemesis("pause", nodes("n2")),  # pause while partitioned and n1 down
        nemesis("start", nodes("n1")),
        nemesis("stop-partition"),
        nemesis("start-delay", {"mean": 0.1, "jitter": 0.0}),  # n2 still paused
        nemesis("heal-all", {}),
        nemesis("bump-clock", {"nodes": ["n3"]}),  # alone again after heal-all
        # a trigger that never fired and a kill that found no node count for nothing
        nemesis("kill", {"requested": "leader", "skipped": "no new leader within 10 s"}),
        nemesis("kill", nodes()),
    ]
    assert fault_coverage(history) == {
        "faults": {"clock": 1, "delay": 1, "kill": 1, "partition": 1, "pause": 1},
        "compositions": {"delay+pause": 1, "kill+partition": 1, "kill+partition+pause": 1},
        "scenarios": {},
    }


def test_composite_scenarios_are_counted_once_per_instance_and_failed_faults_apart() -> None:
    def labelled(f: str, value: Any, name: str) -> dict[str, Any]:
        return {**nemesis(f, value), "compose": name}

    history = [
        labelled("start-partition", {"shape": "isolate-leader"}, "hung-leader"),
        labelled("pause", nodes("n1"), "hung-leader"),
        labelled("resume", nodes("n1"), "hung-leader"),
        labelled("stop-partition", None, "hung-leader"),
        nemesis("kill", nodes("n2")), nemesis("start", nodes("n2")),
        labelled("start-partition", {"shape": "isolate-one"}, "hung-leader"),
        labelled("stop-partition", None, "hung-leader"),
        labelled("start-partition", {"shape": "halves"}, "flicker"),
        nemesis("start-delay", {"requested": {"mean": 0.1}, "error": "no netem"}),
    ]
    coverage = fault_coverage(history)
    assert coverage["scenarios"] == {"flicker": 1, "hung-leader": 2}
    assert coverage["faults"] == {"kill": 1, "partition": 3, "pause": 1}
    assert coverage["compositions"] == {"partition+pause": 1}
    assert coverage["fault_errors"] == 1
    assert "scenarios: flicker 1, hung-leader 2" in describe({**coverage, "reads": {}})


def op(process: int, kind: str, f: str, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": kind, "f": f, "key": "k1", "value": None, **extra}


def test_reads_per_path_and_retries() -> None:
    history = [
        op(0, "invoke", "read", read="lease"), op(1, "invoke", "read", read="read-index"),
        op(2, "invoke", "write"), op(0, "ok", "read"), op(1, "info", "read", retries=1),
        op(2, "ok", "write", retries=3), op(3, "invoke", "read"), op(3, "fail", "read"),
        nemesis("kill", nodes("n1")),
    ]
    assert client_coverage(history) == {
        "ops": {"ok": 2, "fail": 1, "info": 1},
        "reads": {
            "lease": {"invoked": 1, "ok": 1, "fail": 0, "info": 0},
            "node-default": {"invoked": 1, "ok": 0, "fail": 1, "info": 0},
            "read-index": {"invoked": 1, "ok": 0, "fail": 0, "info": 1},
        },
        "retried_ops": 2,
        "retries": 4,
    }


def test_elections_step_downs_snapshots_and_lag() -> None:
    observations = [
        {"kind": "role", "node": "n1", "role": "leader", "term": 2},
        {"kind": "status", "node": "n1", "role": "leader", "term": 2, "commit": 50,
         "applied": 50},
        {"kind": "status", "node": "n2", "role": "follower", "term": 2, "commit": 20,
         "applied": 12},  # 38 behind the highest commit seen
        {"kind": "role", "node": "n1", "role": "follower", "term": 3},  # step-down
        # a poll answered before the step-down but written after it: not a second one
        {"kind": "status", "node": "n1", "role": "leader", "term": 2, "commit": 50,
         "applied": 50},
        {"kind": "status", "node": "n1", "role": "follower", "term": 3, "commit": 50,
         "applied": 50},
        {"kind": "role", "node": "n2", "role": "leader", "term": 3},
        {"kind": "crash", "node": "n2"},  # a dead leader did not step down
        {"kind": "restart", "node": "n2"},
        {"kind": "role", "node": "n2", "role": "follower", "term": 3},
        {"kind": "log", "node": "n3", "snapshot_index": 0, "entries": []},
        {"kind": "log", "node": "n3", "snapshot_index": 30, "entries": []},
        {"kind": "log", "node": "n3", "snapshot_index": 30, "entries": []},
        {"kind": "log", "node": "n1", "snapshot_index": 40, "entries": []},
        {"kind": "healed"},
    ]
    assert node_coverage(observations) == {
        "elections": 2, "step_downs": 1, "snapshots": 2, "max_follower_lag": 38,
        "crashes": 1, "restarts": 1, "complaints": 0,
    }


def entries(*indexes: int) -> list[dict[str, Any]]:
    return [{"index": i, "term": 1, "digest": "d"} for i in indexes]


def test_pushed_records_count_snapshots_lag_and_complaints() -> None:
    observations = [
        {"kind": "committed", "node": "n1", "entries": entries(1, 2, 3)},
        {"kind": "committed", "node": "n2", "entries": entries(1, 2, 3)},
        {"kind": "snapshot", "node": "n1", "source": "taken", "index": 200, "term": 1},
        {"kind": "committed", "node": "n1", "entries": entries(*range(4, 401))},
        # n3 was cut off: it installs the snapshot, then applies from 201, 200 behind
        {"kind": "snapshot", "node": "n3", "source": "installed", "index": 200, "term": 1},
        {"kind": "committed", "node": "n3", "entries": entries(201, 202)},
        # polled snapshot indexes do not count twice when nodes push
        {"kind": "log", "node": "n3", "snapshot_index": 200, "commit": 202, "entries": []},
        {"kind": "complaint", "node": "n2", "complaint": "commit-regressed"},
    ]
    coverage = node_coverage(observations)
    assert coverage["snapshots"] == 2 and coverage["snapshots_installed"] == 1
    assert coverage["max_follower_lag"] == 200 and coverage["complaints"] == 1
    assert "1 complaints by the nodes" in describe({**coverage, "reads": {}})[2]


def test_raft_impl_snapshot_records_count_installs() -> None:
    """The shape the collector writes for raft_impl's pushed snapshot events."""
    observations = [
        {"kind": "snapshot", "node": "n1", "source": "taken", "index": 200, "term": 2},
        {"kind": "snapshot", "node": "n3", "source": "installed", "index": 200, "term": 2},
        {"kind": "snapshot", "node": "n1", "source": "taken", "index": 400, "term": 2},
    ]
    coverage = node_coverage(observations)
    assert coverage["snapshots"] == 3 and coverage["snapshots_installed"] == 1


def test_run_coverage_reads_the_files_and_skips_torn_lines(tmp_path: Path) -> None:
    lines = [op(0, "invoke", "read", read="lease"), op(0, "ok", "read"),
             nemesis("kill", nodes("n1"))]
    (tmp_path / "history.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in lines) + '{"process": 1, "ty')
    (tmp_path / "observations.jsonl").write_text(
        json.dumps({"kind": "role", "node": "n1", "role": "leader", "term": 1}) + "\n[]\n")
    coverage = run_coverage(tmp_path)
    assert coverage["faults"] == {"kill": 1} and coverage["elections"] == 1
    assert coverage["reads"]["lease"]["ok"] == 1
    assert run_coverage(tmp_path / "missing")["ops"] == {"ok": 0, "fail": 0, "info": 0}
    assert any("lease 1/1" in line for line in describe(coverage))


counts = st.dictionaries(st.sampled_from(["kill", "partition", "pause"]), st.integers(0, 9))
coverages = st.fixed_dictionaries({
    "faults": counts, "compositions": counts, "elections": st.integers(0, 50),
    "retries": st.integers(0, 50), "max_follower_lag": st.integers(0, 10_000),
    "reads": st.dictionaries(st.sampled_from(["lease", "read-index"]),
                             st.fixed_dictionaries({"ok": st.integers(0, 99)})),
})


@given(st.lists(coverages, max_size=6))
@settings(max_examples=60, deadline=None)
def test_merge_sums_counts_and_keeps_the_largest_lag(runs: list[dict[str, Any]]) -> None:
    total = merge(runs)
    assert total["runs"] == len(runs)
    assert total["elections"] == sum(r["elections"] for r in runs)
    assert total["max_follower_lag"] == max((r["max_follower_lag"] for r in runs), default=0)
    for kind in ("kill", "partition", "pause"):
        assert total["faults"].get(kind, 0) == sum(r["faults"].get(kind, 0) for r in runs)
    for path in ("lease", "read-index"):
        expected = sum(r["reads"].get(path, {}).get("ok", 0) for r in runs)
        assert total["reads"].get(path, {}).get("ok", 0) == expected
    json.dumps(total)  # campaign.json holds it


def test_the_report_shows_coverage_whatever_keys_it_has(tmp_path: Path) -> None:
    from reports.render import write_run_report

    events = [op(0, "invoke", "write", value=1), op(0, "ok", "write", value=1),
              op(1, "invoke", "read", read="lease"), op(1, "ok", "read", value=1)]
    (tmp_path / "history.jsonl").write_text(
        "".join(json.dumps({**e, "time": i, "index": i}) + "\n" for i, e in enumerate(events)))
    for coverage in ({"faults": {"kill": 2}},  # partial: an older or hand-made file
                     {**run_coverage(tmp_path), "scenarios": {"hung-leader": 1},
                      "fault_errors": 1, "snapshots_installed": 3}):
        (tmp_path / "coverage.json").write_text(json.dumps(coverage))
        html = write_run_report(tmp_path)[0].read_text()
        assert 'id="coverage"' in html
        assert ("kill ×2" in html) != ("lease: 1 ok of 1" in html)
    assert "hung-leader ×1" in html and "1 could not be applied" in html
    assert "(3 installed)" in html
    (tmp_path / "coverage.json").unlink()
    assert 'id="coverage"' not in write_run_report(tmp_path)[0].read_text()
