"""Raft peer messages: dataclasses with a msgpack-friendly wire form.

On the wire every message is a map with at least ``type``, ``from``, ``to``
and ``term`` (docs/DESIGN.md, "Peer connections"); entries travel as
``[index, term, kind, data]`` and snapshots as ``[index, term, data]``.
``Message.from_wire`` validates field types, so a corrupt or hostile frame
raises :class:`MessageError` (which the node turns into "drop the frame")
instead of planting garbage in the Raft state.

Wire fields besides ``type``, ``from``, ``to``, ``term``:

=================  =============================================================
``append``         ``prev_index``, ``prev_term``, ``entries``, ``commit``
``append-resp``    ``index``, ``reject``, ``hint_index``, ``hint_term``
``vote``           ``last_index``, ``last_term``
``pre-vote``       ``last_index``, ``last_term`` (``term`` is the sender's term + 1)
``vote-resp``      ``granted``
``pre-vote-resp``  ``granted``
``heartbeat``      ``commit``, ``seq``
``heartbeat-resp`` ``seq``
``snapshot``       ``snapshot``: ``[index, term, data]``
``snapshot-resp``  ``index``, ``reject``
=================  =============================================================
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from raft_impl.types import Entry, EntryKind, Snapshot, SnapshotMeta


class MessageError(ValueError):
    """A wire map is not a well-formed Raft message."""


_KINDS: dict[str, EntryKind] = {kind.value: kind for kind in EntryKind}


def _int(wire: dict[str, Any], key: str) -> int:
    value = wire.get(key)
    # bool is an int subclass; a bool here means a confused sender.
    if type(value) is not int or value < 0:
        raise MessageError(f"field {key!r} must be a non-negative integer, got {value!r}")
    return value


def _str(wire: dict[str, Any], key: str) -> str:
    value = wire.get(key)
    if not isinstance(value, str):
        raise MessageError(f"field {key!r} must be a string, got {value!r}")
    return value


def _bool(wire: dict[str, Any], key: str) -> bool:
    value = wire.get(key)
    if not isinstance(value, bool):
        raise MessageError(f"field {key!r} must be a boolean, got {value!r}")
    return value


def entry_to_wire(entry: Entry) -> list[Any]:
    return [entry.index, entry.term, entry.kind.value, entry.data]


def entry_from_wire(raw: Any) -> Entry:
    try:
        index, term, kind, data = raw
    except (TypeError, ValueError) as exc:
        raise MessageError(f"entry must be [index, term, kind, data], got {raw!r}") from exc
    if type(index) is not int or type(term) is not int or index < 1 or term < 0:
        raise MessageError(f"entry index/term must be integers, got {raw!r}")
    if not isinstance(data, bytes):
        raise MessageError(f"entry data must be bytes, got {type(data).__name__}")
    try:
        return Entry(index, term, _KINDS[kind], data)
    except (KeyError, TypeError) as exc:
        raise MessageError(f"unknown entry kind {kind!r}") from exc


def _entries_from_wire(raw: Any) -> list[Entry]:
    if not isinstance(raw, list):
        raise MessageError("field 'entries' must be a list")
    entries = [entry_from_wire(item) for item in raw]
    for before, after in itertools.pairwise(entries):
        if after.index != before.index + 1:
            raise MessageError("entries of an append must have consecutive indexes")
    return entries


@dataclass(slots=True)
class Message:
    """Common header of every peer message. ``from_`` is ``"from"`` on the wire."""

    from_: str
    to: str
    term: int

    #: the wire ``type`` of the message (subclasses with two spellings override ``wire_type``)
    TYPE: ClassVar[str] = ""

    @property
    def wire_type(self) -> str:
        return self.TYPE

    def _header(self) -> dict[str, Any]:
        return {"type": self.wire_type, "from": self.from_, "to": self.to, "term": self.term}

    def to_wire(self) -> dict[str, Any]:
        return self._header()

    @staticmethod
    def from_wire(wire: dict[str, Any]) -> Message:
        """Decode and validate a wire map; raise :class:`MessageError` if it is malformed."""
        if not isinstance(wire, dict):
            raise MessageError(f"a message must be a map, got {type(wire).__name__}")
        kind = wire.get("type")
        decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
        if decoder is None:
            raise MessageError(f"unknown message type {kind!r}")
        return decoder(wire, _str(wire, "from"), _str(wire, "to"), _int(wire, "term"))


@dataclass(slots=True)
class AppendEntries(Message):
    """Leader -> follower: entries after (prev_index, prev_term), and the leader's commit."""

    prev_index: int
    prev_term: int
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0

    TYPE: ClassVar[str] = "append"

    def to_wire(self) -> dict[str, Any]:
        wire = self._header()
        wire["prev_index"] = self.prev_index
        wire["prev_term"] = self.prev_term
        wire["entries"] = [entry_to_wire(e) for e in self.entries]
        wire["commit"] = self.commit
        return wire


@dataclass(slots=True)
class AppendResponse(Message):
    """Follower -> leader. On success ``index`` is the follower's last index known to match
    the leader's log; on rejection it is the rejected ``prev_index``, and
    (``hint_index``, ``hint_term``) is the follower's last entry with term <= prev_term,
    which lets the leader skip a whole conflicting term in one round trip."""

    index: int
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0

    TYPE: ClassVar[str] = "append-resp"

    def to_wire(self) -> dict[str, Any]:
        wire = self._header()
        wire["index"] = self.index
        wire["reject"] = self.reject
        wire["hint_index"] = self.hint_index
        wire["hint_term"] = self.hint_term
        return wire


