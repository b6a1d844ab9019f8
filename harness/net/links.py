"""What the two message-carrying networks share: per-link fault state and its control,
and the message trace.

The proxy (``harness/net/proxy.py``: a relay per directed link for nodes that dial
each other over TCP) and the router (``harness/net/router.py``: the harness carries
every Maelstrom message itself) decide a message's fate the same way, from the
:class:`LinkFaults` of its directed link, and are told about faults through the same
``Network`` methods (partition, heal, loss, delay, duplicate, reorder). Those
methods, and the buffered ``messages.jsonl`` writer both trace into, live here once,
so the two backends cannot drift apart in how a grudge or a probability is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from checker.lines import LineAppender
from harness.net.base import Grudge, Link

#: Trace lines are written in chunks of about this many bytes (or every 0.2 s).
TRACE_CHUNK = 65536


@dataclass
class LinkFaults:
    """The faults currently applied to one directed link."""

    blocked: bool = False
    loss: float = 0.0
    delay_mean: float = 0.0
    delay_jitter: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.blocked or self.loss or self.delay_mean or self.delay_jitter
                    or self.duplicate or self.reorder)


class _HasFaults(Protocol):
    faults: LinkFaults

    @property
    def name(self) -> str: ...


def probability(p: float) -> float:
    """``p`` as a probability, or ValueError naming it."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p}")
    return float(p)


class LinkFaultControl:
    """The ``Network`` fault methods over ``self._links`` ({(src, dst): link with a
    ``faults`` field}) and ``self._nodes`` (the node names, for error messages)."""

    _links: dict[tuple[str, str], Any]
    _nodes: Any

    def _select(self, links: Iterable[Link] | None) -> list[Any]:
        if links is None:
            return list(self._links.values())
        selected = []
        for src, dst in links:
            if (src, dst) not in self._links:
                raise ValueError(f"no link {src}->{dst}; nodes are {sorted(self._nodes)}")
            selected.append(self._links[(src, dst)])
        return selected

    async def partition(self, grudge: Grudge) -> None:
        blocked = set()
        for dst, srcs in grudge.items():
            for src in srcs:
                if (src, dst) not in self._links:
                    raise ValueError(f"grudge names unknown link {src}->{dst}; "
                                     f"nodes are {sorted(self._nodes)}")
                blocked.add((src, dst))
        for key, link in self._links.items():
            link.faults.blocked = key in blocked

    async def heal(self) -> None:
        for link in self._links.values():
            link.faults.blocked = False

    async def set_loss(self, p: float, links: Iterable[Link] | None = None) -> None:
        p = probability(p)
        for link in self._select(links):
            link.faults.loss = p

    async def set_duplicate(self, p: float, links: Iterable[Link] | None = None) -> None:
        p = probability(p)
        for link in self._select(links):
            link.faults.duplicate = p

    async def set_reorder(self, p: float, links: Iterable[Link] | None = None) -> None:
        p = probability(p)
        for link in self._select(links):
            link.faults.reorder = p

    async def set_delay(self, mean_s: float, jitter_s: float,
                        links: Iterable[Link] | None = None) -> None:
        if mean_s < 0 or jitter_s < 0:
            raise ValueError(f"delay mean and jitter must be >= 0, got {mean_s}, {jitter_s}")
        for link in self._select(links):
            link.faults.delay_mean, link.faults.delay_jitter = float(mean_s), float(jitter_s)

    async def reset_faults(self) -> None:
        """Every link fault but partitions (those are healed by ``heal``)."""
        for link in self._links.values():
            link.faults = LinkFaults(blocked=link.faults.blocked)

    def faults(self) -> dict[str, LinkFaults]:
        return {link.name: link.faults for link in self._links.values()}


class TraceBuffer:
    """``messages.jsonl`` lines, buffered: written at :data:`TRACE_CHUNK` bytes, every
    0.2 s by :meth:`flush_periodically`, and at :meth:`close`. A message costs one
    ``json.dumps`` and a list append on the hot path, not a write."""

    def __init__(self) -> None:
        self.file: LineAppender | None = None
        self._pending: list[str] = []
        self._pending_bytes = 0

    @property
    def active(self) -> bool:
        return self.file is not None

    def open(self, path: Any) -> None:
        self.file = LineAppender(path)

    def add(self, record: dict[str, Any]) -> None:
        if self.file is None:
            return
        line = json.dumps(record) + "\n"
        self._pending.append(line)
        self._pending_bytes += len(line)
        if self._pending_bytes >= TRACE_CHUNK:
            self.write()

    def write(self) -> None:
        """Write the pending lines at once: whole lines, or LineWriteError."""
        if self.file is None or not self._pending:
            return
        data = "".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self.file.write(data)

    async def flush_periodically(self) -> None:
        while self.file is not None:
            self.write()
            await trio.sleep(0.2)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
