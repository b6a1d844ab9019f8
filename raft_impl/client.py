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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .wire import MAX_FRAME, FrameDecoder, FrameError, encode_frame


class RequestTimeout(Exception):
    """No answer within the timeout: the operation's outcome is unknown."""


class ConnectionLost(Exception):
    """The connection closed before the answer came: the outcome is unknown."""


class NodeClient:
    """Pipelined request/response over one connection. Create with :func:`open_client`."""

    def __init__(self, stream: trio.SocketStream, max_frame: int = MAX_FRAME) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(max_frame)
        self._ids = itertools.count(1)
        self._waiting: dict[Any, trio.MemorySendChannel[dict[str, Any]]] = {}
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
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[request_id] = send
        try:
            with trio.move_on_after(within) as scope:
                try:
                    async with self._send_lock:
                        await self._stream.send_all(encode_frame(message))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionLost(f"send failed: {exc}") from exc
                try:
                    return await receive.receive()
                except trio.EndOfChannel:
                    raise ConnectionLost(f"connection closed: {self._closed}") from None
            assert scope.cancelled_caught
            raise RequestTimeout(f"no answer to request {request_id!r} within {within} s")
        finally:
            self._waiting.pop(request_id, None)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._stream.receive_some(65536)
                if not data:
                    raise ConnectionLost("node closed the connection")
                self._decoder.feed(data)
                for answer in self._decoder.messages():
                    waiter = self._waiting.pop(answer.get("id"), None)
                    if waiter is not None:
                        waiter.send_nowait(answer)
                        waiter.close()
                    # An answer nobody waits for belongs to a request that timed out.
        except (ConnectionLost, FrameError, trio.BrokenResourceError, OSError) as exc:
            self._closed = exc
        except trio.ClosedResourceError as exc:
            self._closed = exc
        finally:
            if self._closed is None:
                self._closed = ConnectionLost("client closed")
            for waiter in self._waiting.values():
                waiter.close()
            self._waiting.clear()

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
