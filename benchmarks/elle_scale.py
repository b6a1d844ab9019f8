"""Transactional checker at scale: time and memory against history length and concurrency.

    .venv/bin/python benchmarks/elle_scale.py [--sizes 10000,30000,100000]
                                              [--clients 10,50] [--models list-append,rw-register]
                                              [--keys 100] [--info 0.01] [--json]

Each point runs in a fresh process: it simulates a strictly serializable
execution (``checker.elle.synth``: ``keys`` active keys, each retired after 32
writes, 1-4 micro-ops a transaction, ``info`` of them indefinite), pairs the
events into a history, and checks it with ``checker.elle`` for strict
serializability. Printed per point: the verdict (it must be valid), the
check's wall and CPU seconds (the machine may be shared: CPU is the fairer
figure), the resident memory before the check and the process's peak, and the
1-minute load average when the point started. Never part of the test pass.

``--models registers`` measures linearizability from values instead
(``checker.elle.registers`` through ``checker.linearizable.check_history``,
model raft-kv): a simulated linearizable register history
(``checker.synth.simulate``: read / write / cas, unique values) of ``sizes``
operations over ``keys`` keys; ``--compare-search S`` also runs the WGL
search alone on it with a budget of S seconds (as Porcupine would search).
For registers ``rss_before`` includes the history itself (about 1 KB an
operation as Python objects).

Targets (issue 14): 100,000 list-append transactions, 10 clients, 100 keys,
1 % indefinite: <= 30 s and <= 1 GB; a 1,000,000-operation register history,
50 clients, 5 % indefinite: <= 60 s and <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_register(ops: int, clients: int, keys: int, info: float, seed: int, load: float,
                 compare: float | None) -> dict:
    """Linearizability of a register history, from values (and the search alone)."""
    import random

    import psutil

    from checker.history import history_from_events
    from checker.linearizable import check_history
    from checker.synth import simulate

    events = simulate(random.Random(seed), ops, keys=keys, clients=clients, info_rate=info,
                      functions=("read", "write", "cas"))
    history = history_from_events(events)
    del events
    rss_before = psutil.Process().memory_info().rss
    wall, cpu = time.monotonic(), time.process_time()
    result = check_history(history, "raft-kv", timeout=600, memory_mb=4096)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    row = {
        "model": "registers", "txns": ops, "clients": clients, "keys": keys, "info": info,
        "indefinite": sum(1 for op in history.ops if op.unknown),
        "valid": result["valid"], "decided_keys": result.get("decided_from_values"),
        "search_steps": result.get("search_steps"),
        "check_wall_s": round(wall, 2), "check_cpu_s": round(cpu, 2),
        "rss_before_mb": round(rss_before / 2**20),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_1min": round(load, 1),
    }
    if compare:
        wall = time.monotonic()
        alone = check_history(history, "raft-kv", timeout=compare, from_values=False)
        row["search_alone"] = {"valid": alone["valid"], "reason": alone.get("reason"),
                               "wall_s": round(time.monotonic() - wall, 2)}
    return row


def one(model: str, txns: int, clients: int, keys: int, info: float, seed: int,
        compare: float | None = None) -> dict:
    """Measure one point in this process (called in a child by main)."""
    import random

    import psutil

    from checker.elle import check_txn_history
    from checker.elle.synth import simulate_txns
    from checker.history import history_from_events

    load = os.getloadavg()[0]
    if model == "registers":
        return one_register(txns, clients, keys, info, seed, load, compare)
    events = simulate_txns(random.Random(seed), txns, clients=clients, keys=keys,
                           model=model, info_rate=info)
    history = history_from_events(events)
    del events
    rss_before = psutil.Process().memory_info().rss
    wall, cpu = time.monotonic(), time.process_time()
    result = check_txn_history(history, model)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    return {
        "model": model, "txns": txns, "clients": clients, "keys": keys, "info": info,
        "valid": result["valid"], "anomalies": result.get("anomaly_types"),
        "edges": result.get("stats", {}).get("edges"),
        "check_wall_s": round(wall, 2), "check_cpu_s": round(cpu, 2),
        "rss_before_mb": round(rss_before / 2**20),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_1min": round(load, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--clients", default="10,50")
    parser.add_argument("--models", default="list-append,rw-register")
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--info", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compare-search", type=float, metavar="S",
                        help="registers: also run the WGL search alone, budget S seconds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "TXNS", "CLIENTS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        model, txns, clients = args.one
        print(json.dumps(one(model, int(txns), int(clients), args.keys, args.info, args.seed,
                             args.compare_search)))
        return 0
    rows = []
    for model in args.models.split(","):
        for clients in (int(c) for c in args.clients.split(",")):
            for size in (int(s) for s in args.sizes.split(",")):
                out = subprocess.run(
                    [sys.executable, __file__, "--one", model, str(size), str(clients),
                     "--keys", str(args.keys), "--info", str(args.info),
                     "--seed", str(args.seed),
                     *(["--compare-search", str(args.compare_search)]
                       if args.compare_search else [])],
                    capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                if not args.json:
                    print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
