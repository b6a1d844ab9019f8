"""The ``raft_impl`` adapter: real ``python -m raft_impl`` node processes.

Each node keeps everything under ``RUN_DIR/nodes/<id>/``: ``data/`` (its
WAL and snapshots, which survive a kill so a restart recovers from disk),
``stdout.jsonl`` (its structured events, appended across restarts) and
``stderr.log``. Readiness is the node's ``ready`` event, never a sleep.

Nodes run in their own session (process group), so a Ctrl-C in the
terminal reaches only the harness, which then kills them in order and keeps
their output; an ``atexit`` hook kills any survivor if the harness dies
abruptly in Python.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from harness.db import (
    DB,
    Client,
    Completion,
    DBError,
    DBOptions,
    NodeAddress,
    NodeEventSink,
    Unsupported,
    register_db,
)
from harness.wire_client import ConnectionLost, WireClient

#: How long a node may take from exec to its ``ready`` event.
READY_TIMEOUT = 10.0
#: Admin questions (status, log …) to a healthy node take milliseconds; a
#: paused or partitioned-off node must not hold the collector up.
ADMIN_TIMEOUT = 1.0

# Every live node process of this interpreter, for the atexit safety net.
_LIVE_PIDS: set[int] = set()


def _kill_survivors() -> None:
    for pid in list(_LIVE_PIDS):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _LIVE_PIDS.clear()


atexit.register(_kill_survivors)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the kernel considers free now (all bound at once, so distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class _Node:
    """The slot of one node: its files and its current incarnation, if any."""

    def __init__(self, node_id: str, address: NodeAddress, home: Path) -> None:
        self.id = node_id
        self.address = address
        self.home = home
        self.data_dir = home / "data"
        self.stdout_path = home / "stdout.jsonl"
        self.stderr_path = home / "stderr.log"
        self.process: trio.Process | None = None
        self.ready = trio.Event()
        self.paused = False
        self.incarnation = 0
        self.pump_done = trio.Event()
        #: Set while the harness itself kills the process (an expected exit).
        self.killing = False
        #: Exits nobody asked for (the node crashed by itself).
        self.unexpected_exits = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class RaftImplDB(DB):
    name = "raft_impl"

    def __init__(self, options: DBOptions | None = None) -> None:
        self.options = options or DBOptions()
        self.run_dir: Path | None = None
        self.nodes: dict[str, _Node] = {}
        self.peer_addresses: Mapping[str, Mapping[str, str]] = {}
        self._nursery: trio.Nursery | None = None
        self._on_event: NodeEventSink | None = None
        self._wrap_command: Callable[[str, list[str]], list[str]] | None = None

    # -- lifecycle ------------------------------------------------------------

    def plan(
        self, run_dir: Path, nodes: list[str], host: str = "127.0.0.1"
    ) -> dict[str, NodeAddress]:
        self.run_dir = run_dir
        ports = free_ports(2 * len(nodes), host)
        addresses = {}
        for i, node_id in enumerate(nodes):
            address = NodeAddress(host, ports[2 * i], ports[2 * i + 1])
            addresses[node_id] = address
            self.nodes[node_id] = _Node(node_id, address, run_dir / "nodes" / node_id)
        return addresses

    async def setup(
        self,
        nursery: trio.Nursery,
        peer_addresses: Mapping[str, Mapping[str, str]],
        on_event: NodeEventSink | None = None,
        listen: Mapping[str, NodeAddress] | None = None,
        wrap_command: Callable[[str, list[str]], list[str]] | None = None,
    ) -> None:
        self._nursery = nursery
        self.peer_addresses = peer_addresses
        self._on_event = on_event
        self._wrap_command = wrap_command
        for node_id, address in (listen or {}).items():
            self.nodes[node_id].address = address
        for node in self.nodes.values():
            node.data_dir.mkdir(parents=True, exist_ok=True)

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
        if self._wrap_command is not None:
            cmd = self._wrap_command(node_id, cmd)
        return cmd

    async def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.running:
            return
        assert self._nursery is not None, "setup() first"
        node.incarnation += 1
        node.ready = trio.Event()
        node.paused = False
        # Local file opened once per start: not worth a thread.
        with open(node.stderr_path, "ab") as stderr:  # noqa: ASYNC230
            process = await trio.lowlevel.open_process(
                self.command(node_id),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        _LIVE_PIDS.add(process.pid)
        node.process = process
        node.killing = False
        node.pump_done = trio.Event()
        self._nursery.start_soon(self._pump_stdout, node, process)
        self._nursery.start_soon(self._watch_exit, node, process)
        try:
            with trio.fail_after(READY_TIMEOUT):
                async with trio.open_nursery() as waiters:

                    async def died() -> None:
                        await process.wait()
                        waiters.cancel_scope.cancel()

                    async def ready() -> None:
                        await node.ready.wait()
                        waiters.cancel_scope.cancel()

                    waiters.start_soon(died)
                    waiters.start_soon(ready)
        except trio.TooSlowError:
            await self.kill(node_id)
            tail = self._stderr_tail(node)
            raise DBError(f"{node_id} not ready within {READY_TIMEOUT} s; {tail}") from None
        if not node.ready.is_set():
            await self.kill(node_id)
            raise DBError(
                f"{node_id} exited with {process.returncode} before it was ready; "
                f"{self._stderr_tail(node)}"
            )

    def _stderr_tail(self, node: _Node) -> str:
        try:
            lines = node.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no stderr"
        return "stderr: " + " | ".join(lines[-5:]) if lines else "stderr empty"

    async def _pump_stdout(self, node: _Node, process: trio.Process) -> None:
        """Copy the node's stdout to stdout.jsonl line by line and route its events."""
        assert process.stdout is not None
        buffer = b""
        try:
            # Small appends to a local file; a thread per line would cost more.
            with open(node.stdout_path, "ab") as sink:  # noqa: ASYNC230
                while True:
                    try:
                        chunk = await process.stdout.receive_some(65536)
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        break
                    if not chunk:
                        break
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        sink.write(line + b"\n")
                        self._route(node, line)
                    sink.flush()
                if buffer:
                    sink.write(buffer + b"\n")
                    self._route(node, buffer)
        finally:
            node.pump_done.set()

    async def _watch_exit(self, node: _Node, process: trio.Process) -> None:
        """Report a node that exits by itself: a crash of the system under test."""
        returncode = await process.wait()
        _LIVE_PIDS.discard(process.pid)
        if node.killing or node.process is not process:
            return
        node.unexpected_exits += 1
        if self._on_event is not None:
            self._on_event(node.id, {"event": "exited", "returncode": returncode})

    def _route(self, node: _Node, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("event") == "ready":
            node.ready.set()
        if self._on_event is not None:
            self._on_event(node.id, event)

    async def kill(self, node_id: str) -> None:
        node = self.nodes[node_id]
        process = node.process
        if process is None:
            return
        node.killing = True
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()  # SIGKILL also ends a SIGSTOPped process
            await process.wait()
            _LIVE_PIDS.discard(process.pid)
            # Let the pump flush the last lines before the slot is reused.
            with trio.move_on_after(1.0):
                await node.pump_done.wait()
            if process.stdout is not None:
                await process.stdout.aclose()
        node.process = None
        node.paused = False

    async def pause(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.running and not node.paused:
            assert node.process is not None
            node.process.send_signal(signal.SIGSTOP)
            node.paused = True

    async def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.running and node.paused:
            assert node.process is not None
            node.process.send_signal(signal.SIGCONT)
            node.paused = False

    async def teardown(self) -> None:
        with trio.CancelScope(shield=True):
            for node_id in list(self.nodes):
                await self.kill(node_id)

    def is_running(self, node_id: str) -> bool:
        return self.nodes[node_id].running

    def is_paused(self, node_id: str) -> bool:
        return self.nodes[node_id].paused

    def log_files(self, node_id: str) -> list[Path]:
        node = self.nodes[node_id]
        return [p for p in (node.stdout_path, node.stderr_path) if p.exists()]

    def client(self, node_id: str) -> Client:
        return RaftImplClient(self, node_id)

    # -- admin ------------------------------------------------------------------

    async def admin(
        self, node_id: str, request: dict[str, Any], within: float = ADMIN_TIMEOUT
    ) -> Any:
        """One admin request on a fresh connection; raises DBError when unanswered."""
        node = self.nodes[node_id]
        if not node.running or node.paused:
            raise DBError(f"{node_id} is {'paused' if node.paused else 'down'}")
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

    async def leader(self) -> str | None:
        statuses = await self.statuses()
        leaders = [(s.get("term", 0), n) for n, s in statuses.items() if s.get("role") == "leader"]
        return max(leaders)[1] if leaders else None

    async def statuses(self) -> dict[str, dict[str, Any]]:
        """Status of every node that answers, asked concurrently."""
        found: dict[str, dict[str, Any]] = {}

        async def ask(node_id: str) -> None:
            with contextlib.suppress(DBError):
                found[node_id] = await self.status(node_id)

        async with trio.open_nursery() as nursery:
            for node_id in self.nodes:
                nursery.start_soon(ask, node_id)
        return found


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
