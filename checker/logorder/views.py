"""Index access to one log dump's entries, cheap in the usual case.

Nodes send their log contiguous and in index order; then an index maps to a
list position by arithmetic, and a run of entries is a list slice that compares
with another dump's slice at C speed. Anything else (holes, disorder, an index
listed twice) goes through a dict and is reported by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable

from checker.logorder.records import LogEntry


class DumpView:
    """Index access to one dump's entries: by arithmetic when they are contiguous
    and in order (what nodes send), through a dict otherwise."""

    __slots__ = ("by_index", "conflicts", "entries", "first", "last")

    def __init__(self, entries: list[LogEntry]) -> None:
        self.entries = entries
        self.by_index: dict[int, LogEntry] | None = None
        #: (earlier, later) pairs of entries listed twice at one index with different content.
        self.conflicts: list[tuple[LogEntry, LogEntry]] = []
        self.first: int | None = None
        self.last: int | None = None
        if not entries:
            return
        first = entries[0].index
        count = len(entries)
        if entries[-1].index == first + count - 1 and [e[0] for e in entries] == list(
            range(first, first + count)
        ):
            self.first, self.last = first, first + count - 1
            return
        by_index: dict[int, LogEntry] = {}
        for entry in entries:
            earlier = by_index.get(entry.index)
            if earlier is not None and earlier[1:3] != entry[1:3]:
                self.conflicts.append((earlier, entry))
            by_index[entry.index] = entry
        self.by_index = by_index
        self.first, self.last = min(by_index), max(by_index)

    @property
    def contiguous(self) -> bool:
        return self.by_index is None

    def get(self, index: int) -> LogEntry | None:
        if self.by_index is not None:
            return self.by_index.get(index)
        if self.first is not None and self.first <= index <= self.last:  # type: ignore[operator]
            return self.entries[index - self.first]
        return None

    def span(self, low: int, high: int) -> list[LogEntry]:
        """Entries ``low..high`` of a contiguous view (both within it)."""
        assert self.first is not None
        return self.entries[low - self.first : high - self.first + 1]

    def outside(self, low: int, high: int) -> list[LogEntry]:
        """The entries whose index is not in ``low..high`` (all of them if that is empty)."""
        if low > high or self.by_index is not None or self.first is None:
            return list(self.values())
        return self.entries[: max(0, low - self.first)] + self.entries[high - self.first + 1 :]

    def values(self) -> Iterable[LogEntry]:
        return self.entries if self.by_index is None else self.by_index.values()


EMPTY_VIEW = DumpView([])
