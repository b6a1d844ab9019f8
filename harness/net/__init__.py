"""Network backends: ``proxy`` (default, frame-aware Trio relays) and ``netns`` (Linux, root)."""

from __future__ import annotations

from harness.net.base import Link, Network, NodeAddress

BACKENDS = ("proxy", "netns")

__all__ = ["BACKENDS", "Link", "Network", "NodeAddress"]
