"""Node processes: start, readiness, SIGKILL, SIGSTOP/SIGCONT, one place for every DB.

:class:`ProcessDB` is the lifecycle every process-backed DB shares (the
``raft_impl`` nodes as well as the etcd and PySyncObj adapters): one slot per
node with a home directory ``RUN_DIR/nodes/<id>/`` (data, stdout, stderr,
appended across restarts), processes in their own session so a Ctrl-C
reaches only the harness, an ``atexit`` safety net, and a report of nodes
that exit by themselves. A subclass says how to launch a node
(:meth:`ProcessDB.command`) and how to tell that it serves clients: either a
stdout event it prints (:attr:`ProcessDB.ready_event`, awaited) or
:meth:`ProcessDB.probe_ready` (polled with a deadline), never a fixed sleep.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from checker.lines import LineAppender
from harness.db.base import DB, DBError, NodeAddress, NodeEventSink, Unsupported
from nemesis.api import StartInterrupted
from splitbrain_common import files
from splitbrain_common.ports import free_ports
from splitbrain_common.streams import pump_lines

#: Admin questions (status, log …) to a healthy node take milliseconds; a
#: paused or partitioned-off node must not hold the collector up.
ADMIN_TIMEOUT = 1.0

#: Every live node process of this interpreter, for the atexit safety net.
_LIVE_PIDS: set[int] = set()


def _kill_survivors() -> None:
    for pid in list(_LIVE_PIDS):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _LIVE_PIDS.clear()


atexit.register(_kill_survivors)


class _Start:
    """One start of a node between its spawn and its readiness (or death)."""

    def __init__(self) -> None:
        self.settled = trio.Event()
        #: Set by a kill that lands meanwhile: the start then ends in StartInterrupted
        #: (the kill was a fault like any other, the start did not fail).
        self.killed = False


class NodeSlot:
    """One node: its addresses, files and current incarnation, if any."""

    def __init__(
        self, node_id: str, address: NodeAddress, home: Path, stdout_name: str = "stdout.log"
    ) -> None:
        self.id = node_id
        self.address = address
        self.home = home
        self.data_dir = home / "data"
        self.stdout_path = home / stdout_name
        self.stderr_path = home / files.NODE_STDERR
        self.process: trio.Process | None = None
        #: Set when the current incarnation printed the DB's ready event.
        self.ready = trio.Event()
        #: Set when the stdout pump of the current incarnation has flushed its last line.
        self.pump_done = trio.Event()
        self.paused = False
        #: Set while the harness itself kills the process (an expected exit).
        self.killing = False
        self.incarnation = 0
        #: Exits nobody asked for (the node crashed by itself).
        self.unexpected_exits = 0
        #: Held while a process of this node is spawned or killed: a start and a kill
        #: (or two starts) of one node never interleave there (two spawns would fight
        #: over the ports; a kill between the spawn and ``process`` being set would miss it).
        self.lifecycle = trio.Lock()
        #: The start in flight (spawned, not yet ready): a second start waits for it
        #: instead of spawning again.
        self.starting: _Start | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class ProcessDB(DB):
    """A DB whose nodes are local processes; subclasses give the command and the probe."""

    #: Seconds a node may take from exec until :meth:`probe_ready` succeeds.
    ready_timeout = 20.0
    #: Seconds between readiness probes.
    probe_interval = 0.05
    #: The ``event`` a node prints on stdout once it serves clients; when set,
    #: readiness awaits that event instead of polling :meth:`probe_ready`
    #: (and stdout must be piped).
    ready_event: str | None = None
    #: File name of the node's stdout copy in its home directory.
    stdout_name = "stdout.log"

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.nodes: dict[str, NodeSlot] = {}
        self.peer_addresses: Mapping[str, Mapping[str, str]] = {}
        self._nursery: trio.Nursery | None = None
        self._on_event: NodeEventSink | None = None
        self._wrap_command: Callable[[str, list[str]], list[str]] | None = None

    # -- to be provided by the adapter ------------------------------------------

    def command(self, node_id: str) -> list[str]:
        raise NotImplementedError

    async def probe_ready(self, node_id: str) -> bool:
        """One quick check (with its own short timeout) that the node serves clients."""
        raise NotImplementedError

    def on_stdout_line(self, node: NodeSlot, line: bytes) -> None:
        """A line the node printed; JSON objects are routed as node events."""
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if self.ready_event is not None and event.get("event") == self.ready_event:
            node.ready.set()
        if self._on_event is not None:
            self._on_event(node.id, event)

    # -- lifecycle ------------------------------------------------------------------

    def plan(
        self, run_dir: Path, nodes: list[str], host: str = "127.0.0.1"
    ) -> dict[str, NodeAddress]:
        self.run_dir = run_dir
        ports = free_ports(2 * len(nodes), host)
        addresses = {}
        for i, node_id in enumerate(nodes):
            address = NodeAddress(host, ports[2 * i], ports[2 * i + 1])
            addresses[node_id] = address
            self.nodes[node_id] = NodeSlot(
                node_id, address, run_dir / files.NODES / node_id, self.stdout_name
            )
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
        self._on_event = on_event
        self._wrap_command = wrap_command
        for node_id, address in (listen or {}).items():
            self.nodes[node_id].address = address
        self.peer_addresses = peer_addresses
        self.check_peer_addresses()
        for node in self.nodes.values():
            node.data_dir.mkdir(parents=True, exist_ok=True)

    def check_peer_addresses(self) -> None:
        """Refuse a network that gives different nodes different addresses for one peer.

        Systems that name members by their advertised peer URL (etcd,
        PySyncObj) need every member to see the same address for a peer, so
        per-link relays cannot sit in between; silently bypassing them would
        make every partition a no-op and every verdict a lie.
        """
        for dst, slot in self.nodes.items():
            seen = {peers[dst] for src, peers in self.peer_addresses.items() if src != dst}
            if seen and seen != {slot.address.peer}:
                raise DBError(
                    f"{self.name} members must all reach {dst} at its own peer address "
                    f"{slot.address.peer}, but the network maps it to {sorted(seen)}: per-link "
                    f"relays (--net proxy) only work for peer framings they know "
                    f"(splitbrain's, PySyncObj's); use --net netns "
                    f"(partitions by iptables) or --net none (no link faults)"
                )

    def full_command(self, node_id: str) -> list[str]:
        cmd = self.command(node_id)
        if self._wrap_command is not None:
            cmd = self._wrap_command(node_id, cmd)
        return cmd

    def environment(self, node_id: str) -> dict[str, str]:
        return dict(os.environ)

    async def start(self, node_id: str) -> str | None:
        """Start the node and wait until it is ready; None once it is.

        Idempotent under the node's lifecycle lock: a node already running
        gives ``"already running"``, and a start while another is still
        waiting for readiness waits for that one and gives ``"already
        starting"`` (spawning twice would fail on the ports). A kill that
        lands while the node is starting (a fault like any other) ends the
        start in StartInterrupted.
        """
        node = self.nodes[node_id]
        async with node.lifecycle:
            in_flight = node.starting
            if in_flight is None and node.running:
                return "already running"
            if in_flight is None:
                process = await self._spawn(node)
                this = node.starting = _Start()
        if in_flight is not None:
            await in_flight.settled.wait()
            return "already starting"
        try:
            with trio.fail_after(self.ready_timeout):
                ready = await self._await_ready(node, process)
            if ready and not this.killed:  # (a kill may land as it becomes ready)
                return None
        except trio.TooSlowError:
            if this.killed:  # killed just as the deadline passed
                raise StartInterrupted(f"{node_id} killed while starting") from None
            await self._kill_incarnation(node, process)
            raise DBError(
                f"{node_id} not ready within {self.ready_timeout} s; {self.stderr_tail(node)}"
            ) from None
        finally:
            if node.starting is this:
                node.starting = None
            this.settled.set()
        if this.killed:
            raise StartInterrupted(f"{node_id} killed while starting")
        await self._kill_incarnation(node, process)
        raise DBError(
            f"{node_id} exited with {process.returncode} before it was ready; "
            f"{self.stderr_tail(node)}"
        )

    async def _spawn(self, node: NodeSlot) -> trio.Process:
        """Launch a new incarnation (caller holds ``node.lifecycle``)."""
        assert self._nursery is not None, "setup() first"
        node.incarnation += 1
        node.ready = trio.Event()
        node.pump_done = trio.Event()
        node.paused = False
        node.home.mkdir(parents=True, exist_ok=True)
        # Local files opened once per start: not worth a thread.
        with open(node.stdout_path, "ab") as stdout, open(node.stderr_path, "ab") as stderr:  # noqa: ASYNC230
            stdout_target = subprocess.PIPE if self.pipes_stdout else stdout
            process = await trio.lowlevel.open_process(
                self.full_command(node.id),
                stdin=subprocess.PIPE if self.pipes_stdin else subprocess.DEVNULL,
                stdout=stdout_target,
                stderr=stderr,
                start_new_session=True,
                env=self.environment(node.id),
            )
        _LIVE_PIDS.add(process.pid)
        node.process = process
        node.killing = False
        if self.pipes_stdout:
            self._nursery.start_soon(self._pump_stdout, node, process)
        self._nursery.start_soon(self._watch_exit, node, process)
        return process

    async def _await_ready(self, node: NodeSlot, process: trio.Process) -> bool:
        """True once the node is ready, False if it exits first (caller sets the deadline)."""
        if self.ready_event is None:
            while process.returncode is None:
                if await self.probe_ready(node.id):
                    return True
                await trio.sleep(self.probe_interval)
            return False
        async with trio.open_nursery() as waiters:

            async def died() -> None:
                await process.wait()
                waiters.cancel_scope.cancel()

            async def ready() -> None:
                await node.ready.wait()
                waiters.cancel_scope.cancel()

            waiters.start_soon(died)
            waiters.start_soon(ready)
        return node.ready.is_set()

    #: True when the node prints JSON events the harness wants (then stdout is a pipe).
    pipes_stdout = False
    #: True when the harness writes to the node's stdin (Maelstrom nodes take messages there).
    pipes_stdin = False

    async def _pump_stdout(self, node: NodeSlot, process: trio.Process) -> None:
        """Copy the node's stdout to its file line by line and hand each line on.

        Whole lines only: a write the disk refuses raises LineWriteError (the run
        stops) and leaves the file whole up to the lines before."""
        assert process.stdout is not None
        # Small appends to a local file; a thread per line would cost more.
        sink = LineAppender(node.stdout_path)
        try:

            def copy(lines: list[bytes]) -> None:
                sink.write(b"".join(line + b"\n" for line in lines))
                for line in lines:
                    self.on_stdout_line(node, line)

            await pump_lines(process.stdout, copy)
        finally:
            sink.close()
            node.pump_done.set()

    def stderr_tail(self, node: NodeSlot) -> str:
        try:
            lines = node.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no stderr"
        return "stderr: " + " | ".join(lines[-5:]) if lines else "stderr empty"

    async def _watch_exit(self, node: NodeSlot, process: trio.Process) -> None:
        """Report a node that exits by itself: a crash of the system under test."""
        returncode = await process.wait()
        _LIVE_PIDS.discard(process.pid)
        if node.killing or node.process is not process:
            return
        node.unexpected_exits += 1
        if self._on_event is not None:
            self._on_event(node.id, {"event": "exited", "returncode": returncode})

    async def kill(self, node_id: str) -> None:
        """SIGKILL the node; a start still waiting for it to be ready then ends in
        StartInterrupted (the kill is the fault, the start did not fail)."""
        node = self.nodes[node_id]
        with trio.CancelScope(shield=True):
            async with node.lifecycle:  # not in the middle of a spawn
                await self._kill(node)

    async def _kill_incarnation(self, node: NodeSlot, process: trio.Process) -> None:
        """Kill ``process`` if it is still the node's (not a later start's)."""
        with trio.CancelScope(shield=True):
            async with node.lifecycle:
                if node.process is process:
                    await self._kill(node)

    async def _kill(self, node: NodeSlot) -> None:
        process = node.process
        if process is None:
            return
        node.killing = True
        if node.starting is not None:
            node.starting.killed = True
            # The start in flight settles by itself; a later start spawns afresh.
            node.starting = None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()  # SIGKILL also ends a SIGSTOPped process
        await process.wait()
        _LIVE_PIDS.discard(process.pid)
        if process.stdout is not None:
            # Let the pump flush the last lines before the slot is reused.
            with trio.move_on_after(1.0):
                await node.pump_done.wait()
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

    def complaint_files(self, node_id: str) -> list[Path]:
        """stderr, where the systems log (stdout is the JSON event stream when piped)."""
        node = self.nodes[node_id]
        files = [node.stderr_path]
        if not self.pipes_stdout:
            files.append(node.stdout_path)
        return files

    async def statuses(self) -> dict[str, dict[str, Any]]:
        """Status of every node that answers, asked concurrently (down nodes are left out);
        Unsupported at once when this DB has no status API at all."""
        if type(self).status is DB.status:
            raise Unsupported(f"{self.name} has no status API")
        found: dict[str, dict[str, Any]] = {}

        async def ask(node_id: str) -> None:
            with contextlib.suppress(DBError):
                found[node_id] = await self.status(node_id)

        async with trio.open_nursery() as nursery:
            for node_id in self.nodes:
                nursery.start_soon(ask, node_id)
        return found

    async def leader(self) -> str | None:
        """The node that claims leadership in the highest term, from every status."""
        statuses = await self.statuses()
        leaders = [(s.get("term") or 0, n) for n, s in statuses.items()
                   if s.get("role") == "leader"]
        return max(leaders)[1] if leaders else None

    def reachable(self, node_id: str) -> NodeSlot:
        """The node's slot if it can answer now; DBError (down/paused) otherwise."""
        node = self.nodes[node_id]
        if not node.running or node.paused:
            raise DBError(f"{node_id} is {'paused' if node.paused else 'down'}")
        return node
