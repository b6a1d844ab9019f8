"""Trigger events beyond elections (step-down, snapshot, follower-behind) and the target
``"trigger"``: in schedules, the real-run executor, the harness cluster and the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing
from test_nemesis_executor import FakeCluster, recorder

from harness.sim.config import SimClusterConfig, SimTest, SimWorkload
from harness.sim.run import simulate
from nemesis.api import EventWatch, TriggerUnsupported
from nemesis.executor import run_schedule
from nemesis.faults import ScheduleError, validate_entry

NODES = ["n1", "n2", "n3", "n4", "n5"]


@pytest.mark.parametrize(("entry", "message"), [
    ({"at": 1, "f": "kill", "value": "trigger"}, 'target "trigger" needs a "when"'),
    ({"at": 1, "f": "partition", "value": {"shape": "lagging-majority", "node": "trigger"}},
     'target "trigger" needs a "when"'),
    ({"at": 1, "f": "kill", "value": "one", "when": {"event": "step-down", "entries": 5}},
     '"entries" only goes with follower-behind'),
    ({"at": 1, "f": "kill", "value": "one", "when": {"event": "follower-behind",
                                                     "entries": 0}}, "entries must be"),
])
def test_bad_event_triggers_are_refused(entry, message):
    with pytest.raises(ScheduleError, match=message):
        validate_entry(entry, 0, NODES)


def test_follower_behind_gets_a_default_threshold():
    entry = validate_entry({"at": 1, "f": "kill", "value": "trigger",
                            "when": "follower-behind"}, 0, NODES)
    assert entry["when"] == {"event": "follower-behind", "delay": 0.0, "within": 10.0,
                             "entries": 100}


class EventCluster(FakeCluster):
    """A fake that announces the events a test makes happen, with the node they name."""

    def __init__(self) -> None:
        super().__init__()
        self.happened: dict[str, trio.Event] = {}
        self.named: dict[str, str] = {}
        self.unsupported: set[str] = set()

    def happen(self, event: str, node: str) -> None:
        self.named[event] = node
        self.happened.pop(event, trio.Event()).set()

    async def next_event(self, event: str, entries: int = 0) -> str:
        if event in self.unsupported:
            raise TriggerUnsupported(f"this fake does not report {event}")
        await self.happened.setdefault(event, trio.Event()).wait()
        return self.named[event]


async def test_an_event_fires_its_entries_on_the_node_it_names(autojump_clock):
    cluster = EventCluster()
    assert isinstance(cluster, EventWatch)
    cluster.unsupported.add("snapshot")
    events, record, clock = recorder()
    schedule = [
        {"at": 1, "f": "kill", "value": "trigger", "when": {"event": "step-down", "delay": 0.1}},
        {"at": 1, "f": "start", "value": "trigger", "when": {"event": "step-down", "delay": 0.5}},
        {"at": 1, "f": "pause", "value": "trigger", "when": "snapshot"},
        {"at": 2, "f": "partition", "value": {"shape": "lagging-majority", "node": "trigger"},
         "when": {"event": "follower-behind", "entries": 50}},
        {"at": 6, "f": "heal"},
    ]

    async def world() -> None:
        await trio.sleep(1.5)
        cluster.happen("step-down", "n3")
        await trio.sleep(1.0)
        cluster.happen("follower-behind", "n4")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(world)
        await run_schedule(schedule, cluster, record, clock)
    by_f = {event["f"]: event for event in events}
    assert by_f["kill"]["value"]["nodes"] == ["n3"]
    assert by_f["start"]["value"]["nodes"] == ["n3"]
    assert by_f["pause"]["value"]["skipped"] == "this fake does not report snapshot"
    cut = by_f["start-partition"]["value"]
    assert cut["node"] == "n4" and cut["leader"] == "n1"
    side = next(part for part in cut["components"] if "n4" in part)
    assert len(side) == 3 and "n1" not in side  # n4 with a majority, the leader without
    assert cluster.whole()


async def test_without_events_a_step_down_is_polled_and_others_are_skipped(autojump_clock):
    cluster = FakeCluster()  # no next_event, no role events
    events, record, clock = recorder()
    schedule = [{"at": 0.5, "f": "kill", "value": "trigger", "when": "step-down"},
                {"at": 0.6, "f": "pause", "value": "trigger", "when": "snapshot-installed"},
                {"at": 3, "f": "heal"}]

    async def depose() -> None:
        await trio.sleep(1.0)
        cluster.current_leader = None  # n1 gone from office

    async with trio.open_nursery() as nursery:
        nursery.start_soon(depose)
        await run_schedule(schedule, cluster, record, clock)
    by_f = {event["f"]: event["value"] for event in events}
    assert by_f["kill"]["nodes"] == ["n1"]
    assert by_f["pause"]["skipped"] == "this cluster does not report snapshot-installed events"


async def test_the_harness_cluster_tells_step_downs_snapshots_and_laggards(tmp_path):
    from harness.run.cluster import Cluster

    class PushingDB:
        name = "pushing"
        role_events = True
        pushes_events = True

    cluster = Cluster(PushingDB(), None, ["n1", "n2", "n3"], tmp_path)  # type: ignore[arg-type]
    seen: dict[str, str] = {}

    async def wait(event: str, entries: int = 0) -> None:
        seen[f"{event}:{entries}"] = await cluster.next_event(event, entries)

    async with trio.open_nursery() as nursery:
        for event, entries in (("step-down", 0), ("snapshot", 0), ("snapshot-installed", 0),
                               ("follower-behind", 5), ("follower-behind", 50)):
            nursery.start_soon(wait, event, entries)
        await trio.testing.wait_all_tasks_blocked()
        cluster.on_node_event("n1", {"event": "role", "role": "leader", "term": 2})
        cluster.on_node_event("n2", {"event": "snapshot", "source": "taken", "index": 9})
        await trio.testing.wait_all_tasks_blocked()
        assert seen == {"snapshot:0": "n2"}  # taken is not installed; leading is no step-down
        cluster.on_node_event("n3", {"event": "snapshot", "source": "installed", "index": 9})
        cluster.on_node_event("n1", {"event": "role", "role": "follower", "term": 3})
        for node, last, commit in (("n2", 10, 10), ("n3", 10, 10), ("n2", 14, 16),
                                   ("n1", 20, 20)):
            cluster.on_node_event(node, {"event": "committed", "commit": commit,
                                         "entries": [[last, 1, "d", None, None, None]]})
        await trio.testing.wait_all_tasks_blocked()
        # n3 stopped at 10 while commits reached 16: 6 behind (n2 at 14, 2 behind).
        assert seen["follower-behind:5"] == "n3" and "follower-behind:50" not in seen
        nursery.cancel_scope.cancel()
    assert seen["step-down:0"] == "n1" and seen["snapshot-installed:0"] == "n3"

    class QuietDB:
        name = "quiet"
        role_events = True
        pushes_events = False

    quiet = Cluster(QuietDB(), None, ["n1"], tmp_path)  # type: ignore[arg-type]
    with pytest.raises(TriggerUnsupported, match="do not report snapshots"):
        await quiet.next_event("snapshot")
    with pytest.raises(TriggerUnsupported, match="do not report votes"):
        await quiet.next_event("vote")


async def test_the_harness_cluster_tells_candidacies_and_votes(tmp_path):
    from harness.run.cluster import Cluster

    class PushingDB:
        name = "pushing"
        role_events = True
        pushes_events = True

    cluster = Cluster(PushingDB(), None, ["n1", "n2", "n3"], tmp_path)  # type: ignore[arg-type]
    seen: dict[str, str] = {}

    async def wait(event: str) -> None:
        seen[event] = await cluster.next_event(event)

    async with trio.open_nursery() as nursery:
        for event in ("election", "vote"):
            nursery.start_soon(wait, event)
        await trio.testing.wait_all_tasks_blocked()
        cluster.on_node_event("n2", {"event": "role", "role": "pre-candidate", "term": 1})
        await trio.testing.wait_all_tasks_blocked()
        assert seen == {}, "a pre-vote round starts no election (no term, no vote)"
        cluster.on_node_event("n2", {"event": "role", "role": "candidate", "term": 2})
        cluster.on_node_event("n3", {"event": "vote", "term": 2, "for": "n2"})
    assert seen == {"election": "n2", "vote": "n3"}


def _sim(tmp_path: Path, schedule: list[dict], **cluster) -> list[dict]:
    test = SimTest(cluster=SimClusterConfig(**cluster), schedule=tuple(schedule), seed=5,
                   workload=SimWorkload(time_limit=4.0, rate=50.0, concurrency=2, keys=1))
    simulate(test, tmp_path, check=False)
    with open(tmp_path / "history.jsonl", encoding="utf-8") as lines:
        return [e for e in map(json.loads, lines) if e.get("process") == "nemesis"]


def test_the_simulator_fires_on_a_step_down_the_deposed_leader(tmp_path: Path) -> None:
    events = _sim(tmp_path, [
        {"at": 0.8, "f": "partition", "value": {"shape": "isolate-leader"}},
        {"at": 0.8, "f": "kill", "value": "trigger", "when": "step-down"},
        {"at": 3.0, "f": "heal"}])
    cut, kill = events[0], events[1]
    assert kill["f"] == "kill" and "skipped" not in kill["value"]
    isolated = next(part for part in cut["value"]["components"] if len(part) == 1)
    assert kill["value"]["nodes"] == isolated  # check-quorum deposed it, then the kill


def test_the_simulator_fires_on_a_candidacy_and_a_vote(tmp_path: Path) -> None:
    events = _sim(tmp_path, [
        {"at": 0.8, "f": "partition", "value": {"shape": "isolate-leader"}},
        {"at": 0.8, "f": "pause", "value": "trigger", "when": "election"},
        {"at": 0.8, "f": "resume", "value": "all", "when": {"event": "election", "delay": 0.3}},
        {"at": 0.81, "f": "kill", "value": "trigger", "when": "vote"},
        {"at": 3.0, "f": "heal"}, {"at": 3.0, "f": "start", "value": "all"}])
    by_f = {e["f"]: e["value"] for e in events}
    cut = next(part for part in by_f["start-partition"]["components"] if len(part) == 1)
    assert "skipped" not in by_f["pause"] and "skipped" not in by_f["kill"]
    assert by_f["pause"]["nodes"] != cut, "a candidate of the majority, not the old leader"
    assert len(by_f["kill"]["nodes"]) == 1


def test_the_simulator_fires_on_a_lagging_follower_and_a_snapshot(tmp_path: Path) -> None:
    events = _sim(tmp_path, [
        {"at": 0.8, "f": "partition", "value": {"shape": "isolate-one", "node": "n2"}},
        {"at": 0.8, "f": "partition", "value": {"shape": "lagging-majority", "node": "trigger"},
         "when": {"event": "follower-behind", "entries": 10}},
        {"at": 2.5, "f": "heal"},
        {"at": 2.6, "f": "kill", "value": "trigger", "when": "snapshot"}],
        snapshot_threshold=20)
    lagging = events[1]["value"]
    # The executor records the node the trigger named (n2: cut off, so it lags).
    assert events[1]["f"] == "start-partition" and lagging["node"] == "n2"
    side = next(part for part in lagging["components"] if "n2" in part)
    assert len(side) == 2  # of 3: n2 with a majority
    killed = [e for e in events if e["f"] == "kill"]
    assert killed and len(killed[0]["value"]["nodes"]) == 1
