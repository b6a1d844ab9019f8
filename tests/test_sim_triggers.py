"""``when`` triggers in the simulator: an entry that waits for the next election fires
at the instant a node takes office, before that leader's first message leaves."""

from __future__ import annotations

import json
from pathlib import Path

from harness.sim.config import SimClusterConfig, SimTest, SimWorkload
from harness.sim.run import simulate


def _events(run_dir: Path, name: str) -> list[dict]:
    with open(run_dir / name, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _test(schedule: list[dict], seed: int = 3) -> SimTest:
    return SimTest(cluster=SimClusterConfig(trace_messages=True), schedule=tuple(schedule),
                   seed=seed,
                   workload=SimWorkload(time_limit=3.0, rate=20.0, concurrency=2, keys=1))


def test_a_triggered_partition_isolates_the_new_leader_before_it_sends(tmp_path: Path) -> None:
    simulate(_test([
        {"at": 0.5, "f": "partition", "value": {"shape": "isolate-leader"}},
        {"at": 0.6, "f": "partition", "value": {"shape": "isolate-leader"},
         "when": "new-leader"},
    ]), tmp_path, check=False)
    partitions = [e for e in _events(tmp_path, "history.jsonl")
                  if e.get("f") == "start-partition"]
    assert len(partitions) == 2
    elected = [o for o in _events(tmp_path, "observations.jsonl")
               if o["kind"] == "role" and o["role"] == "leader"
               and o["time"] > partitions[0]["time"]]
    first = elected[0]
    # Fired at the very instant of the election, and cut exactly the new leader off.
    assert partitions[1]["time"] == first["time"]
    assert [first["node"]] in partitions[1]["value"]["components"]
    # So nothing the new leader sent in its term reached anyone while it was cut off.
    heal = next(e["time"] for e in _events(tmp_path, "history.jsonl")
                if e.get("f") == "stop-partition")
    sent = [m for m in _events(tmp_path, "messages.jsonl")
            if m["from"] == first["node"] and first["time"] <= m["time"] < heal]
    assert sent and all(m["action"] == "drop" for m in sent)


def test_a_trigger_with_no_election_is_skipped_and_recorded(tmp_path: Path) -> None:
    simulate(_test([{"at": 0.5, "f": "kill", "value": "one",
                     "when": {"event": "new-leader", "within": 1.0}}]), tmp_path, check=False)
    kills = [e for e in _events(tmp_path, "history.jsonl") if e.get("f") == "kill"]
    assert len(kills) == 1 and "no new leader within 1.0 s" in kills[0]["value"]["skipped"]


def test_a_delayed_trigger_fires_that_long_after_the_election(tmp_path: Path) -> None:
    simulate(_test([
        {"at": 0.5, "f": "kill", "value": "leader"},
        {"at": 0.5, "f": "pause", "value": "leader",
         "when": {"event": "new-leader", "delay": 0.25}},
    ]), tmp_path, check=False)
    pause = next(e for e in _events(tmp_path, "history.jsonl") if e.get("f") == "pause")
    kill = next(e for e in _events(tmp_path, "history.jsonl") if e.get("f") == "kill")
    elected = next(o for o in _events(tmp_path, "observations.jsonl")
                   if o["kind"] == "role" and o["role"] == "leader" and o["time"] > kill["time"])
    assert pause["time"] == elected["time"] + 250_000_000
    assert pause["value"]["nodes"] == [elected["node"]]


def test_a_trigger_may_crash_or_stop_the_new_leader_mid_election(tmp_path: Path) -> None:
    """The trigger runs inside the winner's Ready cycle; killing or pausing it there must
    leave a consistent node (and a valid run), not a half-processed Ready."""
    for fault in ("kill", "pause", "lose-unfsynced"):
        run_dir = tmp_path / fault
        result = simulate(_test([
            {"at": 0.5, "f": "kill", "value": "leader"},
            {"at": 0.5, "f": fault, "value": "leader", "when": "new-leader"},
            {"at": 2.0, "f": "start" if fault != "pause" else "resume", "value": "all"},
        ]), run_dir)
        applied = next(e for e in _events(run_dir, "history.jsonl") if e.get("f") == fault)
        assert len(applied["value"]["nodes"]) == 1
        assert result.valid is True, result.results


def test_triggered_entries_act_on_successive_elections_in_order(tmp_path: Path) -> None:
    """Three leader isolations, the last two triggered and due before the first election:
    the later one waits for the election after the earlier one's, so three different
    terms' leaders are cut off."""
    simulate(_test([
        {"at": 0.5, "f": "partition", "value": {"shape": "isolate-leader"}},
        {"at": 0.55, "f": "partition", "value": {"shape": "isolate-leader"},
         "when": "new-leader"},
        {"at": 0.6, "f": "partition", "value": {"shape": "isolate-leader"},
         "when": "new-leader"},
    ]), tmp_path, check=False)
    cuts = [e for e in _events(tmp_path, "history.jsonl") if e.get("f") == "start-partition"]
    elections = [o for o in _events(tmp_path, "observations.jsonl")
                 if o["kind"] == "role" and o["role"] == "leader"]
    assert len(cuts) == 3
    terms = []
    for cut in cuts[1:]:
        won = next(o for o in elections if o["time"] == cut["time"])
        assert [won["node"]] in cut["value"]["components"]
        terms.append(won["term"])
    assert terms[0] < terms[1]


def test_triggers_still_waiting_at_the_time_limit_are_dropped(tmp_path: Path) -> None:
    """A trigger that fired after the final heal would leave the cluster cut for good."""
    result = simulate(_test([
        {"at": 2.9, "f": "partition", "value": {"shape": "isolate-leader"},
         "when": "new-leader"},
    ]), tmp_path)
    cuts = [e for e in _events(tmp_path, "history.jsonl") if e.get("f") == "start-partition"]
    assert len(cuts) == 1 and "schedule ended" in cuts[0]["value"]["skipped"]
    assert result.valid is True, result.results


def test_triggered_entries_due_at_once_share_their_election(tmp_path: Path) -> None:
    simulate(_test([
        {"at": 0.5, "f": "kill", "value": "leader"},
        {"at": 0.6, "f": "partition", "value": {"shape": "isolate-leader"},
         "when": "new-leader"},
        {"at": 0.6, "f": "pause", "value": "leader",
         "when": {"event": "new-leader", "delay": 0.1}},
    ]), tmp_path, check=False)
    history = _events(tmp_path, "history.jsonl")
    cut = next(e for e in history if e.get("f") == "start-partition")
    pause = next(e for e in history if e.get("f") == "pause")
    assert pause["time"] == cut["time"] + 100_000_000
    assert [pause["value"]["nodes"]] == [c for c in cut["value"]["components"] if len(c) == 1]
