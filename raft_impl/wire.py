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


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, take whole frames out.

    Sans-IO in the h11 style, so the node, the client and the relay share one
    decoder and it can be tested without sockets.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def frames_raw(self) -> Iterator[bytes]:
        """Yield complete frames as raw bytes (prefix included), undecoded.

        The relay uses this to forward, drop or duplicate single frames
        without paying for a decode.
        """
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > self._max_frame:
                raise FrameError(f"frame length {length} exceeds the limit of {self._max_frame}")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                return
            frame = bytes(self._buffer[:end])
            del self._buffer[:end]
            yield frame

    def messages(self) -> Iterator[dict[str, Any]]:
        """Yield every complete decoded message buffered so far."""
        for frame in self.frames_raw():
            yield decode_body(frame[_HEADER.size :])

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)


def body_of(frame: bytes) -> bytes:
    """The msgpack body of a raw frame (strip the length prefix)."""
    return frame[_HEADER.size :]
