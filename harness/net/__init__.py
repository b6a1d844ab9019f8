"""Network backends: ``proxy`` (default, frame-aware Trio relays) and ``netns`` (Linux, root).

Each backend declares what it cannot do (``unsupported_faults``), so a run refuses
a fault before it starts instead of recording it as failed mid-run.
"""

from __future__ import annotations

from harness.net.base import Link, Network, NodeAddress
from nemesis.faults import LINK_FAULTS

BACKENDS = ("proxy", "netns", "router")
#: Faults that act on links (every one needs a network backend in between).


def unsupported_faults(kind: str) -> dict[str, str]:
    """Fault name -> why ``--net kind`` cannot make it here and what would, for every
    fault that backend cannot make on this machine (``none`` means no backend).
    ``"one-way"`` stands for partitions that cut one direction of a link only."""
    if kind == "none":
        return dict.fromkeys((*LINK_FAULTS, "one-way"),
                             "--net none has no link faults; use --net proxy (raft_impl) or "
                             "--net netns (root)")
    if kind == "proxy":
        from harness.net.proxy import ProxyNetwork

        return ProxyNetwork.unsupported_faults()
    if kind == "netns":
        from harness.net.netns import NetnsNetwork

        return NetnsNetwork.unsupported_faults()
    if kind == "router":
        from harness.net.router import MessageRouter

        return MessageRouter.unsupported_faults()
    raise ValueError(f"unknown network backend {kind!r}")


__all__ = ["BACKENDS", "LINK_FAULTS", "Link", "Network", "NodeAddress", "unsupported_faults"]
