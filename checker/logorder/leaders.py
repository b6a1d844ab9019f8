"""At most one leader per term, and a node's term never goes backwards while it runs.

Evidence of leadership is only what a node says about itself: its ``role``
events and ``status`` answers with ``role == "leader"``. A follower's belief
about who leads is not used, so a stale ``leader`` field in some node's status
can never produce a false alarm.
"""

from __future__ import annotations

from typing import Any

from checker.logorder.evidence import Violations
from checker.logorder.records import RoleRecord, StatusRecord, Where
from checker.results import invalid_result, unknown_result, valid_result


class LeaderTracker:
    def __init__(self) -> None:
        #: term -> node -> first record in which that node claimed leadership of the term.
        self.leaders: dict[int, dict[str, tuple[str, Where]]] = {}
        #: (node, record kind) -> (term, incarnation, where) of the latest such record.
        self.last_term: dict[tuple[str, str], tuple[int, int, Where]] = {}
        self.term_violations = Violations()
        self.records = 0

    def on_role(self, record: RoleRecord | StatusRecord, incarnation: int) -> None:
        """Feed a role event or a status answer; ``incarnation`` counts the node's restarts."""
        if record.term is None or record.role is None:
            return  # a status answer that does not say: no evidence either way
        self.records += 1
        where = record.where
        node = where.node
        assert node is not None
        kind = "role" if isinstance(record, RoleRecord) else "status"
        if record.role == "leader":
            claims = self.leaders.setdefault(record.term, {})
            if node not in claims:
                claims[node] = (kind, where)
        # Terms are compared only within one kind of record: role events and status
        # answers travel through different harness tasks and may be written out of order.
        key = (node, kind)
        previous = self.last_term.get(key)
        if previous is not None and previous[1] == incarnation and record.term < previous[0]:
            self.term_violations.add(
                "term-decreased",
                f"{node}'s term went from {previous[0]} back to {record.term} without a restart",
                node=node,
                source=kind,
                time=where.time,
                before={"term": previous[0], **previous[2].describe()},
                after={"term": record.term, **where.describe()},
            )
        if previous is None or previous[1] != incarnation or record.term >= previous[0]:
            self.last_term[key] = (record.term, incarnation, where)

    def result(self) -> dict[str, Any]:
        violations = Violations()
        for term in sorted(self.leaders):
            claims = self.leaders[term]
            if len(claims) > 1:
                names = sorted(claims)
                violations.add(
                    "two-leaders",
                    f"term {term} had {len(claims)} leaders: {', '.join(names)}",
                    term=term,
                    time=sorted(where.time for _, where in claims.values())[1],
                    leaders=[
                        {"source": source, **where.describe()}
                        for source, where in sorted(claims.values(), key=lambda c: c[1].time)
                    ],
                )
        violations.extend(self.term_violations)
        terms_with_leader = len(self.leaders)
        if violations:
            return invalid_result(terms_with_leader=terms_with_leader, **violations.describe())
        if not self.leaders:
            return unknown_result(
                "no node ever reported being leader (no role events or leader status)",
                role_records=self.records,
            )
        return valid_result(
            terms_with_leader=terms_with_leader,
            leaders={str(term): sorted(c) for term, c in sorted(self.leaders.items())[-20:]},
            role_records=self.records,
        )
