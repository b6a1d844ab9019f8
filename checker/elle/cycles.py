"""Finding short cycles in the dependency graph, and naming them after Adya.

A history is serializable only if its ww/wr/rw graph is acyclic (Adya), and
strictly serializable only if that stays so with real-time edges added. The
search:

1. Strongly connected components of the whole graph (networkx), real time
   as a timeline (:mod:`checker.elle.graph`). A valid history has none but
   single nodes, and the search ends there; inside a component, real-time
   edges among its transactions are made for the search.
2. Within each non-trivial component, searches from the weakest anomaly to
   the strongest, each on the subgraph of the edge types it may use, so a
   cycle is reported under the weakest name that fits it:

   ========== ======================== ======================================
   anomaly    edges of the cycle       found by
   ========== ======================== ======================================
   G0         ww only                  seed a ww edge, return over ww
   G1c        ww and wr, some wr       seed a wr edge, return over ww+wr
   G-single   exactly one rw           seed a rw edge, return over ww+wr
   G2-item    two or more rw           seed a rw edge, return over ww+wr+rw
   ========== ======================== ======================================

   and the same four again with process edges allowed (``G0-process`` ...)
   and then with process and real-time edges (``G0-realtime`` ...), which
   only strict or session models forbid.
3. A seed edge u -> v closes a cycle with a shortest path v ... u
   (breadth-first search), so cycles are as short as the graph allows. Only a
   bounded number of seeds is tried per component and search, which bounds
   the time on huge components: a history can only be misnamed as a stronger
   anomaly (a G-single whose seed was not tried may be found as G2-item),
   never called valid.

Each cycle is named by the edges it really has: one edge may stand for
several types, and the label chosen is the weakest one the search allowed
(ww before wr before process before realtime before rw).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx

from checker.elle.graph import PROCESS, REALTIME, RW, WR, WW, DepGraph

#: seed edges tried per component and search
MAX_SEEDS = 24
#: cycles kept per anomaly name
MAX_CYCLES = 8


@dataclass(frozen=True)
class _Search:
    name: str
    seed: int  # edge type of the seed edge
    path: int  # edge types the way back may use
    extra: int  # process / realtime types allowed in this round


def _searches() -> list[_Search]:
    out = []
    for extra in (0, PROCESS, PROCESS | REALTIME):
        suffix = {0: "", PROCESS: "-process"}.get(extra, "-realtime")
        out += [
            # with extra edges, a G0-like cycle must use one of the new ones
            _Search("G0" + suffix, {0: WW, PROCESS: PROCESS}.get(extra, REALTIME),
                    WW | extra, extra),
            _Search("G1c" + suffix, WR, WW | WR | extra, extra),
            _Search("G-single" + suffix, RW, WW | WR | extra, extra),
            _Search("G2-item" + suffix, RW, WW | WR | RW | extra, extra),
        ]
    return out


_LABEL_ORDER = (WW, WR, PROCESS, REALTIME, RW)


def classify(labels: list[int]) -> str:
    """Adya's name for a cycle with these edge labels (one type per edge)."""
    rw = labels.count(RW)
    names = {0: "G1c" if WR in labels else "G0", 1: "G-single"}
    base = names.get(rw, "G2-item")
    if REALTIME in labels:
        return base + "-realtime"
    if PROCESS in labels:
        return base + "-process"
    return base


def _label(mask: int, allowed: int) -> int:
    for kind in _LABEL_ORDER:
        if mask & allowed & kind:
            return kind
    raise AssertionError("edge without an allowed type")


def _shortest_path(adj: dict[int, list[tuple[int, int]]], start: int, goal: int,
                   allowed: int) -> list[int] | None:
    """Breadth-first: the shortest path start ... goal over edges of the allowed types."""
    if start == goal:
        return [start]
    parent = {start: start}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v, mask in adj.get(u, ()):
            if mask & allowed and v not in parent:
                parent[v] = u
                if v == goal:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                queue.append(v)
    return None


@dataclass
class Cycle:
    """A cycle: its transactions in order (the first repeated at the end), each edge's label."""

    name: str
    nodes: list[int]
    labels: list[int]

    def evidence(self, graph: DepGraph) -> dict[str, Any]:
        """The cycle's transactions and, per edge, its type and why it exists."""
        steps = [graph.explain(u, v, label)
                 for u, v, label in zip(self.nodes[:-1], self.nodes[1:], self.labels, strict=True)]
        return {"type": self.name, "cycle": [graph.txns[t].view() for t in self.nodes[:-1]],
                "steps": steps}


def _components(adj: dict[int, list[tuple[int, int]]], nodes: set[int],
                allowed: int) -> Iterator[set[int]]:
    sub = nx.DiGraph()
    for u in nodes:
        for v, mask in adj.get(u, ()):
            if mask & allowed:
                sub.add_edge(u, v)
    for component in nx.strongly_connected_components(sub):
        if len(component) > 1:
            yield component


def find_cycles(graph: DepGraph, time_limit: float | None = 30.0,
                ) -> tuple[dict[str, list[Cycle]], dict[str, Any]]:
    """Short cycles of every kind, by name; and notes on how far the search went."""
    started = time.monotonic()
    found: dict[str, list[Cycle]] = {}
    seen: set[tuple[int, ...]] = set()
    notes: dict[str, Any] = {"components": 0, "largest_component": 0, "truncated": False}
    for whole in nx.strongly_connected_components(graph.to_networkx()):
        component = {t for t in whole if t >= 0}  # without the timeline's virtual nodes
        if len(component) < 2:
            continue
        graph.add_realtime_edges(among=component)
        notes["components"] += 1
        notes["largest_component"] = max(notes["largest_component"], len(component))
        adj = {u: [(v, m) for v, m in graph.succ[u].items() if v in component]
               for u in component}
        for search in _searches():
            if time_limit is not None and time.monotonic() - started > time_limit:
                notes["truncated"] = True
                break
            allowed = search.path | search.seed
            for sub in _components(adj, component, allowed):
                cycle = _search_component(adj, sub, search)
                if cycle is None:
                    continue
                key = tuple(cycle.nodes[:-1])
                rotation = min(range(len(key)), key=lambda i: key[i])
                canonical = key[rotation:] + key[:rotation]
                if canonical in seen:
                    continue
                seen.add(canonical)
                bucket = found.setdefault(cycle.name, [])
                if len(bucket) < MAX_CYCLES:
                    bucket.append(cycle)
    notes["elapsed_s"] = round(time.monotonic() - started, 6)
    return found, notes


def _search_component(adj: dict[int, list[tuple[int, int]]], nodes: set[int],
                      search: _Search) -> Cycle | None:
    """Try up to MAX_SEEDS seed edges; the first that closes a cycle gives it."""
    local = {u: [(v, m) for v, m in adj[u] if v in nodes] for u in nodes}
    tried = 0
    for u in nodes:
        for v, mask in local[u]:
            if not mask & search.seed:
                continue
            tried += 1
            if tried > MAX_SEEDS:
                return None
            path = _shortest_path(local, v, u, search.path)
            if path is None:
                continue
            labels = [_label(mask, search.seed)]
            for a, b in itertools.pairwise(path):
                labels.append(_label(_edge_mask(local, a, b), search.path))
            return Cycle(classify(labels), [u, *path], labels)
    return None


def _edge_mask(adj: dict[int, list[tuple[int, int]]], u: int, v: int) -> int:
    for w, mask in adj[u]:
        if w == v:
            return mask
    raise KeyError((u, v))


__all__ = ["MAX_CYCLES", "MAX_SEEDS", "Cycle", "classify", "find_cycles"]
