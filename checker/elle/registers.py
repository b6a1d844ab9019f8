"""Register linearizability from values: no search when every written value is unique.

When each value is written once, a read names the one operation whose value
it saw (reads-from), and a successful compare-and-set from ``e`` to ``v``
says that ``v`` came right after ``e`` (a cas chain). Group each installed
value with the reads that returned it: a *cluster*, which must occupy one
contiguous stretch of any linearization, starting with its installer (the
register never holds a value twice). The initial value is a cluster whose
installer sits before everything. Chains of cas glue clusters end to end.

Real time then orders whole chains: if any operation of chain X returned
before any operation of chain Y was invoked, X precedes Y. With
``lo(X)`` the earliest return in X and ``hi(Y)`` the latest invocation in
Y, that is ``lo(X) < hi(Y)``: a precedence graph of chains (Gibbons &
Korach's reads-from case; the "zones" of Golab et al.). The decision:

- **valid** only with a proof: chains sorted by ``min(lo, hi)`` (the left end
  of their zone) must satisfy every precedence, clusters within a chain
  must too, and no read may return before its installer was invoked; the
  order is then an explicit linearization (installer first in each cluster,
  reads by return time);
- **invalid** only with a proof: a cycle of necessary precedences (two chains
  each of which must come first; a read that returned before its value was
  written; a value read or expected that nobody wrote; two successful cas
  from one value; a later cluster of a chain that must precede an earlier one);
- otherwise **undecided**, and the caller runs the WGL search on that key.

Operations of unknown outcome count as having happened when their value is
observed (read, or expected by a cas), and are left out otherwise (nothing
could tell). Values that are not unique, appends, and cas that failed as an
observation (Porcupine's etcd model) make the key undecided from the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checker.history import Op
from checker.models import CAS, READ, UNKNOWN, WRITE, Model

#: models whose register semantics this module implements exactly
SUPPORTED = frozenset({"register", "cas-register", "raft-kv"})
#: with at most this many chains, a failed order is searched for a longer cycle
_EXPLICIT_LIMIT = 400
_INF = float("inf")


@dataclass
class Decision:
    """The verdict for one key (True / False), and a witness when False."""

    valid: bool
    explanation: str = ""
    ops: list[int] = field(default_factory=list)  # indexes into the key's ops, the witness
    stats: dict[str, Any] = field(default_factory=dict)


class _Cluster:
    __slots__ = ("chain", "hi", "hi_op", "installer", "lo", "lo_op", "value")

    def __init__(self, value: Any, installer: int | None, call: float, ret: float) -> None:
        self.value = value
        self.installer = installer  # op index, None for the initial value
        self.lo, self.lo_op = ret, installer
        self.hi, self.hi_op = call, installer
        self.chain = -1

    def add(self, op: int, call: float, ret: float) -> None:
        if ret < self.lo:
            self.lo, self.lo_op = ret, op
        if call > self.hi:
            self.hi, self.hi_op = call, op


def decide(model: Model, ops: list[Op], prepared: list[tuple[Any, Any]],
           init_state: Any) -> Decision | None:
    """Decide one key's linearizability from values; None when inference cannot decide."""
    if model.name not in SUPPORTED:
        return None
    calls = [float(op.call) for op in ops]
    rets = [_INF if op.unknown or op.complete is None else float(op.complete) for op in ops]
    try:
        kept = _happened(prepared, rets)
        if kept is None:
            return None
        clusters: dict[Any, _Cluster] = {init_state: _Cluster(init_state, None, -1.0, -1.0)}
        links: dict[Any, tuple[Any, int]] = {}  # e -> (v, cas op) for cas e -> v
        for i, (inp, _) in enumerate(prepared):
            if inp[0] == READ or i not in kept:
                continue
            value = inp[1] if inp[0] == WRITE else inp[2]
            if value in clusters:
                return None  # not unique (or the initial value again)
            clusters[value] = _Cluster(value, i, calls[i], rets[i])
    except TypeError:
        return None  # unhashable values
    stats = {"clusters": len(clusters)}

    def fail(text: str, *witness: int | None) -> Decision:
        return Decision(False, text, [w for w in witness if w is not None], stats)

    for i, (inp, out) in enumerate(prepared):
        code = inp[0]
        if code == READ:
            cluster = clusters.get(out)
            if cluster is None:
                return fail(f"op {ops[i].id} read {out!r}, which no operation wrote", i)
            w = cluster.installer
            if w is not None and rets[i] < calls[w]:
                return fail(f"op {ops[i].id} read {out!r} and returned before op {ops[w].id}, "
                            "the only write of that value, was invoked", i, w)
            cluster.add(i, calls[i], rets[i])
        elif code == CAS:
            new = clusters.get(inp[2])
            if new is None or new.installer != i:
                continue  # left out above
            expected = inp[1]
            if expected not in clusters:
                return fail(f"op {ops[i].id} (cas) expected {expected!r}, which no operation "
                            "wrote", i)
            if expected in links:
                other = links[expected][1]
                return fail(f"ops {ops[other].id} and {ops[i].id} both changed the register "
                            f"from {expected!r}, which it held only once", other, i)
            links[expected] = (inp[2], i)
            # the cas saw `expected`: it cannot have returned before that value was written
            w = clusters[expected].installer
            if w is not None and rets[i] < calls[w]:
                return fail(f"op {ops[i].id} (cas) expected {expected!r} and returned before "
                            f"op {ops[w].id}, the only write of that value, was invoked", i, w)

    # Chains: clusters glued by cas, in order.
    successors = {e: v for e, (v, _) in links.items()}
    has_pred = set(successors.values())
    chains: list[list[_Cluster]] = []
    for value in list(clusters):
        if value in has_pred:
            continue
        chain = []
        current: Any = value
        while True:
            node = clusters[current]
            node.chain = len(chains)
            chain.append(node)
            if current not in successors:
                break
            current = successors[current]
        chains.append(chain)
    looped = [c for c in clusters.values() if c.chain < 0]
    if looped:
        cas_ops = [links[c.value][1] for c in looped if c.value in links]
        return fail("compare-and-set operations form a loop of values ("
                    + ", ".join(repr(c.value) for c in looped) + "), each installed once",
                    *cas_ops[:4])

    # Within a chain, a later cluster must not have to precede an earlier one.
    for chain in chains:
        later_lo, later = _INF, None
        for cluster in reversed(chain):
            if later is not None and later_lo < cluster.hi:
                return fail(_precedes(ops, later, cluster, later_lo)
                            + f"; but {cluster.value!r} came before {later.value!r} "
                            "(a chain of compare-and-sets)", later.lo_op, cluster.hi_op)
            if cluster.lo < later_lo:
                later_lo, later = cluster.lo, cluster

    # Across chains: sort by the left end of the zone, then verify every precedence.
    summary = []
    for index, chain in enumerate(chains):
        lo_c = min(chain, key=lambda c: c.lo)
        hi_c = max(chain, key=lambda c: c.hi)
        summary.append((min(lo_c.lo, hi_c.hi), index, lo_c, hi_c))
    summary.sort(key=lambda s: (s[0], s[1]))
    stats["chains"] = len(chains)
    suffix_lo, suffix = _INF, None
    for _, _index, lo_c, hi_c in reversed(summary):
        if suffix is not None and suffix_lo < hi_c.hi:
            # `suffix`'s chain must precede this one; if this one must also precede it: a cycle
            other_hi = max(chains[suffix.chain], key=lambda c: c.hi)
            if lo_c.lo < other_hi.hi:
                return fail(_precedes(ops, suffix, hi_c, suffix_lo) + "; and "
                            + _precedes(ops, lo_c, other_hi, lo_c.lo)
                            + ": each must come first",
                            suffix.lo_op, hi_c.hi_op, lo_c.lo_op, other_hi.hi_op)
            return _explicit(chains, ops, stats)
        if lo_c.lo < suffix_lo:
            suffix_lo, suffix = lo_c.lo, lo_c
    return Decision(True, stats=stats)


