"""A minimal HTTP/1.1 JSON client on Trio streams, with h11 doing the protocol.

Enough for etcd's v3 JSON gateway: ``POST path`` with a JSON body, a JSON
answer, one request at a time on a kept-alive connection. Like
:class:`harness.db.wire_client.WireClient`, a request that is cancelled or
breaks drops the connection, so a late answer can never be read as the
answer to the next request; and :class:`ConnectionLost` says whether the
request may have reached the server (``sent``), which decides between a
definite failure and an unknown outcome.
"""

from __future__ import annotations

import json
import select
from typing import Any

import h11
import trio

from harness.db.wire_client import ConnectionLost, StreamConnection

RECEIVE_SIZE = 65536


class HttpError(Exception):
    """The server answered, but not with a JSON body we can read."""


class HttpConnection(StreamConnection):
    """JSON over HTTP/1.1 keep-alive; h11 tracks the protocol state of the connection."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self._protocol = h11.Connection(h11.CLIENT)

    def _idle_connection_closed(self) -> bool:
        """True if the kept-alive connection has become readable while idle.

        An idle HTTP/1.1 connection has nothing to say: readable means the
        server closed it (it restarted, or was killed). Noticing that before
        sending turns a would-be "unknown outcome" into a clean reconnect.
        """
        assert self._stream is not None
        try:
            readable, _, _ = select.select([self._stream.socket.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _reset_protocol(self) -> None:
        self._protocol = h11.Connection(h11.CLIENT)

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST a JSON body; returns (status, decoded JSON answer). No timeout here."""
        return await self._request("POST", path, body)

    async def get(self, path: str) -> tuple[int, Any]:
        """GET a JSON document (etcd's ``/debug/vars``); (status, decoded answer)."""
        return await self._request("GET", path, None)

    async def _request(self, method: str, path: str,
                       body: dict[str, Any] | None) -> tuple[int, Any]:
        async with self._lock:
            stream = await self._connect()
            protocol = self._protocol
            finished = False
            sent = False
            try:
                payload = b"" if body is None else json.dumps(body).encode()
                headers = [("Host", f"{self.host}:{self.port}")]
                if body is not None:
                    headers.append(("Content-Type", "application/json"))
                headers.append(("Content-Length", str(len(payload))))
                request = h11.Request(method=method, target=path, headers=headers)
                data = protocol.send(request) + protocol.send(h11.Data(data=payload))
                data += protocol.send(h11.EndOfMessage())
                try:
                    sent = True  # conservative: once bytes may have left, the server may act
                    await stream.send_all(data)
                    status, chunks = await self._read_response(stream, protocol)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionLost(str(exc) or type(exc).__name__, sent=sent) from exc
                except h11.ProtocolError as exc:
                    raise ConnectionLost(f"bad HTTP from server: {exc}", sent=True) from exc
                if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
                    protocol.start_next_cycle()
                    finished = True
                text = b"".join(chunks)
                try:
                    return status, json.loads(text) if text else {}
                except ValueError as exc:
                    raise HttpError(f"HTTP {status} with a body that is not JSON: "
                                    f"{text[:200]!r}") from exc
            finally:
                if not finished:
                    await self._drop()

    @staticmethod
    async def _read_response(
        stream: trio.SocketStream, protocol: h11.Connection
    ) -> tuple[int, list[bytes]]:
        status = 0
        chunks: list[bytes] = []
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise ConnectionLost("connection closed by the server", sent=True)
                protocol.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, chunks
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionLost("connection closed by the server", sent=True)
