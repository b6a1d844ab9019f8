"""The simulator's side of the nemesis: the cluster control the executor drives.

A simulated run applies its schedule with the real runs' executor
(``nemesis.executor.run_schedule``): one fault vocabulary, one target
resolution, one trigger logic, one heal. The simulator only provides what a
real harness provides, on virtual time:

- :class:`SimControl` is the ``nemesis.api.ClusterControl`` (kill, start,
  pause, resume, clock, lose-unfsynced on a :class:`~harness.sim.node.SimNode`),
  with ``next_election`` and ``next_event`` (``ElectionWatch``,
  ``EventWatch``) fed by the nodes' role and snapshot events, as the real
  harness feeds them from the nodes' pushed events; its ``network`` is the
  :class:`~harness.sim.network.SimNetwork`.
- :class:`VirtualClock` is a ``trio.abc.Clock`` whose time is the event
  loop's. The executor runs in ``trio.run`` with it: when every Trio task
  waits, Trio asks the clock how long to sleep until its next deadline, and
  the clock runs the simulation up to that deadline instead, or only up to the
  event that woke a task (an election a trigger waits for), so that task acts
  at the same virtual instant. No real time passes.

Determinism: Trio runs the tasks that are ready at one instant in an order it
draws from its module RNG; :func:`deterministic_scheduling` switches on the
deterministic mode Trio keeps for Hypothesis (ready tasks sorted by creation,
then shuffled by that RNG) and seeds the RNG from the test's seed, so a
simulated run stays byte-for-byte reproducible.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio

from harness.sim.loop import BudgetExceeded, EventLoop
from nemesis.api import TriggerUnsupported

if TYPE_CHECKING:
    from harness.sim.cluster import SimCluster

#: Virtual seconds between lag checks while a follower-behind trigger waits.
BEHIND_POLL = 0.05
#: Events the nodes report to :meth:`SimControl.notify` (plus follower-behind, polled).
REPORTED_EVENTS = ("new-leader", "step-down", "snapshot", "snapshot-installed", "election",
                   "vote")
#: Passes of Trio's loop with no deadline at all before the clock calls it a hang.
IDLE_PASSES = 100


class VirtualClock(trio.abc.Clock):
    """Trio's clock is the simulation's: waiting for a deadline runs the simulation to it.

    A spent work budget (:class:`BudgetExceeded`) inside the simulation cancels
    ``scope`` (the nemesis phase); from then on time only jumps, so the
    executor's shutdown heal can finish, and :attr:`stopped` holds the
    exception for the caller to raise after ``trio.run``.
    """

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.scope: trio.CancelScope | None = None
        self.stopped: BudgetExceeded | None = None
        self._idle = 0

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self.loop.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        if math.isinf(deadline):
            # No deadline: Trio is winding down (the phase has returned; it always runs
            # under a deadline, see SimCluster) and needs a few passes of its loop.
            self._idle += 1
            if self._idle > IDLE_PASSES:
                raise RuntimeError("the nemesis phase waits with no deadline")
            return 0.0
        self._idle = 0
        loop = self.loop
        if self.stopped is not None:
            loop.now = max(loop.now, deadline)
            return 0.0
        try:
            loop.run_until(deadline)
        except BudgetExceeded as exc:
            self.stopped = exc
            loop.now = max(loop.now, deadline)
            if self.scope is not None:
                self.scope.cancel()
        return 0.0


@contextlib.contextmanager
def deterministic_scheduling(seed: str) -> Iterator[None]:
    """Trio's order among ready tasks, fixed by ``seed`` (restored afterwards).

    Trio has no public switch for this: it keeps ``_ALLOW_DETERMINISTIC_SCHEDULING``
    and its RNG ``_r`` for Hypothesis (its plugin turns the first on and registers
    the second). tests/test_sim_determinism.py fails if a Trio release changes them.
    """
    from trio._core import _run

    state = _run._r.getstate()
    allowed = _run._ALLOW_DETERMINISTIC_SCHEDULING
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _run._r.seed(seed)
    try:
        yield
    finally:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = allowed  # type: ignore[misc]
        _run._r.setstate(state)


class _Waiter:
    __slots__ = ("event", "node", "want")

    def __init__(self, want: str) -> None:
        self.want = want
        self.event = trio.Event()
        self.node: str | None = None


class SimControl:
    """``nemesis.api.ClusterControl`` (with ElectionWatch and EventWatch) on simulated nodes.

    Every verb takes effect at once: a simulated start recovers from the disk
    image in the same instant, so ``start`` never waits or is interrupted.
    """

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.nodes: list[str] = list(cluster.node_ids)
        self.network = cluster.network
        self._waiters: list[_Waiter] = []

    async def leader(self) -> str | None:
        return self.cluster.leader()

    async def kill(self, node: str) -> None:
        self.cluster.nodes[node].crash()

    async def lose_unfsynced(self, node: str) -> None:
        self.cluster.nodes[node].crash(lose_unfsynced=True,
                                       torn=self.cluster.config.torn_writes)

    async def start(self, node: str) -> str | None:
        sim = self.cluster.nodes[node]
        if sim.up:
            return "already running"
        sim.start()
        return None

    async def pause(self, node: str) -> None:
        self.cluster.nodes[node].pause()

    async def resume(self, node: str) -> None:
        self.cluster.nodes[node].resume()

    async def set_clock(self, node: str, offset: float, rate: float) -> None:
        sim = self.cluster.nodes[node]
        if not sim.up or sim.paused:  # as a real node's admin API: no answer
            raise ConnectionError(f"{node} does not answer (down or paused)")
        sim.set_clock(offset, rate)

    # -- trigger events ------------------------------------------------------------------

    async def next_election(self) -> str:
        return await self.next_event("new-leader")

    async def next_event(self, event: str, entries: int = 0) -> str:
        if event == "follower-behind":
            return await self._next_behind(entries)
        if event not in REPORTED_EVENTS:
            raise TriggerUnsupported(f"the simulator does not report {event} events")
        waiter = _Waiter(event)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        assert waiter.node is not None
        return waiter.node

    def notify(self, event: str, node: str) -> None:
        """A node reported ``event`` (called from inside the simulation): the tasks
        waiting for it wake, and the simulation pauses after the current event so
        they act at this virtual instant."""
        if not self._waiters:
            return
        woke = False
        for waiter in list(self._waiters):
            if waiter.want == event:
                self._waiters.remove(waiter)
                waiter.node = node
                waiter.event.set()
                woke = True
        if woke:
            self.cluster.loop.woken = True

    async def _next_behind(self, entries: int) -> str:
        """The first node (by name) whose applied index lags the highest commit by
        ``entries``, checked every BEHIND_POLL virtual seconds (as a collector polls)."""
        while True:
            node = self._behind(entries)
            if node is not None:
                return node
            await trio.sleep(BEHIND_POLL)

    def _behind(self, entries: int) -> str | None:
        statuses: dict[str, Any] = {node_id: node.status()
                                    for node_id, node in self.cluster.nodes.items() if node.up}
        highest = max((status["commit"] for status in statuses.values()), default=0)
        for node_id, status in sorted(statuses.items()):
            if highest - status["applied"] >= entries:
                return node_id
        return None
