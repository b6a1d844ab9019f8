"""Log-order checker at scale: a synthetic run of 5 nodes dumped every second.

    .venv/bin/python benchmarks/logorder_scale.py [--seconds 60] [--entries 100000]
                                                  [--full-every 10] [--json]

The logs start at ``entries`` - 1,000 entries and grow by ~1,000 entries a
second (with ``from`` a little below the commit index, as harness/run/collect.py
fetches them) and every ``full-every`` rounds each node sends its whole log, as
the collector does. ``--full-every 1`` sends the whole log every second (the
worst case). Prints the file size, load + check seconds (wall, and CPU: the
machine may be shared), CPU seconds per 100k entries read, and peak memory
(max RSS). Never part of the test pass.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checker.logorder import check_log_order, load_observations  # noqa: E402

NODES = ("n1", "n2", "n3", "n4", "n5")
OVERLAP = 32
SECOND = 1_000_000_000


def entry(index: int) -> dict:
    return {"index": index, "term": 1 + index // 50_000, "client": f"c{index % 20}",
            "seq": index // 20, "digest": f"{index * 2654435761 % 2**64:016x}"}


def write_run(path: Path, seconds: int, entries: int, full_every: int) -> tuple[int, int]:
    """Write the observations; returns (log records, entries written)."""
    log = [entry(i) for i in range(1, entries + 1)]
    written = records = 0
    last_commit = dict.fromkeys(NODES, 0)
    length = entries - 1_000
    with path.open("w", encoding="utf-8") as out:
        for node in NODES:
            out.write(json.dumps({"time": 0, "node": node, "kind": "role", "term": 1,
                                  "role": "leader" if node == "n1" else "follower"}) + "\n")
        for second in range(seconds):
            length = min(entries, length + 1_000)
            for position, node in enumerate(NODES):
                commit = length - position * 3  # followers lag a little
                full = second % full_every == 0 or second == seconds - 1  # and at the end
                start = 1 if full or not last_commit[node] else last_commit[node] - OVERLAP
                shown = log[start - 1 : length]
                record = {"time": second * SECOND + position, "node": node, "kind": "log",
                          "commit": commit, "snapshot_index": 0, "snapshot_term": 0,
                          "entries": shown}
                if not full:
                    record["from"] = start
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                last_commit[node] = commit
                records += 1
                written += len(shown)
        out.write(json.dumps({"time": seconds * SECOND, "kind": "healed"}) + "\n")
        for node in NODES:
            out.write(json.dumps({"time": seconds * SECOND + 1, "node": node, "kind": "digest",
                                  "applied": length, "digest": "d"}) + "\n")
    return records, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--full-every", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "observations.jsonl"
        records, written = write_run(path, args.seconds, args.entries, args.full_every)
        size_mb = path.stat().st_size / 1e6
        started, cpu_started = time.perf_counter(), time.process_time()
        observations = load_observations(path)
        loaded, cpu_loaded = time.perf_counter(), time.process_time()
        result = check_log_order(observations)
        checked = time.perf_counter()
    figures = {
        "nodes": len(NODES),
        "seconds": args.seconds,
        "log_records": records,
        "entries_read": written,
        "file_mb": round(size_mb, 1),
        "load_s": round(loaded - started, 2),
        "load_cpu_s": round(cpu_loaded - cpu_started, 2),
        "check_s": round(checked - loaded, 3),
        "cpu_s_per_100k_entries": round((cpu_loaded - cpu_started) / written * 100_000, 3),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "valid": {name: r["valid"] for name, r in result["checkers"].items()},
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
