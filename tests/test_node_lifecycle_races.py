"""Start and kill of one node racing each other (ProcessDB and the nemesis executor).

Generated schedules (restart-deposed, snapshot-crash, restart-after-vote …) start
a node from a trigger while the slot's final heal starts it too, and can kill it
while a start still waits for it to be ready. Before the lifecycle lock both
starts spawned a process (the second died on "Address already in use") and the
kill made the start fail ("exited with -9 before it was ready"), recorded as a
fault that failed to apply: the verdict became unknown for correct code.

The node here is a tiny process that binds its peer port like a real node and
says ``ready`` only when the test writes a line to its stdin, so the window
between spawn and readiness is held open deterministically, not by timing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from test_nemesis_executor import FakeCluster, recorder

from harness.db.process import ProcessDB
from nemesis.api import StartInterrupted
from nemesis.executor import NemesisState, run_schedule

GATED_NODE = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print('{"event": "role", "role": "follower", "term": 1}', flush=True)
sys.stdin.readline()
print('{"event": "ready"}', flush=True)
sys.stdin.readline()
"""


class GatedDB(ProcessDB):
    """A node that is ready when told (one stdin line), bound to its port meanwhile."""

    name = "gated"
    ready_event = "ready"
    pipes_stdout = True
    pipes_stdin = True
    ready_timeout = 30.0

    def command(self, node_id: str) -> list[str]:
        return [sys.executable, "-c", GATED_NODE, str(self.nodes[node_id].address.peer_port)]


class Spawns:
    """The node events, and a wait for the n-th spawn (its first line, a role event)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.count = 0
        self._changed = trio.Event()

    def __call__(self, node: str, event: dict[str, Any]) -> None:
        self.events.append((node, event))
        if event.get("event") == "role":
            self.count += 1
            self._changed.set()
            self._changed = trio.Event()

    async def wait(self, count: int) -> None:
        while self.count < count:
            await self._changed.wait()


async def open_gated(tmp_path: Path, nursery: trio.Nursery) -> tuple[GatedDB, Spawns]:
    db = GatedDB()
    db.plan(tmp_path, ["n1"])
    spawns = Spawns()
    await db.setup(nursery, {"n1": {}}, spawns)
    return db, spawns


async def tell_ready(db: GatedDB, node: str = "n1") -> None:
    process = db.nodes[node].process
    assert process is not None and process.stdin is not None
    await process.stdin.send_all(b"go\n")


async def test_two_starts_of_one_node_spawn_it_once(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        db, spawns = await open_gated(tmp_path, nursery)
        outcomes: dict[str, Any] = {}

        async def start(name: str) -> None:
            outcomes[name] = await db.start("n1")

        try:
            async with trio.open_nursery() as starters:
                starters.start_soon(start, "first")
                starters.start_soon(start, "second")
                await spawns.wait(1)
                await trio.testing.wait_all_tasks_blocked()
                await tell_ready(db)
            assert sorted(outcomes.values(), key=str) == [None, "already starting"]
            assert db.nodes["n1"].incarnation == 1  # one process, not two fighting for ports
            assert db.is_running("n1")
            assert await db.start("n1") == "already running"
            assert ("n1", {"event": "ready"}) in spawns.events
        finally:
            await db.teardown()
            nursery.cancel_scope.cancel()


async def test_a_kill_while_starting_interrupts_the_start_and_a_later_start_works(
        tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        db, spawns = await open_gated(tmp_path, nursery)
        try:
            outcome: list[Any] = []

            async def start() -> None:
                try:
                    outcome.append(await db.start("n1"))
                except StartInterrupted as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as starters:
                starters.start_soon(start)
                await spawns.wait(1)
                await db.kill("n1")
            assert len(outcome) == 1 and isinstance(outcome[0], StartInterrupted), outcome
            assert "killed while starting" in str(outcome[0])
            assert not db.is_running("n1")
            assert db.nodes["n1"].unexpected_exits == 0

            async with trio.open_nursery() as starters:
                starters.start_soon(start)
                await spawns.wait(2)
                await tell_ready(db)
            assert outcome[1] is None and db.is_running("n1")
        finally:
            await db.teardown()
            nursery.cancel_scope.cancel()


class StartingCluster(FakeCluster):
    """A fake whose starts take ``start_delay`` to become ready, like ProcessDB's: a kill
    meanwhile interrupts the start, a second start while one is in flight is a no-op."""

    def __init__(self) -> None:
        super().__init__()
        self.starting: dict[str, trio.CancelScope] = {}
        self.spawns: list[str] = []

    async def next_election(self) -> str:
        """An election 0.1 s after anyone asks (a trigger fires at a known time)."""
        await trio.sleep(0.1)
        return "n2"

    async def kill(self, node):
        scope = self.starting.pop(node, None)
        if scope is not None:
            scope.cancel()
            self.killed.add(node)
            return
        await super().kill(node)

    async def start(self, node):
        if node in self.starting:
            return "already starting"
        if node not in self.killed:
            return "already running"
        self.spawns.append(node)
        with trio.CancelScope() as scope:
            self.starting[node] = scope
            await trio.sleep(self.start_delay)
            del self.starting[node]
            self.killed.discard(node)
            return None
        raise StartInterrupted(f"{node} killed while starting")


@pytest.mark.parametrize("f", ["kill", "lose-unfsynced"])
async def test_a_kill_during_a_start_is_a_fault_not_a_failed_start(autojump_clock, f):
    cluster = StartingCluster()
    cluster.start_delay = 1.0
    events, record, clock = recorder()
    cluster.current_leader = "n2"
    schedule = [
        {"at": 1, "f": "kill", "value": ["n1"]},
        {"at": 2, "f": "start", "value": ["n1"],
         "when": {"event": "new-leader", "delay": 0.0, "within": 5}},
        {"at": 2.5, "f": f, "value": ["n1"]},
        {"at": 4, "f": "heal", "value": None},
    ]
    state = NemesisState()
    await run_schedule(schedule, cluster, record, clock, state=state)
    assert state.errors == []
    start = next(e for e in events if e["f"] == "start")
    assert start["value"] == {"target": ["n1"], "nodes": [],
                              "not_started": {"n1": "killed while starting"}}
    kill = [e for e in events if e["f"] in ("kill", "lose-unfsynced")][-1]
    assert kill["value"]["nodes"] == ["n1"]
    assert events[-1]["value"]["started"] == ["n1"]  # the final heal brings it back
    assert cluster.whole()


async def test_a_start_while_one_is_in_flight_is_a_recorded_no_op(autojump_clock):
    """restart-deposed's triggered restart and the slot's final start at one instant."""
    cluster = StartingCluster()
    cluster.start_delay = 1.0
    events, record, clock = recorder()
    schedule = [
        {"at": 1, "f": "kill", "value": ["n3"]},
        {"at": 2, "f": "start", "value": ["n3"],
         "when": {"event": "new-leader", "delay": 0.0, "within": 5}},
        {"at": 2.2, "f": "start", "value": "all"},
        {"at": 4, "f": "kill", "value": "one"},
    ]
    state = NemesisState()
    await run_schedule(schedule, cluster, record, clock, state=state)
    assert state.errors == []
    assert cluster.spawns.count("n3") == 1
    starts = [e["value"] for e in events if e["f"] == "start"]
    assert {"target": "all", "nodes": [], "not_started": {"n3": "already starting"}} in starts
    assert {"target": ["n3"], "nodes": ["n3"]} in starts
    assert cluster.whole()


