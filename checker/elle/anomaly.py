"""What an inference hands to the cycle search: the graph and the anomalies seen directly.

Some anomalies need no cycle: they are visible in single reads (a read of an
aborted write, G1a; of an intermediate write, G1b; of a value nobody wrote,
garbage; a list holding an element twice, duplicate-elements), within one
transaction (a read that contradicts the transaction's own earlier reads and
writes, internal), or between two reads (two lists neither of which is a
prefix of the other, incompatible-order; a cycle in a key's version order,
cyclic-versions), or in a pair of transactions that both read one version of
a key and both wrote it (lost-update).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checker.elle.graph import DepGraph

#: at most this many examples of one anomaly type are kept (the count is exact)
MAX_EXAMPLES = 16


@dataclass
class Inference:
    """The dependency graph, the anomalies found on the way, and why it may be unusable."""

    graph: DepGraph
    anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    #: why the history cannot be checked with this model (e.g. writes are not unique)
    unusable: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def report(self, kind: str, example: dict[str, Any]) -> None:
        """Record one anomaly of ``kind``; only the first few examples are kept."""
        count = self.counts.get(kind, 0)
        self.counts[kind] = count + 1
        if count < MAX_EXAMPLES:
            self.anomalies.setdefault(kind, []).append({"type": kind, **example})


__all__ = ["MAX_EXAMPLES", "Inference"]
