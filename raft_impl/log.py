"""The in-memory Raft log: a snapshot position plus the entries after it.

Entries live in a plain list with an offset (the snapshot index), so lookups
by index are O(1), appends amortized O(1), and a truncation or a compaction
deletes a slice in place instead of copying the log per entry.
"""

from __future__ import annotations

from collections.abc import Sequence

from raft_impl.types import Entry


class RaftLog:
    """Entries ``snapshot_index + 1 .. last_index``; the term at ``snapshot_index`` is known.

    Index 0 with term 0 is the empty log's sentinel, so an append after nothing
    checks ``(prev_index=0, prev_term=0)`` like any other.
    """

    __slots__ = ("_entries", "snapshot_index", "snapshot_term")

    def __init__(
        self, snapshot_index: int = 0, snapshot_term: int = 0, entries: Sequence[Entry] = ()
    ) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        # Entries a snapshot already covers are redundant; storage may hand them over anyway.
        self._entries: list[Entry] = [e for e in entries if e.index > snapshot_index]
        expected = snapshot_index + 1
        for entry in self._entries:
            if entry.index != expected:
                raise ValueError(
                    f"log entries must be consecutive after the snapshot at {snapshot_index}: "
                    f"expected index {expected}, got {entry.index}"
                )
            expected += 1

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if it is compacted away or beyond the end."""
        offset = index - self.snapshot_index
        if offset == 0:
            return self.snapshot_term
        if offset < 0 or offset > len(self._entries):
            return None
        return self._entries[offset - 1].term

    def entry(self, index: int) -> Entry:
        offset = index - self.snapshot_index
        if offset < 1 or offset > len(self._entries):
            raise IndexError(f"entry {index} not in log {self.first_index}..{self.last_index}")
        return self._entries[offset - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index < hi``, clamped to what the log holds."""
        base = self.snapshot_index + 1
        return self._entries[max(lo - base, 0) : max(hi - base, 0)]

    def append(self, entry: Entry) -> None:
        """Append one entry at ``last_index + 1`` (the leader's path)."""
        self._entries.append(entry)

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        """Drop every entry from ``entries[0].index`` on, then append ``entries``."""
        first = entries[0].index
        if first <= self.snapshot_index or first > self.last_index + 1:
            raise ValueError(
                f"cannot place entries from {first} in log {self.first_index}..{self.last_index}"
            )
        del self._entries[first - self.snapshot_index - 1 :]
        self._entries.extend(entries)

    def matches(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first entry in ``entries`` not already in the log with the same term.

        0 if all of them are present (a duplicate or stale append). The result is either
        a real term conflict (index <= last_index) or the first new entry.
        """
        for entry in entries:
            if self.term_at(entry.index) != entry.term:
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest ``i <= index`` whose term is ``<= term``, with that term.

        Used for fast backtracking (etcd's scheme): every entry above the answer has a
        term greater than ``term`` and so cannot match, on either side. Returns
        ``(index, 0)`` when the search runs into the compacted prefix.
        """
        index = min(index, self.last_index)
        while index >= self.snapshot_index:
            ours = self.term_at(index)
            if ours is None:
                break
            if ours <= term:
                return index, ours
            index -= 1
        return index, 0

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """The election restriction (§5.4.1): is a log ending at (last_index, last_term) at
        least as up to date as ours?"""
        ours = self.last_term
        return last_term > ours or (last_term == ours and last_index >= self.last_index)

    def compact(self, index: int, term: int) -> None:
        """Forget entries up to ``index``; a snapshot of term ``term`` now covers them."""
        if index <= self.snapshot_index:
            return
        if index >= self.last_index:
            self._entries.clear()
        else:
            del self._entries[: index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot at (index, term) (InstallSnapshot)."""
        self._entries.clear()
        self.snapshot_index = index
        self.snapshot_term = term