def _happened(prepared: list[tuple[Any, Any]], rets: list[float]) -> set[int] | None:
    """The writes and cas that took effect: completed ones, and unknown ones someone observed.

    An unknown write or cas is observed when a read returns its value or a cas
    that took effect expects it (a fixpoint: that cas may itself be an observed
    unknown one). The others may as well never have happened: while their
    value was current nothing could have read it. None if an operation is not
    a register read, write or successful / unknown cas.
    """
    observed: set[Any] = set()
    unknown: dict[Any, list[int]] = {}
    kept: set[int] = set()
    frontier: list[Any] = []
    for i, (inp, out) in enumerate(prepared):
        code = inp[0]
        if code == READ:
            if out is UNKNOWN:
                return None
            frontier.append(out)
        elif code in (WRITE, CAS):
            if code == CAS and out is not True and out is not UNKNOWN:
                return None  # a cas that failed as an observation: not this case
            value = inp[1] if code == WRITE else inp[2]
            if rets[i] == _INF:
                unknown.setdefault(value, []).append(i)
            else:
                kept.add(i)
                if code == CAS:
                    frontier.append(inp[1])
        else:
            return None  # appends, puts, transactions
    while frontier:
        value = frontier.pop()
        if value in observed:
            continue
        observed.add(value)
        for i in unknown.pop(value, ()):
            kept.add(i)
            if prepared[i][0][0] == CAS:
                frontier.append(prepared[i][0][1])
    return kept


def _precedes(ops: list[Op], first: _Cluster, second: _Cluster, lo: float) -> str:
    a, b = first.lo_op, second.hi_op
    left = "the initial value" if a is None else f"op {ops[a].id} (holding {first.value!r})"
    right = "the initial value" if b is None else f"op {ops[b].id} (holding {second.value!r})"
    return (f"{left} returned at event {int(lo)} before {right} was invoked at event "
            f"{int(second.hi)}, so {first.value!r} came first")


def _explicit(chains: list[list[_Cluster]], ops: list[Op], stats: dict[str, Any],
              ) -> Decision | None:
    """The sorted order failed without a 2-cycle: look for a longer one (small keys only)."""
    if len(chains) > _EXPLICIT_LIMIT:
        return None
    import networkx as nx

    graph = nx.DiGraph()
    ends = []
    for index, chain in enumerate(chains):
        ends.append((min(chain, key=lambda c: c.lo), max(chain, key=lambda c: c.hi)))
        graph.add_node(index)
    for i, (lo_i, _) in enumerate(ends):
        for j, (_, hi_j) in enumerate(ends):
            if i != j and lo_i.lo < hi_j.hi:
                graph.add_edge(i, j)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        # the sort was wrong, not the history: a topological order of the chains is
        # a linearization as well (the checks within chains and clusters passed)
        return Decision(True, stats={**stats, "explicit_order": True})
    steps = [_precedes(ops, ends[i][0], ends[j][1], ends[i][0].lo) for i, j in cycle]
    witness = [w for i, j in cycle for w in (ends[i][0].lo_op, ends[j][1].hi_op)
               if w is not None]
    return Decision(False, "; ".join(steps) + ": a cycle", witness, stats)


__all__ = ["SUPPORTED", "Decision", "decide"]
