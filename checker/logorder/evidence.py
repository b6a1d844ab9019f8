"""A capped list of violations: a broken run can produce millions, the report needs a few."""

from __future__ import annotations

from typing import Any

#: How many violations of one checker are kept as evidence; the rest are only counted.
MAX_KEPT = 25


class Violations:
    """Collects violation evidence; keeps the first ``limit`` and counts all."""

    def __init__(self, limit: int = MAX_KEPT) -> None:
        self.limit = limit
        self.kept: list[dict[str, Any]] = []
        self.total = 0

    def add(self, kind: str, message: str, **evidence: Any) -> None:
        """Record one violation. Give ``time`` (ns) when known: the moment the evidence
        was observed, which reports use to place the violation on the run's timeline."""
        self.total += 1
        if len(self.kept) < self.limit:
            self.kept.append({"kind": kind, "message": message, **evidence})

    def extend(self, other: Violations) -> None:
        """Take over ``other``'s kept evidence and count."""
        for item in other.kept:
            if len(self.kept) < self.limit:
                self.kept.append(item)
        self.total += other.total

    def __bool__(self) -> bool:
        return self.total > 0

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"violations": list(self.kept), "violations_total": self.total}
        if self.total > len(self.kept):
            described["violations_omitted"] = self.total - len(self.kept)
        return described


def ranges(indexes: list[int]) -> list[list[int]]:
    """Collapse sorted integers into inclusive ``[first, last]`` runs: 3,4,5,9 -> [3,5],[9,9]."""
    runs: list[list[int]] = []
    for index in indexes:
        if runs and runs[-1][1] + 1 == index:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return runs
