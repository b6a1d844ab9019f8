"""``when`` triggers in the real-run executor, against fake clusters on Trio's autojump clock."""

from __future__ import annotations

import trio
import trio.testing
from test_nemesis_executor import FakeCluster, recorder

from nemesis.api import ElectionWatch, next_election
from nemesis.executor import run_schedule


class WatchingCluster(FakeCluster):
    """A fake whose elections are announced as they happen (as role events are)."""

    def __init__(self) -> None:
        super().__init__()
        self._elected = trio.Event()
        self.watchers = 0

    def elect(self, node: str) -> None:
        self.current_leader = node
        elected, self._elected = self._elected, trio.Event()
        elected.set()

    async def next_election(self) -> str:
        self.watchers += 1
        await self._elected.wait()
        assert self.current_leader is not None
        return self.current_leader


async def elect_at(cluster: WatchingCluster, plan: list[tuple[float, str]]) -> None:
    for at, node in plan:
        await trio.sleep_until(at)
        cluster.elect(node)


def seconds(event: dict) -> float:
    return round(event["time"] / 1e9, 3)


async def run_with_elections(cluster: WatchingCluster, schedule: list[dict],
                             elections: list[tuple[float, str]]) -> list[dict]:
    """Run ``schedule`` while ``(seconds, node)`` elections happen; the recorded events."""
    events, record, clock = recorder()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(elect_at, cluster, [(start + at, node) for at, node in elections])
        await run_schedule(schedule, cluster, record, clock)
    return events


async def test_a_trigger_fires_delay_after_the_next_election_and_cuts_the_winner(autojump_clock):
    cluster = WatchingCluster()
    assert isinstance(cluster, ElectionWatch)
    schedule = [
        {"at": 1, "f": "partition", "value": {"shape": "isolate-leader"},
         "when": {"event": "new-leader", "delay": 0.25}},
        {"at": 2, "f": "kill", "value": ["n5"]},  # keeps its own time while the trigger waits
        {"at": 4, "f": "heal"},
    ]
    # n2 wins before the trigger is armed: only the election after ``at`` counts.
    events = await run_with_elections(cluster, schedule, [(0.5, "n2"), (2.5, "n3")])
    assert [(seconds(e), e["f"]) for e in events] == [
        (2.0, "kill"), (2.75, "start-partition"), (4.0, "stop-partition"), (4.0, "heal-all")]
    cut = events[1]["value"]
    assert cut["leader"] == "n3"
    assert cut["components"] == [["n1", "n2", "n4", "n5"], ["n3"]]
    assert cluster.whole()


async def test_no_election_within_the_window_is_recorded_as_skipped(autojump_clock):
    cluster = WatchingCluster()
    events, record, clock = recorder()
    schedule = [
        {"at": 1, "f": "kill", "value": "leader", "when": {"event": "new-leader", "within": 2}},
        {"at": 5, "f": "heal"},
    ]
    await run_schedule(schedule, cluster, record, clock)
    assert [(seconds(e), e["f"]) for e in events] == [
        (3.0, "kill"), (5.0, "stop-partition"), (5.0, "heal-all")]
    assert events[0]["value"] == {"requested": "leader", "skipped": "no new leader within 2.0 s"}
    assert not cluster.killed


async def test_triggers_pending_when_the_schedule_ends_are_skipped_before_the_heal(
        autojump_clock):
    cluster = WatchingCluster()
    schedule = [
        # elected at 2, but its delay outlasts the schedule
        {"at": 1, "f": "pause", "value": "leader", "when": {"event": "new-leader", "delay": 5}},
        # never sees an election
        {"at": 2.5, "f": "kill", "value": "leader", "when": "new-leader"},
        {"at": 3, "f": "heal"},
    ]
    events = await run_with_elections(cluster, schedule, [(2, "n4")])
    assert [(seconds(e), e["f"]) for e in events][::3] == [
        (3.0, "stop-partition"), (3.0, "heal-all")]  # the two skips in between, any order
    skipped = sorted((e["f"], e["value"]["skipped"]) for e in events[1:3])
    assert skipped == [("kill", "the schedule ended first"),
                       ("pause", "the schedule ended first")]
    assert not cluster.paused and not cluster.killed


