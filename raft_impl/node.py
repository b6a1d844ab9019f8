"""The raft_impl node process: the Trio I/O shell around a sans-IO NodeHost.

Everything the node decides (durability ordering, group commit, early sends
and the durability reports to the core, client and admin answers, snapshots, the node-level
planted bugs) is in :class:`raft_impl.host.NodeHost`, which the simulator
hosts too. This module only does the I/O. Tasks of one node (all in one
nursery, so a signal or a fatal error ends them together):

- **ready loop** — ``host.process()`` after a wakeup, then one write per
  peer link. It waits one scheduling round first, so every request and ack
  that arrived with the same network poll lands in one Ready.
- **syncer** — group commit: takes what the host staged (``take_batch``),
  runs one ``write`` + ``fsync`` on the node's disk thread, reports it
  durable (``batch_durable``). While the fsync is in flight the other tasks
  keep stepping the host, so what arrives meanwhile shares the next fsync.
- **ticker** — ``host.tick()`` every ~10 ms with the node clock.
- **peer links** — one task per peer dialing its ``--peer`` address: a hello
  frame, then frames written straight to the socket while it takes them, else
  through a bounded queue (dropped when full or while the peer is unreachable;
  Raft retransmits). Reconnects with exponential backoff
  and jitter. Messages from peers arrive on connections accepted at
  ``--peer-listen`` (links are directed, so the harness can fault each one).
- **client server** — requests from ``--client-listen`` connections; answers
  are written straight to the socket, or, when it is full, left to a
  per-connection writer task, so a slow client never blocks the node.
- **snapshot writers** — a snapshot file the host asks for, written on the
  disk thread, then reported back (``snapshot_written``).

Node clock: ``clock = real + offset + (rate - 1) * (real - t_set)`` where
``real`` is the monotonic clock and ``t_set`` is when the ``clock`` admin op
was last received. So ``offset`` is a bump relative to real time and ``rate``
the speed from then on, without a jump; ``offset 0, rate 1`` is normal.

Requests, answers, error codes and stdout events: docs/DESIGN.md, sections 2 and 3.

Size: the tasks listed above share one nursery, one host and the node's sockets; each
is short, and keeping them in one file keeps this list the whole picture of the
process's I/O (the decisions are in ``host.py``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import random
import select
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from splitbrain_common.wire import (
    BUFFER_BUDGET,
    MAX_FRAME,
    STALL_TIMEOUT,
    BufferBudget,
    FrameDecoder,
    FrameError,
    encode_frame,
)

from .client import receive_raw
from .core import LEADER, RaftConfig, RaftCore
from .events import EventSink, EventStream
from .host import HostSettings, NodeHost
from .kv import KVStateMachine
from .messages import Message, MessageError
from .storage import Storage, write_snapshot_file
from .types import Snapshot

log = logging.getLogger("raft_impl.node")

TICK_INTERVAL = 0.01
#: Frames queued per peer before new ones are dropped (a down or paused peer).
PEER_QUEUE = 2048
BACKOFF_MIN = 0.02
BACKOFF_MAX = 1.0
#: Largest first frame a peer connection may send: the hello is tiny, and a
#: connection that has not said who it is must not buffer megabytes.
HELLO_MAX = 4096


@dataclass
class NodeConfig:
    node_id: str
    data_dir: Path
    peer_listen: tuple[str, int]
    client_listen: tuple[str, int]
    peers: dict[str, tuple[str, int]]
    read_mode: str = "read-index"
    bugs: frozenset[str] = frozenset()
    election_timeout: tuple[float, float] = (0.30, 0.60)
    snapshot_threshold: int = 10_000
    #: Entries per AppendEntries (RaftConfig.max_entries_per_append).
    max_append_entries: int = 256
    #: Unacknowledged appends per follower (RaftConfig.max_inflight_appends).
    max_inflight_appends: int = 64
    seed: int | None = None
    #: Bytes of partial frames all connections together may hold (wire.BufferBudget).
    buffer_budget: int = BUFFER_BUDGET
    #: Seconds a partial frame may wait for its next byte before its connection closes.
    stall_timeout: float = STALL_TIMEOUT


def emit(event: dict[str, Any]) -> None:
    """One JSON event a line on stdout, for the harness."""
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class NodeClock:
    """The node's (fault-injectable) clock; see the module docstring."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.rate = 1.0
        self._set_at = trio.current_time()

    def now(self) -> float:
        real = trio.current_time()
        return real + self.offset + (self.rate - 1.0) * (real - self._set_at)

    def set(self, offset: float, rate: float) -> None:
        self.offset = offset
        self.rate = rate
        self._set_at = trio.current_time()


