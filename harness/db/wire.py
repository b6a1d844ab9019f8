"""Process-backed DBs whose nodes speak raft_impl's client protocol (msgpack frames).

raft_impl's nodes speak it natively, and the PySyncObj node program
(``harness.db.pysyncobj_node``) speaks it on purpose, so that both
share one node command line, one admin path (status, log dumps, state
digests) and one request shape carrying the operation's session
``(client, seq)``. How a client follows the leader (raft_impl answers
``not-leader`` with a hint; PySyncObj forwards to its leader itself) stays
in each adapter.
"""

from __future__ import annotations

from typing import Any, TypeVar

import trio

from harness.db.base import DBError, DBOptions
from harness.db.node_client import NodeClient
from harness.db.process import ADMIN_TIMEOUT, ProcessDB
from harness.db.wire_client import ConnectionLost, WireClient

#: A log dump can be long (every retained entry): it gets more time than a status.
LOG_TIMEOUT = 5.0


class WireNodeDB(ProcessDB):
    """Nodes launched with raft_impl's command line, asked admin questions over the wire."""

    #: Nodes print JSON events (``ready``, ``role`` on every role change) on stdout.
    pipes_stdout = True
    role_events = True

    def __init__(self, options: DBOptions | None = None) -> None:
        super().__init__()
        self.options = options or DBOptions()

    def node_args(self, node_id: str) -> list[str]:
        """The command-line words every wire node takes: identity, addresses, peers, modes."""
        node = self.nodes[node_id]
        args = [
            "--id", node_id,
            "--data-dir", str(node.data_dir),
            "--peer-listen", node.address.peer,
            "--client-listen", node.address.client,
            "--read-mode", self.options.read_mode,
        ]
        for peer, address in sorted(self.peer_addresses.get(node_id, {}).items()):
            if peer != node_id:
                args += ["--peer", f"{peer}={address}"]
        if self.options.election_timeout is not None:
            low, high = self.options.election_timeout
            args += ["--election-timeout", f"{low},{high}"]
        return args

    def environment(self, node_id: str) -> dict[str, str]:
        env = super().environment(node_id)
        # Events must reach the harness as they happen, not when a buffer fills.
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- admin ------------------------------------------------------------------

    async def admin(
        self, node_id: str, request: dict[str, Any], within: float = ADMIN_TIMEOUT
    ) -> Any:
        """One admin request on a fresh connection; DBError when unanswered or refused."""
        address = self.reachable(node_id).address
        client = WireClient(address.host, address.client_port)
        what = request.get("op")
        try:
            with trio.fail_after(within):
                answer = await client.request(request)
        except (trio.TooSlowError, ConnectionLost) as exc:
            raise DBError(f"{node_id} did not answer {what}: {exc or 'timeout'}") from exc
        finally:
            await client.aclose()
        if not answer.get("ok"):
            raise DBError(f"{node_id} refused {what}: {answer.get('error')}")
        return answer.get("value")

    async def status(self, node_id: str) -> dict[str, Any]:
        return await self.admin(node_id, {"op": "status"})

    async def log(self, node_id: str, from_index: int | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"op": "log"}
        if from_index is not None:
            request["from"] = from_index
        return await self.admin(node_id, request, within=LOG_TIMEOUT)

    async def state_digest(self, node_id: str) -> dict[str, Any]:
        return await self.admin(node_id, {"op": "state-digest"})


WireDBType = TypeVar("WireDBType", bound=WireNodeDB)


class WireNodeClient(NodeClient[WireDBType, WireClient]):
    """A :class:`NodeClient` over wire connections."""

    def open_connection(self, host: str, port: int) -> WireClient:
        return WireClient(host, port)


def kv_request(op: dict[str, Any], *, client_id: str, seq: int) -> dict[str, Any]:
    """A workload operation as a client-protocol request with its session ``(client, seq)``."""
    if op["f"] == "txn":
        request: dict[str, Any] = {"client": client_id, "seq": seq, "op": "txn",
                                   "value": op["value"]}
        if op.get("read"):
            request["read"] = op["read"]  # a read-only txn takes the read path asked for
        return request
    request = {"client": client_id, "seq": seq, "op": op["f"], "key": op["key"]}
    if op["f"] == "read" and op.get("read"):
        request["read"] = op["read"]  # the read path this read asks for
    if op["f"] == "write":
        request["value"] = op["value"]
    elif op["f"] == "cas":
        request["expected"], request["value"] = op["value"]
    return request
