"""``ready`` is every incarnation's first event (docs/node-events.md).

A restarted node's peers redial it as soon as its peer port listens; their
first AppendEntries (a higher term, a leader) made it print a ``role`` event
before ``ready`` when it arrived between the node binding its peer port and
its client port (test_run_e2e flaked on that). Here the frame is sent exactly
in that window: the client listener's start is held until the node has had
every chance to handle it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from node_helpers import RecordedEvents

from raft_impl.messages import AppendEntries
from raft_impl.node import Node, NodeConfig
from splitbrain_common.ports import free_ports
from splitbrain_common.wire import encode_frame


class RoleWatch(RecordedEvents):
    """Keeps the events, and says when the first role event came."""

    def __init__(self) -> None:
        super().__init__()
        self.role = trio.Event()

    def emit(self, event: dict[str, Any], droppable: tuple[int, int] | None = None) -> None:
        super().emit(event, droppable)
        if event.get("event") == "role":
            self.role.set()


async def test_a_leader_heard_before_ready_is_reported_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    peer_port, client_port, n2_port, n3_port = free_ports(4)
    config = NodeConfig(
        node_id="n1", data_dir=tmp_path / "n1", peer_listen=("127.0.0.1", peer_port),
        client_listen=("127.0.0.1", client_port),
        peers={"n2": ("127.0.0.1", n2_port), "n3": ("127.0.0.1", n3_port)},
        election_timeout=(5.0, 6.0),  # no election of its own meanwhile
    )
    events = RoleWatch()
    node = Node(config, events=events)
    serve_tcp = trio.serve_tcp
    streams: list[trio.SocketStream] = []

    async def held_serve_tcp(handler: Any, port: int, **kwargs: Any) -> None:
        if port == client_port:  # the peer port listens already: a leader calls
            stream = await trio.open_tcp_stream("127.0.0.1", peer_port)
            streams.append(stream)
            await stream.send_all(encode_frame({"type": "hello", "from": "n2", "to": "n1"}))
            append = AppendEntries(from_="n2", to="n1", term=5, prev_index=0, prev_term=0)
            await stream.send_all(encode_frame(append.to_wire()))
            # Every task of the node idle for a while: it handled the frame, or waits.
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)
        await serve_tcp(handler, port, **kwargs)

    monkeypatch.setattr(trio, "serve_tcp", held_serve_tcp)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        with trio.fail_after(10):
            await events.role.wait()
        kinds = [event["event"] for event in events.events]
        assert kinds[0] == "ready", kinds
        assert events.of("role")[0]["term"] == 5
        nursery.cancel_scope.cancel()
    for stream in streams:
        await stream.aclose()
