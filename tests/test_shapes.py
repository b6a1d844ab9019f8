"""Partition shapes: properties that make each shape the fault it claims to be."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nemesis import shapes

sizes = st.integers(min_value=3, max_value=9)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def names(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def view(grudge: dict[str, set[str]], node: str, nodes: list[str]) -> set[str]:
    """What a node can hear: itself and everyone it holds no grudge against."""
    return set(nodes) - grudge[node]


@given(sizes, seeds)
def test_majorities_ring_every_node_sees_a_majority_but_no_majority_is_whole(n, seed):
    nodes = names(n)
    graph = shapes.majorities_ring(nodes, random.Random(seed))
    grudge = shapes.grudge_from_graph(graph)
    majority = n // 2 + 1
    views = [frozenset(view(grudge, node, nodes)) for node in nodes]
    assert all(len(v) == majority for v in views)
    assert len(set(views)) == n  # no two nodes see the same majority
    assert shapes.largest_mutual_clique(graph) < majority  # no global majority component
    assert any(grudge.values())


@given(sizes, seeds)
def test_majorities_ring_is_symmetric_when_the_window_can_be_centred(n, seed):
    graph = shapes.majorities_ring(names(n), random.Random(seed))
    symmetric = all(graph.has_edge(b, a) for a, b in graph.edges)
    assert symmetric == ((n // 2) % 2 == 0)  # n // 2 others split evenly on both sides


@given(st.integers(min_value=2, max_value=9), seeds)
def test_halves_cut_the_cluster_into_a_minority_and_a_majority(n, seed):
    nodes = names(n)
    graph = shapes.halves(nodes, random.Random(seed))
    groups = shapes.components(graph)
    assert sorted(len(g) for g in groups) == [n // 2, n - n // 2]
    grudge = shapes.grudge_from_graph(graph)
    for group in groups:
        for node in group:
            assert grudge[node] == set(nodes) - set(group)


@given(sizes, seeds)
def test_isolate_one_cuts_exactly_one_node_both_ways(n, seed):
    nodes = names(n)
    grudge = shapes.shape_grudge("isolate-one", nodes, random.Random(seed))
    lonely = [node for node in nodes if grudge[node] == set(nodes) - {node}]
    assert len(lonely) == 1
    assert all(grudge[node] == set(lonely) for node in nodes if node not in lonely)


def test_isolate_leader_needs_and_uses_the_leader():
    nodes = names(5)
    grudge = shapes.shape_grudge("isolate-leader", nodes, random.Random(1), leader="n3")
    assert grudge["n3"] == {"n1", "n2", "n4", "n5"}
    assert grudge["n1"] == {"n3"}
    with pytest.raises(ValueError, match="needs a leader"):
        shapes.shape_grudge("isolate-leader", nodes, random.Random(1), leader=None)


def test_isolate_one_with_a_named_node():
    grudge = shapes.shape_grudge("isolate-one", names(3), random.Random(0), node="n2")
    assert grudge == {"n1": {"n2"}, "n2": {"n1", "n3"}, "n3": {"n2"}}


@given(sizes, seeds)
def test_bridge_node_talks_to_both_sides_which_cannot_talk(n, seed):
    nodes = names(n)
    graph = shapes.bridge(nodes, random.Random(seed))
    grudge = shapes.grudge_from_graph(graph)
    bridges = [node for node in nodes if not grudge[node]]
    assert len(bridges) == 1
    middle = bridges[0]
    sides = shapes.components(graph.subgraph(set(nodes) - {middle}))
    assert len(sides) == 2 and sorted(map(len, sides)) == [(n - 1) // 2, n - 1 - (n - 1) // 2]
    for a in sides[0]:
        for b in sides[1]:
            assert b in grudge[a] and a in grudge[b]


@given(st.integers(min_value=2, max_value=9), seeds)
def test_random_shape_cuts_something_and_is_symmetric(n, seed):
    nodes = names(n)
    graph = shapes.random_graph(nodes, random.Random(seed))
    grudge = shapes.grudge_from_graph(graph)
    assert any(grudge.values())
    for dst, srcs in grudge.items():
        for src in srcs:
            assert dst in grudge[src]
    assert set(graph.nodes) == set(nodes)


@given(st.sampled_from(["halves", "isolate-one", "majorities-ring", "bridge", "random"]),
       sizes, seeds)
def test_shapes_are_reproducible_and_round_trip_through_grudges(shape, n, seed):
    nodes = names(n)
    first = shapes.connectivity_graph(shape, nodes, random.Random(seed))
    second = shapes.connectivity_graph(shape, nodes, random.Random(seed))
    assert set(first.edges) == set(second.edges)
    grudge = shapes.grudge_from_graph(first)
    assert set(shapes.graph_from_grudge(grudge, nodes).edges) == set(first.edges)
    assert all(node not in srcs for node, srcs in grudge.items())


def test_shapes_refuse_clusters_too_small_for_them():
    with pytest.raises(ValueError, match="at least 3"):
        shapes.majorities_ring(names(2), random.Random(0))
    with pytest.raises(ValueError, match="at least 3"):
        shapes.bridge(names(2), random.Random(0))
    with pytest.raises(ValueError, match="unknown partition shape"):
        shapes.connectivity_graph("donut", names(3), random.Random(0))


@given(sizes, seeds)
def test_one_way_shapes_cut_one_direction_only(n, seed):
    """deaf: the node hears nobody, all hear it; mute: nobody hears it, it hears all."""
    nodes = names(n)
    node = random.Random(seed).choice(nodes)
    others = set(nodes) - {node}
    for shape, leader in (("deaf-one", None), ("deaf-leader", node)):
        grudge = shapes.shape_grudge(shape, nodes, random.Random(seed), leader=leader,
                                     node=node if leader is None else None)
        assert grudge[node] == others
        assert all(not grudge[other] for other in others)
    for shape, leader in (("mute-one", None), ("mute-leader", node)):
        grudge = shapes.shape_grudge(shape, nodes, random.Random(seed), leader=leader,
                                     node=node if leader is None else None)
        assert not grudge[node]
        assert all(grudge[other] == {node} for other in others)


@given(sizes, seeds, st.booleans())
def test_lagging_majority_puts_the_node_with_a_majority_and_the_leader_outside(n, seed, same):
    nodes = names(n)
    rng = random.Random(seed)
    node = rng.choice(nodes)
    leader = node if same else rng.choice([other for other in nodes if other != node])
    graph = shapes.connectivity_graph("lagging-majority", nodes, random.Random(seed),
                                      leader=leader, node=node)
    parts = shapes.components(graph)
    side = next(part for part in parts if node in part)
    assert len(side) == n // 2 + 1 and len(parts) == 2
    assert same or leader not in side


def test_leader_shapes_need_a_leader():
    with pytest.raises(ValueError, match="needs a leader"):
        shapes.connectivity_graph("mute-leader", names(3), random.Random(0))
