"""The nemesis executor against a fake cluster, on Trio's autojump clock (no real waiting)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from nemesis import schedule as schedules
from nemesis.api import ClusterControl, Network
from nemesis.executor import HealError, NemesisState, heal_all, run_schedule

NODES = ["n1", "n2", "n3", "n4", "n5"]


class FakeNetwork:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str, Any]] = []
        self.grudge: dict[str, set[str]] = {}
        self.message_faults: dict[str, Any] = {}

    def _log(self, name: str, value: Any) -> None:
        self.calls.append((trio.current_time(), name, value))

    async def start(self, nursery, nodes):
        return {}

    def listen_address(self, node):
        raise NotImplementedError

    def wrap_command(self, node, argv):
        return argv

    async def partition(self, grudge):
        self.grudge = {dst: set(srcs) for dst, srcs in grudge.items() if srcs}
        self._log("partition", self.grudge)

    async def heal(self):
        self.grudge = {}
        self._log("heal", None)

    async def set_loss(self, p, links=None):
        self.message_faults["loss"] = (p, links)
        self._log("loss", (p, links))

    async def set_delay(self, mean_s, jitter_s, links=None):
        self.message_faults["delay"] = (mean_s, jitter_s, links)
        self._log("delay", (mean_s, jitter_s, links))

    async def set_duplicate(self, p, links=None):
        self.message_faults["duplicate"] = (p, links)

    async def set_reorder(self, p, links=None):
        self.message_faults["reorder"] = (p, links)

    async def reset_faults(self):
        self.message_faults = {}
        self._log("reset", None)

    def counters(self):
        return {}

    async def aclose(self):
        pass


class FakeCluster:
    """Keeps node states and insists the executor only asks for sensible things."""

    def __init__(self, nodes: list[str] = NODES) -> None:
        self.nodes = list(nodes)
        self.network = FakeNetwork()
        self.current_leader: str | None = "n1"
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        self.clocks: dict[str, tuple[float, float]] = {}
        self.clock_calls: list[tuple[float, str, float]] = []
        self.failing: set[str] = set()
        self.start_delay = 0.0

    async def leader(self):
        return self.current_leader

    async def kill(self, node):
        assert node not in self.killed
        self.killed.add(node)
        self.paused.discard(node)
        self.clocks.pop(node, None)

    async def lose_unfsynced(self, node):
        await self.kill(node)

    async def start(self, node):
        if "start" in self.failing:
            raise RuntimeError(f"{node} will not start")
        await trio.sleep(self.start_delay)
        self.killed.discard(node)

    async def pause(self, node):
        assert node not in self.killed and node not in self.paused
        self.paused.add(node)

    async def resume(self, node):
        self.paused.discard(node)

    async def set_clock(self, node, offset, rate):
        assert node not in self.killed and node not in self.paused, node
        self.clocks[node] = (offset, rate)
        self.clock_calls.append((trio.current_time(), node, offset))

    def whole(self) -> bool:
        return (not self.killed and not self.paused and not self.network.grudge
                and not self.network.message_faults
                and all(value == (0.0, 1.0) for value in self.clocks.values()))


def recorder() -> tuple[list[dict[str, Any]], Any, Any]:
    events: list[dict[str, Any]] = []
    origin = trio.current_time()

    def clock() -> int:
        return int((trio.current_time() - origin) * 1e9)

    return events, events.append, clock


def test_the_fake_satisfies_the_protocols():
    cluster = FakeCluster()
    assert isinstance(cluster, ClusterControl)
    assert isinstance(cluster.network, Network)


async def test_faults_fire_on_time_and_resolve_the_leader_when_they_fire(autojump_clock):
    cluster = FakeCluster()
    events, record, clock = recorder()
    schedule = [
        {"at": 1, "f": "partition", "value": {"shape": "isolate-leader"}},
        {"at": 2, "f": "heal"},
        {"at": 3, "f": "kill", "value": "leader"},
        {"at": 4, "f": "start", "value": "all"},
    ]

    async def new_leader_at_2_5() -> None:
        await trio.sleep(2.5)
        cluster.current_leader = "n4"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(new_leader_at_2_5)
        await run_schedule(schedule, cluster, record, clock)
    assert [(e["time"] // 10**9, e["f"]) for e in events] == [
        (1, "start-partition"), (2, "stop-partition"), (3, "kill"), (4, "start"), (4, "heal-all")]
    assert all(e["process"] == "nemesis" and e["type"] == "info" for e in events)
    partition = events[0]["value"]
    assert partition["leader"] == "n1"
    assert partition["components"] == [["n1"], ["n2", "n3", "n4", "n5"]]
    assert partition["grudge"]["n1"] == ["n2", "n3", "n4", "n5"]
    assert events[2]["value"] == {"target": "leader", "nodes": ["n4"]}
    assert events[3]["value"] == {"target": "all", "nodes": ["n4"]}
    assert cluster.whole()


async def test_targets_resolve_among_eligible_nodes_reproducibly(autojump_clock):
    chosen = []
    for _ in range(2):
        cluster = FakeCluster()
        events, record, clock = recorder()
        schedule = [
            {"at": 0, "f": "kill", "value": "minority", "seed": 5},
            {"at": 1, "f": "pause", "value": "majority", "seed": 6},
            {"at": 2, "f": "kill", "value": ["n1", "n2", "n3", "n4", "n5"]},
            {"at": 3, "f": "resume", "value": "one"},
            {"at": 4, "f": "start", "value": "all"},
        ]
        await run_schedule(schedule, cluster, record, clock)
        values = [event["value"]["nodes"] for event in events[:5]]
        killed, paused, killed_rest, resumed, started = values
        assert len(killed) == 2
        assert len(paused) == 3 and not set(paused) & set(killed)
        assert sorted(killed_rest) == sorted(set(NODES) - set(killed))  # no double kill
        assert resumed == []  # every paused node was killed since, nothing to resume
        assert started == NODES
        assert cluster.whole()
        chosen.append(values)
    assert chosen[0] == chosen[1]


async def test_message_faults_and_partitions_reach_the_network(autojump_clock):
    cluster = FakeCluster(["a", "b", "c"])
    events, record, clock = recorder()
    schedule = [
        {"at": 0, "f": "partition", "value": {"grudge": {"a": ["b"]}}},
        {"at": 0, "f": "loss", "value": {"p": 0.2, "links": [["a", "b"]]}},
        {"at": 0, "f": "delay", "value": {"mean": 0.05, "jitter": 0.01}},
        {"at": 10, "f": "heal"},
    ]
    network = cluster.network
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_schedule, schedule, cluster, record, clock)
        await trio.sleep(0.5)
        assert network.grudge == {"a": {"b"}}
        assert network.message_faults["loss"] == (0.2, [("a", "b")])
        assert network.message_faults["delay"] == (0.05, 0.01, None)
    assert [e["f"] for e in events] == ["start-partition", "start-loss", "start-delay",
                                        "stop-partition", "heal-all"]
    assert cluster.whole()


async def test_heal_all_runs_when_the_schedule_ends_even_though_it_must_wait(autojump_clock):
    cluster = FakeCluster()
    cluster.start_delay = 1.0  # healing takes time
    events, record, clock = recorder()
    schedule = [
        {"at": 1, "f": "kill", "value": ["n2"]},
        {"at": 1, "f": "pause", "value": ["n3"]},
        {"at": 1, "f": "clock", "value": {"targets": ["n4"], "offset": 5.0}},
        {"at": 1, "f": "partition", "value": {"shape": "halves"}, "seed": 1},
        {"at": 2, "f": "delay", "value": {"mean": 0.05}},
    ]
    await run_schedule(schedule, cluster, record, clock)
    assert cluster.whole()
    heal = events[-1]
    assert heal["f"] == "heal-all"
    assert heal["value"] == {"resumed": ["n3"], "started": ["n2"], "clocks_reset": ["n4"]}


async def test_a_cancelled_schedule_heals_the_network_but_starts_no_node(autojump_clock):
    """Cancellation is the run shutting down (Ctrl-C, SIGTERM): starting killed nodes
    then only delays the exit (issue 16: 20 s, and spurious heal errors)."""
    cluster = FakeCluster()
    cluster.start_delay = 10.0  # a start that would hold the shutdown up
    events, record, clock = recorder()
    schedule = [
        {"at": 1, "f": "kill", "value": ["n4", "n5"]},
        {"at": 1, "f": "pause", "value": ["n3"]},
        {"at": 1, "f": "clock", "value": {"targets": ["n2"], "offset": 5.0}},
        {"at": 1, "f": "partition", "value": {"shape": "halves"}, "seed": 1},
        {"at": 100, "f": "heal"},
    ]
    began = trio.current_time()
    with trio.move_on_after(5) as cancelled:
        await run_schedule(schedule, cluster, record, clock)
    assert cancelled.cancelled_caught
    assert trio.current_time() - began < 5 + 1  # no start was awaited (virtual time)
    assert cluster.killed == {"n4", "n5"}
    assert cluster.paused == set() and cluster.network.grudge == {}
    heal = events[-1]
    assert heal["f"] == "heal-all"
    assert heal["value"] == {"resumed": ["n3"], "started": [], "clocks_reset": [],
                             "shutdown": True, "left_down": ["n4", "n5"],
                             "left_skewed": ["n2"]}


async def test_ctrl_c_inside_the_schedule_also_counts_as_shutdown(autojump_clock):
    events, record, clock = recorder()

    class Interrupting(FakeCluster):
        async def pause(self, node):
            raise KeyboardInterrupt

    cluster = Interrupting()
    schedule = [{"at": 1, "f": "kill", "value": ["n4"]}, {"at": 2, "f": "pause", "value": ["n1"]}]
    with pytest.raises(BaseExceptionGroup) as raised:
        await run_schedule(schedule, cluster, record, clock)
    assert raised.group_contains(KeyboardInterrupt)
    assert cluster.killed == {"n4"}
    assert events[-1]["value"]["left_down"] == ["n4"]


async def test_failed_steps_are_recorded_and_a_failed_heal_raises(autojump_clock):
    cluster = FakeCluster()
    cluster.failing.add("start")
    events, record, clock = recorder()
    schedule = [{"at": 0, "f": "kill", "value": ["n1"]},
                {"at": 1, "f": "start", "value": ["n1"]},
                {"at": 2, "f": "pause", "value": ["n2"]}]
    state = NemesisState()
    with pytest.raises(HealError, match="start n1: RuntimeError: n1 will not start"):
        await run_schedule(schedule, cluster, record, clock, state=state)
    assert events[1]["f"] == "start" and "will not start" in events[1]["value"]["error"]
    # Listed for the harness, which then cannot call the run valid (no silent faults).
    assert state.errors == ["start (schedule at 1 s): RuntimeError: n1 will not start"]
    assert events[2]["value"]["nodes"] == ["n2"]  # the schedule went on
    assert events[-1]["value"]["errors"] == ["start n1: RuntimeError: n1 will not start"]
    assert cluster.paused == set()


async def test_clock_strobe_flips_in_the_background_and_stops(autojump_clock):
    cluster = FakeCluster(["n1", "n2", "n3"])
    events, record, clock = recorder()
    schedule = [
        {"at": 0, "f": "clock",
         "value": {"targets": ["n2"], "strobe": {"delta": 0.5, "period": 0.1, "duration": 1.0}}},
        {"at": 0.05, "f": "kill", "value": ["n3"]},  # strobing does not hold up the schedule
        {"at": 3, "f": "start", "value": "all"},
    ]
    await run_schedule(schedule, cluster, record, clock)
    flips = [offset for _, node, offset in cluster.clock_calls if node == "n2"]
    assert flips[:10] == [0.5, 0.0] * 5
    assert flips[-1] == 0.0 and len(flips) in (11, 12)  # ten flips then the reset
    assert [e["f"] for e in events] == ["start-clock-strobe", "kill", "stop-clock-strobe",
                                        "start", "heal-all"]
    assert events[1]["time"] == 50_000_000
    assert events[2]["value"]["reason"] == "duration elapsed"
    assert cluster.whole()


async def test_clock_reset_stops_a_running_strobe(autojump_clock):
    cluster = FakeCluster(["n1", "n2", "n3"])
    events, record, clock = recorder()
    schedule = [
        {"at": 0, "f": "clock",
         "value": {"targets": "all", "strobe": {"delta": 2, "period": 0.1, "duration": 60}}},
        {"at": 1, "f": "clock", "value": {"reset": True}},
    ]
    await run_schedule(schedule, cluster, record, clock)
    assert [e["f"] for e in events] == ["start-clock-strobe", "stop-clock-strobe",
                                        "reset-clock", "heal-all"]
    assert events[1]["value"]["reason"] == "reset"
    assert max(time for time, _, _ in cluster.clock_calls) < 1.01
    assert cluster.whole()


async def test_heal_all_without_state_resumes_and_starts_everything():
    cluster = FakeCluster(["n1", "n2"])
    cluster.killed = {"n1"}
    cluster.paused = {"n2"}
    await cluster.network.partition({"n1": {"n2"}})
    assert await heal_all(cluster) == []
    assert cluster.whole()


async def test_a_schedule_for_other_nodes_is_refused_before_anything_happens():
    cluster = FakeCluster(["n1", "n2", "n3"])
    events, record, clock = recorder()
    from nemesis.faults import ScheduleError

    with pytest.raises(ScheduleError, match="unknown node 'n9'"):
        await run_schedule([{"at": 0, "f": "kill", "value": ["n9"]}], cluster, record, clock,
                           rng=random.Random(1))
    assert events == [] and cluster.network.calls == []


KNOWN_F = {"start-partition", "stop-partition", "kill", "start", "pause", "resume",
           "lose-unfsynced", "bump-clock", "start-clock-strobe", "stop-clock-strobe",
           "reset-clock", "heal-all", *(f"{edge}-{fault}" for edge in ("start", "stop")
                                         for fault in ("loss", "delay", "duplicate", "reorder"))}


@settings(max_examples=40, deadline=None)
@given(packages=st.lists(st.sampled_from(["all", *schedules.PACKAGES]), min_size=1, max_size=3),
       n=st.sampled_from([3, 5, 7]), seed=st.integers(0, 2**32),
       cancel_at=st.one_of(st.none(), st.floats(min_value=0.0, max_value=30.0)))
def test_any_generated_schedule_runs_cleanly_and_leaves_the_cluster_whole(packages, n, seed,
                                                                          cancel_at):
    """Generated schedules never ask the cluster for nonsense (the fake asserts that),
    record well-formed events in time order, and end whole; cut short, whole but for
    the nodes left down and the clocks left skewed, exactly as the last event says."""
    nodes = [f"n{i}" for i in range(1, n + 1)]
    schedule = schedules.generate(packages, nodes, 30, 3, random.Random(seed))

    async def main() -> tuple[FakeCluster, list[dict[str, Any]]]:
        cluster = FakeCluster(nodes)
        events, record, clock = recorder()

        async def leader_changes() -> None:
            rng = random.Random(seed)
            while True:
                await trio.sleep(rng.uniform(0.5, 4))
                alive = [n for n in nodes if n not in cluster.killed | cluster.paused]
                cluster.current_leader = rng.choice([*alive, None]) if alive else None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader_changes)
            with trio.move_on_after(cancel_at if cancel_at is not None else 1e9):
                await run_schedule(schedule, cluster, record, clock,
                                   rng=random.Random(seed))
            nursery.cancel_scope.cancel()
        return cluster, events

    cluster, events = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    heal = events[-1]["value"]
    if heal.get("shutdown"):
        assert cluster.killed == set(heal["left_down"])
        assert {n for n, c in cluster.clocks.items() if c != (0.0, 1.0)} <= set(
            heal["left_skewed"])
        cluster.killed.clear()
        cluster.clocks.clear()
    assert cluster.whole()
    assert all(event["f"] in KNOWN_F and event["process"] == "nemesis" for event in events)
    assert not any("error" in (event["value"] or {}) for event in events
                   if isinstance(event["value"], dict))
    times = [event["time"] for event in events]
    assert times == sorted(times)
    assert events[-1]["f"] == "heal-all"


async def test_entries_of_a_composite_carry_its_name_into_the_history(autojump_clock):
    cluster = FakeCluster()
    events, record, clock = recorder()
    state = NemesisState()
    await run_schedule([{"at": 0, "f": "partition", "value": {"shape": "deaf-leader"},
                         "compose": "one-way"},
                        {"at": 1, "f": "heal", "value": None, "compose": "one-way"},
                        {"at": 2, "f": "kill", "value": "one"}], cluster, record, clock,
                       state=state)
    assert [event.get("compose") for event in events] == ["one-way", "one-way", None, None]
    # deaf-leader: the leader hears nobody, everyone still hears it.
    assert events[0]["value"]["grudge"] == {"n1": ["n2", "n3", "n4", "n5"]}
    assert state.errors == []


async def test_a_start_of_several_nodes_brings_them_back_at_once(autojump_clock):
    """Killed together, started together: one after the other, each waiting to be ready,
    the first nodes back would elect among themselves before the last one is up."""
    cluster = FakeCluster()
    cluster.concurrent_starts = True  # type: ignore[attr-defined]
    cluster.start_delay = 1.0
    events, record, clock = recorder()
    schedule = [{"at": 0, "f": "kill", "value": "all"},
                {"at": 1, "f": "start", "value": "all"},
                {"at": 1.5, "f": "heal"}]
    began = trio.current_time()
    await run_schedule(schedule, cluster, record, clock)
    start = next(e for e in events if e["f"] == "start")
    assert start["value"] == {"target": "all", "nodes": sorted(NODES)}
    assert start["time"] == pytest.approx(2e9, abs=1e7), "three starts took one start's time"
    assert trio.current_time() - began < 2.5 and cluster.whole()
    # A start that fails is recorded as failed once the other starts have finished.
    cluster.failing.add("start")
    events.clear()
    from nemesis.executor import HealError

    with pytest.raises(HealError):  # the final heal cannot start n2 either
        await run_schedule([{"at": 0, "f": "kill", "value": ["n2"]},
                            {"at": 0.5, "f": "start", "value": "all"}, {"at": 1, "f": "heal"}],
                           cluster, record, clock)
    failed = next(e for e in events if e["f"] == "start")
    assert failed["value"]["error"] == "RuntimeError: n2 will not start", events