async def test_triggers_with_one_at_fire_on_the_same_election(autojump_clock):
    cluster = WatchingCluster()
    schedule = [
        {"at": 1, "f": "partition", "value": {"shape": "isolate-leader"}, "when": "new-leader"},
        {"at": 1, "f": "loss", "value": {"p": 0.5, "links": None},
         "when": {"event": "new-leader", "delay": 0.1}},
        {"at": 3, "f": "heal"},
    ]
    events = await run_with_elections(cluster, schedule, [(2, "n2")])
    assert [(seconds(e), e["f"]) for e in events] == [
        (2.0, "start-partition"), (2.1, "start-loss"), (3.0, "stop-partition"), (3.0, "heal-all")]
    assert cluster.watchers == 1


async def test_later_triggers_wait_for_the_election_after_the_earlier_ones(autojump_clock):
    """A chain: each group of triggered entries acts on its own, successive election."""
    cluster = WatchingCluster()
    schedule = [
        {"at": 1, "f": "partition", "value": {"shape": "isolate-leader"}, "when": "new-leader"},
        {"at": 1.5, "f": "kill", "value": "leader", "when": {"event": "new-leader", "delay": 0.1}},
        {"at": 9, "f": "heal"},
    ]
    events = await run_with_elections(cluster, schedule, [(2, "n2"), (4, "n3")])
    applied = [(seconds(e), e["f"], e["value"].get("nodes")) for e in events[:2]]
    assert applied == [(2.0, "start-partition", None), (4.1, "kill", ["n3"])]


async def test_without_election_events_the_leader_is_polled(autojump_clock):
    cluster = FakeCluster()  # no next_election: the fallback watches leader()
    assert not isinstance(cluster, ElectionWatch)
    events, record, clock = recorder()
    start = trio.current_time()

    async def leaderless_then_n5() -> None:
        await trio.sleep_until(start + 1.5)
        cluster.current_leader = None
        await trio.sleep_until(start + 2.0)
        cluster.current_leader = "n5"

    schedule = [
        {"at": 1, "f": "partition", "value": {"shape": "isolate-leader"}, "when": "new-leader"},
        {"at": 4, "f": "heal"},
    ]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leaderless_then_n5)
        await run_schedule(schedule, cluster, record, clock)
    cut = events[0]
    assert cut["f"] == "start-partition" and cut["value"]["leader"] == "n5"
    assert 2.0 <= seconds(cut) <= 2.1


async def test_next_election_prefers_the_controls_own_watch(autojump_clock):
    cluster = WatchingCluster()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(elect_at, cluster, [(trio.current_time() + 1, "n1")])
        # n1 was already the leader: polling would never notice its re-election.
        assert await next_election(cluster) == "n1"


async def test_real_cluster_isolates_the_node_that_just_won(tmp_path):
    """Real nodes behind the proxy: cut the leader off, then cut off whoever wins next."""
    from harness.db.raft_impl import RaftImplDB
    from harness.net.proxy import ProxyNetwork
    from harness.run.cluster import node_names, open_cluster

    took_office: list[tuple[float, str]] = []

    def on_event(node: str, event: dict) -> None:
        if event.get("event") == "role" and event.get("role") == "leader":
            took_office.append((trio.current_time(), node))

    events, write, clock = recorder()
    second_cut = trio.Event()

    def record(event: dict) -> None:
        write(event)
        if len([e for e in events if e["f"] == "start-partition"]) == 2:
            second_cut.set()

    async with open_cluster(RaftImplDB(), ProxyNetwork(seed=1), node_names(3), tmp_path,
                            on_event=on_event) as cluster:
        schedule = [
            {"at": 0.1, "f": "partition", "value": {"shape": "isolate-leader"}},
            {"at": 0.2, "f": "partition", "value": {"shape": "isolate-leader"},
             "when": {"event": "new-leader", "within": 10}},
            {"at": 12, "f": "heal"},
        ]
        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_schedule, schedule, cluster, record, clock)
                await second_cut.wait()
                fired_at = trio.current_time()
                nursery.cancel_scope.cancel()
    first, second = [e["value"] for e in events if e["f"] == "start-partition"]
    assert "skipped" not in second
    winner = [node for at, node in took_office if at <= fired_at][-1]
    assert second["leader"] == winner != first["leader"]
    assert second["components"] == sorted([[winner], sorted(set(node_names(3)) - {winner})])


