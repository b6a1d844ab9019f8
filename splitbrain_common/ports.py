"""Free loopback ports that stay free: chosen outside the kernel's ephemeral range.

Used by every process-backed cluster (the harness's node processes, raft_impl's
own local cluster for its tests and benchmarks), so it lives in the leaf.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000  # below: well-known and registered services more often listen


def ephemeral_range() -> tuple[int, int]:
    """The source ports the kernel hands to outgoing connections (IANA's on non-Linux)."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 49152, 65535
    return low, high


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports that are free now and that no outgoing connection will take.

    A node keeps its ports across restarts (its peers and relays dial them), so
    they are chosen before it binds them and again after every kill. A port
    from the kernel's ephemeral range (what binding port 0 returns) can be
    taken meanwhile as the source port of any outgoing connection on the
    machine, the relays' and clients' own included, and the node then fails
    with "address already in use". Ports outside that range are only ever taken
    by a listener that asks for one, so they are drawn from there, at random to
    keep concurrent runs apart, and each is checked by binding it.
    """
    low, high = ephemeral_range()
    candidates = [p for p in range(LOWEST_PORT, 65536) if not low <= p <= high]
    random.SystemRandom().shuffle(candidates)
    sockets: list[socket.socket] = []
    try:
        for port in candidates:
            if len(sockets) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        if len(sockets) < count:
            raise OSError(f"found only {len(sockets)} of {count} free ports on {host} outside "
                          f"the ephemeral range {low}-{high}")
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
