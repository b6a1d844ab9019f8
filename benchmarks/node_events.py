"""What pushing observations costs a raft_impl node, per applied entry.

    .venv/bin/python benchmarks/node_events.py [--entries 50000] [--batch 8] [--rounds 5]

The node's apply path runs on the same commands twice: as it was before the
node pushed anything (apply each entry, look up its waiting client), and as
it is now (raft_impl/host.py ``apply`` and ``push_applied``: the same, plus
the row of each entry — its digest and session — and one ``committed`` event
per batch, written by the real ``EventStream`` into a pipe that a separate
``cat`` process drains, as a node under the harness does). The difference is
what the stream costs per entry. Figures are process CPU time, comparable
across machine loads; ``benchmarks/throughput.py`` gives the whole node's CPU
per write to compare with.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import time

from raft_impl.core import RaftConfig
from raft_impl.events import EventStream
from raft_impl.host import HostSettings, NodeHost
from raft_impl.kv import Command, KVStateMachine
from raft_impl.types import Entry, EntryKind


def entries(count: int) -> list[Entry]:
    return [
        Entry(i, 2, EntryKind.COMMAND,
              Command("write", f"k{i % 1000}", i, client=f"c{i % 16}", seq=i).encode())
        for i in range(1, count + 1)
    ]


def cpu_before(log: list[Entry], batch: int) -> float:
    """CPU microseconds per entry of the apply loop as it was before pushing."""
    kv = KVStateMachine()
    pending: dict[int, object] = {}
    started = time.process_time()
    for start in range(0, len(log), batch):
        for entry in log[start:start + batch]:
            if entry.index <= kv.applied:
                continue
            kv.apply_entry(entry)
            pending.pop(entry.index, None)
    return (time.process_time() - started) / len(log) * 1e6


def cpu_now(stream: EventStream, log: list[Entry], batch: int) -> float:
    """CPU microseconds per entry to apply ``log`` in batches and push it, as a node does."""
    host = NodeHost("n1", ["n1"], HostSettings(RaftConfig()), random.Random(1),
                    None, None, stream, None)  # type: ignore[arg-type]  # apply needs neither
    started = time.process_time()
    for start in range(0, len(log), batch):
        host.apply(log[start:start + batch])
        host.push_applied()  # the end of the loop's round
    return (time.process_time() - started) / len(log) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=8, help="entries applied per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    log = entries(args.entries)
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    stream = EventStream(fd=reader.stdin.fileno())
    stream.open()
    without, with_events = [], []
    try:
        for _ in range(args.rounds):
            without.append(cpu_before(log, args.batch))
            with_events.append(cpu_now(stream, log, args.batch))
    finally:
        stream.close()
        reader.stdin.close()
        reader.wait()
    base, pushed = statistics.median(without), statistics.median(with_events)
    load = os.getloadavg()[0]
    print(f"{args.entries} entries in batches of {args.batch}, {args.rounds} rounds, "
          f"load average {load:.1f}")
    print(f"apply as before:      {base:.1f} us CPU per entry (median; "
          f"{min(without):.1f}-{max(without):.1f})")
    print(f"apply and push:       {pushed:.1f} us CPU per entry (median; "
          f"{min(with_events):.1f}-{max(with_events):.1f})")
    print(f"the stream costs:     {pushed - base:.1f} us CPU per entry per node "
          f"(dropped batches: {stream.dropped_batches})")


if __name__ == "__main__":
    main()
