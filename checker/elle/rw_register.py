"""Read-write registers: unique writes, a version order inferred where the history allows.

Every write to a key writes a value no other write to that key writes, so a
read names the one transaction whose version it saw (wr). The order of
versions is not visible in any single read, so only what the history proves
is used (a partial order per key, a DAG over values):

- the initial version (null, never written) precedes every write;
- a transaction that reads ``k = a`` and then writes ``k = b`` installed b
  after a (write-follows-read within a transaction: it overwrote what it saw);
- a transaction's own successive writes to a key are in program order, but
  only its last one is a version others may see (an earlier one is
  intermediate: reading it is G1b), so only that one enters the order.

With ``linearizable_keys`` (opt-in: sound only when each key alone is known to
be linearizable) real-time order adds: a committed write whose transaction
completed before another write's transaction was invoked comes first.

From an order edge ``a < b`` of key k (a DAG edge, not necessarily adjacent
versions): ``W(a) -ww-> W(b)``; and a transaction that read a anti-depends on
W(b): ``T -rw-> W(b)``. Each is implied by a chain of edges between adjacent
versions, so the cycles found are those of the true graph. A read of null
anti-depends on the writers of the *first* known versions (no known
predecessor); later writers follow those through ww. A cycle in a key's order
is ``cyclic-versions``: that key then gives no ww or rw edges.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from checker.elle.anomaly import Inference
from checker.elle.graph import RW, WR, WW, DepGraph
from checker.elle.txn import APPEND, READ, WRITE, Txn

_INIT = None  # the initial version of every key


def infer(txns: list[Txn], linearizable_keys: bool = False) -> Inference:
    """Build the dependency graph of a rw-register history and the direct anomalies."""
    nodes = [t for t in txns if t.type != "fail"]
    graph = DepGraph(nodes, verb="wrote")
    result = Inference(graph)
    writer: dict[tuple[Any, Any], int] = {}
    aborted: dict[tuple[Any, Any], int] = {}
    intermediate: set[tuple[Any, Any]] = set()
    final_writes: dict[int, dict[Any, Any]] = {}
    for txn in txns:
        last: dict[Any, Any] = {}
        for f, key, value in txn.mops:
            if f == APPEND:
                result.unusable = f"T{txn.id} appends: not a rw-register history"
                return result
            if f != WRITE:
                continue
            if value is _INIT:
                result.unusable = (f"T{txn.id} writes null to {key!r}: null is the initial "
                                   "version, so rw-register writes must not be null")
                return result
            slot = (key, value)
            if slot in writer or slot in aborted:
                result.unusable = (f"{value!r} is written to {key!r} more than once "
                                   f"(T{writer.get(slot, aborted.get(slot))} and T{txn.id}): "
                                   "rw-register needs unique values per key")
                return result
            (writer if txn.type != "fail" else aborted)[slot] = txn.id
            if key in last:
                intermediate.add((key, last[key]))
            last[key] = value
        if txn.type != "fail":
            final_writes[txn.id] = last

    orders: dict[Any, nx.DiGraph] = {}

    def order(key: Any) -> nx.DiGraph:
        dag = orders.get(key)
        if dag is None:
            dag = orders[key] = nx.DiGraph()
        return dag

    external: list[tuple[int, Any, Any]] = []  # (txn, key, value read before own writes)
    for txn in txns:
        if txn.type != "ok":
            continue
        known: dict[Any, Any] = {}
        for f, key, value in txn.mops:
            if f == WRITE:
                known[key] = value
                continue
            if f != READ:
                continue
            if isinstance(value, tuple):
                result.unusable = (f"T{txn.id} read {key!r} = a list: rw-register reads "
                                   "return single values")
                return result
            if key in known:
                if value != known[key]:
                    result.report("internal", {"txn": txn.view(), "key": key,
                                               "expected": known[key], "read": value})
                continue
            known[key] = value
            if value is not _INIT and writer.get((key, value)) == txn.id:
                # it read what it had yet to write
                result.report("internal", {"txn": txn.view(), "key": key, "read": value,
                                           "future": True})
                continue
            external.append((txn.id, key, value))
            if value is _INIT:
                continue
            slot = (key, value)
            if slot in aborted:
                result.report("G1a", {"txn": txn.view(), "key": key, "value": value,
                                      "writer": aborted[slot]})
            elif slot not in writer:
                result.report("garbage", {"txn": txn.view(), "key": key, "value": value})
            elif slot in intermediate and writer[slot] != txn.id:
                result.report("G1b", {"txn": txn.view(), "key": key, "value": value,
                                      "writer": writer[slot]})
        # write-follows-read: what this txn read of a key precedes what it wrote there
        for tid_key, written in final_writes.get(txn.id, {}).items():
            seen = _first_read(txn, tid_key)
            if seen is not _MISSING and seen is not _INIT and seen != written:
                order(tid_key).add_edge(seen, written)

    for key, value in writer:
        order(key).add_node(value)
    if linearizable_keys:
        _realtime_order(txns, final_writes, order)

    usable: dict[Any, nx.DiGraph] = {}
    for key, dag in orders.items():
        if nx.is_directed_acyclic_graph(dag):
            usable[key] = dag
        else:
            cycle = nx.find_cycle(dag)
            result.report("cyclic-versions", {"key": key,
                                              "cycle": [u for u, _ in cycle] + [cycle[0][0]]})

    for key, dag in usable.items():
        for a, b in dag.edges:
            wa, wb = writer.get((key, a)), writer.get((key, b))
            if wa is not None and wb is not None:
                graph.add(wa, wb, WW, (key, a, b))
    roots: dict[Any, list[Any]] = {}
    for tid, key, value in external:
        if value is not _INIT:
            w = writer.get((key, value))
            if w is not None:
                graph.add(w, tid, WR, (key, value, value))
        dag = usable.get(key)
        if dag is None:
            continue
        if value is _INIT:
            if key not in roots:
                roots[key] = [v for v in dag if dag.in_degree(v) == 0]
            later = roots[key]
        elif value in dag:
            later = list(dag.successors(value))
        else:
            continue
        for b in later:
            w = writer.get((key, b))
            if w is not None and b is not _INIT:
                graph.add(tid, w, RW, (key, value, b))

    by_version: dict[tuple[Any, Any], list[int]] = {}
    for tid, key, value in external:
        if key in final_writes.get(tid, {}):
            by_version.setdefault((key, value), []).append(tid)
    for (key, value), group in by_version.items():
        if len(group) > 1:
            result.report("lost-update", {"key": key, "read": value,
                                          "txns": [graph.txns[t].view() for t in group]})
    result.stats = {"keys": len(orders), "ordered_keys": len(usable), "writes": len(writer),
                    "version_order_edges": sum(d.number_of_edges() for d in usable.values())}
    return result


_MISSING = object()


def _first_read(txn: Txn, key: Any) -> Any:
    """The value a txn's first read of ``key`` returned, if it read it before writing it."""
    for f, k, value in txn.mops:
        if k != key:
            continue
        if f == READ:
            return value
        return _MISSING
    return _MISSING


def _realtime_order(txns: list[Txn], final_writes: dict[int, dict[Any, Any]],
                    order: Any) -> None:
    """Per key, committed writes ordered by real time (reduced through a frontier)."""
    per_key: dict[Any, list[tuple[int, int, Any, Txn]]] = {}
    for txn in txns:
        if txn.type != "ok":
            continue
        for key, value in final_writes.get(txn.id, {}).items():
            events = per_key.setdefault(key, [])
            events.append((txn.call, 1, value, txn))
            if txn.complete is not None:
                events.append((txn.complete, 0, value, txn))
    for key, events in per_key.items():
        events.sort(key=lambda e: (e[0], e[1]))
        frontier: set[Any] = set()
        preds: dict[Any, frozenset[Any]] = {}
        dag = order(key)
        for _, kind, value, _txn in events:
            if kind == 1:
                preds[value] = frozenset(frontier)
                for p in preds[value]:
                    dag.add_edge(p, value)
            else:
                frontier -= preds.get(value, frozenset())
                frontier.add(value)


__all__ = ["infer"]
