"""List-append: version orders revealed by reads of whole lists.

Every append to a key adds a value no other append to that key adds, and a
read returns the whole list. A read of ``[1 2 3]`` therefore shows the order
in which the appends of 1, 2 and 3 took effect, and every read of a key must
be a prefix of one list, the key's *version order* (each prefix is a
version). The longest read is the best-known order; a read that is not a
prefix of it is an ``incompatible-order`` anomaly, and that key then gives no
ww or rw edges (its order is unknown), only wr edges.

From a key's order ``[v0 v1 ... vn]`` and its writers ``W(v)``:

- ww: ``W(vi) -> W(vi+1)``: the version ending in vi+1 follows the one ending in vi;
- wr: a transaction T whose (first, external) read of the key is ``[... vi]``
  read the version W(vi) installed: ``W(vi) -> T``;
- rw: T read ``[v0 ... vi]`` (length i+1), so the next version ends in vi+1:
  ``T -> W(vi+1)``; a read of the empty list anti-depends on ``W(v0)``.

A transaction's reads after its own appends to a key must end with those
appends (anything else is ``internal``); the external read is what remains
when they are stripped. Appends seen in no read are placed nowhere: nothing
can be inferred about them, and the checker never guesses.
"""

from __future__ import annotations

import itertools
from typing import Any

from checker.elle.anomaly import Inference
from checker.elle.graph import RW, WR, WW, DepGraph
from checker.elle.txn import APPEND, READ, WRITE, Txn


def infer(txns: list[Txn]) -> Inference:
    """Build the dependency graph of a list-append history and the direct anomalies."""
    nodes = [t for t in txns if t.type != "fail"]
    graph = DepGraph(nodes, verb="appended")
    result = Inference(graph)
    writer: dict[tuple[Any, Any], int] = {}  # (key, value) -> txn id, ok/info appends
    aborted: dict[tuple[Any, Any], int] = {}  # (key, value) -> txn id, failed appends
    intermediate: set[tuple[Any, Any]] = set()  # non-final appends of a txn to a key
    sequence: dict[tuple[Any, int], tuple[Any, ...]] = {}  # (key, txn) -> its appends, in order
    for txn in txns:
        last: dict[Any, Any] = {}
        for f, key, value in txn.mops:
            if f == WRITE:
                result.unusable = f"T{txn.id} writes ({f}): not a list-append history"
                return result
            if f != APPEND:
                continue
            slot = (key, value)
            if slot in writer or slot in aborted:
                result.unusable = (f"{value!r} is appended to {key!r} more than once "
                                   f"(T{writer.get(slot, aborted.get(slot))} and T{txn.id}): "
                                   "list-append needs unique values per key")
                return result
            (writer if txn.type != "fail" else aborted)[slot] = txn.id
            sequence[(key, txn.id)] = (*sequence.get((key, txn.id), ()), value)
            if key in last:
                intermediate.add((key, last[key]))
            last[key] = value

    # Each committed txn: internal consistency, and its external read of each key.
    external: list[tuple[int, Any, tuple[Any, ...]]] = []  # (txn, key, read minus own appends)
    reads: dict[Any, dict[tuple[Any, ...], int]] = {}  # key -> {list read: a reader}
    appenders: dict[Any, set[int]] = {}  # key -> committed txns appending to it
    for txn in txns:
        if txn.type != "ok":
            continue
        known: dict[Any, tuple[Any, ...]] = {}  # key -> the whole list, once read
        own: dict[Any, tuple[Any, ...]] = {}  # key -> own appends before any read
        appending = {key for f, key, _ in txn.mops if f == APPEND}
        for f, key, value in txn.mops:
            if f == APPEND:
                appenders.setdefault(key, set()).add(txn.id)
                if key in known:
                    known[key] = (*known[key], value)
                else:
                    own[key] = (*own.get(key, ()), value)
                continue
            if f != READ:
                continue
            got: tuple[Any, ...] = () if value is None else value
            if not isinstance(got, tuple):
                result.unusable = (f"T{txn.id} read {key!r} = {value!r}: a list-append read "
                                   "returns a list")
                return result
            reads.setdefault(key, {}).setdefault(got, txn.id)
            if key in known:
                if got != known[key]:
                    result.report("internal", {"txn": txn.view(), "key": key,
                                               "expected": list(known[key]), "read": list(got)})
            else:
                mine = own.get(key, ())
                if mine and got[len(got) - len(mine):] != mine:
                    result.report("internal", {"txn": txn.view(), "key": key,
                                               "expected_suffix": list(mine), "read": list(got)})
                else:
                    outside = got[:len(got) - len(mine)]
                    future = [v for v in outside if writer.get((key, v)) == txn.id] \
                        if key in appending else []
                    if future:  # it read what it had yet to append
                        result.report("internal", {"txn": txn.view(), "key": key,
                                                   "read": list(got), "future": future})
                    else:
                        external.append((txn.id, key, outside))
            known[key] = got
            _check_elements(result, txn, key, got, writer, aborted, intermediate)
            _check_atomic(result, txn, key, got, writer, sequence)

    # Version orders: the longest read of each key, if every other read is a prefix of it.
    orders: dict[Any, tuple[Any, ...]] = {}
    for key, seen in reads.items():
        longest = max(seen, key=len)
        compatible = True
        for got, reader in seen.items():
            if longest[:len(got)] != got:
                compatible = False
                result.report("incompatible-order", {
                    "key": key, "reads": [list(got), list(longest)],
                    "readers": [reader, seen[longest]]})
        if compatible:
            orders[key] = longest

    for key, order in orders.items():
        for a, b in itertools.pairwise(order):
            wa, wb = writer.get((key, a)), writer.get((key, b))
            if wa is not None and wb is not None:
                graph.add(wa, wb, WW, (key, a, b))
    unread = _unread_appends(txns, graph, orders, writer)
    for tid, key, got in external:
        source = writer.get((key, got[-1])) if got else None
        if source is not None:
            graph.add(source, tid, WR, (key, got, got[-1]))
        order = orders.get(key)
        if order is None:
            continue
        # a later element by the writer of the last one read is no later version:
        # the read saw an intermediate state of that writer (G1b, reported above)
        if len(got) < len(order):
            nxt = order[len(got)]
            w = writer.get((key, nxt))
            if w is not None and w != source:
                graph.add(tid, w, RW, (key, got, nxt))
        else:
            for w, value in unread.get(key, ()):
                if w != source:
                    graph.add(tid, w, RW, (key, got, value))

    # Lost update: two committed txns read one version of a key and both appended to it.
    by_version: dict[tuple[Any, tuple[Any, ...]], list[int]] = {}
    for tid, key, got in external:
        if tid in appenders.get(key, ()):
            by_version.setdefault((key, got), []).append(tid)
    for (key, got), group in by_version.items():
        if len(group) > 1:
            result.report("lost-update", {"key": key, "read": list(got),
                                          "txns": [graph.txns[t].view() for t in group]})
    result.stats = {"keys": len(reads), "ordered_keys": len(orders),
                    "appends": len(writer), "reads": sum(len(s) for s in reads.values())}
    return result


