"""Detection matrix in the simulator: every planted bug, found by `splitbrain fuzz`?

For each bug of ``raft_impl.bugs.BUGS`` this runs the fuzzer (Hypothesis search
in the simulator, the same as ``splitbrain fuzz --bug NAME``) and prints:
whether it was found, the seconds to the first failing test (CPU seconds of
this process, which is what "on one core" means, and wall seconds), the
number of tests tried, the faults left in the shrunk schedule, and the checkers
that caught it. Targets (issue 6): found within 2 minutes, shrunk to <= 5
faults.

    python benchmarks/detection_sim.py [--bugs a,b] [--budget 120] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.sim.fuzz import fuzz
from raft_impl.bugs import BUGS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bugs", default=",".join(BUGS), help="comma-separated bug names")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds of search per bug before giving up (default 120)")
    parser.add_argument("--shrink-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1, help="seed of the search")
    parser.add_argument("--store", default=None, help="keep failing cases here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    store_dir = Path(args.store or tempfile.mkdtemp(prefix="detection-sim-"))
    rows = []
    for bug in [b.strip() for b in args.bugs.split(",") if b.strip()]:
        cpu0 = time.process_time()
        first_cpu: list[float] = []

        def progress(number: int, result, _first=first_cpu, _cpu0=cpu0) -> None:
            if result.valid is False and not _first:
                _first.append(time.process_time() - _cpu0)

        outcome = fuzz(examples=100_000, bugs=[bug], seed=args.seed, store_dir=store_dir,
                       search_seconds=args.budget, shrink_seconds=args.shrink_seconds,
                       progress=progress)
        rows.append({
            "bug": bug,
            "found": outcome.found,
            "seconds_to_first_failure": (round(outcome.seconds_to_first_failure, 1)
                                         if outcome.found else None),
            "cpu_seconds_to_first_failure": round(first_cpu[0], 1) if first_cpu else None,
            "tests": outcome.examples,
            "shrunk_faults": outcome.faults,
            "checkers": outcome.failing,
            "repro": str(outcome.repro) if outcome.repro else None,
        })
        if not args.json:
            row = rows[-1]
            print(f"{bug:24} found={'yes' if row['found'] else 'NO':3} "
                  f"first={row['seconds_to_first_failure']}s "
                  f"(cpu {row['cpu_seconds_to_first_failure']}s) tests={row['tests']} "
                  f"faults={row['shrunk_faults']} checkers={','.join(row['checkers'])}",
                  flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