@dataclass(slots=True)
class RequestVote(Message):
    """(Pre-)candidate -> voter. A pre-vote carries the term the sender *would* campaign in
    (its term + 1) without having bumped its own term."""

    last_index: int
    last_term: int
    pre: bool = False

    @property
    def wire_type(self) -> str:
        return "pre-vote" if self.pre else "vote"

    def to_wire(self) -> dict[str, Any]:
        wire = self._header()
        wire["last_index"] = self.last_index
        wire["last_term"] = self.last_term
        return wire


@dataclass(slots=True)
class VoteResponse(Message):
    """Voter -> (pre-)candidate. A granted pre-vote echoes the pre-vote's term."""

    granted: bool
    pre: bool = False

    @property
    def wire_type(self) -> str:
        return "pre-vote-resp" if self.pre else "vote-resp"

    def to_wire(self) -> dict[str, Any]:
        wire = self._header()
        wire["granted"] = self.granted
        return wire


@dataclass(slots=True)
class Heartbeat(Message):
    """Leader -> follower. ``commit`` is min(follower's match, leader commit) so it never
    points past what the follower is known to hold; ``seq`` numbers the heartbeat round
    that read-index and lease reads wait on."""

    commit: int = 0
    seq: int = 0

    TYPE: ClassVar[str] = "heartbeat"

    def to_wire(self) -> dict[str, Any]:
        wire = self._header()
        wire["commit"] = self.commit
        wire["seq"] = self.seq
        return wire


@dataclass(slots=True)
class HeartbeatResponse(Message):
    """Follower -> leader: acknowledges heartbeat round ``seq`` of the current term."""

    seq: int = 0

    TYPE: ClassVar[str] = "heartbeat-resp"

    def to_wire(self) -> dict[str, Any]:
        wire = self._header()
        wire["seq"] = self.seq
        return wire


@dataclass(slots=True)
class InstallSnapshot(Message):
    """Leader -> follower whose next entry was compacted away: the whole snapshot at once."""

    snapshot: Snapshot

    TYPE: ClassVar[str] = "snapshot"

    def to_wire(self) -> dict[str, Any]:
        wire = self._header()
        meta = self.snapshot.meta
        wire["snapshot"] = [meta.index, meta.term, self.snapshot.data]
        return wire


@dataclass(slots=True)
class SnapshotResponse(Message):
    """Follower -> leader: ``index`` is the follower's commit index after the snapshot."""

    index: int
    reject: bool = False

    TYPE: ClassVar[str] = "snapshot-resp"

    def to_wire(self) -> dict[str, Any]:
        wire = self._header()
        wire["index"] = self.index
        wire["reject"] = self.reject
        return wire


def _decode_append(w: dict[str, Any], frm: str, to: str, term: int) -> Message:
    return AppendEntries(
        frm,
        to,
        term,
        _int(w, "prev_index"),
        _int(w, "prev_term"),
        _entries_from_wire(w.get("entries")),
        _int(w, "commit"),
    )


def _decode_append_resp(w: dict[str, Any], frm: str, to: str, term: int) -> Message:
    return AppendResponse(
        frm, to, term, _int(w, "index"), _bool(w, "reject"), _int(w, "hint_index"),
        _int(w, "hint_term"),
    )


def _decode_vote(w: dict[str, Any], frm: str, to: str, term: int) -> Message:
    pre = w["type"] == "pre-vote"
    return RequestVote(frm, to, term, _int(w, "last_index"), _int(w, "last_term"), pre)


def _decode_vote_resp(w: dict[str, Any], frm: str, to: str, term: int) -> Message:
    pre = w["type"] == "pre-vote-resp"
    return VoteResponse(frm, to, term, _bool(w, "granted"), pre)


def _decode_heartbeat(w: dict[str, Any], frm: str, to: str, term: int) -> Message:
    return Heartbeat(frm, to, term, _int(w, "commit"), _int(w, "seq"))


def _decode_heartbeat_resp(w: dict[str, Any], frm: str, to: str, term: int) -> Message:
    return HeartbeatResponse(frm, to, term, _int(w, "seq"))


def _decode_snapshot(w: dict[str, Any], frm: str, to: str, term: int) -> Message:
    raw = w.get("snapshot")
    if (
        not isinstance(raw, list)
        or len(raw) != 3
        or type(raw[0]) is not int
        or type(raw[1]) is not int
        or not isinstance(raw[2], bytes)
    ):
        raise MessageError("field 'snapshot' must be [index, term, data]")
    return InstallSnapshot(frm, to, term, Snapshot(SnapshotMeta(raw[0], raw[1]), raw[2]))


def _decode_snapshot_resp(w: dict[str, Any], frm: str, to: str, term: int) -> Message:
    return SnapshotResponse(frm, to, term, _int(w, "index"), _bool(w, "reject"))


_DECODERS = {
    "append": _decode_append,
    "append-resp": _decode_append_resp,
    "vote": _decode_vote,
    "pre-vote": _decode_vote,
    "vote-resp": _decode_vote_resp,
    "pre-vote-resp": _decode_vote_resp,
    "heartbeat": _decode_heartbeat,
    "heartbeat-resp": _decode_heartbeat_resp,
    "snapshot": _decode_snapshot,
    "snapshot-resp": _decode_snapshot_resp,
}

#: every wire ``type`` a peer message can have
MESSAGE_TYPES: frozenset[str] = frozenset(_DECODERS)
