"""The two seams between the nemesis and the rest of splitbrain.

The nemesis never starts processes or opens sockets itself: it asks a
``ClusterControl`` (implemented by the harness) to kill, start, pause or skew a
node, and a ``Network`` backend (``harness.net.proxy`` or ``harness.net.netns``)
to cut or degrade links. Keeping both as ``typing.Protocol`` classes lets the
same executor drive real processes, the simulator, or a test fake.

Link conventions used everywhere:

* A *link* is a directed pair ``(src, dst)``: messages that ``src`` sends to
  ``dst``. Raft peers in splitbrain send only on connections they dialed, so
  every directed link is a separate connection and can be faulted alone.
* A *grudge* is ``{node: {nodes it must not receive from}}`` (Jepsen's word).
  It blocks the links ``(src, node)`` for every ``src`` in ``grudge[node]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import trio

#: A directed link (src, dst).
Link = tuple[str, str]
#: node -> nodes it must not receive from.
Grudge = Mapping[str, Iterable[str]]


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """Where a node really listens: peers connect to ``peer_port``, clients to ``client_port``."""

    host: str
    peer_port: int
    client_port: int

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.peer_port}"

    @property
    def client(self) -> str:
        return f"{self.host}:{self.client_port}"


@runtime_checkable
class Network(Protocol):
    """A network backend: sits between the nodes and injects link faults.

    Life cycle used by the harness::

        peers = await network.start(nursery, {"n1": NodeAddress(...), ...})
        # peers["n1"]["n2"] == the --peer address n1 must dial to reach n2
        listen = network.listen_address("n1")   # where n1 binds (and clients dial)
        argv = network.wrap_command("n1", argv)  # e.g. run inside a namespace
        ...
        await network.aclose()   # also happens when `nursery` is cancelled

    Fault methods are ``async`` because some backends run commands (iptables,
    tc); the proxy backend completes them without blocking. ``links=None``
    means every link. A probability or delay of 0 turns that fault off.
    """

    async def start(
        self, nursery: trio.Nursery, nodes: Mapping[str, NodeAddress]
    ) -> dict[str, dict[str, str]]:
        """Set up every directed link; return, per node, the peer address to give for each other."""
        ...

    def listen_address(self, node: str) -> NodeAddress:
        """The address the node must listen on (may differ from the one given to start)."""
        ...

    def wrap_command(self, node: str, argv: list[str]) -> list[str]:
        """The command line that launches the node inside this network (identity for proxy)."""
        ...

    async def partition(self, grudge: Grudge) -> None:
        """Replace the current partition: block (src, dst) for every src in grudge[dst]."""
        ...

    async def heal(self) -> None:
        """Remove every partition (message faults stay; see reset_faults)."""
        ...

    async def set_loss(self, p: float, links: Iterable[Link] | None = None) -> None:
        """Drop each message on the links with probability p."""
        ...

    async def set_delay(
        self, mean_s: float, jitter_s: float, links: Iterable[Link] | None = None
    ) -> None:
        """Delay each message by a draw from [mean - jitter, mean + jitter] (clipped at 0)."""
        ...

    async def set_duplicate(self, p: float, links: Iterable[Link] | None = None) -> None:
        """Deliver each message twice with probability p."""
        ...

    async def set_reorder(self, p: float, links: Iterable[Link] | None = None) -> None:
        """With probability p hold a message back and deliver it after the next one."""
        ...

    async def reset_faults(self) -> None:
        """Turn off loss, delay, duplication and reordering on every link."""
        ...

    def counters(self) -> dict[str, dict[str, int]]:
        """Per link ("src->dst") message counters: at least delivered and dropped."""
        ...

    async def aclose(self) -> None:
        """Tear everything down (idempotent)."""
        ...


@runtime_checkable
class ClusterControl(Protocol):
    """What the nemesis may do to the cluster's nodes (implemented by the harness).

    ``start`` must be a no-op on a running or starting node and ``resume`` a no-op on a node
    that is not paused, so that a final "make everything whole" is always safe.
    ``kill`` is SIGKILL (the node restarts from disk on ``start``);
    ``lose_unfsynced`` kills the node and drops what it wrote after its last
    fsync, leaving it down until ``start``.

    A control may also offer ``async def next_election(self) -> str``: wait
    for the next node to take office (an election won, in any term, after
    the call) and return its name. It is optional (see :class:`ElectionWatch`);
    :func:`next_election` falls back to watching :meth:`leader` for controls
    without it.
    """

    nodes: list[str]
    network: Network

    async def leader(self) -> str | None:
        """The node that currently believes it leads, or None (none, or unclear)."""
        ...

    async def kill(self, node: str) -> None: ...

    async def start(self, node: str) -> str | None:
        """Start the node and wait until it is ready: None once it is, or why nothing
        was started (``"already running"``, ``"already starting"``: then it is a no-op).
        StartInterrupted when a kill of the node lands before it is ready."""
        ...

    async def pause(self, node: str) -> None: ...

    async def resume(self, node: str) -> None: ...

    async def set_clock(self, node: str, offset: float, rate: float) -> None:
        """Node clock := offset + rate * real monotonic time (offset 0, rate 1 is normal)."""
        ...

    async def lose_unfsynced(self, node: str) -> None: ...


@runtime_checkable
class ElectionWatch(Protocol):
    """A control that learns of elections as they happen (e.g. from the nodes' role events)."""

    async def next_election(self) -> str:
        """Wait for the next election won after this call; the node that took office."""
        ...


@runtime_checkable
class EventWatch(Protocol):
    """A control that learns of the other trigger events the nodes report (step-down,
    snapshot, snapshot-installed, follower-behind; see ``nemesis.faults.TRIGGERS``)."""

    async def next_event(self, event: str, entries: int = 0) -> str:
        """Wait for the next ``event`` after this call; the node it names. Raises
        :class:`TriggerUnsupported` when this cluster cannot report that event."""
        ...


class StartInterrupted(Exception):
    """A start that ended because the node was killed before it was ready.

    The kill was a fault of the schedule like any other (a crash during
    recovery), so the start did not *fail*: the executor records it as such and
    the node stays down, but it is no fault error.
    """


class TriggerUnsupported(Exception):
    """The cluster cannot report the event a trigger waits for (the message says why)."""


#: Seconds between leader() polls when a control cannot watch elections.
ELECTION_POLL_INTERVAL = 0.05


async def next_event(control: ClusterControl, when: Mapping[str, Any],
                     poll: float = ELECTION_POLL_INTERVAL) -> str:
    """The node named by the next occurrence of ``when["event"]``.

    Elections as :func:`next_election`; other events from ``control.next_event``
    when the control has it, else a step-down by polling :meth:`leader` (the node
    that led at one poll and not at the next), and TriggerUnsupported otherwise.
    """
    event = when["event"]
    if event == "new-leader":
        return await next_election(control, poll)
    if isinstance(control, EventWatch):
        return await control.next_event(event, int(when.get("entries", 0)))
    if event == "step-down":
        return await poll_next_step_down(control, poll)
    raise TriggerUnsupported(f"this cluster does not report {event} events")


async def poll_next_step_down(control: ClusterControl,
                              poll: float = ELECTION_POLL_INTERVAL) -> str:
    """The node that led at one ``leader()`` poll and not at the next (for controls
    without role events)."""
    before = await control.leader()
    while True:
        await trio.sleep(poll)
        now = await control.leader()
        if before is not None and now != before:
            return before
        before = now


async def next_election(control: ClusterControl, poll: float = ELECTION_POLL_INTERVAL) -> str:
    """The node that takes office next: from ``control.next_election`` when it has one.

    Otherwise by polling ``control.leader()`` every ``poll`` s until it names a
    node other than it named the poll before (a node re-elected between two
    polls, with no leaderless poll in between, goes unnoticed: only a control
    that watches elections sees those).
    """
    if isinstance(control, ElectionWatch):
        return await control.next_election()
    return await poll_next_election(control, poll)


async def poll_next_election(control: ClusterControl,
                             poll: float = ELECTION_POLL_INTERVAL) -> str:
    """The polling half of :func:`next_election` (for controls that have no events)."""
    before = await control.leader()
    while True:
        await trio.sleep(poll)
        now = await control.leader()
        if now is not None and now != before:
            return now
        before = now
