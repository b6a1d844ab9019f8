"""Cluster control on Trio: a DB plus a Network, as the nemesis sees it.

:class:`Cluster` implements ``nemesis.api.ClusterControl``: kill/start,
pause/resume, clock and lose-unfsynced faults on nodes, and the network
backend for links. It also records the lifecycle marks the log-order checker
needs (crash, restart, lose-unfsynced) and keeps the set of current faults
for the live display.

:func:`open_cluster` is the only way to get one: an async context manager
whose exit — normal, exception, Ctrl-C, timeout — kills every node process
and closes every relay, under a shielded cancel scope so a second
cancellation cannot interrupt the cleanup.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import trio

from harness.db.base import DB, DBError, NodeAddress, NodeEventSink, Unsupported
from nemesis.api import TriggerUnsupported, poll_next_election, poll_next_step_down

#: Called with (kind, node) for each lifecycle mark: "crash", "restart", "lose-unfsynced".
MarkSink = Callable[[str, str], None]

SUPPORTED_SIZES = (1, 3, 5, 7)
#: Seconds between status polls while a follower-behind trigger waits (systems
#: that push no commits).
BEHIND_POLL_INTERVAL = 0.2


class RunClock:
    """Nanoseconds since the run began, on the monotonic clock (history ``time``)."""

    def __init__(self) -> None:
        self._origin = time.monotonic_ns()

    def now_ns(self) -> int:
        return time.monotonic_ns() - self._origin

    def now(self) -> float:
        return self.now_ns() / 1e9

    def __call__(self) -> int:
        return self.now_ns()


def node_names(count: int) -> list[str]:
    return [f"n{i}" for i in range(1, count + 1)]


class Cluster:
    """The running cluster: what the nemesis, clients and collector act on."""

    #: A start of several nodes starts them at once (``nemesis.executor``): each waits
    #: a second or more for its process to be ready on a loaded machine.
    concurrent_starts = True

    def __init__(
        self,
        db: DB,
        network: Any,
        nodes: list[str],
        run_dir: Path,
        on_mark: MarkSink | None = None,
    ) -> None:
        self.db = db
        self.network = network
        self.nodes = list(nodes)
        self.run_dir = run_dir
        self.addresses: dict[str, NodeAddress] = {}
        self._on_mark = on_mark
        self.down: set[str] = set()
        self.paused: set[str] = set()
        self.skewed: dict[str, tuple[float, float]] = {}
        self.last_leader: str | None = None
        #: Set (and replaced) when a node takes office; holds the winner once set.
        self._election = _Election()
        #: The same for the other trigger events (step-down, snapshot, ...), by event.
        self._occurrences: dict[str, _Election] = {}
        #: Roles and terms as the nodes' role events said (to see a leader step down, and
        #: to name the leader without asking every node).
        self._roles: dict[str, str] = {}
        self._terms: dict[str, int] = {}
        #: Applied index per node and the highest commit index, from pushed events.
        self._applied: dict[str, int] = {}
        self._highest_commit = 0
        #: Follower-behind thresholds someone waits for.
        self._behind_wanted: set[int] = set()
        #: Where node events go on after the cluster has looked at them (the collector).
        self.forward_events: NodeEventSink | None = None

    def _mark(self, kind: str, node: str) -> None:
        if self._on_mark is not None:
            self._on_mark(kind, node)

    # -- ClusterControl ---------------------------------------------------------

    async def leader(self) -> str | None:
        """The node leading now: from the nodes' role events when they push them (at
        once), else by asking every node's status (a round of requests: 100 ms and more
        on a loaded machine, during which a fault aimed at "the leader" is late)."""
        pushed = self.leader_from_events()
        if pushed is not None:
            self.last_leader = pushed
            return pushed
        try:
            leader = await self.db.leader()
        except Unsupported:
            return None
        if leader is not None:
            self.last_leader = leader
        return leader

    def leader_from_events(self) -> str | None:
        """Of the running nodes whose last role event said leader, the one of the highest
        term (a paused or cut-off old leader still says it leads, in an older term);
        None when no node says so or the nodes push no role events."""
        if not self.db.role_events:
            return None
        leaders = [(self._terms.get(node, 0), node) for node, role in self._roles.items()
                   if role == "leader" and node not in self.down]
        return max(leaders)[1] if leaders else None

    async def next_election(self) -> str:
        """Wait for the next node to take office (any term) and return its name.

        Fed by the nodes' ``{"event": "role", "role": "leader"}`` lines, so it
        wakes the moment the winner prints it, without polling; a DB whose
        nodes print no role events (``DB.role_events`` false) is polled instead.
        """
        if not self.db.role_events:
            return await poll_next_election(self)
        election = self._election
        await election.happened.wait()
        assert election.winner is not None
        return election.winner

    async def next_event(self, event: str, entries: int = 0) -> str:
        """Wait for the next ``event`` (a ``nemesis.faults.TRIGGERS`` name) and return the
        node it names: the deposed leader (step-down, from role events), the new
        candidate (election, from role events), the voter (vote, pushed), the node that
        took or installed a snapshot (pushed events), the node whose applied index
        fell ``entries`` behind the highest commit index (pushed commits, else polled
        statuses). TriggerUnsupported when these nodes cannot tell."""
        if event == "new-leader":
            return await self.next_election()
        if event == "follower-behind":
            return await self._next_behind(entries)
        if event == "step-down" and not self.db.role_events:
            return await poll_next_step_down(self)
        if event in ("snapshot", "snapshot-installed") and not self.db.pushes_events:
            raise TriggerUnsupported(f"--db {self.db.name} nodes do not report snapshots")
        if event == "vote" and not self.db.pushes_events:
            raise TriggerUnsupported(f"--db {self.db.name} nodes do not report votes")
        if event == "election" and not self.db.role_events:
            raise TriggerUnsupported(f"--db {self.db.name} nodes do not report candidacies")
        occurrence = self._occurrences.setdefault(event, _Election())
        await occurrence.happened.wait()
        assert occurrence.winner is not None
        return occurrence.winner

    def _happened(self, event: str, node: str) -> None:
        occurrence = self._occurrences.pop(event, None)
        if occurrence is not None:
            occurrence.winner = node
            occurrence.happened.set()

    async def _next_behind(self, entries: int) -> str:
        if self.db.pushes_events:
            key = f"follower-behind:{entries}"
            self._behind_wanted.add(entries)
            try:
                occurrence = self._occurrences.setdefault(key, _Election())
                await occurrence.happened.wait()
            finally:
                self._behind_wanted.discard(entries)
            assert occurrence.winner is not None
            return occurrence.winner
        while True:  # no pushed commits: poll the nodes' statuses
            try:
                statuses = await self.db.statuses()
            except (Unsupported, AttributeError):
                raise TriggerUnsupported(
                    f"--db {self.db.name} reports neither commits nor statuses") from None
            highest = max((s.get("commit") or 0 for s in statuses.values()), default=0)
            for node, status in sorted(statuses.items()):
                if highest - (status.get("applied") or 0) >= entries:
                    return node
            await trio.sleep(BEHIND_POLL_INTERVAL)

    def _check_behind(self) -> None:
        for entries in sorted(self._behind_wanted):
            for node, applied in sorted(self._applied.items()):
                if node not in self.down and self._highest_commit - applied >= entries:
                    self._happened(f"follower-behind:{entries}", node)
                    break

    def on_node_event(self, node: str, event: dict[str, Any]) -> None:
        """Sink for the nodes' stdout events: notes elections, then forwards the event."""
        kind = event.get("event")
        if kind == "role":
            role = event.get("role")
            if role == "leader":
                self.last_leader = node
                election, self._election = self._election, _Election()
                election.winner = node
                election.happened.set()
            elif self._roles.get(node) == "leader":
                self._happened("step-down", node)
            if role == "candidate":
                self._happened("election", node)
            if isinstance(role, str):
                self._roles[node] = role
            if isinstance(event.get("term"), int):
                self._terms[node] = event["term"]
        elif kind == "vote":
            self._happened("vote", node)
        elif kind == "exited":  # died by itself: it leads no more
            self._roles.pop(node, None)
        elif kind == "snapshot":
            self._happened("snapshot", node)
            if event.get("source") == "installed":
                self._happened("snapshot-installed", node)
        elif kind == "committed":
            rows = event.get("entries") or []
            if rows and isinstance(rows[-1], list) and isinstance(rows[-1][0], int):
                self._applied[node] = rows[-1][0]
            commit = event.get("commit")
            if isinstance(commit, int):
                self._highest_commit = max(self._highest_commit, commit)
            if self._behind_wanted:
                self._check_behind()
        if self.forward_events is not None:
            self.forward_events(node, event)

    async def kill(self, node: str) -> None:
        self._roles.pop(node, None)  # a killed leader does not step down
        was_running = self.db.is_running(node)
        await self.db.kill(node)
        self.down.add(node)
        self.paused.discard(node)
        if was_running:
            self._mark("crash", node)

    async def start(self, node: str) -> str | None:
        """Start ``node``; the DB serialises it with kills and other starts of the node
        (see ``ProcessDB.start``): a reason string when it was a no-op."""
        noop = await self.db.start(node)
        if noop is not None:
            return noop
        self.down.discard(node)
        self.skewed.pop(node, None)  # a fresh process starts with a true clock
        self._mark("restart", node)
        return None

    async def pause(self, node: str) -> None:
        await self.db.pause(node)
        if self.db.is_running(node):
            self.paused.add(node)

    async def resume(self, node: str) -> None:
        await self.db.resume(node)
        self.paused.discard(node)

    async def set_clock(self, node: str, offset: float, rate: float) -> None:
        await self.db.set_clock(node, offset, rate)
        if offset == 0 and rate == 1:
            self.skewed.pop(node, None)
        else:
            self.skewed[node] = (offset, rate)

    async def lose_unfsynced(self, node: str) -> None:
        self._roles.pop(node, None)
        await self.db.lose_unfsynced(node)
        self.down.add(node)
        self.paused.discard(node)
        self._mark("crash", node)
        self._mark("lose-unfsynced", node)

    # -- whole-cluster helpers ------------------------------------------------------

    async def heal_all(self) -> None:
        """Undo every fault: network, pauses, clocks, dead nodes."""
        if self.network is not None:
            await self.network.heal()
            await self.network.reset_faults()
        for node in list(self.paused):
            await self.resume(node)
        for node in list(self.skewed):
            with contextlib.suppress(DBError, Unsupported):
                await self.set_clock(node, 0.0, 1.0)
        for node in self.nodes:
            if not self.db.is_running(node):
                await self.start(node)

    async def wait_for_leader(self, within: float, poll: float = 0.05) -> str:
        """Poll the nodes' status until one of them says it leads."""
        with trio.fail_after(within):
            while True:
                leader = await self.leader()
                if leader is not None:
                    return leader
                await trio.sleep(poll)

    def current_faults(self) -> list[str]:
        faults = [f"down {n}" for n in sorted(self.down)]
        faults += [f"paused {n}" for n in sorted(self.paused)]
        faults += [f"clock {n} {o:+.2f}s x{r:g}" for n, (o, r) in sorted(self.skewed.items())]
        return faults


