"""What every network backend shares: the ``Network`` protocol and node addresses.

The protocol itself lives in ``nemesis.api`` (the nemesis drives it, the
harness owns the implementations); it is re-exported here so harness code can
import everything network-related from ``harness.net``.
"""

from __future__ import annotations

from nemesis.api import Grudge, Link, Network, NodeAddress


def link_name(src: str, dst: str) -> str:
    """The key of a directed link in counters and traces."""
    return f"{src}->{dst}"


__all__ = ["Grudge", "Link", "Network", "NodeAddress", "link_name"]
