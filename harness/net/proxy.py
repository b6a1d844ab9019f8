"""The default network backend: one frame-aware Trio relay per directed link.

Raft peers in splitbrain send only on connections they dial, so the link
A -> B is exactly the connections A opens to the address it was given for B.
For every ordered pair the proxy listens on ``127.0.0.1:<ephemeral>``, hands
that address to A as B's ``--peer`` address, and for each connection A opens it
dials B's real peer port and forwards whole frames (length-prefixed msgpack,
``splitbrain_common.wire``). Knowing frame boundaries is what lets it drop, delay,
duplicate and reorder single messages instead of corrupting a byte stream.

Fault semantics, per link:

* **partition** (blocked): frames are dropped silently; the TCP connections
  stay open. A real partition is silence, not a reset: the sender learns
  nothing until its own time-outs fire, and it does not fall into a reconnect
  loop that would make heal slow and noisy. Heal is instant: the next frame
  goes through. Frames still waiting out a delay are dropped when they come
  due during a partition (they were "in flight" when the cable was cut).
* **loss** p: each frame dropped with probability p.
* **delay** mean, jitter: each frame held for a uniform draw from
  [mean - jitter, mean + jitter] (clipped at 0) in its own task, so a later
  frame with a shorter draw overtakes it (delay implies some reordering).
* **duplicate** p: the frame is delivered twice.
* **reorder** p: the frame is held back and delivered right after the next
  one (or after ``reorder_hold`` seconds if no next frame comes).

The first frame of a connection (the ``hello``) is always forwarded at once:
it is connection setup, and a connection without it is useless to the
receiver. If B is down the relay closes A's connection at once (A sees what a
refused connect would look like and retries). Anything B writes back on the
connection is read and discarded: by protocol B never answers on a connection
it accepted, and forwarding it would open a path that faults do not cover.

PySyncObj (``framing=PYSYNCOBJ``, ``harness.net.framing``) is the exception:
one connection per pair of nodes, dialed by the node with the larger address,
carries both directions. Its node is told to dial the relay of A -> B for B
(and to know B by B's own address), and the relay cuts both byte streams at
PySyncObj's length prefixes: what A writes goes through link A -> B, what B
writes back through link B -> A, each with its own faults, counters and
trace. A connection is whole or gone: when either direction ends, both close.

The hot path does not decode messages: with no fault on a link and no trace,
the frames of a read are forwarded in one write, sent by the reading task
itself (no queue, no writer task: every task switch adds latency to Raft's
round trips). Decoding happens only for the trace (``RUN_DIR/messages.jsonl``:
time in ns since run start, from, to, type, term, action — deliver, drop,
duplicate, delay with ``delay`` seconds, or reorder), and then only of the
message header for large frames. Random draws come from one RNG per link seeded from the run
seed and the link name, so a run's fault draws depend only on the seed and the
order of messages on that link. The trace's format: docs/DESIGN.md, "Store layout".
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from harness.net.base import NodeAddress, link_name
from harness.net.framing import HEADER_PEEK_FROM as HEADER_PEEK_FROM  # tests import it here
from harness.net.framing import SPLITBRAIN, Framing, splitbrain_describe
from harness.net.links import LinkFaultControl, LinkFaults, TraceBuffer
from splitbrain_common.wire import (
    BUFFER_BUDGET,
    MAX_FRAME,
    STALL_TIMEOUT,
    BufferBudget,
    FrameDecoder,
    FrameError,
)

RECEIVE_SIZE = 65536
COUNTER_NAMES = ("connections", "refused", "frames", "bytes", "delivered", "dropped",
                 "duplicated", "delayed", "reordered", "bad_frames", "reverse_bytes",
                 "over_budget", "stalled")


def message_header(frame: bytes) -> tuple[Any, Any]:
    """(type, term) of a raw splitbrain frame, for the trace (``harness.net.framing``)."""
    described = splitbrain_describe(frame)
    return described["type"], described["term"]


@dataclass
class _Link:
    src: str
    dst: str
    target: NodeAddress
    rng: random.Random
    faults: LinkFaults = field(default_factory=LinkFaults)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    port: int = 0
    #: Set (and replaced) after counters change, only while someone waits on it,
    #: so the hot path pays one integer test.
    activity: trio.Event = field(default_factory=trio.Event)
    watchers: int = 0

    @property
    def name(self) -> str:
        return link_name(self.src, self.dst)

    def notify(self) -> None:
        if self.watchers:
            activity, self.activity = self.activity, trio.Event()
            activity.set()


class _Connection:
    """One relayed connection src -> relay -> dst: decides the fate of each frame."""

    def __init__(self, proxy: ProxyNetwork, link: _Link, destination: trio.SocketStream,
                 done: trio.CancelScope, timers: trio.Nursery) -> None:
        self.proxy, self.link, self.destination = proxy, link, destination
        self.done, self.timers = done, timers
        # The reader and delayed-delivery tasks share one stream, which takes one
        # sender at a time; a FIFO lock keeps their order. No writer task and no
        # queue: the uncontended path costs no extra task switch (latency matters
        # more than anything for Raft round trips).
        self.lock = trio.StrictFIFOLock()
        self.held: bytes | None = None
        self.held_generation = 0

    async def send(self, data: bytes) -> None:
        try:
            try:
                self.lock.acquire_nowait()
            except trio.WouldBlock:
                await self.lock.acquire()
            try:
                await self.destination.send_all(data)
            finally:
                self.lock.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.done.cancel()  # the destination went away: end the relayed connection

    async def deliver(self, frame: bytes) -> None:
        if self.held is not None:  # a frame held for reordering goes right after this one
            held, self.held = self.held, None
            await self.send(frame + held)
            self.link.counters["delivered"] += 2
        else:
            await self.send(frame)
            self.link.counters["delivered"] += 1

    async def frame(self, frame: bytes) -> None:
        link, faults, counters, rng = self.link, self.link.faults, self.link.counters, \
            self.link.rng
        counters["frames"] += 1
        if faults.blocked or (faults.loss and rng.random() < faults.loss):
            counters["dropped"] += 1
            self.proxy.trace(link, frame, "drop")
            return
        copies = 1
        if faults.duplicate and rng.random() < faults.duplicate:
            copies = 2
            counters["duplicated"] += 1
            self.proxy.trace(link, frame, "duplicate")
        for _ in range(copies):
            if faults.delay_mean or faults.delay_jitter:
                low = max(0.0, faults.delay_mean - faults.delay_jitter)
                seconds = rng.uniform(low, faults.delay_mean + faults.delay_jitter)
                counters["delayed"] += 1
                self.proxy.trace(link, frame, "delay", delay=round(seconds, 6))
                self.timers.start_soon(self._deliver_later, frame, seconds)
            elif self.held is None and faults.reorder and rng.random() < faults.reorder:
                self.held = frame
                self.held_generation += 1
                counters["reordered"] += 1
                self.proxy.trace(link, frame, "reorder")
                self.timers.start_soon(self._release_held, self.held_generation)
            else:
                self.proxy.trace(link, frame, "deliver")
                await self.deliver(frame)

    async def _deliver_later(self, frame: bytes, seconds: float) -> None:
        await trio.sleep(seconds)
        if self.link.faults.blocked:
            self.link.counters["dropped"] += 1
            self.proxy.trace(self.link, frame, "drop")
            self.link.notify()
            return
        await self.deliver(frame)
        self.link.notify()

    async def _release_held(self, generation: int) -> None:
        await trio.sleep(self.proxy.reorder_hold)
        if self.held is not None and self.held_generation == generation:
            held, self.held = self.held, None
            if self.link.faults.blocked:  # cut while it waited: lost like any frame in flight
                self.link.counters["dropped"] += 1
                self.proxy.trace(self.link, held, "drop")
            else:
                await self.send(held)
                self.link.counters["delivered"] += 1
            self.link.notify()

    async def flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            await self.send(held)
            self.link.counters["delivered"] += 1


class ProxyNetwork(LinkFaultControl):
    """Frame-aware relays on every directed link (see module doc). Implements ``Network``."""

    @staticmethod
    def unsupported_faults() -> dict[str, str]:
        """Every link fault works here, one-way cuts too (each directed link is its own
        relay), so nothing is refused (see ``harness.net.unsupported_faults``)."""
        return {}

    def __init__(self, seed: int = 0, *, rng: random.Random | None = None,
                 trace_path: str | Path | None = None, clock: Callable[[], int] | None = None,
                 host: str = "127.0.0.1", reorder_hold: float = 0.05,
                 buffer_budget: int = BUFFER_BUDGET, stall_timeout: float = STALL_TIMEOUT,
                 framing: Framing = SPLITBRAIN) -> None:
        """``seed`` (or a seeded ``rng`` to draw one from) seeds every link's fault draws.

        ``clock`` gives trace times in ns since the run began (default: since construction).
        Like a node, the relays bound what partial frames hold: ``buffer_budget`` bytes
        over all connections (the one that would exceed it is closed, counted
        ``over_budget``), and a connection whose partial frame gets no byte for
        ``stall_timeout`` s is closed (counted ``stalled``). ``framing`` is the peers'
        (``harness.net.framing``): splitbrain's frames, or PySyncObj's, whose one
        connection per pair carries both directions (each through its own link).
        """
        if not host.startswith("127."):
            raise ValueError(f"relays listen on loopback only, not {host!r}")
        self.seed = rng.getrandbits(64) if rng is not None else seed
        self.host = host
        self.reorder_hold = reorder_hold
        self.framing = framing
        self.buffers = BufferBudget(buffer_budget)
        self.stall_timeout = stall_timeout
        self._trace_path = Path(trace_path) if trace_path is not None else None
        self._trace = TraceBuffer()
        started = time.monotonic_ns()
        self._clock = clock if clock is not None else (lambda: time.monotonic_ns() - started)
        self._nodes: dict[str, NodeAddress] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery,
                    nodes: Mapping[str, NodeAddress]) -> dict[str, dict[str, str]]:
        if self._scope is not None:
            raise RuntimeError("this ProxyNetwork was already started")
        if len(nodes) < 1:
            raise ValueError("a network needs at least one node")
        return await nursery.start(self._run, dict(nodes))

    async def _run(self, nodes: dict[str, NodeAddress],
                   task_status: trio.TaskStatus[dict[str, dict[str, str]]]) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                if self._trace_path is not None:
                    self._trace_path.parent.mkdir(parents=True, exist_ok=True)
                    self._trace.open(self._trace_path)
                async with trio.open_nursery() as relays:
                    self._nodes = nodes
                    peers: dict[str, dict[str, str]] = {node: {} for node in nodes}
                    for src in nodes:
                        for dst, target in nodes.items():
                            if src == dst:
                                continue
                            rng = random.Random(f"{self.seed}/{src}->{dst}")
                            link = _Link(src, dst, target, rng)
                            listeners = await trio.open_tcp_listeners(0, host=self.host)
                            link.port = listeners[0].socket.getsockname()[1]
                            self._links[(src, dst)] = link
                            await relays.start(
                                trio.serve_listeners,
                                functools.partial(self._relay, link),
                                listeners,
                            )
                            peers[src][dst] = f"{self.host}:{link.port}"
                    if self._trace.active:
                        relays.start_soon(self._trace.flush_periodically)
                    task_status.started(peers)
            finally:
                with contextlib.suppress(OSError):  # a full disk: what is written is whole
                    self._trace.write()
                self._trace.close()
                self._stopped.set()

    async def aclose(self) -> None:
        """Close every relay and connection; returns when they are gone."""
        if self._scope is None:
            return
        self._scope.cancel()
        await self._stopped.wait()

    def listen_address(self, node: str) -> NodeAddress:
        return self._nodes[node]

    def wrap_command(self, node: str, argv: list[str]) -> list[str]:
        return list(argv)

    def relay_port(self, src: str, dst: str) -> int:
        return self._links[(src, dst)].port

    async def wait_counters(self, src: str, dst: str,
                            predicate: Callable[[dict[str, int]], bool]) -> dict[str, int]:
        """Wait until the link's counters satisfy ``predicate`` (tests, benchmarks, harness)."""
        link = self._links[(src, dst)]
        link.watchers += 1
        try:
            while not predicate(link.counters):
                await link.activity.wait()
        finally:
            link.watchers -= 1
        return dict(link.counters)

    # -- relaying ---------------------------------------------------------------------------

    async def _relay(self, link: _Link, source: trio.SocketStream) -> None:
        link.counters["connections"] += 1
        async with source:
            try:
                destination = await trio.open_tcp_stream(link.target.host, link.target.peer_port)
            except OSError:
                link.counters["refused"] += 1
                return
            async with destination, trio.open_nursery() as connection:
                if self.framing.duplex:  # what B writes back is B -> A's traffic
                    back = self._links[(link.dst, link.src)]
                    back.counters["connections"] += 1
                    connection.start_soon(self._relay_direction, back, destination, source,
                                          connection.cancel_scope, False)
                else:
                    connection.start_soon(self._discard_reverse, link, destination,
                                          connection.cancel_scope)
                await self._relay_direction(link, source, destination, connection.cancel_scope,
                                            self.framing.hello)

    async def _relay_direction(self, link: _Link, source: trio.SocketStream,
                               destination: trio.SocketStream, done: trio.CancelScope,
                               hello: bool) -> None:
        """Relay one direction of a connection, frame by frame, under ``link``'s faults;
        when it ends (closed, broken, stalled) the whole connection ends."""
        async with trio.open_nursery() as timers:
            relayed = _Connection(self, link, destination, done, timers)
            await self._read(link, source, relayed, hello)
        await relayed.flush()  # delayed frames went out as the timers ended
        done.cancel()

    async def _read(self, link: _Link, source: trio.SocketStream,
                    relayed: _Connection, hello: bool = True) -> None:
        decoder = FrameDecoder(MAX_FRAME, self.buffers, header=self.framing.header)
        try:
            await self._read_frames(link, source, relayed, decoder, hello)
        finally:
            decoder.close()

    async def _read_frames(self, link: _Link, source: trio.SocketStream,
                           relayed: _Connection, decoder: FrameDecoder, hello: bool) -> None:
        first = hello
        counters = link.counters
        while True:
            try:
                if decoder.partial:
                    with trio.move_on_after(self.stall_timeout) as waited:
                        data = await source.receive_some(RECEIVE_SIZE)
                    if waited.cancelled_caught:
                        counters["stalled"] += 1
                        return  # a sender stopped mid-frame must not hold the budget
                else:
                    data = await source.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            counters["bytes"] += len(data)
            try:
                decoder.feed(data)
            except FrameError:
                counters["over_budget"] += 1
                return
            try:
                frames = list(decoder.frames_raw())
            except FrameError:
                counters["bad_frames"] += 1
                return  # like a node: an undecodable stream closes the connection
            if not frames:
                continue
            try:
                await self._forward(link, frames, first, relayed)
            finally:
                link.notify()
            first = False

    async def _forward(self, link: _Link, frames: list[bytes], first: bool,
                       relayed: _Connection) -> None:
        counters = link.counters
        if first:
            hello = frames.pop(0)
            self.trace(link, hello, "deliver")
            await relayed.send(hello)
            if not frames:
                return
        if link.faults.clean and not self._trace.active and relayed.held is None:
            counters["frames"] += len(frames)
            counters["delivered"] += len(frames)
            await relayed.send(b"".join(frames) if len(frames) > 1 else frames[0])
        else:
            for frame in frames:
                await relayed.frame(frame)

    @staticmethod
    async def _discard_reverse(link: _Link, destination: trio.SocketStream,
                               done: trio.CancelScope) -> None:
        """Watch for the destination closing; drop anything it sends (see module doc)."""
        try:
            while data := await destination.receive_some(RECEIVE_SIZE):
                link.counters["reverse_bytes"] += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()

    # -- tracing ----------------------------------------------------------------------------

    def trace(self, link: _Link, frame: bytes, action: str, **extra: Any) -> None:
        if not self._trace.active:
            return
        self._trace.add({"time": self._clock(), "from": link.src, "to": link.dst,
                         **self.framing.describe(frame), "action": action, **extra})

    # -- faults -----------------------------------------------------------------------------


    def counters(self) -> dict[str, dict[str, int]]:
        return {link.name: dict(link.counters) for link in self._links.values()}
