"""The ``router`` network backend: the harness itself carries every message between nodes.

For systems whose nodes never talk to each other directly (Maelstrom-protocol
nodes exchange JSON lines through their stdin and stdout), the DB hands each
message a node writes to :meth:`MessageRouter.route`, and the router decides its
fate on the directed link (src, dst) and calls the DB's ``deliver`` to write it
to the destination. No sockets, no frames to parse: the message is already one
line, so partition, loss, delay, duplicate and reorder apply per message, with
the same semantics as the proxy backend (``harness.net.proxy``):

* **partition**: messages on a cut link are dropped (also those still waiting
  out a delay or held for reordering when they come due);
* **loss** p, **duplicate** p, **reorder** p (held back and delivered right
  after the next message on the link, or after ``reorder_hold`` seconds);
* **delay** mean, jitter: each message in its own timer, so delay reorders too.

Every decision can be traced to ``messages.jsonl`` (time in ns since the run
began, from, to, type, action), like the proxy's trace. Draws come from one
RNG per link seeded from the run seed and the link name.

The hot path (a clean link, no trace) is one dict lookup, a counter and the
delivery call: routing is synchronous, so the DB's stdout pump routes a whole
chunk of lines without a task switch.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from harness.net.base import NodeAddress, link_name
from harness.net.links import LinkFaultControl, LinkFaults, TraceBuffer

#: Bytes of trace lines collected before they are written in one go.
COUNTER_NAMES = ("frames", "delivered", "dropped", "duplicated", "delayed", "reordered")

#: ``deliver(src, dst, line)``: write one message line (no newline) to node ``dst``.
Deliver = Callable[[str, str, bytes], None]


@dataclass
class _Link:
    src: str
    dst: str
    rng: random.Random
    faults: LinkFaults = field(default_factory=LinkFaults)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    #: A message held back for reordering, with the generation that releases it.
    held: tuple[bytes, Any] | None = None
    held_generation: int = 0

    @property
    def name(self) -> str:
        return link_name(self.src, self.dst)


class MessageRouter(LinkFaultControl):
    """Per-message faults on messages the harness carries itself. Implements ``Network``."""

    @staticmethod
    def unsupported_faults() -> dict[str, str]:
        """Every link fault works, one-way cuts too: each directed link is its own route."""
        return {}

    def __init__(self, deliver: Deliver, seed: int = 0, *, rng: random.Random | None = None,
                 trace_path: str | Path | None = None, clock: Callable[[], int] | None = None,
                 reorder_hold: float = 0.05) -> None:
        self._deliver = deliver
        self.seed = rng.getrandbits(64) if rng is not None else seed
        self.reorder_hold = reorder_hold
        self._trace_path = Path(trace_path) if trace_path is not None else None
        self._trace = TraceBuffer()
        started = time.monotonic_ns()
        self._clock = clock if clock is not None else (lambda: time.monotonic_ns() - started)
        self._nodes: dict[str, NodeAddress] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        self._timers: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery,
                    nodes: Mapping[str, NodeAddress]) -> dict[str, dict[str, str]]:
        if self._scope is not None:
            raise RuntimeError("this MessageRouter was already started")
        if not nodes:
            raise ValueError("a network needs at least one node")
        self._nodes = dict(nodes)
        for src in nodes:
            for dst in nodes:
                if src != dst:
                    rng = random.Random(f"{self.seed}/{src}->{dst}")
                    self._links[(src, dst)] = _Link(src, dst, rng)
        await nursery.start(self._run)
        # Nodes name each other by id: the "address" of a peer is its id.
        return {src: {dst: dst for dst in nodes if dst != src} for src in nodes}

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                if self._trace_path is not None:
                    self._trace_path.parent.mkdir(parents=True, exist_ok=True)
                    self._trace.open(self._trace_path)
                async with trio.open_nursery() as timers:
                    self._timers = timers
                    if self._trace.active:
                        timers.start_soon(self._trace.flush_periodically)
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                self._timers = None
                with contextlib.suppress(OSError):  # a full disk: what is written is whole
                    self._trace.write()
                self._trace.close()
                self._stopped.set()

    async def aclose(self) -> None:
        if self._scope is None:
            return
        self._scope.cancel()
        await self._stopped.wait()

    def listen_address(self, node: str) -> NodeAddress:
        return self._nodes[node]

    def wrap_command(self, node: str, argv: list[str]) -> list[str]:
        return list(argv)

    # -- routing ----------------------------------------------------------------------------

    def route(self, src: str, dst: str, line: bytes, kind: Any = None) -> None:
        """Carry one message ``line`` from ``src`` to ``dst`` under the link's faults.

        ``kind`` (the body's type) is only for the trace. Never blocks: delayed
        and held messages wait in timer tasks.
        """
        link = self._links.get((src, dst))
        if link is None:
            raise ValueError(f"no link {src}->{dst}; nodes are {sorted(self._nodes)}")
        counters = link.counters
        counters["frames"] += 1
        faults = link.faults
        if faults.clean and not self._trace.active and link.held is None:
            counters["delivered"] += 1
            self._deliver(src, dst, line)
            return
        rng = link.rng
        if faults.blocked or (faults.loss and rng.random() < faults.loss):
            counters["dropped"] += 1
            self.trace(link, kind, "drop")
            return
        copies = 1
        if faults.duplicate and rng.random() < faults.duplicate:
            copies = 2
            counters["duplicated"] += 1
            self.trace(link, kind, "duplicate")
        for _ in range(copies):
            if (faults.delay_mean or faults.delay_jitter) and self._timers is not None:
                low = max(0.0, faults.delay_mean - faults.delay_jitter)
                seconds = rng.uniform(low, faults.delay_mean + faults.delay_jitter)
                counters["delayed"] += 1
                self.trace(link, kind, "delay", delay=round(seconds, 6))
                self._timers.start_soon(self._deliver_later, link, line, kind, seconds)
            elif (link.held is None and faults.reorder and self._timers is not None
                  and rng.random() < faults.reorder):
                link.held = (line, kind)
                link.held_generation += 1
                counters["reordered"] += 1
                self.trace(link, kind, "reorder")
                self._timers.start_soon(self._release_held, link, link.held_generation)
            else:
                self.trace(link, kind, "deliver")
                self._deliver_now(link, line)

    def _deliver_now(self, link: _Link, line: bytes) -> None:
        link.counters["delivered"] += 1
        self._deliver(link.src, link.dst, line)
        if link.held is not None:  # the held message goes right after this one
            (held, _), link.held = link.held, None
            link.counters["delivered"] += 1
            self._deliver(link.src, link.dst, held)

    async def _deliver_later(self, link: _Link, line: bytes, kind: Any, seconds: float) -> None:
        await trio.sleep(seconds)
        if link.faults.blocked:
            link.counters["dropped"] += 1
            self.trace(link, kind, "drop")
            return
        self._deliver_now(link, line)

    async def _release_held(self, link: _Link, generation: int) -> None:
        await trio.sleep(self.reorder_hold)
        if link.held is None or link.held_generation != generation:
            return
        (held, kind), link.held = link.held, None
        if link.faults.blocked:
            link.counters["dropped"] += 1
            self.trace(link, kind, "drop")
        else:
            link.counters["delivered"] += 1
            self._deliver(link.src, link.dst, held)

    # -- tracing ----------------------------------------------------------------------------

    def trace(self, link: _Link, kind: Any, action: str, **extra: Any) -> None:
        if not self._trace.active:
            return
        self._trace.add({"time": self._clock(), "from": link.src, "to": link.dst, "type": kind,
                         "action": action, **extra})

    # -- faults -----------------------------------------------------------------------------


    def counters(self) -> dict[str, dict[str, int]]:
        return {link.name: dict(link.counters) for link in self._links.values()}
