"""How the relays cut a peer byte stream into whole messages, per system.

A relay must know where one message ends and the next begins to drop, delay,
duplicate or reorder single messages instead of corrupting a byte stream; it
never needs to decode them (it only moves bytes). Two systems' framings:

* **splitbrain** (raft_impl): a 4-byte big-endian length, then a msgpack map
  (``splitbrain_common.wire``). A node only writes on connections it dialed, and the
  first frame of a connection is its ``hello``.
* **pysyncobj** (PySyncObj 0.3.17, ``pysyncobj/tcp_connection.py``): a 4-byte
  native-order signed length (``struct.pack('i', n)``), then the message
  pickled (protocol 2), zlib-compressed, and, when the cluster has a password,
  encrypted. One TCP connection carries both directions of a pair of nodes
  (the node with the larger address dials); its first frame from the dialer is
  the dialer's own address (or, encrypted, a random key).

For the message trace (``messages.jsonl``) a frame's type and term are read
without running anything the sender wrote: splitbrain frames are msgpack;
PySyncObj frames are decompressed and their pickle *opcodes* listed with
:func:`pickletools.genops`, which parses the opcode stream and constructs no
object (no ``find_class``, no ``REDUCE``), so a hostile pickle cannot execute.
An encrypted or unparsable frame is traced as ``opaque``.
"""

from __future__ import annotations

import pickletools
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from splitbrain_common.wire import FrameError, body_of, decode_body

#: Frames at least this long get their msgpack header peeked at instead of fully decoded.
HEADER_PEEK_FROM = 512
#: A PySyncObj frame is described only if it decompresses to at most this many bytes.
MAX_DESCRIBED = 4 * 1024 * 1024

#: PySyncObj message keys copied into the trace, and the names they get there.
PYSYNCOBJ_FIELDS = {
    "type": "type",
    "term": "term",
    "prevLogIdx": "prev_index",
    "prevLogTerm": "prev_term",
    "commit_index": "commit",
    "next_node_idx": "next_index",
    "success": "success",
}
_SCALAR_OPS = frozenset({
    "BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG",
    "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE",
    "NEWTRUE", "NEWFALSE", "NONE",
})
_MEMO_OPS = frozenset({"BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE", "FRAME"})
_MARK_POPPERS = frozenset({"SETITEMS", "APPENDS", "TUPLE", "LIST", "DICT", "ADDITEMS",
                           "FROZENSET", "POP_MARK", "OBJ", "INST"})


def _scalar(name: str, arg: Any) -> Any:
    if name == "NEWTRUE":
        return True
    if name == "NEWFALSE":
        return False
    return arg


def _resolve_memo(ops: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Replace memo fetches of strings by the strings (pickle stores a repeated string
    once: ``{"next_node_idx": ...}`` with type ``"next_node_idx"`` fetches the key)."""
    memo: dict[Any, Any] = {}
    last: tuple[str, Any] | None = None
    resolved: list[tuple[str, Any]] = []
    for name, arg in ops:
        if name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            memo[len(memo) if name == "MEMOIZE" else arg] = last
            resolved.append((name, arg))
            continue
        if name in ("BINGET", "LONG_BINGET", "GET"):
            fetched = memo.get(arg)
            resolved.append(fetched if fetched is not None else ("MEMO_OBJECT", None))
        else:
            resolved.append((name, arg))
        last = resolved[-1] if resolved[-1][0] in _SCALAR_OPS else None
    return resolved


def splitbrain_describe(frame: bytes) -> dict[str, Any]:
    """(type, term) of a splitbrain frame, without building the whole message.

    Small frames are simply decoded (cheapest for them); large ones (appends
    carrying many entries, snapshots) are walked with msgpack's Unpacker, which
    skips the values of other keys in C instead of building them.
    """
    try:
        if len(frame) < HEADER_PEEK_FROM:
            message = decode_body(body_of(frame))
            return {"type": message.get("type"), "term": message.get("term")}
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(frame))
        unpacker.feed(body_of(frame))
        found: dict[Any, Any] = {}
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key in ("type", "term"):
                found[key] = unpacker.unpack()
                if len(found) == 2:
                    break
            else:
                unpacker.skip()
        return {"type": found.get("type"), "term": found.get("term")}
    except (FrameError, ValueError, TypeError, msgpack.UnpackException):
        return {"type": "undecodable", "term": None}


def pysyncobj_describe(frame: bytes) -> dict[str, Any]:
    """Type, term and log position of a PySyncObj frame, read from its pickle opcodes.

    Only scalars that directly follow a known key of the top-level dict are
    taken (a key's value that is a container, such as ``entries``, is counted
    instead: ``entries`` is the number of log entries an append carries, and
    ``last_index``, ``prev_index + entries``, where it leaves the follower's log).
    A frame whose pickle is a bare string is the dialer's address: ``hello``.
    """
    opaque: dict[str, Any] = {"type": "opaque", "term": None}
    try:
        decompressor = zlib.decompressobj()
        data = decompressor.decompress(frame[4:], MAX_DESCRIBED)
        if decompressor.unconsumed_tail:
            return opaque
        ops = _resolve_memo([(op.name, arg) for op, arg, _ in pickletools.genops(data)])
    except (zlib.error, ValueError, EOFError, struct.error, KeyError):
        return opaque
    names = [name for name, _ in ops if name not in _MEMO_OPS]
    if names[:2] in (["PROTO", "BINUNICODE"], ["PROTO", "SHORT_BINUNICODE"]) \
            and names[2:] == ["STOP"]:
        return {"type": "hello", "term": None}
    found: dict[str, Any] = {}
    depth = 0
    pending: str | None = None  # a wanted key at depth 1 whose value comes next
    in_entries = False
    entries = 0
    for name, arg in ops:
        if name in _MEMO_OPS:
            continue
        if pending is not None:
            if name in _SCALAR_OPS:
                found[PYSYNCOBJ_FIELDS[pending]] = _scalar(name, arg)
            pending = None
            continue
        if name == "MARK":
            depth += 1
            continue
        if name in _MARK_POPPERS:
            depth -= 1
            if depth == 1:
                in_entries = False
            continue
        if depth == 1 and name in ("BINUNICODE", "SHORT_BINUNICODE"):
            if arg in PYSYNCOBJ_FIELDS:
                pending = arg
            elif arg == "entries":
                in_entries = True
            continue
        if in_entries and depth == 2 and name == "TUPLE3":
            entries += 1
    if "type" not in found:
        return opaque
    found.setdefault("term", None)
    if found["type"] == "append_entries":
        found["entries"] = entries
        if isinstance(found.get("prev_index"), int):  # where the follower's log ends after it
            found["last_index"] = found["prev_index"] + entries
    return found


@dataclass(frozen=True)
class Framing:
    """One system's peer framing, as a relay needs it (see module doc)."""

    name: str
    #: The length prefix.
    header: struct.Struct
    #: Both directions of a dialed connection carry messages (else the dialed side's
    #: bytes are read and discarded).
    duplex: bool
    #: The first frame the dialer sends sets the connection up: always forwarded at once.
    hello: bool
    #: The trace fields of one raw frame (length prefix included); ``type`` and ``term``
    #: at least.
    describe: Callable[[bytes], dict[str, Any]]


SPLITBRAIN = Framing("splitbrain", struct.Struct(">I"), duplex=False, hello=True,
                     describe=splitbrain_describe)
PYSYNCOBJ = Framing("pysyncobj", struct.Struct("=i"), duplex=True, hello=True,
                    describe=pysyncobj_describe)
FRAMINGS = {framing.name: framing for framing in (SPLITBRAIN, PYSYNCOBJ)}
