"""How much faster ``splitbrain fuzz --workers N`` meets a planted bug than one search.

For each bug and seed it runs ``splitbrain fuzz --bug BUG --seed S`` once alone
and once with ``--workers N`` (a fresh example database each time, so nothing
is replayed), and measures the wall seconds from launching the command to the
first "test K fails" line on its stderr (process start-up included: that is
what a user waits for). The command is then stopped (SIGTERM): shrinking is not
measured. Worker 0 of ``--workers N --seed S`` searches exactly as the single
``--seed S`` search does; the others search seeds of their own.

Wall time depends on the machine's load: the script prints the load average
before and after, and the speedup is only meaningful with N idle cores.

    python benchmarks/fuzz_workers.py [--workers 2] [--bugs no-dedup,forget-vote]
        [--seeds 1,2] [--budget 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUGS = ("no-dedup", "forget-vote", "no-noop", "commit-without-quorum",
                "ack-before-fsync", "stale-leader-read")


def time_to_failure(bug: str, seed: int, workers: int, budget: float) -> float | None:
    """Wall seconds until the command reports its first failing test (None: not found)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-workers-") as scratch:
        argv = [sys.executable, "-m", "harness", "fuzz", "--bug", bug, "--seed", str(seed),
                "--store", str(Path(scratch) / "store"), "--search-seconds", str(budget),
                "--db-dir", str(Path(scratch) / "db")]
        if workers > 1:
            argv += ["--workers", str(workers)]
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        found = None
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if " fails (" in line:
                    found = time.perf_counter() - started
                    break
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bugs", default=",".join(DEFAULT_BUGS))
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="search seconds per command before giving up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bugs = [b for b in args.bugs.split(",") if b]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    load_before = os.getloadavg()
    rows = []
    for bug in bugs:
        for seed in seeds:
            # Alternate which goes first, so a load change favours neither.
            order = (1, args.workers) if (len(rows) % 2 == 0) else (args.workers, 1)
            times = {n: time_to_failure(bug, seed, n, args.budget) for n in order}
            single, parallel = times[1], times[args.workers]
            speedup = (single / parallel) if single and parallel else None
            rows.append({"bug": bug, "seed": seed, "single_s": single,
                         "workers_s": parallel, "speedup": speedup})
            if not args.json:
                print(f"{bug:24} seed {seed}: one search {_fmt(single)}, "
                      f"{args.workers} workers {_fmt(parallel)}, speedup "
                      f"{'-' if speedup is None else f'{speedup:.2f}x'}", flush=True)
    speedups = [r["speedup"] for r in rows if r["speedup"] is not None]
    found_single = [r["single_s"] for r in rows if r["single_s"] is not None]
    found_workers = [r["workers_s"] for r in rows if r["workers_s"] is not None]
    figures = {
        "workers": args.workers,
        "pairs": len(rows),
        "median_speedup": round(statistics.median(speedups), 2) if speedups else None,
        "total_single_s": round(sum(found_single), 1),
        "total_workers_s": round(sum(found_workers), 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            if key != "rows":
                print(f"{key:18} {value}")
    return 0


def _fmt(seconds: float | None) -> str:
    return "not found" if seconds is None else f"{seconds:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
