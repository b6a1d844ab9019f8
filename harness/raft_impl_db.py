"""The ``raft_impl`` adapter: real ``python -m raft_impl`` node processes.

Each node keeps everything under ``RUN_DIR/nodes/<id>/``: ``data/`` (its
WAL and snapshots, which survive a kill so a restart recovers from disk),
``stdout.jsonl`` (its structured events, appended across restarts) and
``stderr.log``. Readiness is the node's ``ready`` event, never a sleep.

The process lifecycle (own session so a Ctrl-C reaches only the harness,
kill in order keeping the output, an ``atexit`` hook for survivors) is the
shared :class:`harness.processdb.ProcessDB`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import trio

from harness.db import (
    Client,
    Completion,
    DBError,
    DBOptions,
    Unsupported,
    register_db,
)
from harness.processdb import ProcessDB
from harness.wire_client import ConnectionLost, WireClient

#: How long a node may take from exec to its ``ready`` event.
READY_TIMEOUT = 10.0
#: Admin questions (status, log …) to a healthy node take milliseconds; a
#: paused or partitioned-off node must not hold the collector up.
ADMIN_TIMEOUT = 1.0


class RaftImplDB(ProcessDB):
    name = "raft_impl"
    ready_timeout = READY_TIMEOUT
    ready_event = "ready"
    pipes_stdout = True
    role_events = True
    stdout_name = "stdout.jsonl"

    def __init__(self, options: DBOptions | None = None) -> None:
        super().__init__()
        self.options = options or DBOptions()

    # -- lifecycle ------------------------------------------------------------

    def check_peer_addresses(self) -> None:
        """Accept any mapping: nodes name peers by id, so per-link relays may sit between."""

    def environment(self, node_id: str) -> dict[str, str]:
        # Events must reach the harness as they happen, not when a buffer fills.
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def command(self, node_id: str) -> list[str]:
        node = self.nodes[node_id]
        cmd = [
            sys.executable,
            "-m",
            "raft_impl",
            "--id",
            node_id,
            "--data-dir",
            str(node.data_dir),
            "--peer-listen",
            node.address.peer,
            "--client-listen",
            node.address.client,
        ]
        for peer, address in sorted(self.peer_addresses.get(node_id, {}).items()):
            if peer != node_id:
                cmd += ["--peer", f"{peer}={address}"]
        cmd += ["--read-mode", self.options.read_mode]
        for bug in self.options.bugs:
            cmd += ["--bug", bug]
        if self.options.election_timeout is not None:
            low, high = self.options.election_timeout
            cmd += ["--election-timeout", f"{low},{high}"]
        cmd += list(self.options.node_args)
        return cmd

    def client(self, node_id: str) -> Client:
        return RaftImplClient(self, node_id)

    # -- admin ------------------------------------------------------------------

    async def admin(
        self, node_id: str, request: dict[str, Any], within: float = ADMIN_TIMEOUT
    ) -> Any:
        """One admin request on a fresh connection; raises DBError when unanswered."""
        node = self.reachable(node_id)
        client = WireClient(node.address.host, node.address.client_port)
        try:
            with trio.fail_after(within):
                answer = await client.request(request)
        except (trio.TooSlowError, ConnectionLost) as exc:
            what = request.get("op")
            raise DBError(f"{node_id} did not answer {what}: {exc or 'timeout'}") from exc
        finally:
            await client.aclose()
        if not answer.get("ok"):
            raise DBError(f"{node_id} refused {request.get('op')}: {answer.get('error')}")
        return answer.get("value")

    async def status(self, node_id: str) -> dict[str, Any]:
        return await self.admin(node_id, {"op": "status"})

    async def log(self, node_id: str, from_index: int | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"op": "log"}
        if from_index is not None:
            request["from"] = from_index
        return await self.admin(node_id, request, within=5.0)

    async def state_digest(self, node_id: str) -> dict[str, Any]:
        return await self.admin(node_id, {"op": "state-digest"})

    async def set_clock(self, node_id: str, offset: float, rate: float) -> None:
        await self.admin(node_id, {"op": "clock", "offset": offset, "rate": rate})

    async def lose_unfsynced(self, node_id: str) -> None:
        """Crash the node, then drop the WAL bytes written after its last fsync."""
        try:
            from raft_impl.storage import drop_unsynced
        except ImportError as exc:
            raise Unsupported("raft_impl.storage.drop_unsynced is not available") from exc
        await self.kill(node_id)
        drop_unsynced(self.nodes[node_id].data_dir)


class RaftImplClient(Client):
    """Operations as raft_impl requests, with leader following.

    A ``not-leader`` answer is definite (nothing was applied), so the same
    ``(client, seq)`` is retried at the hinted leader. An answer marked
    ``definite: false`` or a connection lost after sending makes the
    operation indefinite (``info``) — by default the harness does not lean
    on the system's sessions to make a retry safe.

    With ``DBOptions.retry_indefinite`` it does, as a session-using client
    would: an attempt that is in doubt (no answer within ``attempt_timeout``,
    connection lost, ``definite: false``) is retried with the same
    ``(client, seq)`` until the operation's time runs out, and the history
    keeps a single operation. That is only correct if the system dedupes
    sessions — which is what the ``no-dedup`` bug breaks.
    """

    #: Pause before trying again when no node knows a leader (an election runs).
    BACKOFF = 0.05

    def __init__(self, db: RaftImplDB, node_id: str) -> None:
        self.db = db
        self.first_node = node_id
        self.target = node_id
        self._connections: dict[str, WireClient] = {}
        self.retry_indefinite = db.options.retry_indefinite
        self.attempt_timeout = db.options.attempt_timeout
        #: True when some attempt of the current operation may have taken effect.
        self.in_doubt = False

    def _connection(self, node_id: str) -> WireClient:
        if node_id not in self._connections:
            address = self.db.nodes[node_id].address
            self._connections[node_id] = WireClient(address.host, address.client_port)
        return self._connections[node_id]

    def _next_node(self, after: str) -> str:
        ids = list(self.db.nodes)
        return ids[(ids.index(after) + 1) % len(ids)]

    async def _attempt(self, node: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """One request; None when it timed out (only in retry mode)."""
        connection = self._connection(node)
        if not self.retry_indefinite:
            return await connection.request(request)
        with trio.move_on_after(self.attempt_timeout):
            return await connection.request(request)
        return None

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        request: dict[str, Any] = {"client": client_id, "seq": seq, "op": op["f"], "key": op["key"]}
        if op["f"] == "write":
            request["value"] = op["value"]
        elif op["f"] == "cas":
            request["expected"], request["value"] = op["value"]
        # doubtful: an earlier attempt may have applied; sticky for the whole op.
        doubtful = False
        self.in_doubt = False
        hops = 0
        while True:
            node = self.target
            hops += 1
            if hops > len(self.db.nodes):
                # Hints keep bouncing (a leader change is under way): slow down.
                await trio.sleep(self.BACKOFF)
            try:
                # in_doubt is set before the await, so a timeout that cancels
                # us mid-request is seen as indefinite by the caller.
                self.in_doubt = True
                answer = await self._attempt(node, request)
            except ConnectionLost as exc:
                if exc.sent:
                    if not self.retry_indefinite:
                        return Completion("info", error=f"connection lost: {exc}", node=node)
                    doubtful = True
                self.in_doubt = doubtful
                self.target = self._next_node(node)
                await trio.sleep(self.BACKOFF)
                continue
            if answer is None:  # attempt timed out: in doubt, try elsewhere
                doubtful = True
                self.target = self._next_node(node)
                continue
            definite = answer.get("definite", True)
            if answer.get("ok"):
                self.in_doubt = False
                return Completion("ok", value=answer.get("value"), node=node)
            error = answer.get("error") or "unknown-error"
            if not definite:
                if not self.retry_indefinite:
                    return Completion("info", error=error, node=node)
                doubtful = True
                await trio.sleep(self.BACKOFF)
                continue
            self.in_doubt = doubtful
            if error == "not-leader":
                hint = answer.get("leader")
                if hint in self.db.nodes and hint != node:
                    self.target = hint
                else:
                    self.target = self._next_node(node)
                    await trio.sleep(self.BACKOFF)
                continue
            # A definite failure after a doubtful attempt is the session's
            # answer for the one application, so it stands.
            self.in_doubt = False
            return Completion("fail", error=error, node=node)

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.aclose()
        self._connections.clear()


register_db("raft_impl", RaftImplDB)
