"""The ``pysyncobj`` adapter: PySyncObj 0.3.17 nodes (``harness.adapters.pysyncobj_node``).

    splitbrain run --db pysyncobj --nodes 3 --nemesis partition,kill

Each node is ``python -m harness.adapters.pysyncobj_node`` with PySyncObj's
journal and snapshot under ``RUN_DIR/nodes/<id>/data`` (a restart after a
kill recovers from them). The node speaks raft_impl's client protocol, so
the client here is raft_impl's minus leader hints: PySyncObj forwards
commands from followers to its leader itself.

Network: PySyncObj peers identify each other by ``host:port``, so per-link
relays cannot sit in between; partitions use ``--net netns`` (see
``harness.adapters``). The node dumps PySyncObj's (private) Raft log with
each command's session and a digest of its applied state, both taken on
PySyncObj's own thread, so the log-order checks run as for raft_impl.
Not available: clock control and unfsynced-write loss (PySyncObj's journal
is an mmap it does not sync per entry; a process kill keeps it in the page
cache, and the harness cannot drop pages).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import trio

from harness.adapters.process import NodeSlot, ProcessDB
from harness.db import Client, Completion, DBError, DBOptions, register_db
from harness.wire_client import ConnectionLost, WireClient

ADMIN_TIMEOUT = 1.0
READ_MODES = ("log", "read-index", "stale")


class PySyncObjDB(ProcessDB):
    name = "pysyncobj"

    def __init__(self, options: DBOptions | None = None) -> None:
        super().__init__()
        self.options = options or DBOptions()
        if self.options.read_mode not in READ_MODES:
            raise ValueError(
                f"pysyncobj supports --read-mode log (replicated reads; read-index means the "
                f"same here) or stale, not {self.options.read_mode!r}"
            )
        if self.options.bugs:
            raise ValueError("planted bugs (--bug) exist only in raft_impl")
        # Looked up, not imported: importing PySyncObj breaks socket.inet_ntop in the
        # importing process (see pysyncobj_node), and only the nodes need it.
        if importlib.util.find_spec("pysyncobj") is None:
            raise DBError("PySyncObj is not installed: .venv/bin/pip install -e '.[adapters]'")
        #: node -> the incarnation whose ``ready`` event was seen.
        self._ready: dict[str, int] = {}

    pipes_stdout = True
    role_events = True

    def command(self, node_id: str) -> list[str]:
        node = self.nodes[node_id]
        cmd = [
            sys.executable, "-m", "harness.adapters.pysyncobj_node",
            "--id", node_id,
            "--data-dir", str(node.data_dir),
            "--peer-listen", node.address.peer,
            "--client-listen", node.address.client,
            "--read-mode", self.options.read_mode,
        ]
        for peer, address in sorted(self.peer_addresses.get(node_id, {}).items()):
            if peer != node_id:
                cmd += ["--peer", f"{peer}={address}"]
        if self.options.election_timeout is not None:
            low, high = self.options.election_timeout
            cmd += ["--election-timeout", f"{low},{high}"]
        return cmd

    def environment(self, node_id: str) -> dict[str, str]:
        env = super().environment(node_id)
        env["PYTHONUNBUFFERED"] = "1"
        # The node imports harness.* and raft_impl.*: make the checkout importable
        # even when splitbrain is not installed (e.g. under `ip netns exec`).
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def on_stdout_line(self, node: NodeSlot, line: bytes) -> None:
        if b'"ready"' in line:
            self._ready[node.id] = node.incarnation
        super().on_stdout_line(node, line)

    async def probe_ready(self, node_id: str) -> bool:
        return self._ready.get(node_id) == self.nodes[node_id].incarnation

    def client(self, node_id: str) -> Client:
        return PySyncObjClient(self, node_id)

    # -- admin --------------------------------------------------------------------

    async def admin(self, node_id: str, request: dict[str, Any],
                    within: float = ADMIN_TIMEOUT) -> Any:
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
        return answer["value"]

    async def status(self, node_id: str) -> dict[str, Any]:
        return await self.admin(node_id, {"op": "status"})

    async def log(self, node_id: str, from_index: int | None = None) -> dict[str, Any]:
        """The node's retained log, read on PySyncObj's thread (see pysyncobj_node)."""
        request: dict[str, Any] = {"op": "log"}
        if from_index is not None:
            request["from"] = from_index
        return await self.admin(node_id, request, within=5.0)

    async def state_digest(self, node_id: str) -> dict[str, Any]:
        return await self.admin(node_id, {"op": "state-digest"})


class PySyncObjClient(Client):
    """Requests to the process's node; a refused connection moves on to the next node."""

    BACKOFF = 0.05

    def __init__(self, db: PySyncObjDB, node_id: str) -> None:
        self.db = db
        self.target = node_id
        self._connections: dict[str, WireClient] = {}
        self.in_doubt = False

    def _connection(self, node_id: str) -> WireClient:
        if node_id not in self._connections:
            address = self.db.nodes[node_id].address
            self._connections[node_id] = WireClient(address.host, address.client_port)
        return self._connections[node_id]

    def _next_node(self, after: str) -> str:
        ids = list(self.db.nodes)
        return ids[(ids.index(after) + 1) % len(ids)]

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        request: dict[str, Any] = {"client": client_id, "seq": seq, "op": op["f"],
                                   "key": op["key"]}
        if op["f"] == "write":
            request["value"] = op["value"]
        elif op["f"] == "cas":
            request["expected"], request["value"] = op["value"]
        # A read in log mode is a command like any other: once sent it may still
        # be committed and applied later, and the log-order checker places it in
        # real time by its log entry, so an unanswered one is info, not fail.
        # Only stale reads (local, never logged) can safely be called failed.
        may_take_effect = not (op["f"] == "read" and self.db.options.read_mode == "stale")
        while True:
            node = self.target
            self.in_doubt = may_take_effect  # before the await: a timeout mid-request sees it
            try:
                answer = await self._connection(node).request(request)
            except ConnectionLost as exc:
                if exc.sent:
                    kind = "info" if may_take_effect else "fail"
                    return Completion(kind, error=f"connection lost: {exc}", node=node)
                self.in_doubt = False
                self.target = self._next_node(node)
                await trio.sleep(self.BACKOFF)
                continue
            if answer.get("ok"):
                self.in_doubt = False
                return Completion("ok", value=answer.get("value"), node=node)
            error = answer.get("error") or "unknown-error"
            if not may_take_effect or answer.get("definite", True):
                self.in_doubt = False
                return Completion("fail", error=error, node=node)
            return Completion("info", error=error, node=node)

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.aclose()
        self._connections.clear()


register_db("pysyncobj", PySyncObjDB)
