"""Start a local cluster of real ``python -m raft_impl`` processes (tests and benchmarks).

The harness has its own, richer cluster control (relays, store, nemesis);
this is the minimal version for raft_impl's own process tests and
``benchmarks/throughput.py``: nodes talk to each other directly on loopback,
every process is killed when the ``async with`` block ends (also on error or
cancellation), and readiness is the node's ``ready`` event, never a sleep.

    async with local_cluster(3, tmp_path) as cluster:
        leader = await cluster.wait_leader(within=2.0)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from splitbrain_common.ports import free_ports
from splitbrain_common.streams import pump_lines

from .client import ConnectionLost, RequestTimeout, open_client

READY_TIMEOUT = 15.0


#: How a node's ``committed`` events begin (raft_impl/events.py writes compact JSON).
COMMITTED_PREFIX = b'{"event":"committed"'


@dataclass
class LocalNode:
    id: str
    data_dir: Path
    peer_port: int
    client_port: int
    host: str = "127.0.0.1"
    process: trio.Process | None = None
    #: What the node printed (ready, role, snapshot, complaint …), but not its committed
    #: batches: a long benchmark would keep every entry it applied.
    events: list[dict[str, Any]] = field(default_factory=list)
    ready: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    stderr_path: Path | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class LocalCluster:
    """Handles of the nodes of one local cluster; built by :func:`local_cluster`."""

    def __init__(
        self, nursery: trio.Nursery, nodes: list[LocalNode], extra_args: Sequence[str]
    ) -> None:
        self._nursery = nursery
        self.nodes = {node.id: node for node in nodes}
        self.extra_args = list(extra_args)

    def command(self, node: LocalNode) -> list[str]:
        cmd = [
            sys.executable, "-m", "raft_impl", "--id", node.id,
            "--data-dir", str(node.data_dir),
            "--peer-listen", f"{node.host}:{node.peer_port}",
            "--client-listen", f"{node.host}:{node.client_port}",
        ]
        for other in self.nodes.values():
            if other.id != node.id:
                cmd += ["--peer", f"{other.id}={other.host}:{other.peer_port}"]
        return cmd + self.extra_args

    async def start(self, node_id: str) -> None:
        """Start a node (again) and wait for its ready event."""
        node = self.nodes[node_id]
        if node.running:
            return
        node.ready = trio.Event()
        node.exited = trio.Event()
        node.data_dir.mkdir(parents=True, exist_ok=True)
        node.stderr_path = node.data_dir.parent / f"{node.id}.stderr.log"
        with open(node.stderr_path, "ab") as stderr:  # noqa: ASYNC230 - opened once per start
            node.process = await trio.lowlevel.open_process(
                self.command(node),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._nursery.start_soon(self._pump, node, node.process, node.ready, node.exited)
        with trio.fail_after(READY_TIMEOUT):
            async with trio.open_nursery() as race:

                async def until(event: trio.Event) -> None:
                    await event.wait()
                    race.cancel_scope.cancel()

                race.start_soon(until, node.ready)
                race.start_soon(until, node.exited)
        if not node.ready.is_set():
            raise RuntimeError(f"{node_id} exited before ready: {self.stderr_tail(node)}")

    def stderr_tail(self, node: LocalNode, lines: int = 10) -> str:
        if node.stderr_path is None or not node.stderr_path.exists():
            return ""
        return "\n".join(node.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    async def _pump(
        self, node: LocalNode, process: trio.Process, ready: trio.Event, exited: trio.Event
    ) -> None:
        """Collect one incarnation's stdout events; its own ready/exited events are set."""
        assert process.stdout is not None

        def collect(lines: list[bytes]) -> None:
            for line in lines:
                if line.startswith(COMMITTED_PREFIX):
                    continue  # the bulk of the stream (every applied batch): not kept here
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                node.events.append(event)
                if event.get("event") == "ready":
                    ready.set()

        try:
            await pump_lines(process.stdout, collect)
        finally:
            await process.wait()
            exited.set()

    async def kill(self, node_id: str, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` (default SIGKILL) and wait for the process to exit."""
        node = self.nodes[node_id]
        process = node.process
        if process is None:
            return None
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            await process.wait()
        node.process = None
        return process.returncode

    async def kill_all(self) -> None:
        with trio.CancelScope(shield=True):
            for node_id in self.nodes:
                await self.kill(node_id)

    async def request(self, node_id: str, message: dict[str, Any], within: float = 2.0) -> dict:
        node = self.nodes[node_id]
        async with open_client(node.host, node.client_port) as client:
            return await client.request(message, within=within)

    async def status(self, node_id: str) -> dict[str, Any] | None:
        try:
            answer = await self.request(node_id, {"op": "status"}, within=1.0)
        except (OSError, RequestTimeout, ConnectionLost, trio.TooSlowError):
            return None
        return answer.get("value")

    async def wait_leader(self, within: float, exclude: Sequence[str] = ()) -> str:
        """Poll status until exactly one live node (not in ``exclude``) leads the top term."""
        with trio.fail_after(within):
            while True:
                statuses = {}
                for node_id, node in self.nodes.items():
                    if node_id in exclude or not node.running:
                        continue
                    status = await self.status(node_id)
                    if status is not None:
                        statuses[node_id] = status
                leaders = [n for n, s in statuses.items() if s["role"] == "leader"]
                top = max((s["term"] for s in statuses.values()), default=0)
                if len(leaders) == 1 and statuses[leaders[0]]["term"] == top:
                    return leaders[0]
                await trio.sleep(0.02)


@asynccontextmanager
async def local_cluster(
    size: int,
    base_dir: Path,
    extra_args: Sequence[str] = (),
    start: bool = True,
) -> AsyncIterator[LocalCluster]:
    """Start ``size`` nodes ``n1..nN`` under ``base_dir``; kill them all on exit."""
    ports = free_ports(2 * size)
    nodes = [
        LocalNode(f"n{i + 1}", base_dir / f"n{i + 1}", ports[2 * i], ports[2 * i + 1])
        for i in range(size)
    ]
    async with trio.open_nursery() as nursery:
        cluster = LocalCluster(nursery, nodes, extra_args)
        try:
            if start:
                async with trio.open_nursery() as starters:
                    for node in nodes:
                        starters.start_soon(cluster.start, node.id)
            yield cluster
        finally:
            await cluster.kill_all()
            nursery.cancel_scope.cancel()