async def test_real_cluster_crashes_the_node_that_just_voted(tmp_path):
    """Real nodes push ``vote`` events: cut the leader off, and the first node that votes
    in the election that follows (a candidate for itself, or a voter) is killed."""
    from harness.db.raft_impl import RaftImplDB
    from harness.net.proxy import ProxyNetwork
    from harness.run.cluster import node_names, open_cluster

    votes: list[tuple[float, str, int]] = []

    def on_event(node: str, event: dict) -> None:
        if event.get("event") == "vote":
            votes.append((trio.current_time(), node, event["term"]))

    events, write, clock = recorder()
    killed = trio.Event()

    def record(event: dict) -> None:
        write(event)
        if event["f"] == "kill":
            killed.set()

    async with open_cluster(RaftImplDB(), ProxyNetwork(seed=1), node_names(3), tmp_path,
                            on_event=on_event) as cluster:
        await cluster.leader()
        schedule = [
            {"at": 0.1, "f": "partition", "value": {"shape": "isolate-leader"}},
            {"at": 0.1, "f": "kill", "value": "trigger", "when": {"event": "vote",
                                                                  "within": 10}},
            {"at": 12, "f": "heal"},
        ]
        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_schedule, schedule, cluster, record, clock)
                await killed.wait()
                fired_at = trio.current_time()
                nursery.cancel_scope.cancel()
    kill = next(e["value"] for e in events if e["f"] == "kill")
    assert "skipped" not in kill and len(kill["nodes"]) == 1
    cut = next(e["value"] for e in events if e["f"] == "start-partition")
    voted = [(node, term) for at, node, term in votes if at <= fired_at]
    # the first vote after the cut fired it; another may land before the kill does
    assert kill["nodes"][0] in {node for node, _ in voted} and kill["nodes"][0] != cut["leader"]


async def test_cluster_learns_elections_from_role_events_and_forwards_every_event(tmp_path):
    from harness.run.cluster import Cluster

    class EventfulDB:
        role_events = True

    forwarded: list[tuple[str, dict]] = []
    cluster = Cluster(EventfulDB(), None, ["n1", "n2", "n3"], tmp_path)  # type: ignore[arg-type]
    cluster.forward_events = lambda node, event: forwarded.append((node, event))
    winners: list[str] = []

    async def watch() -> None:
        winners.append(await cluster.next_election())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        nursery.start_soon(watch)
        await trio.testing.wait_all_tasks_blocked()
        cluster.on_node_event("n2", {"event": "role", "role": "candidate", "term": 4})
        await trio.testing.wait_all_tasks_blocked()
        assert winners == []  # a candidate has not taken office
        cluster.on_node_event("n2", {"event": "role", "role": "leader", "term": 4})
        cluster.on_node_event("n3", {"event": "role", "role": "leader", "term": 5})
    assert winners == ["n2", "n2"]  # both waiters saw the first election after they began
    assert cluster.last_leader == "n3"
    assert [node for node, _ in forwarded] == ["n2", "n2", "n3"]


async def test_the_leader_is_named_from_role_events_without_asking_the_nodes(tmp_path):
    """A fault aimed at "the leader" lands at once: the pushed roles name it (the highest
    term among nodes that say they lead, a paused old leader included), and the nodes
    are asked (a round of status requests, slow under load) only when none says so."""
    from harness.run.cluster import Cluster

    class EventfulDB:
        role_events = True
        asked = 0

        async def leader(self) -> str | None:
            self.asked += 1
            return "n1"

        def is_running(self, node: str) -> bool:
            return True

        async def kill(self, node: str) -> None:
            pass

    db = EventfulDB()
    cluster = Cluster(db, None, ["n1", "n2", "n3"], tmp_path)  # type: ignore[arg-type]
    assert await cluster.leader() == "n1" and db.asked == 1  # nobody said anything yet
    cluster.on_node_event("n2", {"event": "role", "role": "leader", "term": 3})
    cluster.on_node_event("n3", {"event": "role", "role": "leader", "term": 4})
    assert await cluster.leader() == "n3" and db.asked == 1
    cluster.on_node_event("n3", {"event": "role", "role": "follower", "term": 5})
    assert await cluster.leader() == "n2"  # n2 (term 3) still believes it leads
    await cluster.kill("n2")
    assert await cluster.leader() == "n1" and db.asked == 2
    cluster.on_node_event("n1", {"event": "role", "role": "leader", "term": 6})
    cluster.on_node_event("n1", {"event": "exited", "returncode": 1})
    assert await cluster.leader() == "n1" and db.asked == 3  # asked again: n1 died
