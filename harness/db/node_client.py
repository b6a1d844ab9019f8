"""A client that sticks to its node and moves to the next one only when refused.

Every process-backed adapter's client (raft_impl, PySyncObj, etcd) keeps one
kept-alive connection per node it has talked to, starts at the node the
process was given, and passes to the next node in order when a node refuses
the connection (it is down: nothing was sent, so trying elsewhere is safe).
It also says, through ``in_doubt``, whether the operation in flight may have
taken effect, so that the client pool records a timeout as ``info`` or
``fail`` correctly. What differs per system (the request, how answers and
errors map to completions, leader hints) stays in the adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

from harness.db.base import Client, Completion
from harness.db.process import ProcessDB
from harness.db.wire_client import ConnectionLost, StreamConnection

DBType = TypeVar("DBType", bound=ProcessDB)
ConnectionType = TypeVar("ConnectionType", bound=StreamConnection)
Answer = TypeVar("Answer")


class NodeClient(Client, Generic[DBType, ConnectionType]):
    """Per-node connections, rotation on refusal, and the in-doubt flag of one process."""

    #: Pause before trying another node (it was down, or an election runs).
    BACKOFF = 0.05

    def __init__(self, db: DBType, node_id: str) -> None:
        self.db = db
        self.target = node_id
        self._connections: dict[str, ConnectionType] = {}
        #: True while the current operation may have taken effect: the client pool
        #: reads it when it times the operation out (``info`` if so, ``fail`` if not).
        self.in_doubt = False

    def open_connection(self, host: str, port: int) -> ConnectionType:
        """A new (lazily connecting) connection to a node's client port."""
        raise NotImplementedError

    def _connection(self, node_id: str) -> ConnectionType:
        if node_id not in self._connections:
            address = self.db.nodes[node_id].address
            self._connections[node_id] = self.open_connection(address.host, address.client_port)
        return self._connections[node_id]

    def _next_node(self, after: str) -> str:
        ids = list(self.db.nodes)
        return ids[(ids.index(after) + 1) % len(ids)]

    def _done(self, completion: Completion) -> Completion:
        """Return ``completion``; once it is known, only ``info`` leaves the operation in doubt."""
        self.in_doubt = completion.type == "info"
        return completion

    async def _send_to_a_live_node(
        self,
        send: Callable[[ConnectionType], Awaitable[Answer]],
        may_take_effect: bool,
    ) -> tuple[str, Answer] | Completion:
        """``(node, answer)`` from the target or, if it refuses, the nodes after it.

        For systems whose members forward requests to their leader themselves,
        so that any live node will do. A connection lost after the request
        went out ends the operation: ``info`` if it may take effect, ``fail``
        if it cannot (a read that changes nothing).
        """
        while True:
            node = self.target
            # Set before the await: a timeout that cancels us mid-request sees it.
            self.in_doubt = may_take_effect
            try:
                return node, await send(self._connection(node))
            except ConnectionLost as exc:
                if exc.sent:
                    kind = "info" if may_take_effect else "fail"
                    return self._done(Completion(kind, error=f"connection lost: {exc}", node=node))
                self.in_doubt = False  # nothing was sent: try the next node
                self.target = self._next_node(node)
                await trio.sleep(self.BACKOFF)

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.aclose()
        self._connections.clear()

