"""A small Trio client for a node's client port (length-prefixed msgpack frames).

Strictly one request in flight per connection: Jepsen's process model runs
one operation at a time per process, and the collector asks one admin
question at a time, so pipelining would buy nothing and cost clarity.

If a request is cancelled (timeout) or the connection breaks, the connection
is dropped and the next request reconnects: an answer that arrives late
must never be mistaken for the answer to a later request. Answers are also
matched by ``id`` as a second guard.
"""

from __future__ import annotations

import itertools
import socket
from typing import Any

import trio

from splitbrain_common.wire import FrameDecoder, FrameError, encode_frame


class ConnectionLost(Exception):
    """The connection broke or could not be opened.

    ``sent`` says whether the request may have reached the node: if False,
    the request certainly did not take effect.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class StreamConnection:
    """One kept-alive TCP connection to a node's client port, reopened when it died.

    What the wire client and the HTTP client (etcd) share: at most one request
    at a time (the lock), a connection that is checked before each request and
    reopened if the node closed it while idle (so a request is never written
    into a dead connection and made to look indefinite), a refused connect
    that says nothing was sent, and a drop that is safe under cancellation.
    Subclasses say how an idle connection shows it is closed and what
    protocol state a fresh connection starts with.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._stream: trio.SocketStream | None = None
        self._lock = trio.Lock()

    def _idle_connection_closed(self) -> bool:
        """True if the node closed the (idle) connection; called only with a stream."""
        raise NotImplementedError

    def _reset_protocol(self) -> None:
        """Start the protocol state afresh for a new connection."""

    async def _connect(self) -> trio.SocketStream:
        if self._stream is not None and self._idle_connection_closed():
            await self._drop()
        if self._stream is None:
            try:
                self._stream = await trio.open_tcp_stream(self.host, self.port)
            except OSError as exc:
                raise ConnectionLost(
                    f"cannot connect to {self.host}:{self.port}: {exc}", sent=False
                ) from exc
            self._reset_protocol()
        return self._stream

    async def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def aclose(self) -> None:
        await self._drop()


class WireClient(StreamConnection):
    """Requests in length-prefixed msgpack frames, answers matched by ``id``."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self._decoder = FrameDecoder()
        self._ids = itertools.count(1)

    @classmethod
    def for_address(cls, address: str) -> WireClient:
        host, _, port = address.rpartition(":")
        return cls(host, int(port))

    def _idle_connection_closed(self) -> bool:
        """True if the node closed our idle connection (it crashed or restarted).

        Checked before each request, so a request is never written into a
        connection that is already dead: that would make an operation the
        node never saw look indefinite.
        """
        assert self._stream is not None
        # A synchronous peek on a duplicate of the descriptor: trio's own recv
        # would wait for data instead of answering "nothing there" at once.
        try:
            probe = socket.fromfd(self._stream.socket.fileno(), socket.AF_INET,
                                  socket.SOCK_STREAM)
        except OSError:
            return True
        try:
            data = probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            probe.close()
        return data == b""

    def _reset_protocol(self) -> None:
        self._decoder = FrameDecoder()

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return its answer. No timeout here: the caller sets one."""
        async with self._lock:
            stream = await self._connect()
            request_id = next(self._ids)
            finished = False
            sent = False
            try:
                frame = encode_frame({**message, "id": request_id})
                try:
                    await stream.send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    # A frame this small goes out in one send() call: when that
                    # call fails, none of it was queued, so the node never saw it.
                    raise ConnectionLost(f"send failed: {exc}", sent=False) from exc
                except BaseException:
                    sent = True  # cancelled mid-send: part of the frame may be out
                    raise
                sent = True
                try:
                    while True:
                        for answer in self._decoder.messages():
                            if answer.get("id") == request_id:
                                finished = True
                                return answer
                        data = await stream.receive_some(65536)
                        if not data:
                            raise ConnectionLost("connection closed by the node", sent=True)
                        self._decoder.feed(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionLost(str(exc) or type(exc).__name__, sent=sent) from exc
                except FrameError as exc:
                    raise ConnectionLost(f"bad frame from node: {exc}", sent=True) from exc
            finally:
                if not finished:
                    await self._drop()
