"""Applying nemesis schedule entries to the simulated cluster.

The schedule format and its validation are ``nemesis.faults``; partition
shapes come from ``nemesis.shapes`` (the same networkx graphs a real run
uses). Each entry's random choices (which node is "one", which half is which)
are drawn from an RNG seeded by the entry's own ``seed``, so removing one entry
while shrinking does not change what the others do. Each applied entry is
recorded in the history as a nemesis ``info`` event, like a real run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nemesis.faults import LEADER_SHAPES, TRIGGER_NODE, history_f
from nemesis.shapes import components, graph_from_grudge, shape_grudge

if TYPE_CHECKING:
    from harness.sim.cluster import SimCluster


def resolve_target(target: str | Sequence[str], nodes: Sequence[str], leader: str | None,
                   rng: random.Random, trigger: str | None = None) -> list[str]:
    """Nodes a target word names now; [] when it names nobody (no leader, or no node
    named by the entry's trigger for ``"trigger"``)."""
    if not isinstance(target, str):
        return list(target)
    if target == TRIGGER_NODE:
        return [trigger] if trigger in nodes else []
    n = len(nodes)
    if target == "all":
        return list(nodes)
    if target == "one":
        return [rng.choice(list(nodes))]
    if target == "leader":
        return [leader] if leader is not None else []
    if target == "minority":
        return sorted(rng.sample(list(nodes), max(1, (n - 1) // 2)))
    if target == "majority":
        return sorted(rng.sample(list(nodes), n // 2 + 1))
    if target in nodes:
        return [target]
    raise ValueError(f"unknown target {target!r}")


def _links(value: dict[str, Any]) -> list[tuple[str, str]] | None:
    links = value.get("links")
    return None if links is None else [(src, dst) for src, dst in links]


def apply_entry(cluster: SimCluster, entry: dict[str, Any], position: int,
                trigger: str | None = None) -> None:
    """Apply one validated schedule entry now and record it; ``trigger`` is the node the
    entry's trigger event named (its target ``"trigger"``)."""
    f, value = entry["f"], entry["value"]
    seed = entry.get("seed")
    rng = random.Random(f"{cluster.test.seed}:{position}" if seed is None else seed)
    nodes = cluster.node_ids
    network = cluster.network
    described: Any = value
    if f == "partition":
        if "grudge" in value:
            grudge = {dst: set(srcs) for dst, srcs in value["grudge"].items()}
        else:
            leader = cluster.leader()
            if value["shape"] in LEADER_SHAPES and leader is None:
                cluster.record_nemesis(history_f(entry), {**value, "skipped": "no leader"})
                return
            node = value.get("node")
            if node == TRIGGER_NODE:
                if trigger is None:
                    cluster.record_nemesis(history_f(entry), {**value, "skipped": "no node"})
                    return
                node = trigger
            grudge = shape_grudge(value["shape"], nodes, rng, leader=leader, node=node)
        network.partition(grudge)
        described = {**value, "components": components(graph_from_grudge(grudge, nodes))}
    elif f == "heal":
        network.heal()
    elif f in ("kill", "lose-unfsynced", "start", "pause", "resume"):
        targets = resolve_target(value, nodes, cluster.leader(), rng, trigger)
        for node_id in targets:
            node = cluster.nodes[node_id]
            if f == "kill":
                node.crash()
            elif f == "lose-unfsynced":
                node.crash(lose_unfsynced=True, torn=cluster.test.cluster.torn_writes)
            elif f == "start":
                node.start()
            elif f == "pause":
                node.pause()
            else:
                node.resume()
        described = {"target": value, "nodes": targets}
    elif f in ("loss", "duplicate", "reorder"):
        getattr(network, f"set_{f}")(value["p"], _links(value))
    elif f == "delay":
        network.set_delay(value["mean"], value["jitter"], _links(value))
    elif f == "clock":
        described = _clock(cluster, value, rng, trigger)
    else:  # pragma: no cover - validate_schedule refuses unknown faults
        raise ValueError(f"unknown fault {f!r}")
    cluster.record_nemesis(history_f(entry), described)


def _clock(cluster: SimCluster, value: dict[str, Any], rng: random.Random,
           trigger: str | None = None) -> Any:
    if value.get("reset"):
        for node in cluster.nodes.values():
            node.set_clock(0.0, 1.0)
            node.strobe = None
        return value
    targets = resolve_target(value["targets"], cluster.node_ids, cluster.leader(), rng,
                             trigger)
    for node_id in targets:
        node = cluster.nodes[node_id]
        if "strobe" in value:
            strobe = value["strobe"]
            node.strobe = (strobe["delta"], strobe["period"])
            cluster.loop.call_later(strobe["duration"], _end_strobe, node, node.strobe)
        else:
            node.set_clock(value["offset"], value["rate"])
    return {**value, "nodes": targets}


def _end_strobe(node: Any, strobe: tuple[float, float]) -> None:
    if node.strobe == strobe:
        node.strobe = None
