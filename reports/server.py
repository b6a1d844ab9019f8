"""``splitbrain serve``: the store over HTTP on 127.0.0.1, with an index of runs.

A small static file server on Trio, with h11 doing the HTTP/1.1 parsing (a
pinned, well-kept sans-IO library, like the Raft core is sans-IO). Only GET
and HEAD; only files inside the store (symlinks such as ``store/latest`` may
point anywhere inside it); ``/`` re-renders ``index.html`` on every request,
so the list is always current without a background job.
"""

from __future__ import annotations

import contextlib
import mimetypes
import urllib.parse
from pathlib import Path

import h11
import trio

from reports.render import update_store_index
from splitbrain_common import files

MAX_REQUEST_BYTES = 64 * 1024
READ_TIMEOUT = 30.0
CHUNK = 256 * 1024


class StoreServer:
    """Serves one store directory; ``handle`` runs once per TCP connection."""

    def __init__(self, store: Path) -> None:
        self.store = store.resolve()

    def resolve(self, target: str) -> Path | None:
        """Map a request path to a file inside the store, or None (404)."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        if path in ("", "/"):
            update_store_index(self.store)
            return self.store / files.INDEX
        candidate = (self.store / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self.store):
            return None  # ../ or a symlink leading out of the store
        if candidate.is_dir():
            candidate = candidate / (files.REPORT if (candidate / files.REPORT).is_file()
                                     else files.INDEX)
        return candidate if candidate.is_file() else None

    async def handle(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        try:
            while True:
                event = await self._next_event(conn, stream)
                if event is None:
                    return
                if isinstance(event, h11.Request):
                    await self._respond(conn, stream, event)
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._bad_request(conn, stream, exc)
        except (trio.BrokenResourceError, trio.TooSlowError):
            return  # a vanished or stalled client: drop it, keep serving others
        finally:
            await stream.aclose()

    async def _bad_request(self, conn: h11.Connection, stream: trio.abc.Stream,
                           exc: h11.RemoteProtocolError) -> None:
        """Answer unparseable HTTP with its status (400, 431 …) when h11 still lets us."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"bad request: {exc}\n".encode()
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                   ("Connection", "close")]
        with contextlib.suppress(h11.LocalProtocolError, trio.BrokenResourceError):
            await stream.send_all(conn.send(h11.Response(
                status_code=exc.error_status_hint, headers=headers)) + conn.send(
                h11.Data(data=body)) + conn.send(h11.EndOfMessage()))

    async def _next_event(self, conn: h11.Connection, stream: trio.abc.Stream) -> h11.Event | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                with trio.fail_after(READ_TIMEOUT):
                    data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                # drain the (unused) body so the next request parses
                while not isinstance(more := conn.next_event(), h11.EndOfMessage):
                    if more is h11.NEED_DATA:
                        with trio.fail_after(READ_TIMEOUT):
                            conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(more, h11.ConnectionClosed):
                        return None
            return event

    async def _respond(self, conn: h11.Connection, stream: trio.abc.Stream,
                       request: h11.Request) -> None:
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("utf-8", "replace")
        if method not in ("GET", "HEAD"):
            await self._send(conn, stream, 405, b"only GET and HEAD\n", "text/plain",
                             head=False, extra=[("Allow", "GET, HEAD")])
            return
        # local disk, small files: plain reads are quicker than handing them to a thread
        path = self.resolve(target)
        if path is None:
            await self._send(conn, stream, 404, b"not found\n", "text/plain",
                             head=method == "HEAD")
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or path.suffix in (".jsonl", ".log", ".json"):
            kind = ("text/plain" if path.suffix in (".jsonl", ".log") else kind)
            kind += "; charset=utf-8"
        size = path.stat().st_size
        headers = [("Content-Type", kind), ("Content-Length", str(size)),
                   ("Cache-Control", "no-cache")]
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
        if method == "GET":
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    await stream.send_all(conn.send(h11.Data(data=chunk)))
        await stream.send_all(conn.send(h11.EndOfMessage()))

    async def _send(self, conn: h11.Connection, stream: trio.abc.Stream, status: int,
                    body: bytes, kind: str, head: bool,
                    extra: list[tuple[str, str]] | None = None) -> None:
        headers = [("Content-Type", kind), ("Content-Length", str(len(body))), *(extra or [])]
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
        if not head:
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))


async def serve(store: Path, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``store`` on 127.0.0.1:``port`` until cancelled; reports the bound port."""
    server = StoreServer(store)
    update_store_index(server.store)
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(server.handle, listeners)
