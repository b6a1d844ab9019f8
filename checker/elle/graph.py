"""The dependency graph: transactions as nodes, typed edges with their reasons.

Edge types (Adya's, plus the two orders clients see):

- ``ww`` write-write: T1 installed a version of a key, T2 the next one;
- ``wr`` write-read: T2 read a version T1 installed;
- ``rw`` read-write (anti-dependency): T1 read a version, T2 installed a later one;
- ``process``: T1 and T2 ran on one client process, T1 first;
- ``realtime``: T1 completed before T2 was invoked.

One pair of transactions may be linked for several reasons; the graph keeps
one edge with a bit mask of its types, and the first reason of each data edge
(key, versions) in a side table, so that an explanation can be given for any
edge of a cycle without storing text for the hundreds of thousands of edges
that never end up in one. Edges are gathered in plain dicts (the hot path of
a 100,000-transaction check) and handed to networkx once, as a ``DiGraph``
with the mask in the attribute ``t``, for the strongly connected components.

Real-time order is not stored as edges between transactions for the whole
history: that would be about (history length x concurrency) edges. For the
strongly connected components it is a *timeline*: one virtual node per ok
completion, chained in event order, with T -> (T's completion) and (the last
completion before U's invocation) -> U; T reaches U along the timeline
exactly when T completed before U was invoked. Only inside a component that has a
cycle are real-time edges made, as the *transitive reduction* of real-time
order among its transactions: when T is invoked, it gets an edge from each
transaction in the current *frontier*, the completed transactions that no
other completed transaction follows in real time; when T completes, what
preceded it leaves the frontier and T enters it. Any real-time predecessor
of T reaches T through the frontier, so no cycle is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import networkx as nx

from checker.elle.txn import Txn, show_value

WW, WR, RW, PROCESS, REALTIME = 1, 2, 4, 8, 16
#: the name of each edge type, as it appears in evidence and anomaly names
TYPE_NAMES = {WW: "ww", WR: "wr", RW: "rw", PROCESS: "process", REALTIME: "realtime"}
DATA = WW | WR | RW


class DepGraph:
    """Transactions and the dependencies inferred between them."""

    def __init__(self, txns: Iterable[Txn], verb: str = "wrote") -> None:
        #: how explanations say "installed a version": "wrote" or "appended"
        self.verb = verb
        self.txns: dict[int, Txn] = {t.id: t for t in txns}
        #: u -> {v: type mask}
        self.succ: dict[int, dict[int, int]] = {t: {} for t in self.txns}
        #: (from, to, type bit) -> (key, detail...) for data edges, first reason only
        self.reasons: dict[tuple[int, int, int], tuple[Any, ...]] = {}

    def add(self, u: int, v: int, kind: int, reason: tuple[Any, ...] = ()) -> None:
        """Add (or widen) the edge u -> v by ``kind``; self-loops are ignored."""
        if u == v:
            return
        out = self.succ[u]
        mask = out.get(v, 0)
        if mask & kind:
            return
        out[v] = mask | kind
        if reason:
            self.reasons[(u, v, kind)] = reason

    def to_networkx(self, timeline: bool = True) -> nx.DiGraph:
        """The graph for networkx, each edge's type mask in ``t``; with the timeline
        (virtual nodes, negative numbers, edges with ``t = 0``) standing for real time."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.succ)
        graph.add_edges_from((u, v, {"t": m}) for u, out in self.succ.items()
                             for v, m in out.items())
        if timeline:
            graph.add_edges_from(self._timeline(), t=0)
        return graph

    def _timeline(self) -> list[tuple[int, int]]:
        """Edges of the real-time timeline: virtual node -(id + 1) is T's ok completion;
        completions are chained in event order, and each transaction hangs off the
        last completion before its invocation."""
        events: list[tuple[int, int, int]] = []  # (position, 0 completion / 1 invocation, id)
        for txn in self.txns.values():
            events.append((txn.call, 1, txn.id))
            if txn.complete is not None and txn.type == "ok":
                events.append((txn.complete, 0, txn.id))
        events.sort()
        edges: list[tuple[int, int]] = []
        last: int | None = None
        for _, kind, tid in events:
            if kind == 0:
                node = -(tid + 1)
                edges.append((tid, node))
                if last is not None:
                    edges.append((last, node))
                last = node
            elif last is not None:
                edges.append((last, tid))
        return edges

    def edge_count(self, kinds: int = ~0) -> int:
        """How many edges have a type among ``kinds``."""
        return sum(1 for out in self.succ.values() for m in out.values() if m & kinds)

    def add_process_edges(self) -> None:
        """Chain each process's transactions in invocation order.

        Only from committed ones: a transaction of unknown outcome may take
        effect after its client has moved on, so nothing is ordered after it.
        """
        last: dict[Any, int] = {}
        for txn in sorted(self.txns.values(), key=lambda t: t.call):
            before = last.get(txn.process)
            if before is not None:
                self.add(before, txn.id, PROCESS)
            if txn.type == "ok":
                last[txn.process] = txn.id

    def add_realtime_edges(self, among: Iterable[int] | None = None) -> None:
        """Real-time order among ``among`` (default: all), transitively reduced."""
        txns = self.txns.values() if among is None else [self.txns[t] for t in among]
        events: list[tuple[int, int, int]] = []  # (position, 0 complete / 1 invoke, txn)
        for txn in txns:
            events.append((txn.call, 1, txn.id))
            if txn.complete is not None and txn.type == "ok":
                events.append((txn.complete, 0, txn.id))
        events.sort()
        frontier: set[int] = set()
        preds: dict[int, frozenset[int]] = {}
        for _, kind, tid in events:
            if kind == 1:
                snapshot = frozenset(frontier)
                preds[tid] = snapshot
                for p in snapshot:
                    self.add(p, tid, REALTIME)
            else:
                frontier -= preds.get(tid, frozenset())
                frontier.add(tid)

    def mask(self, u: int, v: int) -> int:
        return self.succ[u][v]

    def explain(self, u: int, v: int, kind: int) -> dict[str, Any]:
        """Why the edge u -kind-> v exists, as data plus one sentence."""
        a, b = self.txns[u], self.txns[v]
        step: dict[str, Any] = {"from": u, "to": v, "type": TYPE_NAMES[kind]}
        reason = self.reasons.get((u, v, kind), ())
        if kind == PROCESS:
            step["explanation"] = (f"T{u} and T{v} ran on process {a.process!r}, T{u} first")
        elif kind == REALTIME:
            step["explanation"] = (f"T{u} completed (event {a.complete}) before T{v} was "
                                   f"invoked (event {b.call})")
        elif reason:
            key, *detail = reason
            step["key"] = key
            step["explanation"] = _explain_data(kind, u, v, key, detail, self.verb)
            step["detail"] = [_jsonable(d) for d in detail]
        else:
            step["explanation"] = f"T{u} -{TYPE_NAMES[kind]}-> T{v}"
        return step


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _explain_data(kind: int, u: int, v: int, key: Any, detail: list[Any], verb: str) -> str:
    k = show_value(key)
    if kind == WW:
        first, second = detail[0], detail[1]
        return (f"T{u} {verb} {show_value(first)} to {k} and T{v} {verb} "
                f"{show_value(second)}, which comes after it in {k}'s version order")
    if kind == WR:
        read, written = detail[0], detail[-1]
        if read == written:
            return f"T{v} read {k} = {show_value(read)}, which T{u} {verb}"
        return (f"T{v} read {k} = {show_value(read)}, whose last element "
                f"{show_value(written)} T{u} {verb}")
    read, later = detail[0], detail[1]
    return (f"T{u} read {k} = {show_value(read)}, and T{v} {verb} {show_value(later)}, "
            f"a later version of {k}")


__all__ = ["DATA", "PROCESS", "REALTIME", "RW", "TYPE_NAMES", "WR", "WW", "DepGraph"]
