"""Node processes for the adapters: start, readiness probe, SIGKILL, SIGSTOP/SIGCONT.

:class:`ProcessDB` is the part every adapter for a foreign system shares:
one slot per node with a home directory ``RUN_DIR/nodes/<id>/`` (data,
``stdout.log``, ``stderr.log``, appended across restarts), processes in their
own session so a Ctrl-C reaches only the harness, an ``atexit`` safety net,
and a report of nodes that exit by themselves. A subclass says how to launch
a node (:meth:`ProcessDB.command`) and how to tell that it serves clients
(:meth:`ProcessDB.probe_ready`); readiness is polled with a deadline, never
a fixed sleep.
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

import trio

from harness.db import DB, DBError, NodeAddress, NodeEventSink
from harness.raft_impl_db import free_ports

#: Every live node process of this interpreter, for the atexit safety net.
_LIVE_PIDS: set[int] = set()


def _kill_survivors() -> None:
    for pid in list(_LIVE_PIDS):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _LIVE_PIDS.clear()


atexit.register(_kill_survivors)


class NodeSlot:
    """One node: its addresses, files and current incarnation, if any."""

    def __init__(self, node_id: str, address: NodeAddress, home: Path) -> None:
        self.id = node_id
        self.address = address
        self.home = home
        self.data_dir = home / "data"
        self.stdout_path = home / "stdout.log"
        self.stderr_path = home / "stderr.log"
        self.process: trio.Process | None = None
        self.paused = False
        self.killing = False
        self.incarnation = 0
        self.unexpected_exits = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class ProcessDB(DB):
    """A DB whose nodes are local processes; subclasses give the command and the probe."""

    #: Seconds a node may take from exec until :meth:`probe_ready` succeeds.
    ready_timeout = 20.0
    #: Seconds between readiness probes.
    probe_interval = 0.05

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
        if isinstance(event, dict) and self._on_event is not None:
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
            self.nodes[node_id] = NodeSlot(node_id, address, run_dir / "nodes" / node_id)
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
                    f"relays (--net proxy) only work for splitbrain frames; use --net netns "
                    f"(partitions by iptables) or --net none (no link faults)"
                )

    def full_command(self, node_id: str) -> list[str]:
        cmd = self.command(node_id)
        if self._wrap_command is not None:
            cmd = self._wrap_command(node_id, cmd)
        return cmd

    def environment(self, node_id: str) -> dict[str, str]:
        return dict(os.environ)

    async def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.running:
            return
        assert self._nursery is not None, "setup() first"
        node.incarnation += 1
        node.paused = False
        node.home.mkdir(parents=True, exist_ok=True)
        # Local files opened once per start: not worth a thread.
        with open(node.stdout_path, "ab") as stdout, open(node.stderr_path, "ab") as stderr:  # noqa: ASYNC230
            stdout_target = subprocess.PIPE if self.pipes_stdout else stdout
            process = await trio.lowlevel.open_process(
                self.full_command(node_id),
                stdin=subprocess.DEVNULL,
                stdout=stdout_target,
                stderr=stderr,
                start_new_session=True,
                env=self.environment(node_id),
            )
        _LIVE_PIDS.add(process.pid)
        node.process = process
        node.killing = False
        if self.pipes_stdout:
            self._nursery.start_soon(self._pump_stdout, node, process)
        self._nursery.start_soon(self._watch_exit, node, process)
        try:
            with trio.fail_after(self.ready_timeout):
                while True:
                    if process.returncode is not None:
                        break
                    if await self.probe_ready(node_id):
                        return
                    await trio.sleep(self.probe_interval)
        except trio.TooSlowError:
            await self.kill(node_id)
            raise DBError(
                f"{node_id} not ready within {self.ready_timeout} s; {self.stderr_tail(node)}"
            ) from None
        await self.kill(node_id)
        raise DBError(
            f"{node_id} exited with {process.returncode} before it was ready; "
            f"{self.stderr_tail(node)}"
        )

    #: True when the node prints JSON events the harness wants (then stdout is a pipe).
    pipes_stdout = False

    async def _pump_stdout(self, node: NodeSlot, process: trio.Process) -> None:
        assert process.stdout is not None
        buffer = b""
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
                    self.on_stdout_line(node, line)
                sink.flush()

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

    def reachable(self, node_id: str) -> NodeSlot:
        """The node's slot if it can answer now; DBError (down/paused) otherwise."""
        node = self.nodes[node_id]
        if not node.running or node.paused:
            raise DBError(f"{node_id} is {'paused' if node.paused else 'down'}")
        return node
