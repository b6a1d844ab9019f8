"""The half-frame attack on a node's ports, and what the leader's memory does.

    python benchmarks/half_frame_attack.py [--connections 50] [--body-mb 8]
                                           [--port client|peer|both] [--nodes 3]
                                           [--hold 7] [--json]

Starts a real ``raft_impl`` cluster (``raft_impl.localcluster``), finds the
leader, and opens ``--connections`` connections to its client port, its peer
port or both. Each sends a length prefix of 16 MB - 1 (just under
``splitbrain_common.wire.MAX_FRAME``) and ``--body-mb`` MB of the body, then hangs. On
the peer port a connection first says hello as a real peer would (without one
the node refuses a large first frame at once). The leader's RSS is sampled
every 50 ms throughout; the attack is held ``--hold`` seconds (past the stall
timeout, 5 s) before the connections close. Printed: the RSS before, its peak,
and after; how many connections the leader refused for its buffer budget and
closed for a stalled frame (from its log); and whether the cluster still
commits a write afterwards.

Issue 16 measured 29 MB -> 440 MB for 50 x 8 MB before partial frames had a
budget; the target is a leader RSS of at most 150 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from raft_impl.localcluster import local_cluster
from splitbrain_common.wire import MAX_FRAME, encode_frame

HOST = "127.0.0.1"


async def attack(args: argparse.Namespace) -> dict[str, Any]:
    body = b"\0" * int(args.body_mb * 2**20)
    prefix = struct.pack(">I", MAX_FRAME - 1)
    with tempfile.TemporaryDirectory(prefix="half-frame-") as tmp:
        async with local_cluster(args.nodes, Path(tmp)) as cluster:
            leader_id = await cluster.wait_leader(within=30)
            leader = cluster.nodes[leader_id]
            assert leader.process is not None and leader.stderr_path is not None
            process = psutil.Process(leader.process.pid)
            rss: list[float] = []
            before = process.memory_info().rss / 2**20
            ports = {"client": [leader.client_port], "peer": [leader.peer_port],
                     "both": [leader.client_port, leader.peer_port]}[args.port]
            other = next(n for n in cluster.nodes if n != leader_id)
            hello = encode_frame({"type": "hello", "from": other, "to": leader_id})
            streams: list[trio.SocketStream] = []
            began = time.monotonic()

            async def sample(stop: trio.Event) -> None:
                while not stop.is_set():
                    rss.append(process.memory_info().rss / 2**20)
                    with trio.move_on_after(0.05):
                        await stop.wait()

            async def one(port: int) -> None:
                stream = await trio.open_tcp_stream(HOST, port)
                streams.append(stream)
                first = hello if port == leader.peer_port else b""
                with contextlib.suppress(trio.BrokenResourceError):  # closed: as measured
                    await stream.send_all(first + prefix + body)

            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample, stop)
                async with trio.open_nursery() as senders:
                    for port in ports:
                        for _ in range(args.connections):
                            senders.start_soon(one, port)
                sent = time.monotonic() - began
                await trio.sleep(args.hold)
                for stream in streams:
                    await stream.aclose()
                await trio.sleep(0.5)
                stop.set()
            after = process.memory_info().rss / 2**20
            log = leader.stderr_path.read_text(errors="replace")
            try:
                answer = await cluster.request(
                    leader_id, {"op": "write", "key": "k", "value": 1, "client": "probe",
                                "seq": 1}, within=5.0)
                still_commits = bool(answer.get("ok"))
            except Exception:
                still_commits = False
            return {
                "port": args.port, "connections": args.connections * len(ports),
                "body_mb": args.body_mb, "attack_seconds": round(sent, 2),
                "rss_before_mb": round(before, 1), "rss_peak_mb": round(max(rss), 1),
                "rss_after_mb": round(after, 1),
                "refused_for_budget": log.count("buffer budget"),
                "closed_stalled": log.count("no byte of a partial frame"),
                "refused_without_hello": log.count("exceeds the limit of 4096"),
                "still_commits": still_commits,
                "load_average": [round(x, 2) for x in psutil.getloadavg()],
            }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--body-mb", type=float, default=8.0)
    parser.add_argument("--port", choices=("client", "peer", "both"), default="both")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--hold", type=float, default=7.0,
                        help="seconds to hold the connections open (past the stall timeout)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = trio.run(attack, args)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if result["rss_peak_mb"] <= 150 and result["still_commits"] else 1


if __name__ == "__main__":
    sys.exit(main())
