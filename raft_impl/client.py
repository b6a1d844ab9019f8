"""A small Trio client for the raft_impl wire protocol.

Used by the harness's raft_impl adapter, the benchmarks and the tests. One
:class:`NodeClient` is one TCP connection to a node's client port; requests
may be pipelined on it (answers are matched by ``id``), each with its own
timeout (``within`` seconds). A background reader task lives in the nursery of
:func:`open_client`, so the connection and the task are always cleaned up.

    async with open_client("127.0.0.1", 8001) as client:
        answer = await client.request({"op": "write", "key": "k", "value": 1,
                                       "client": "c1", "seq": 1}, within=1.0)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from splitbrain_common.wire import MAX_FRAME, FrameDecoder, FrameError, encode_frame


async def receive_raw(stream: trio.SocketStream, max_bytes: int = 65536) -> bytes:
    """``stream.receive_some`` for a task that is the stream's only reader, made cheaper.

    Waits for readability first and then reads once, where ``receive_some``
    tries a read first: on a request/answer connection that first read almost
    always fails with EAGAIN (a syscall and an exception for nothing). Returns
    ``b""`` at end of stream; raises ``OSError`` when the connection breaks.
    """
    fd = stream.socket.fileno()
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            return os.read(fd, max_bytes)
        except BlockingIOError:  # a spurious wakeup
            continue


class RequestTimeout(Exception):
    """No answer within the timeout: the operation's outcome is unknown."""


class ConnectionLost(Exception):
    """The connection closed before the answer came: the outcome is unknown."""


class NodeClient:
    """Pipelined request/response over one connection. Create with :func:`open_client`."""

    def __init__(self, stream: trio.SocketStream, max_frame: int = MAX_FRAME) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno()
        self._decoder = FrameDecoder(max_frame)
        self._ids = itertools.count(1)
        #: Request id -> [parked task or None, answered, answer]; see :meth:`request`.
        self._waiting: dict[Any, list[Any]] = {}
        self._send_lock = trio.Lock()
        self._closed: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def next_id(self) -> int:
        return next(self._ids)

    async def request(self, message: dict[str, Any], within: float) -> dict[str, Any]:
        """Send ``message`` (an ``id`` is added unless present) and wait for its answer.

        Raises :class:`RequestTimeout` or :class:`ConnectionLost` when the
        outcome is unknown.
        """
        if self._closed is not None:
            raise ConnectionLost(f"connection closed: {self._closed}")
        if "id" not in message:
            message = {"id": self.next_id(), **message}
        request_id = message["id"]
        if request_id in self._waiting:
            raise ValueError(f"request id {request_id!r} is already in flight")
        # [task parked for the answer (only while it is), done, answer or None if lost]
        waiter: list[Any] = [None, False, None]
        self._waiting[request_id] = waiter
        try:
            with trio.move_on_after(within) as scope:
                try:
                    await self._send(encode_frame(message))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionLost(f"send failed: {exc}") from exc
                if not waiter[1] and self._closed is None:

                    def abort(_: Any) -> trio.lowlevel.Abort:
                        waiter[0] = None
                        return trio.lowlevel.Abort.SUCCEEDED

                    waiter[0] = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(abort)
                if waiter[2] is None:
                    raise ConnectionLost(f"connection closed: {self._closed}")
                return waiter[2]
            assert scope.cancelled_caught
            raise RequestTimeout(f"no answer to request {request_id!r} within {within} s")
        finally:
            self._waiting.pop(request_id, None)

    async def _send(self, data: bytes) -> None:
        """Write ``data`` straight to the socket when no other request is sending."""
        lock = self._send_lock
        if lock.locked():
            async with lock:
                await self._stream.send_all(data)
            return
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        # The rest must follow before any other request's bytes: take the lock now.
        lock.acquire_nowait()
        try:
            await self._stream.send_all(data[sent:])
        finally:
            lock.release()

    def _deliver(self, answer: dict[str, Any] | None, request_id: Any) -> None:
        waiter = self._waiting.pop(request_id, None)
        if waiter is None:
            return  # an answer nobody waits for belongs to a request that timed out
        waiter[1] = True
        waiter[2] = answer
        task = waiter[0]
        if task is not None:
            waiter[0] = None
            trio.lowlevel.reschedule(task)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await receive_raw(self._stream)
                if not data:
                    raise ConnectionLost("node closed the connection")
                self._decoder.feed(data)
                for answer in self._decoder.messages():
                    self._deliver(answer, answer.get("id"))
        except (ConnectionLost, FrameError, trio.BrokenResourceError, OSError) as exc:
            self._closed = exc
        except trio.ClosedResourceError as exc:
            self._closed = exc
        finally:
            if self._closed is None:
                self._closed = ConnectionLost("client closed")
            for request_id in list(self._waiting):
                self._deliver(None, request_id)

    async def aclose(self) -> None:
        await self._stream.aclose()


@asynccontextmanager
async def open_client(
    host: str, port: int, *, connect_timeout: float = 2.0, max_frame: int = MAX_FRAME
) -> AsyncIterator[NodeClient]:
    """Connect to a node's client port; the connection is closed when the block ends."""
    with trio.fail_after(connect_timeout):
        stream = await trio.open_tcp_stream(host, port)
    client = NodeClient(stream, max_frame)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._read_loop)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await client.aclose()


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8001"`` -> ``("127.0.0.1", 8001)``; raises ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)
