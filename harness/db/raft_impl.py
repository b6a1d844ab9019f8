"""The ``raft_impl`` adapter: real ``python -m raft_impl`` node processes.

Each node keeps everything under ``RUN_DIR/nodes/<id>/``: ``data/`` (its
WAL and snapshots, which survive a kill so a restart recovers from disk),
``stdout.jsonl`` (its structured events, appended across restarts) and
``stderr.log``. Readiness is the node's ``ready`` event, never a sleep.

The process lifecycle (own session so a Ctrl-C reaches only the harness,
kill in order keeping the output, an ``atexit`` hook for survivors) is the
shared :class:`harness.db.process.ProcessDB`; the node command line and the
admin questions are those of every wire-protocol node
(:class:`harness.db.wire.WireNodeDB`). What is raft_impl's own: planted
bugs, clock control, losing unfsynced writes, and a client that follows
leader hints.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

from harness.db.base import Client, Completion, register_db
from harness.db.wire import WireNodeClient, WireNodeDB, kv_request
from harness.db.wire_client import ConnectionLost
from raft_impl.__main__ import build_parser as _node_parser
from raft_impl.__main__ import check_tuning_args as check_tuning_args
from raft_impl.bugs import BUGS as BUGS
from raft_impl.core import READ_MODES as READ_MODES
from splitbrain_common import files

# The command line and the run check raft_impl's options through this module
# (BUGS, READ_MODES, check_tuning_args, snapshot_threshold): it is the one
# harness module outside the simulator that imports raft_impl (import-linter,
# pyproject.toml), so the system under test stays behind its adapter.


def snapshot_threshold(node_args: list[str] | tuple[str, ...]) -> int | None:
    """The ``--snapshot-threshold`` that ``node_args`` give the nodes, parsed as a node
    would (None when they do not set it)."""
    parsed, _ = _node_parser().parse_known_args(list(node_args))
    return parsed.snapshot_threshold


#: How long a node may take from exec to its ``ready`` event.
READY_TIMEOUT = 10.0


class RaftImplDB(WireNodeDB):
    name = "raft_impl"
    #: Committed entries, snapshots and complaints arrive as stdout events (raft_impl/events.py).
    pushes_events = True
    ready_timeout = READY_TIMEOUT
    ready_event = "ready"
    stdout_name = files.NODE_STDOUT

    # -- lifecycle ------------------------------------------------------------

    def check_peer_addresses(self) -> None:
        """Accept any mapping: nodes name peers by id, so per-link relays may sit between."""

    def command(self, node_id: str) -> list[str]:
        cmd = [sys.executable, "-m", "raft_impl", *self.node_args(node_id)]
        for bug in self.options.bugs:
            cmd += ["--bug", bug]
        cmd += list(self.options.node_args)
        return cmd

    def client(self, node_id: str) -> Client:
        return RaftImplClient(self, node_id)

    # -- abilities only raft_impl has -------------------------------------------------

    async def set_clock(self, node_id: str, offset: float, rate: float) -> None:
        await self.admin(node_id, {"op": "clock", "offset": offset, "rate": rate})

    async def lose_unfsynced(self, node_id: str) -> None:
        """Crash the node, then drop the WAL bytes written after its last fsync."""
        from raft_impl.storage import drop_unsynced

        await self.kill(node_id)
        drop_unsynced(self.nodes[node_id].data_dir)


class RaftImplClient(WireNodeClient[RaftImplDB]):
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

    can_retry_in_doubt = True

    def __init__(self, db: RaftImplDB, node_id: str) -> None:
        super().__init__(db, node_id)
        self.retry_indefinite = db.options.retry_indefinite
        self.attempt_timeout = db.options.attempt_timeout

    async def _attempt(self, node: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """One request; None when it timed out (only in retry mode)."""
        connection = self._connection(node)
        if not self.retry_indefinite:
            return await connection.request(request)
        with trio.move_on_after(self.attempt_timeout):
            return await connection.request(request)
        return None

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        request = kv_request(op, client_id=client_id, seq=seq)
        # doubtful: an earlier attempt may have applied; sticky for the whole op.
        doubtful = False
        self.in_doubt = False
        hops = 0
        retries = 0  # attempts sent again after one that was in doubt
        self.retries = 0
        while True:
            node = self.target
            hops += 1
            if hops > len(self.db.nodes):
                # Hints keep bouncing (a leader change is under way): slow down.
                await trio.sleep(self.BACKOFF)
            if doubtful:
                retries += 1
                self.retries = retries  # seen by the pool if the operation times out
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
                return Completion("ok", value=answer.get("value"), node=node, retries=retries)
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
            return Completion("fail", error=error, node=node, retries=retries)


register_db("raft_impl", RaftImplDB)