def _unread_appends(txns: list[Txn], graph: DepGraph, orders: dict[Any, tuple[Any, ...]],
                    writer: dict[tuple[Any, Any], int]) -> dict[Any, list[tuple[int, Any]]]:
    """Committed appends no read shows: they come after every element some read shows.

    Every read is a prefix of the key's final list, so an element missing from
    the longest read sits after all of it: its writer follows the writer of the
    last element read (ww), and whoever read that longest list anti-depends on
    it (rw, added by the caller; shorter reads reach it through rw to their
    next element and the ww chain). Without this, two transactions that each
    append to a key the other read, unread by anyone later, would look
    serializable. Only transactions known to have committed count: ok ones,
    and info ones some read shows. Returns key -> [(writer, value)].
    """
    shown = {(key, v) for key, order in orders.items() for v in order}
    committed = {t.id for t in txns if t.type == "ok"}
    committed |= {writer[slot] for slot in shown if slot in writer}
    unread: dict[Any, list[tuple[int, Any]]] = {}
    for txn in txns:
        if txn.id not in committed:
            continue
        for f, key, value in txn.mops:
            if f != APPEND or (key, value) in shown or key not in orders:
                continue
            order = orders[key]
            if order and (key, order[-1]) in writer:
                graph.add(writer[(key, order[-1])], txn.id, WW, (key, order[-1], value))
            unread.setdefault(key, []).append((txn.id, value))
    return unread


def _check_atomic(result: Inference, txn: Txn, key: Any, got: tuple[Any, ...],
                  writer: dict[tuple[Any, Any], int],
                  sequence: dict[tuple[Any, int], tuple[Any, ...]]) -> None:
    """A transaction's appends to one key show up together, in its order, or not at all.

    A transaction is atomic, so a list holding its k-th append to a key holds
    its earlier appends to that key right before it, and its next append (if
    the list goes on) right after it. A read of ``[2]`` when one transaction
    appended 1 then 2, or of ``[1 3 2]`` when 3 came from another one, shows
    a version no execution can produce: an ``incompatible-order`` between the
    read and the writer's own order. (A list that *ends* early inside the
    writer's appends is a G1b, reported by ``_check_elements``.) The reader's
    own appends are left to the internal-consistency check.
    """
    for i, v in enumerate(got):
        w = writer.get((key, v))
        if w is None or w == txn.id:
            continue
        appended = sequence[(key, w)]
        j = appended.index(v)
        before_ok = i >= j and got[i - j:i] == appended[:j]
        after_ok = i + 1 >= len(got) or j + 1 >= len(appended) or got[i + 1] == appended[j + 1]
        if not (before_ok and after_ok):
            result.report("incompatible-order", {
                "key": key, "txn": txn.view(), "read": list(got), "writer": w,
                "appended": list(appended),
                "why": f"T{w} appended {list(appended)} to {key!r} in one transaction"})
            return


def _check_elements(result: Inference, txn: Txn, key: Any, got: tuple[Any, ...],
                    writer: dict[tuple[Any, Any], int], aborted: dict[tuple[Any, Any], int],
                    intermediate: set[tuple[Any, Any]]) -> None:
    """Anomalies visible in one read: duplicates, garbage, aborted and intermediate reads."""
    if len(set(got)) != len(got):
        counts: dict[Any, int] = {}
        for v in got:
            counts[v] = counts.get(v, 0) + 1
        result.report("duplicate-elements", {
            "txn": txn.view(), "key": key, "read": list(got),
            "duplicates": [v for v, c in counts.items() if c > 1]})
    for v in got:
        slot = (key, v)
        if slot in writer:
            continue
        if slot in aborted:
            result.report("G1a", {"txn": txn.view(), "key": key, "read": list(got),
                                  "value": v, "writer": aborted[slot]})
        else:
            result.report("garbage", {"txn": txn.view(), "key": key, "read": list(got),
                                      "value": v})
    last = writer.get((key, got[-1])) if got else None
    if last is not None and last != txn.id and (key, got[-1]) in intermediate:
        result.report("G1b", {"txn": txn.view(), "key": key, "read": list(got),
                              "value": got[-1], "writer": last})


__all__ = ["infer"]
