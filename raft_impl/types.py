"""Value types shared by the Raft core, the storage layer and the node process.

Kept apart from ``core.py`` so storage and state machine code can depend on
the shapes of entries and hard state without importing the protocol logic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class EntryKind(StrEnum):
    """What a log entry carries. A ``noop`` is what a new leader appends on taking office."""

    NOOP = "noop"
    COMMAND = "command"


@dataclass(frozen=True, slots=True)
class Entry:
    """One Raft log entry. ``data`` is an opaque, msgpack-encoded command for the state machine."""

    index: int
    term: int
    kind: EntryKind = EntryKind.COMMAND
    data: bytes = b""

    def digest(self) -> str:
        """Short content hash for log dumps: equal entries have equal digests on every node."""
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{self.term}:{self.kind.value}:".encode())
        h.update(self.data)
        return h.hexdigest()


@dataclass(frozen=True, slots=True)
class HardState:
    """What Raft must persist before it acts: current term, vote in that term, commit index."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Position covered by a snapshot: every entry up to ``index`` (of ``term``) is in it."""

    index: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state machine snapshot: metadata plus the serialized state machine (msgpack)."""

    meta: SnapshotMeta
    data: bytes
