"""Applied-state digests: equal at equal applied index, and converged after healing.

A node's state machine is a deterministic function of the committed prefix it
applied, and committed prefixes agree, so two digests taken at the same applied
index must be equal at any time — not only after healing. After the ``healed``
mark the nodes must also *converge*: every node must report a digest at one
applied index common to all of them (the harness polls until they do).
"""

from __future__ import annotations

from typing import Any

from checker.logorder.evidence import Violations
from checker.logorder.records import DigestRecord, Where
from checker.results import invalid_result, unknown_result, valid_result


class DigestTracker:
    def __init__(self) -> None:
        #: applied index -> (digest, where) first reported there.
        self.first_at: dict[int, tuple[str, Where]] = {}
        #: node -> applied indexes it reported after the latest healed mark.
        self.after_heal: dict[str, set[int]] = {}
        self.healed: Where | None = None
        self.violations = Violations()
        self.records = 0
        self.compared = 0

    def on_healed(self, where: Where) -> None:
        # Faults may resume after a heal (several phases): convergence is judged after the last.
        self.healed = where
        self.after_heal = {}

    def on_digest(self, record: DigestRecord) -> None:
        self.records += 1
        where = record.where
        first = self.first_at.get(record.applied)
        if first is None:
            self.first_at[record.applied] = (record.digest, where)
        else:
            self.compared += 1
            if first[0] != record.digest:
                self.violations.add(
                    "state-digests-differ",
                    f"{first[1].node} and {where.node} applied {record.applied} entries but "
                    f"their state digests differ",
                    applied=record.applied,
                    nodes=sorted({str(first[1].node), str(where.node)}),
                    time=where.time,
                    first={"digest": first[0], **first[1].describe()},
                    second={"digest": record.digest, **where.describe()},
                    after_healed=self.healed is not None,
                )
        if self.healed is not None:
            assert where.node is not None
            self.after_heal.setdefault(where.node, set()).add(record.applied)

    def result(self, known_nodes: set[str]) -> dict[str, Any]:
        stats = {"digest_records": self.records, "comparisons": self.compared}
        if self.violations:
            return invalid_result(**stats, **self.violations.describe())
        if not self.records:
            return unknown_result("no state digests were observed", **stats)
        if self.healed is None:
            return unknown_result(
                "no 'healed' mark: convergence after healing was not judged", **stats
            )
        missing = sorted(known_nodes - set(self.after_heal))
        if missing:
            return unknown_result(
                f"no state digest after healing from {', '.join(missing)}",
                nodes_without_digest=missing,
                **stats,
            )
        common = set.intersection(*self.after_heal.values())
        if not common:
            return unknown_result(
                "after healing the nodes never reported digests at a common applied index",
                applied_after_heal={
                    node: sorted(indexes)[-5:] for node, indexes in sorted(self.after_heal.items())
                },
                **stats,
            )
        converged_at = max(common)
        return valid_result(
            converged_at=converged_at,
            digest=self.first_at[converged_at][0],
            nodes=sorted(self.after_heal),
            **stats,
        )
