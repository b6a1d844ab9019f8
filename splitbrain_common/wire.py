"""Length-prefixed msgpack frames: the one wire format of splitbrain.

Every connection (peer to peer, client to node, relay in the middle) carries
frames of a 4-byte big-endian length followed by one msgpack map. msgpack is
used because it is compact, fast, language-neutral and — unlike pickle —
cannot execute code when a hostile or corrupt frame is decoded.
The protocol and its limits: docs/DESIGN.md, "Wire protocol".
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import msgpack

#: Frames larger than this are refused: a corrupt length prefix must not make
#: a node allocate gigabytes. A snapshot travels whole in one frame (no chunking).
MAX_FRAME = 16 * 1024 * 1024

_HEADER = struct.Struct(">I")

#: Bytes of partial frames a whole process (a node, the proxy) may hold across
#: all its connections. Per connection a partial frame is bounded by MAX_FRAME,
#: but many connections each sending the start of a large frame and then
#: hanging would add up without limit (issue 16: fifty of them took a node from
#: 29 MB to 440 MB). Legitimate partial frames live for microseconds on the
#: loopback links of a test cluster, so a budget of a few whole frames is
#: never reached by a healthy cluster.
BUFFER_BUDGET = 4 * MAX_FRAME

#: Seconds a connection may hold a partial frame without receiving a byte of it
#: before it is closed: a sender that stopped mid-frame is gone or hostile, and
#: its bytes must not hold the budget for ever. (A paused node's connections are
#: closed by this too; it reconnects when it wakes, and Raft resends.)
STALL_TIMEOUT = 5.0


class FrameError(Exception):
    """A frame could not be decoded; the connection that sent it must close."""


def encode_frame(message: dict[str, Any]) -> bytes:
    """Encode one message as a length-prefixed msgpack frame."""
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds the limit of {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode a frame body (without its length prefix) into a message map."""
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"undecodable frame body: {exc}") from exc
    if not isinstance(message, dict):
        raise FrameError(f"frame body is a {type(message).__name__}, expected a map")
    return message


class BufferBudget:
    """The bytes that the decoders of one process may buffer together.

    Each :class:`FrameDecoder` given the budget charges it for the bytes it
    holds; a ``feed`` that would take the total past ``limit`` raises
    :class:`FrameError`, so the connection that asks for more than is left is
    the one that closes, and the partial frames already buffered (probably
    nearly complete) are kept.
    """

    def __init__(self, limit: int = BUFFER_BUDGET) -> None:
        if limit < 1:
            raise ValueError(f"a buffer budget must be positive, not {limit}")
        self.limit = limit
        self.used = 0
        #: Connections closed because the budget was exhausted (for status/tests).
        self.refusals = 0


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, take whole frames out.

    Sans-IO in the h11 style, so the node, the client and the relay share one
    decoder and it can be tested without sockets. With a :class:`BufferBudget`
    the bytes it holds count against that budget until :meth:`close`, which
    the owner of the connection must call when the connection ends.
    ``max_frame`` may be lowered and raised while decoding (e.g. tiny until a
    peer has said hello). ``header`` is the length prefix's layout: splitbrain's
    big-endian unsigned 4 bytes by default; the relays pass another system's
    (PySyncObj: native-order signed ``struct 'i'``) to cut its frames
    without decoding them. A negative length is a broken frame.
    """

    def __init__(self, max_frame: int = MAX_FRAME, budget: BufferBudget | None = None,
                 header: struct.Struct = _HEADER) -> None:
        self._buffer = bytearray()
        self.max_frame = max_frame
        self._budget = budget
        self._charged = 0
        self._header = header

    def feed(self, data: bytes) -> None:
        budget = self._budget
        if budget is not None:
            self._settle()
            if budget.used + len(data) > budget.limit:
                budget.refusals += 1
                raise FrameError(
                    f"buffer budget of {budget.limit} bytes exhausted "
                    f"({budget.used} bytes of partial frames held by all connections)"
                )
        self._buffer += data
        if budget is not None:
            self._settle()

    def _settle(self) -> None:
        """Charge (or refund) the budget for what the buffer holds now."""
        assert self._budget is not None
        held = len(self._buffer)
        self._budget.used += held - self._charged
        self._charged = held

    def close(self) -> None:
        """Drop what is buffered and give its bytes back to the budget (idempotent)."""
        self._buffer = bytearray()
        if self._budget is not None:
            self._settle()

    def frames_raw(self) -> Iterator[bytes]:
        """Yield complete frames as raw bytes (prefix included), undecoded.

        The relay uses this to forward, drop or duplicate single frames
        without paying for a decode.
        """
        buffer, header = self._buffer, self._header
        try:
            while len(buffer) >= header.size:
                (length,) = header.unpack_from(buffer)
                if length > self.max_frame:
                    raise FrameError(
                        f"frame length {length} exceeds the limit of {self.max_frame}")
                if length < 0:
                    raise FrameError(f"negative frame length {length}")
                end = header.size + length
                if len(buffer) < end:
                    return
                with memoryview(buffer) as view:
                    frame = bytes(view[:end])  # one copy, not a slice and then a copy
                del buffer[:end]
                yield frame
        finally:
            if self._budget is not None:
                self._settle()

    def messages(self) -> Iterator[dict[str, Any]]:
        """Yield every complete decoded message buffered so far."""
        for frame in self.frames_raw():
            yield decode_body(frame[self._header.size :])

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    @property
    def partial(self) -> bool:
        """Whether bytes of an incomplete frame are buffered."""
        return bool(self._buffer)


def body_of(frame: bytes) -> bytes:
    """The msgpack body of a raw frame (strip the length prefix)."""
    return frame[_HEADER.size :]
