"""How many Maelstrom messages per second the harness routes between nodes.

    nice python benchmarks/maelstrom_routing.py [--messages 100000] [--rounds 3] [--trace]

Three flood nodes (``--db maelstrom`` processes) each send ``--messages``
small messages to the next node as fast as they can after ``init``; every one
goes through the harness (stdout pump, JSON decode, :class:`MessageRouter`,
the destination's stdin). The figure that counts is **messages per second of
harness CPU** (``time.process_time`` of this process, which is all the
harness does): the routing rate one core gives, whatever the machine's load
does to the nodes. Wall-clock rate is printed beside it. The issue's target:
at least 5,000 messages/s on one core.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.db.base import DBOptions
from harness.db.maelstrom import MaelstromDB
from harness.run.cluster import node_names, open_cluster

FLOOD_NODE = r'''
import json, os, sys
count = int(sys.argv[1])
stdin = sys.stdin.buffer
init = json.loads(stdin.readline())
me, ids = init["body"]["node_id"], init["body"]["node_ids"]
peer = ids[(ids.index(me) + 1) % len(ids)]
out = sys.stdout.buffer
out.write(json.dumps({"src": me, "dest": init["src"], "body": {
    "type": "init_ok", "in_reply_to": init["body"]["msg_id"]}}).encode() + b"\n")
out.flush()
line = json.dumps({"src": me, "dest": peer, "body": {"type": "gossip", "msg_id": 1,
                   "value": 12345}}).encode() + b"\n"
batch = line * 1000
for _ in range(count // 1000):
    out.write(batch)
out.flush()
while stdin.read(65536):
    pass
'''


async def one_round(messages: int, trace: bool, work: Path) -> tuple[float, float]:
    script = work / "flood.py"
    script.write_text(FLOOD_NODE)
    db = MaelstromDB(DBOptions(extra={"bin": f"{sys.executable} {script} {messages}"}))
    trace_path = work / "messages.jsonl" if trace else None
    router = db.make_network(1, trace_path, time.monotonic_ns)
    nodes = node_names(3)
    total = messages // 1000 * 1000 * len(nodes)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with open_cluster(db, router, nodes, work, leader_timeout=30):
        # Polled: the router offers no wait (its hot path stays free of notifications).
        while sum(c["delivered"] for c in router.counters().values()) < total:  # noqa: ASYNC110
            await trio.sleep(0.01)
        overflowed = sum(box.overflowed for box in db._outboxes.values())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if overflowed:
        print(f"  ({overflowed} messages found a full stdin queue and were dropped)")
    return total / cpu, total / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="per node")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="write messages.jsonl too")
    args = parser.parse_args()
    per_cpu, per_wall = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as work:
            cpu_rate, wall_rate = trio.run(one_round, args.messages, args.trace, Path(work))
        per_cpu.append(cpu_rate)
        per_wall.append(wall_rate)
        print(f"round: {cpu_rate:,.0f} msg/s per harness CPU second, "
              f"{wall_rate:,.0f} msg/s wall clock", flush=True)
    print(f"median over {args.rounds} rounds ({3 * args.messages:,} messages each, "
          f"trace {'on' if args.trace else 'off'}): {statistics.median(per_cpu):,.0f} msg/s "
          f"per harness CPU second, {statistics.median(per_wall):,.0f} msg/s wall clock "
          f"(target >= 5,000)")


if __name__ == "__main__":
    main()
