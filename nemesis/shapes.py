"""Partition shapes, built as networkx connectivity graphs and turned into grudges.

A shape is a directed graph over the nodes: an edge ``src -> dst`` means
``dst`` still receives what ``src`` sends. Every pair without an edge is cut.
Most shapes are symmetric; the majorities ring cannot be for some cluster
sizes (a node must see a majority while no majority sees itself whole), so the
graph is directed throughout. ``grudge_from_graph`` turns the graph into the
``{node: {nodes it must not receive from}}`` map the network backends apply.

Shapes (Jepsen's vocabulary):

* ``halves`` — a random minority and the majority, each fully connected.
* ``isolate-one`` / ``isolate-leader`` — one node cut off from all others.
* ``majorities-ring`` — nodes on a shuffled ring; each receives from the
  window of a majority around it, so every node sees a majority but no
  majority of nodes can all hear each other (two leaders may believe they
  have a quorum in different windows).
* ``bridge`` — two halves that cannot talk, plus one node that talks to both.
* ``random`` — a random G(n, 1/2) graph, redrawn until at least one link is cut.
* ``deaf-one`` / ``deaf-leader`` — one-way: the node receives from nobody while
  every other node still hears it (its heartbeats go out, no answer comes back).
* ``mute-one`` / ``mute-leader`` — one-way: nobody receives from the node while it
  still hears everyone (a deposed leader that hears the higher term).
* ``lagging-majority`` — the given node (``node``, e.g. one isolated just before
  so that it fell behind) on the majority side, the current leader on the
  minority side: the lagging node stands in the majority's election.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import networkx as nx

from nemesis.faults import ALL_SHAPES, LEADER_SHAPES, NODE_SHAPES


def _complete(nodes: Sequence[str]) -> nx.DiGraph:
    graph = nx.complete_graph(nodes, create_using=nx.DiGraph)
    return graph


def _cliques(groups: Sequence[Sequence[str]]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for group in groups:
        graph.add_nodes_from(group)
        graph.add_edges_from((a, b) for a in group for b in group if a != b)
    return graph


def halves(nodes: Sequence[str], rng: random.Random) -> nx.DiGraph:
    order = list(nodes)
    rng.shuffle(order)
    cut = len(order) // 2
    return _cliques([order[:cut], order[cut:]])


def isolate(nodes: Sequence[str], node: str) -> nx.DiGraph:
    if node not in nodes:
        raise ValueError(f"cannot isolate {node!r}: not one of {list(nodes)}")
    return _cliques([[node], [other for other in nodes if other != node]])


def deaf(nodes: Sequence[str], node: str) -> nx.DiGraph:
    """One-way cut: ``node`` receives from nobody, every other node still hears it."""
    if node not in nodes:
        raise ValueError(f"cannot make {node!r} deaf: not one of {list(nodes)}")
    graph = _complete(nodes)
    graph.remove_edges_from([(src, node) for src in nodes if src != node])
    return graph


def mute(nodes: Sequence[str], node: str) -> nx.DiGraph:
    """One-way cut: nobody receives from ``node``, which still hears every other node."""
    if node not in nodes:
        raise ValueError(f"cannot make {node!r} mute: not one of {list(nodes)}")
    graph = _complete(nodes)
    graph.remove_edges_from([(node, dst) for dst in nodes if dst != node])
    return graph


def lagging_majority(nodes: Sequence[str], node: str, leader: str | None,
                     rng: random.Random) -> nx.DiGraph:
    """``node`` with a majority that excludes ``leader``; the leader with the rest.

    After ``node`` was cut off long enough to fall behind, this is the cut that
    makes it a candidate of the side that can elect: a correct Raft refuses it
    its votes (its log is not up to date) and elects another; a Raft with a
    broken vote or log check elects it and loses what the others committed.
    """
    if node not in nodes:
        raise ValueError(f"lagging-majority: {node!r} is not one of {list(nodes)}")
    others = [other for other in nodes if other not in (node, leader)]
    rng.shuffle(others)
    side = [node, *others[: len(nodes) // 2]]
    return _cliques([side, [other for other in nodes if other not in side]])


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> nx.DiGraph:
    if len(nodes) < 3:
        raise ValueError("a majorities ring needs at least 3 nodes")
    order = list(nodes)
    rng.shuffle(order)
    n = len(order)
    majority = n // 2 + 1
    # Window of `majority` ring positions, as centred on the node as possible.
    before = (majority - 1) // 2
    graph = nx.DiGraph()
    graph.add_nodes_from(order)
    for position, dst in enumerate(order):
        for step in range(majority):
            src = order[(position - before + step) % n]
            if src != dst:
                graph.add_edge(src, dst)
    return graph


def bridge(nodes: Sequence[str], rng: random.Random) -> nx.DiGraph:
    if len(nodes) < 3:
        raise ValueError("a bridge needs at least 3 nodes")
    order = list(nodes)
    rng.shuffle(order)
    middle, rest = order[0], order[1:]
    cut = len(rest) // 2
    return _cliques([[middle, *rest[:cut]], [middle, *rest[cut:]]])


def random_graph(nodes: Sequence[str], rng: random.Random) -> nx.DiGraph:
    if len(nodes) < 2:
        raise ValueError("a random partition needs at least 2 nodes")
    order = list(nodes)
    while True:
        undirected = nx.gnp_random_graph(len(order), 0.5, seed=rng.randrange(2**32))
        if undirected.number_of_edges() < len(order) * (len(order) - 1) // 2:
            break
    graph = nx.relabel_nodes(undirected, dict(enumerate(order))).to_directed()
    graph.add_nodes_from(order)
    return graph


def connectivity_graph(shape: str, nodes: Sequence[str], rng: random.Random, *,
                       leader: str | None = None, node: str | None = None) -> nx.DiGraph:
    """The graph of a named shape; ``leader`` is needed for the LEADER_SHAPES."""
    if shape in LEADER_SHAPES and leader is None:
        raise ValueError(f"{shape} needs a leader and there is none")
    if shape == "halves":
        return halves(nodes, rng)
    if shape in NODE_SHAPES and node is None:
        node = rng.choice(list(nodes))
    if shape in ("isolate-one", "isolate-leader"):
        return isolate(nodes, node if shape == "isolate-one" else leader)  # type: ignore[arg-type]
    if shape in ("deaf-one", "deaf-leader"):
        return deaf(nodes, node if shape == "deaf-one" else leader)  # type: ignore[arg-type]
    if shape in ("mute-one", "mute-leader"):
        return mute(nodes, node if shape == "mute-one" else leader)  # type: ignore[arg-type]
    if shape == "lagging-majority":
        return lagging_majority(nodes, node, leader, rng)  # type: ignore[arg-type]
    if shape == "majorities-ring":
        return majorities_ring(nodes, rng)
    if shape == "bridge":
        return bridge(nodes, rng)
    if shape == "random":
        return random_graph(nodes, rng)
    raise ValueError(f"unknown partition shape {shape!r}; expected one of {list(ALL_SHAPES)}")


def grudge_from_graph(graph: nx.DiGraph) -> dict[str, set[str]]:
    """node -> the nodes it must not receive from (every missing in-edge)."""
    nodes = list(graph.nodes)
    return {dst: {src for src in nodes if src != dst and not graph.has_edge(src, dst)}
            for dst in nodes}


def graph_from_grudge(grudge: Mapping[str, object], nodes: Sequence[str]) -> nx.DiGraph:
    """The connectivity graph a grudge leaves (inverse of grudge_from_graph)."""
    graph = _complete(nodes)
    for dst, srcs in grudge.items():
        for src in srcs:  # type: ignore[attr-defined]
            if graph.has_edge(src, dst):
                graph.remove_edge(src, dst)
    return graph


def shape_grudge(shape: str, nodes: Sequence[str], rng: random.Random, *,
                 leader: str | None = None, node: str | None = None) -> dict[str, set[str]]:
    return grudge_from_graph(connectivity_graph(shape, nodes, rng, leader=leader, node=node))


def mutual_graph(graph: nx.DiGraph) -> nx.Graph:
    """Undirected graph of the pairs that can hear each other both ways."""
    mutual = nx.Graph()
    mutual.add_nodes_from(graph.nodes)
    mutual.add_edges_from((a, b) for a, b in graph.edges if graph.has_edge(b, a))
    return mutual


def components(graph: nx.DiGraph) -> list[list[str]]:
    """Groups of nodes connected both ways (sorted), for describing a partition to humans."""
    return sorted(sorted(group) for group in nx.connected_components(mutual_graph(graph)))


def largest_mutual_clique(graph: nx.DiGraph) -> int:
    """Size of the largest set of nodes that can all hear each other."""
    mutual = mutual_graph(graph)
    return max((len(clique) for clique in nx.find_cliques(mutual)), default=0)
