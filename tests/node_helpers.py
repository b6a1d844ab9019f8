"""Run raft_impl nodes inside the test's Trio loop (real sockets on loopback, real WAL).

Faster and easier to steer than processes: a node can be stopped by
cancelling its scope and restarted from its data directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from raft_impl.client import open_client
from raft_impl.node import Node, NodeConfig
from splitbrain_common.ports import free_ports
from splitbrain_common.wire import FrameDecoder, encode_frame


class RecordedEvents:
    """An event sink (raft_impl.events.EventSink) that keeps what a node pushed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any], droppable: tuple[int, int] | None = None) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") == kind]


class InProcessCluster:
    def __init__(self, nursery: trio.Nursery, base: Path, size: int, **config: Any) -> None:
        self.nursery = nursery
        ports = free_ports(2 * size)
        self.ids = [f"n{i + 1}" for i in range(size)]
        self.peer_ports = {nid: ports[2 * i] for i, nid in enumerate(self.ids)}
        self.client_ports = {nid: ports[2 * i + 1] for i, nid in enumerate(self.ids)}
        self.base = base
        self.config = {"election_timeout": (0.15, 0.3), **config}
        self.nodes: dict[str, Node] = {}
        self.scopes: dict[str, trio.CancelScope] = {}
        self.stopped: dict[str, trio.Event] = {}
        #: What each node pushed (all its incarnations), instead of its stdout.
        self.events: dict[str, RecordedEvents] = {nid: RecordedEvents() for nid in self.ids}

    def node_config(self, node_id: str, **overrides: Any) -> NodeConfig:
        peers = {
            other: ("127.0.0.1", self.peer_ports[other]) for other in self.ids if other != node_id
        }
        settings = {**self.config, **overrides}
        return NodeConfig(
            node_id=node_id,
            data_dir=self.base / node_id,
            peer_listen=("127.0.0.1", self.peer_ports[node_id]),
            client_listen=("127.0.0.1", self.client_ports[node_id]),
            peers=peers,
            **settings,
        )

    async def start(self, node_id: str, **overrides: Any) -> Node:
        node = Node(self.node_config(node_id, **overrides), events=self.events[node_id])

        stopped = self.stopped[node_id] = trio.Event()

        async def run(task_status: trio.TaskStatus[None]) -> None:
            try:
                with trio.CancelScope() as scope:
                    self.scopes[node_id] = scope
                    await node.run(task_status=task_status)
            finally:
                stopped.set()

        await self.nursery.start(run)
        self.nodes[node_id] = node
        return node

    async def start_all(self, **overrides: Any) -> None:
        for node_id in self.ids:
            await self.start(node_id, **overrides)

    async def stop(self, node_id: str) -> None:
        """Cancel the node and wait until it has closed its sockets and WAL."""
        self.scopes.pop(node_id).cancel()
        self.nodes.pop(node_id)
        await self.stopped[node_id].wait()

    async def request(self, node_id: str, message: dict[str, Any], within: float = 2.0) -> dict:
        async with open_client("127.0.0.1", self.client_ports[node_id]) as client:
            return await client.request(message, within=within)

    async def wait_leader(self, within: float = 3.0) -> str:
        with trio.fail_after(within):
            while True:
                leaders = [n for n, node in self.nodes.items() if node.core.role == "leader"]
                terms = {node.core.term for node in self.nodes.values()}
                if len(leaders) == 1 and self.nodes[leaders[0]].core.term == max(terms):
                    return leaders[0]
                await trio.sleep(0.01)


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll an in-process condition (the nodes expose no event for each of them)."""
    with trio.fail_after(within):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)


async def raw_exchange(port: int, payload: bytes, within: float = 2.0) -> list[dict[str, Any]]:
    """Send raw bytes to a client port; collect decoded answers until the node closes."""
    answers: list[dict[str, Any]] = []
    decoder = FrameDecoder()
    with trio.fail_after(within):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(payload)
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                decoder.feed(data)
                answers.extend(decoder.messages())
    return answers


def frame(message: dict[str, Any]) -> bytes:
    return encode_frame(message)
