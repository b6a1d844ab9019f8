"""The simulated network: one directed link per ordered pair of nodes.

Each link carries Raft messages from one node to another with its own faults,
exactly the knobs of the real proxy backend: partition (from a grudge), loss
probability, extra delay (mean and jitter), duplicate probability, reorder
probability. Without reorder a link is FIFO like the TCP connection it stands
for. Every random choice comes from the simulator's single seeded RNG.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.sim.loop import EventLoop

Deliver = Callable[[str, Any], None]


@dataclass
class LinkFaults:
    loss: float = 0.0
    delay_mean: float = 0.0
    delay_jitter: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    def clear(self) -> bool:
        return not (self.loss or self.delay_mean or self.delay_jitter or self.duplicate
                    or self.reorder)


class SimNetwork:
    """Directed links with faults; delivery calls ``deliver(to, message)`` at arrival."""

    def __init__(self, loop: EventLoop, rng: random.Random, nodes: Iterable[str],
                 deliver: Deliver, latency: tuple[float, float],
                 trace: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.loop = loop
        self.rng = rng
        self.nodes = list(nodes)
        self.deliver = deliver
        self.latency_lo, self.latency_hi = latency
        self.trace = trace
        self.blocked: set[tuple[str, str]] = set()
        self.faults: dict[tuple[str, str], LinkFaults] = {}
        self._last_arrival: dict[tuple[str, str], float] = {}
        self.counters = {"sent": 0, "delivered": 0, "dropped": 0, "duplicated": 0}

    # -- fault control: the fault verbs of nemesis.api.Network ---------------------------
    #
    # ``async`` because the nemesis executor (nemesis/executor.py) drives them as it
    # drives the proxy's; nothing here waits, so a fault takes effect at the virtual
    # instant the executor applies it.

    def links(self, links: Iterable[tuple[str, str]] | None) -> list[tuple[str, str]]:
        if links is not None:
            return list(links)
        return [(a, b) for a in self.nodes for b in self.nodes if a != b]

    async def partition(self, grudge: dict[str, set[str]]) -> None:
        """``grudge[node]`` = nodes it must not receive from (replaces any earlier cut)."""
        self.blocked = {(src, dst) for dst, srcs in grudge.items() for src in srcs}

    async def heal(self) -> None:
        self.blocked = set()

    def _set(self, links: Iterable[tuple[str, str]] | None, **values: float) -> None:
        for link in self.links(links):
            faults = self.faults.setdefault(link, LinkFaults())
            for name, value in values.items():
                setattr(faults, name, value)
            if faults.clear():
                del self.faults[link]

    async def set_loss(self, p: float, links: Iterable[tuple[str, str]] | None = None) -> None:
        self._set(links, loss=p)

    async def set_delay(self, mean_s: float, jitter_s: float,
                  links: Iterable[tuple[str, str]] | None = None) -> None:
        self._set(links, delay_mean=mean_s, delay_jitter=jitter_s)

    async def set_duplicate(self, p: float, links: Iterable[tuple[str, str]] | None = None) -> None:
        self._set(links, duplicate=p)

    async def set_reorder(self, p: float, links: Iterable[tuple[str, str]] | None = None) -> None:
        self._set(links, reorder=p)

    async def reset_faults(self) -> None:
        self.faults.clear()

    # -- traffic -------------------------------------------------------------------------

    def _arrival(self, link: tuple[str, str], faults: LinkFaults | None) -> float:
        rng = self.rng
        delay = self.latency_lo + (self.latency_hi - self.latency_lo) * rng.random()
        reordered = False
        if faults is not None:
            if faults.delay_mean or faults.delay_jitter:
                delay += max(0.0, faults.delay_mean + faults.delay_jitter * (2 * rng.random() - 1))
            if faults.reorder and rng.random() < faults.reorder:
                # Hold this message back long enough that later ones overtake it.
                delay += (self.latency_hi + faults.delay_mean) * (1 + 4 * rng.random())
                reordered = True
        arrival = self.loop.now + delay
        if not reordered:
            last = self._last_arrival.get(link, 0.0)
            if arrival < last:
                arrival = last  # FIFO, like the TCP connection the link stands for
            self._last_arrival[link] = arrival
        return arrival

    def send(self, src: str, dst: str, message: Any) -> None:
        link = (src, dst)
        self.counters["sent"] += 1
        if link in self.blocked:
            self._drop(link, message, "partition")
            return
        faults = self.faults.get(link)
        if faults is not None and faults.loss and self.rng.random() < faults.loss:
            self._drop(link, message, "loss")
            return
        self.loop.call_at(self._arrival(link, faults), self._arrive, link, message)
        if faults is not None and faults.duplicate and self.rng.random() < faults.duplicate:
            self.counters["duplicated"] += 1
            if self.trace is not None:
                self._trace(link, message, "duplicate")
            self.loop.call_at(self._arrival(link, faults), self._arrive, link, message)

    def _arrive(self, link: tuple[str, str], message: Any) -> None:
        # A cut made while the message was in flight catches it too: the relay
        # holding it would drop it.
        if link in self.blocked:
            self._drop(link, message, "partition")
            return
        self.counters["delivered"] += 1
        if self.trace is not None:
            self._trace(link, message, "deliver")
        self.deliver(link[1], message)

    def _drop(self, link: tuple[str, str], message: Any, why: str) -> None:
        self.counters["dropped"] += 1
        if self.trace is not None:
            self._trace(link, message, "drop")

    def _trace(self, link: tuple[str, str], message: Any, action: str) -> None:
        assert self.trace is not None
        self.trace({
            "from": link[0], "to": link[1],
            "type": getattr(message, "wire_type", type(message).__name__),
            "term": getattr(message, "term", None),
            "action": action,
        })