class _Election:
    """One election to come: an event set when a node takes office, and that node."""

    def __init__(self) -> None:
        self.happened = trio.Event()
        self.winner: str | None = None


class DirectNetwork:
    """No network in between (``--net none``): nodes dial each other directly.

    Useful to measure what the proxy costs and to run without any relay;
    link faults are impossible and say so, healing is trivially done.
    """

    def __init__(self) -> None:
        self._addresses: dict[str, NodeAddress] = {}

    async def start(self, nursery: trio.Nursery, nodes: Any) -> dict[str, dict[str, str]]:
        self._addresses = dict(nodes)
        return direct_peer_map(self._addresses)

    def listen_address(self, node: str) -> NodeAddress:
        return self._addresses[node]

    def wrap_command(self, node: str, argv: list[str]) -> list[str]:
        return argv

    async def _unsupported(self, *args: Any, **kwargs: Any) -> None:
        raise Unsupported("--net none has no link faults; use --net proxy")

    partition = set_loss = set_delay = set_duplicate = set_reorder = _unsupported

    async def heal(self) -> None:
        pass

    async def reset_faults(self) -> None:
        pass

    def counters(self) -> dict[str, dict[str, int]]:
        return {}

    async def aclose(self) -> None:
        pass


def direct_peer_map(addresses: dict[str, NodeAddress]) -> dict[str, dict[str, str]]:
    """Peer addresses without any relay in between (no network faults possible)."""
    return {a: {b: addr.peer for b, addr in addresses.items() if b != a} for a in addresses}