class PeerLink:
    """The directed link from this node to one peer: bounded queue + dialing task.

    :meth:`send` collects frames; :meth:`flush` (after each round of Readies)
    writes them at once, and while the link is connected and nothing is queued
    straight to the (non-blocking) socket: no task switch per message.
    Whatever the socket does not take at once (a full buffer, a paused peer)
    goes to the queue, and the link's task sends it, in order, before any new
    frame may be written directly again.
    """

    def __init__(self, node_id: str, peer_id: str, address: tuple[str, int], rng: random.Random):
        self.node_id = node_id
        self.peer_id = peer_id
        self.address = address
        self._rng = rng
        self._queue: deque[bytes] = deque()
        self._cork: list[bytes] = []
        self._wake = trio.Event()
        #: Socket of the current connection while its pump is idle (direct writes allowed).
        self._fd: int | None = None
        #: Unsent rest of a frame written in part directly; it belongs to this connection.
        self._partial = b""
        self.connected = False
        self.dropped = 0

    def send(self, frame: bytes) -> None:
        """Queue a frame for the next :meth:`flush` (one write for a whole Ready's messages)."""
        self._cork.append(frame)

    def flush(self) -> None:
        """Write what :meth:`send` collected: straight to the socket if it takes it all."""
        cork = self._cork
        if not cork:
            return
        fd = self._fd
        if fd is not None:
            data = cork[0] if len(cork) == 1 else b"".join(cork)
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # broken: the pump finds out and reconnects
            if sent == len(data):
                cork.clear()
                return
            self._fd = None
            self._wake.set()
            if sent:
                # The rest of a frame written in part must follow on this connection.
                self._partial = data[sent:]
                cork.clear()
                return
        queue = self._queue
        for frame in cork:
            if len(queue) >= PEER_QUEUE:
                self.dropped += 1
            else:
                queue.append(frame)
        cork.clear()
        self._wake.set()

    def _drop_queued(self) -> None:
        self.dropped += len(self._queue)
        self._queue.clear()

    async def run(self) -> None:
        backoff = BACKOFF_MIN
        hello = encode_frame({"type": "hello", "from": self.node_id, "to": self.peer_id})
        while True:
            try:
                stream = await trio.open_tcp_stream(*self.address)
            except OSError:
                # Peer (or its relay) unreachable: what is queued is stale by the time it
                # comes back, and Raft resends what still matters.
                self._drop_queued()
                await trio.sleep(backoff * self._rng.uniform(0.5, 1.5))
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_MIN
            self.connected = True
            try:
                async with stream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_close, stream, nursery.cancel_scope)
                    await stream.send_all(hello)
                    await self._pump(stream)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                # except*: the nursery wraps a broken send in an ExceptionGroup.
                log.debug("link %s->%s lost: %s", self.node_id, self.peer_id, exc)
            finally:
                self.connected = False
            await trio.sleep(backoff * self._rng.uniform(0.5, 1.5))

    async def _pump(self, stream: trio.SocketStream) -> None:
        fd = stream.socket.fileno()
        queue = self._queue
        try:
            while True:
                if not queue and not self._partial:
                    self._wake = trio.Event()
                    self._fd = fd
                    await self._wake.wait()
                    self._fd = None
                frames = [self._partial]
                self._partial = b""
                while queue and len(frames) <= 256:
                    frames.append(queue.popleft())
                await stream.send_all(b"".join(frames))
        finally:
            # Before the stream closes: its descriptor number may be reused at once.
            self._fd = None
            self._partial = b""

    async def _watch_close(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        """The peer never talks on our dialed connection: any EOF means it went away."""
        try:
            while await stream.receive_some(4096):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()


class DiskThread:
    """One long-lived worker thread for a node's blocking disk work, jobs run in order.

    ``await run(fn, *args)`` hands ``fn`` to the thread and parks the calling
    task until it returns. Cheaper per call than ``trio.to_thread.run_sync``
    (no capacity limiter, thread naming or cancel-scope round trip), which
    matters because every group commit goes through here. The wait cannot be
    cancelled, like ``to_thread.run_sync``: a node shutting down waits for the
    write in flight before it closes the WAL. Jobs run one at a time in the
    order given, so disk operations never overlap.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._started = False

    def _work(self) -> None:
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            job()

    def stop(self) -> None:
        """End the thread with the node: it outlives no Node.run (structured lifetime).

        No job can be in flight here (``run`` waits for its job uninterruptibly), so
        the join returns at once."""
        if self._started:
            self._jobs.put(None)
            self._thread.join()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self._started:
            self._thread.start()
            self._started = True
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()
        result: list[Any] = []

        def job() -> None:
            try:
                result.append((True, fn(*args)))
            except BaseException as exc:  # handed to the waiting task, re-raised there
                result.append((False, exc))
            token.run_sync_soon(trio.lowlevel.reschedule, task)

        self._jobs.put(job)
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        ok, value = result[0]
        if not ok:
            raise value
        return value


class Node:
    """One raft_impl node process: the I/O shell around a :class:`~raft_impl.host.NodeHost`.

    The host decides everything (what to stage, send, apply, answer); this
    shell owns the sockets, the WAL's disk thread, the clock and the tasks.
    ``events`` receives what the node pushes to the harness (raft_impl/events.py);
    by default its stdout.
    """

    def __init__(self, config: NodeConfig, events: EventSink | None = None) -> None:
        self.config = config
        self._stream = EventStream() if events is None else None
        self.events: EventSink = events if events is not None else self._stream  # type: ignore[assignment]
        self.id = config.node_id
        self.bugs = config.bugs
        self.rng = random.Random(config.seed)
        self.storage = Storage(config.data_dir, fsync="ack-before-fsync" not in self.bugs)
        self.clock: NodeClock | None = None
        self.host: NodeHost | None = None
        self.links: dict[str, PeerLink] = {}
        self._wake = trio.Event()
        # Group commit: the syncer takes a batch when the host staged something.
        self._sync_wanted = trio.Event()
        self._disk = DiskThread(f"wal-{self.id}")
        self._client_poller: _ClientPoller | None = None
        #: What the peer and client connections' partial frames may hold together.
        self.buffers = BufferBudget(config.buffer_budget)
        self._nursery: trio.Nursery | None = None
        #: Set once ``ready`` is out: connections accepted before wait for it, so that
        #: ``ready`` is the first event of every incarnation (docs/node-events.md). A
        #: restarted node's peers redial the moment its peer port listens, and a leader's
        #: first append would otherwise print a ``role`` before ``ready``.
        self._announced = trio.Event()
        self.peer_address: tuple[str, int] | None = None
        self.client_address: tuple[str, int] | None = None

    @property
    def core(self) -> RaftCore | None:
        return None if self.host is None else self.host.core

    @property
    def kv(self) -> KVStateMachine | None:
        return None if self.host is None else self.host.kv

    # ------------------------------------------------------------------ startup

    def _recover(self) -> None:
        recovered = self.storage.open()
        if recovered.torn_tail is not None:
            torn = recovered.torn_tail
            log.warning(
                "WAL torn tail: cut %d bytes at offset %d of %s (%s)",
                torn.dropped_bytes, torn.offset, torn.path, torn.reason,
            )
        for warning in recovered.warnings:
            log.warning("WAL: %s", warning)
        hs = recovered.hard_state
        settings = HostSettings(
            RaftConfig(
                election_timeout_min=self.config.election_timeout[0],
                election_timeout_max=self.config.election_timeout[1],
                heartbeat_interval=min(0.05, self.config.election_timeout[0] / 4),
                snapshot_threshold=self.config.snapshot_threshold,
                max_entries_per_append=self.config.max_append_entries,
                max_inflight_appends=self.config.max_inflight_appends,
                read_mode=self.config.read_mode,
                bugs=self.bugs,
            ),
            read_mode=self.config.read_mode,
            snapshot_threshold=self.config.snapshot_threshold,
        )
        assert self.clock is not None
        self.host = NodeHost(self.id, [self.id, *self.config.peers], settings, self.rng,
                             self.storage, self, self.events, self.clock)
        self.host.recover(hs, recovered.snapshot, recovered.entries)
        log.info(
            "%s recovered: term %d vote %s commit %d, snapshot %d, %d entries",
            self.id, hs.term, hs.vote, hs.commit,
            recovered.snapshot.meta.index if recovered.snapshot else 0, len(recovered.entries),
        )

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.clock = NodeClock()
        self._recover()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._stream is not None:
                    self._stream.open()
                    nursery.start_soon(self._stream.run)
                if hasattr(select, "epoll"):
                    self._client_poller = _ClientPoller(
                        self._handle_request, self._kick, self.buffers,
                        self.config.stall_timeout,
                    )
                    nursery.start_soon(self._client_poller.run)
                peer_host, peer_port = self.config.peer_listen
                client_host, client_port = self.config.client_listen
                peer_listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, host=peer_host),
                    self._serve_peer, peer_port,
                )
                client_listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, host=client_host),
                    self._serve_client, client_port,
                )
                self.peer_address = peer_listeners[0].socket.getsockname()[:2]
                self.client_address = client_listeners[0].socket.getsockname()[:2]
                # Backoff jitter draws from its own RNG so a --seed keeps the core's
                # election timeouts reproducible.
                jitter = random.Random()
                for peer_id, address in self.config.peers.items():
                    link = PeerLink(self.id, peer_id, address, jitter)
                    self.links[peer_id] = link
                    nursery.start_soon(link.run)
                nursery.start_soon(self._ready_loop)
                nursery.start_soon(self._syncer)
                nursery.start_soon(self._ticker)
                self.events.emit({
                    "event": "ready",
                    "id": self.id,
                    "peer": "{}:{}".format(*self.peer_address),
                    "client": "{}:{}".format(*self.client_address),
                })
                self._announced.set()
                task_status.started()
        finally:
            if self.host is not None:
                self.host.push_applied()
            if self._stream is not None:
                self._stream.close()
            self._disk.stop()
            if self._client_poller is not None:
                self._client_poller.close()
            self.storage.close()

    # ------------------------------------------------------------------ HostIO

    def send(self, m: Message) -> None:
        """Encode ``m`` for its link; it leaves at the next :meth:`_flush_links`."""
        link = self.links.get(m.to)
        if link is None:
            return
        try:
            link.send(encode_frame(m.to_wire()))
        except FrameError as exc:
            # E.g. a snapshot beyond the frame limit: dropping it is safe (the peer
            # stays behind and the leader retries), crashing the node is not.
            log.error("cannot send %s to %s: %s", m.wire_type, m.to, exc)

    def want_sync(self) -> None:
        self._sync_wanted.set()

    def write_snapshot(self, snapshot: Snapshot, installed: bool) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._write_snapshot, snapshot, installed)

    async def _write_snapshot(self, snapshot: Snapshot, installed: bool) -> None:
        """Write a snapshot file on the disk thread (a leader's install holds the host's
        Readies until it is durable; one of our own compacts the log after)."""
        await self._disk.run(write_snapshot_file, self.storage.data_dir, snapshot)
        assert self.host is not None
        self.host.snapshot_written(snapshot, installed)
        self._flush_links()
        self._kick()

    # ------------------------------------------------------------------ core driving

    def _kick(self) -> None:
        self._wake.set()

    async def _ticker(self) -> None:
        host = self.host
        assert host is not None
        while True:
            await trio.sleep(TICK_INTERVAL)
            if host.tick():  # most ticks change nothing: no wakeup of the loop for them
                self._kick()

    async def _ready_loop(self) -> None:
        host = self.host
        assert host is not None
        while True:
            await self._wake.wait()
            # One scheduling round first: every task that became runnable with the same
            # network poll (other clients' requests, peers' acks) gets to step the core,
            # so all of it lands in one Ready instead of one Ready each.
            await trio.lowlevel.checkpoint()
            self._wake = trio.Event()
            host.process()
            self._flush_links()

    def _handle_ready_now(self) -> None:
        """Handle the core's output in the calling task, without a hop to the ready loop.

        For a follower's peer reader: its leader's messages are the only source of
        work, so there is nothing to batch by waiting a scheduling round.
        """
        assert self.host is not None
        self.host.process()
        self._flush_links()

    def _flush_links(self) -> None:
        """End of a round of work: peers' frames leave, and what was applied is pushed."""
        for link in self.links.values():
            link.flush()
        if self.host is not None:
            self.host.push_applied()

    async def _syncer(self) -> None:
        """Group commit: one durable write for everything staged since the last one."""
        host = self.host
        assert host is not None
        storage = self.storage
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted = trio.Event()
            taken = host.take_batch()
            if taken is None:
                continue
            await self._disk.run(storage.write_batch, taken.batch)
            host.batch_durable(taken)
            self._flush_links()
            if taken.batch.compact:
                await self._disk.run(storage.compact)
            if host.has_ready():
                self._kick()

    # ------------------------------------------------------------------ peers

    async def _serve_peer(self, stream: trio.SocketStream) -> None:
        await self._announced.wait()
        host = self.host
        assert host is not None
        core = host.core
        assert core is not None
        decoder = FrameDecoder(HELLO_MAX, self.buffers)
        sender: str | None = None
        try:
            async with stream:
                try:
                    while True:
                        try:
                            data = await self._receive(stream, decoder)
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            return
                        if not data:
                            return
                        decoder.feed(data)
                        for wire in decoder.messages():
                            if sender is None:
                                sender = self._check_hello(wire)
                                decoder.max_frame = MAX_FRAME
                                continue
                            host.step(Message.from_wire(wire))
                        if core.role == LEADER:
                            self._kick()  # acks of several followers may share one Ready
                        else:
                            self._handle_ready_now()
                finally:
                    decoder.close()  # before the stream closes: its bytes are free again
        except (FrameError, MessageError, _BadHello) as exc:
            log.warning("closing peer connection from %s: %s", sender or "?", exc)

    async def _receive(self, stream: trio.SocketStream, decoder: FrameDecoder) -> bytes:
        """The next bytes of a connection read by its own task; FrameError when the
        partial frame it holds gets no byte within the stall timeout."""
        if not decoder.partial:
            return await receive_raw(stream)
        timeout = self.config.stall_timeout
        with trio.move_on_after(timeout):
            return await receive_raw(stream)
        raise FrameError(f"no byte of a partial frame for {timeout:g} s")

    def _check_hello(self, wire: dict[str, Any]) -> str:
        if wire.get("type") != "hello":
            raise _BadHello(f"expected a hello frame first, got type {wire.get('type')!r}")
        sender = wire.get("from")
        if sender not in self.config.peers:
            raise _BadHello(f"hello from unknown node {sender!r}")
        if wire.get("to") != self.id:
            raise _BadHello(f"hello addressed to {wire.get('to')!r}, I am {self.id}")
        return sender

    # ------------------------------------------------------------------ clients

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        await self._announced.wait()
        peer = _peer_name(stream)
        async with stream, trio.open_nursery() as nursery:
            connection = _ClientConnection(stream, nursery.cancel_scope, self.buffers, peer)
            nursery.start_soon(connection.write_backlog)
            try:
                if self._client_poller is not None:
                    await self._client_poller.serve(connection, peer)
                else:
                    await self._read_client(connection, peer)
            finally:
                connection.close()
                nursery.cancel_scope.cancel()

    async def _read_client(self, connection: _ClientConnection, peer: str) -> None:
        """Requests of one connection, read by its own task (where there is no epoll)."""
        reply = connection.reply
        decoder = FrameDecoder(MAX_FRAME, self.buffers)
        try:
            while True:
                data = await self._receive(connection.stream, decoder)
                if not data:
                    return
                decoder.feed(data)
                for request in decoder.messages():
                    self._handle_request(request, reply)
                self._kick()
        except FrameError as exc:
            log.warning("closing client connection %s: %s", peer, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            decoder.close()

    def _handle_request(self, request: dict[str, Any], reply: Callable[[dict], None]) -> None:
        assert self.host is not None
        self.host.request(request, reply)


class _ClientPoller:
    """Reads the requests of all client connections of a node in one task (Linux).

    The connections' sockets sit in a private epoll set, and the task waits for
    that set to become readable: a round of requests from many clients costs
    one wakeup and one ``epoll_wait`` instead of a task switch and two
    ``epoll_ctl`` calls per request. Each connection's handler task only waits
    for its connection to end (:meth:`serve`).

    The decoders share the node's buffer budget, and a connection whose
    partial frame gets no byte within ``stall_timeout`` is closed: the task
    wakes at least that often while any frame is partial to look.
    """

    def __init__(
        self, handle: Callable[[dict[str, Any], Callable[[dict], None]], None],
        kick: Callable[[], None], budget: BufferBudget, stall_timeout: float,
    ) -> None:
        self._epoll = select.epoll()
        self._handle = handle
        self._kick = kick
        self._budget = budget
        self._stall_timeout = stall_timeout
        #: fd -> (connection, decoder, peer name, event set when the connection ends)
        self._connections: dict[int, tuple[_ClientConnection, FrameDecoder, str, trio.Event]] = {}
        #: fd -> when the last byte came, for connections holding a partial frame.
        self._partial: dict[int, float] = {}

    def close(self) -> None:
        self._epoll.close()

    async def serve(self, connection: _ClientConnection, peer: str) -> None:
        """Read ``connection`` until it ends (end of stream, an error, a bad frame)."""
        fd = connection.stream.socket.fileno()
        done = trio.Event()
        self._connections[fd] = (connection, FrameDecoder(MAX_FRAME, self._budget), peer, done)
        self._epoll.register(fd, select.EPOLLIN)
        try:
            await done.wait()
        finally:
            self._forget(fd)

    def _forget(self, fd: int) -> None:
        entry = self._connections.pop(fd, None)
        self._partial.pop(fd, None)
        if entry is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            entry[1].close()
            entry[3].set()

    async def run(self) -> None:
        epoll = self._epoll
        connections = self._connections
        partial = self._partial
        while True:
            if partial:
                with trio.move_on_after(self._stall_timeout / 2):
                    await trio.lowlevel.wait_readable(epoll.fileno())
                self._close_stalled()
            else:
                await trio.lowlevel.wait_readable(epoll.fileno())
            for fd, _events in epoll.poll(0):
                entry = connections.get(fd)
                if entry is not None:
                    self._read(fd, *entry)
            self._kick()

    def _close_stalled(self) -> None:
        oldest = trio.current_time() - self._stall_timeout
        for fd, last in list(self._partial.items()):
            if last <= oldest:
                entry = self._connections.get(fd)
                peer = entry[2] if entry is not None else "?"
                log.warning("closing client connection %s: no byte of a partial frame "
                            "for %g s", peer, self._stall_timeout)
                self._forget(fd)

    def _read(
        self, fd: int, connection: _ClientConnection, decoder: FrameDecoder, peer: str,
        _done: trio.Event,
    ) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._forget(fd)
            return
        handle = self._handle
        reply = connection.reply
        try:
            decoder.feed(data)
            for request in decoder.messages():
                handle(request, reply)
        except FrameError as exc:
            log.warning("closing client connection %s: %s", peer, exc)
            self._forget(fd)
            return
        if decoder.partial:
            self._partial[fd] = trio.current_time()
        else:
            self._partial.pop(fd, None)


class _ClientConnection:
    """Answers to one client connection, in order.

    An answer is written straight to the (non-blocking) socket when nothing is
    waiting before it: no task switch per answer. What the socket does not take
    at once waits in a backlog that :meth:`write_backlog` sends, and until that
    is drained later answers queue behind it. A client that went away leaves its
    answers nowhere to go. The backlog counts against the node's buffer budget
    (like partial frames): a client that sends requests but does not read the
    answers is closed when its backlog would exceed what is left of it.
    """

    def __init__(self, stream: trio.SocketStream, scope: trio.CancelScope,
                 budget: BufferBudget, peer: str = "?") -> None:
        self.stream = stream
        self._scope = scope
        self._budget = budget
        self._peer = peer
        #: Bytes of the backlog (and of the write in flight) charged to the budget.
        self._charged = 0
        #: The socket while direct writes are allowed (open, backlog empty and idle).
        self._fd: int | None = stream.socket.fileno()
        self._backlog: list[bytes] = []
        self._wake = trio.Event()
        self._closed = False

    def reply(self, answer: dict[str, Any]) -> None:
        if self._closed:
            return
        frame = _encode_answer(answer)
        fd = self._fd
        if fd is not None:
            try:
                sent = os.write(fd, frame)
            except BlockingIOError:
                sent = 0
            except OSError:  # the client is gone
                self.close()
                self._scope.cancel()
                return
            if sent == len(frame):
                return
            self._fd = None
            frame = frame[sent:]
        budget = self._budget
        if budget.used + len(frame) > budget.limit:
            budget.refusals += 1
            log.warning("closing client connection %s: its unread answers would exceed the "
                        "buffer budget of %d bytes", self._peer, budget.limit)
            self.close()
            self._scope.cancel()
            return
        budget.used += len(frame)
        self._charged += len(frame)
        self._backlog.append(frame)
        self._wake.set()

    def close(self) -> None:
        """No more writes: call before the stream closes (its descriptor may be reused)."""
        self._closed = True
        self._fd = None
        self._backlog.clear()
        self._budget.used -= self._charged
        self._charged = 0

    async def write_backlog(self) -> None:
        fd = self.stream.socket.fileno()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._backlog:
                    data = b"".join(self._backlog)
                    self._backlog.clear()
                    await self.stream.send_all(data)
                    if not self._closed:
                        self._budget.used -= len(data)
                        self._charged -= len(data)
                if self._closed:
                    return
                self._fd = fd
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close()
            self._scope.cancel()


class _BadHello(Exception):
    pass


def _encode_answer(answer: dict[str, Any]) -> bytes:
    try:
        return encode_frame(answer)
    except (FrameError, TypeError, ValueError) as exc:
        return encode_frame({"id": answer.get("id"), "ok": False, "error": "answer-too-large",
                             "message": str(exc), "definite": True})


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


async def run_node(config: NodeConfig) -> int:
    """Run a node until SIGTERM/SIGINT; returns the process exit code."""
    node = Node(config)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    log.info("%s: signal %d, shutting down", config.node_id, signum)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch_signals)
            await node.run()
    return 0


__all__ = ["Node", "NodeConfig", "PeerLink", "emit", "run_node"]
