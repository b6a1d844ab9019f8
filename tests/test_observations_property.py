"""Property: random valid Raft log evolutions never raise an alarm; one corrupted committed
entry always does, and the evidence names its node and index.

A run is generated the way Raft allows logs to evolve: one agreed sequence of
entries (the log that ends up committed); a commit point that only advances
once a majority holds the entries; nodes that lag, hold stale divergent tails
that get overwritten, crash and restart with a lower commit index, lose an
unsynced tail (never what they applied, and never so much that the majority
holding committed entries is broken), compact into snapshots, report what they
applied, and get dumped in full or incrementally.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logorder_helpers import Obs

from checker.logorder import check_log_order
from checker.logorder.observations import Observations

SAFETY_CHECKERS = ("log-agreement", "committed-durability", "leader-per-term", "digests")


@dataclass
class NodeState:
    held: int = 0  # the node holds the agreed sequence's first `held` entries
    commit: int = 0
    snapshot: int = 0
    tail: list[dict] = field(default_factory=list)  # stale, divergent, never committed
    committed_ever: int = 0
    applied: int = 0  # the highest applied index it reported: durable, survives any crash


def agreed_entry(index: int, term: int) -> dict:
    return {"index": index, "term": term, "client": f"c{index % 3}", "seq": index,
            "digest": f"agreed-{index}-{term}"}


class Evolution:
    def __init__(self, data: st.DataObject) -> None:
        self.draw = data.draw
        count = self.draw(st.sampled_from([3, 5]), label="nodes")
        self.names = [f"n{i}" for i in range(1, count + 1)]
        self.majority = count // 2 + 1
        length = self.draw(st.integers(1, 25), label="length")
        terms = sorted(self.draw(st.lists(st.integers(1, 5), min_size=length,
                                          max_size=length), label="terms"))
        self.agreed = [agreed_entry(i + 1, term) for i, term in enumerate(terms)]
        self.committed = 0
        self.nodes = {name: NodeState() for name in self.names}
        self.led_terms: set[int] = set()
        self.obs = Obs()
        self.stale = 0

    def pick(self) -> str:
        return self.draw(st.sampled_from(self.names))

    def announce_leaders(self, leader: str) -> None:
        for term in sorted({e["term"] for e in self.agreed[: self.committed]} - self.led_terms):
            self.obs.role(leader, term, "leader")
            self.led_terms.add(term)

    # -- steps ------------------------------------------------------------------------------

    def advance(self) -> None:
        target = self.draw(st.integers(self.committed, len(self.agreed)))
        quorum = self.draw(st.permutations(self.names))[: self.majority]
        for name in quorum:
            node = self.nodes[name]
            node.held, node.tail = max(node.held, target), []
        self.committed = target
        self.announce_leaders(quorum[0])

    def replicate(self) -> None:
        node = self.nodes[self.pick()]
        node.held = self.draw(st.integers(node.held, len(self.agreed)))
        node.tail = []  # the leader's entries overwrite a stale tail

    def stale_tail(self) -> None:
        node = self.nodes[self.pick()]
        if node.held < node.committed_ever:
            return  # a node never holds anything but the agreed entry where it committed
        size = self.draw(st.integers(1, 3))
        self.stale += 1
        node.tail = [{"index": node.held + k, "term": 9, "client": "stale", "seq": self.stale,
                      "digest": f"stale-{self.stale}-{k}"} for k in range(1, size + 1)]

    def dump(self) -> None:
        name = self.pick()
        node = self.nodes[name]
        top = min(self.committed, node.held)
        node.commit = self.draw(st.integers(min(node.commit, top), top))
        node.committed_ever = max(node.committed_ever, node.commit)
        shown = self.agreed[node.snapshot : node.held] + node.tail
        start = None
        if shown and self.draw(st.booleans()):
            start = self.draw(st.integers(node.snapshot + 1, shown[-1]["index"] + 1))
            shown = [e for e in shown if e["index"] >= start]
        self._log(name, node, shown, start)

    def _log(self, name: str, node: NodeState, shown: list[dict], start: int | None) -> None:
        snapshot_term = self.agreed[node.snapshot - 1]["term"] if node.snapshot else 0
        self.obs.log(name, [dict(e) for e in shown], node.commit,
                     snapshot_index=node.snapshot, snapshot_term=snapshot_term,
                     from_index=start)

    def status(self) -> None:
        """A status answer: applied up to some committed index, so durable up to there."""
        name = self.pick()
        node = self.nodes[name]
        node.applied = max(node.applied, self.draw(st.integers(0, node.commit)))
        self.obs.status(name, "follower", max(self.led_terms, default=0), commit=node.applied)

    def crash(self) -> None:
        name = self.pick()
        node = self.nodes[name]
        self.obs.mark(name, "crash")
        self.obs.mark(name, "restart")
        node.commit = self.draw(st.integers(node.snapshot, node.commit))

    def lose_unsynced(self) -> None:
        name = self.pick()
        node = self.nodes[name]
        others = sum(1 for n, s in self.nodes.items() if n != name and s.held >= self.committed)
        floor = node.snapshot if others >= self.majority else max(node.snapshot,
                                                                  min(node.held, self.committed))
        floor = max(floor, min(node.applied, node.held))  # what it applied was fsynced
        node.held = self.draw(st.integers(floor, node.held))
        node.tail = []
        node.commit = self.draw(st.integers(node.snapshot, min(node.commit, node.held)))
        self.obs.mark(name, "lose-unfsynced")
        self.obs.mark(name, "restart")

    def compact(self) -> None:
        node = self.nodes[self.pick()]
        node.snapshot = self.draw(st.integers(node.snapshot, node.commit))

    def finish(self) -> None:
        """Heal: everything committed everywhere, every node dumped in full, digests equal."""
        self.committed = len(self.agreed)
        self.announce_leaders(self.names[0])
        keeps_snapshot = self.draw(st.sampled_from(self.names))
        for name, node in self.nodes.items():
            node.held, node.tail, node.commit = len(self.agreed), [], len(self.agreed)
            if name != keeps_snapshot:
                node.snapshot = 0  # at least two final dumps show every index
            self._log(name, node, self.agreed[node.snapshot :], None)
        self.obs.healed()
        for name in self.names:
            self.obs.digest(name, len(self.agreed), "converged")

    def run(self) -> list[dict]:
        steps = [self.advance, self.replicate, self.stale_tail, self.dump, self.dump,
                 self.status, self.crash, self.lose_unsynced, self.compact]
        for _ in range(self.draw(st.integers(0, 40), label="steps")):
            self.draw(st.sampled_from(steps))()
        self.finish()
        return self.obs.records


def safety_verdicts(records: list[dict]) -> dict:
    result = check_log_order(Observations.from_records(records))
    return {name: result["checkers"][name] for name in SAFETY_CHECKERS}


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_valid_evolutions_raise_no_alarm(data):
    records = Evolution(data).run()
    verdicts = safety_verdicts(records)
    assert all(v["valid"] is True for v in verdicts.values()), verdicts


def _names_place(violation: dict, node: str, index: int) -> bool:
    nodes = violation.get("nodes") or [violation.get("node")]
    if node not in nodes:
        return False
    if "index" in violation:
        return violation["index"] == index
    first, last = violation.get("indexes", (None, None))
    return first is not None and first <= index <= last


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_one_corrupted_committed_entry_is_always_found(data):
    records = Evolution(data).run()
    candidates = [
        (position, k)
        for position, record in enumerate(records)
        if record["kind"] == "log"
        for k, e in enumerate(record["entries"])
        if e["index"] <= record["commit"]
    ]
    position, k = data.draw(st.sampled_from(candidates), label="corrupted")
    record = records[position]
    corrupted = dict(record["entries"][k])
    if data.draw(st.booleans(), label="corrupt the term, not the digest"):
        corrupted["term"] += 100
    else:
        corrupted["digest"] = "corrupted"
    record["entries"][k] = corrupted
    verdicts = safety_verdicts(records)
    failing = [v for v in verdicts.values() if v["valid"] is False]
    assert failing, verdicts
    violations = [v for result in failing for v in result["violations"]]
    assert any(_names_place(v, record["node"], corrupted["index"]) for v in violations), (
        record["node"], corrupted, violations)