@contextlib.asynccontextmanager
async def open_cluster(
    db: DB,
    network: Any,
    nodes: list[str],
    run_dir: Path,
    *,
    on_event: NodeEventSink | None = None,
    on_mark: MarkSink | None = None,
    leader_timeout: float = 10.0,
    wait_leader: bool = True,
) -> AsyncIterator[Cluster]:
    """Start the network and every node, wait for a leader, yield; always clean up."""
    cluster = Cluster(db, network, nodes, run_dir, on_mark)
    cluster.forward_events = on_event
    try:
        async with trio.open_nursery() as nursery:
            try:
                cluster.addresses = db.plan(run_dir, nodes)
                if network is None:
                    network = cluster.network = DirectNetwork()
                peer_map = await network.start(nursery, cluster.addresses)
                listen = {node: network.listen_address(node) for node in nodes}
                wrap = network.wrap_command
                await db.setup(nursery, peer_map, cluster.on_node_event, listen=listen,
                               wrap_command=wrap)
                async with trio.open_nursery() as starters:
                    for node in nodes:
                        starters.start_soon(db.start, node)
                if wait_leader:
                    await cluster.wait_for_leader(leader_timeout)
                yield cluster
            finally:
                with trio.CancelScope(shield=True):
                    try:
                        await db.teardown()
                    finally:
                        if network is not None:
                            with contextlib.suppress(Exception):
                                await network.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One failure (the caller's error, a node that would not start, a
        # cancellation) surfaces as itself, not wrapped by our nurseries.
        leaves = _leaves(group)
        if len(leaves) != 1:
            raise
        raise leaves[0] from None


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for inner in group.exceptions for leaf in _leaves(inner)]
    return [group]


def check_size(count: int) -> None:
    if count not in SUPPORTED_SIZES:
        sizes = ", ".join(map(str, SUPPORTED_SIZES))
        raise ValueError(f"clusters of {sizes} nodes are supported, not {count}")


__all__ = [
    "Cluster",
    "DirectNetwork",
    "RunClock",
    "check_size",
    "direct_peer_map",
    "node_names",
    "open_cluster",
]

