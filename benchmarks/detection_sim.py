"""Detection matrix in the simulator: every planted bug, found by `splitbrain fuzz`?

For each bug of ``raft_impl.bugs.BUGS`` and each seed this runs the fuzzer
(Hypothesis search in the simulator, the same as ``splitbrain fuzz --bug NAME
--seed S``: the bug is only switched on, the search draws from the same generic
space as for correct code) and prints:
whether it was found, the seconds to the first failing test (CPU seconds of
this process, which is what "on one core" means, and wall seconds), the
number of tests tried, the faults left in the shrunk schedule, and the checkers
that caught it, then a matrix of bugs by seeds. Targets (issue 13): found within
2 minutes of one core for seeds 1-3, shrunk to <= 5 faults.

``txn-local-read`` lives on the transactional read path: it is searched with
``--workload list-append`` (as ``splitbrain fuzz --bug txn-local-read --workload
list-append``), every other bug with the register workload. The workload is the
user's choice of what to test, not a hint of the bug: the search is the same.

    python benchmarks/detection_sim.py [--bugs a,b] [--budget 120] [--seeds 1,2,3] [--json]
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

#: Bugs only a transactional workload can show (see the module docstring).
WORKLOAD = {"txn-local-read": "list-append"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bugs", default=",".join(BUGS), help="comma-separated bug names")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="CPU seconds of search per bug and seed before giving up "
                             "(default 120: one core, whatever else runs)")
    parser.add_argument("--shrink-seconds", type=float, default=60.0)
    parser.add_argument("--seeds", default="1,2,3", help="seeds of the search, comma-separated")
    parser.add_argument("--store", default=None, help="keep failing cases here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    store_dir = Path(args.store or tempfile.mkdtemp(prefix="detection-sim-"))
    rows = []
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    bugs = [b.strip() for b in args.bugs.split(",") if b.strip()]
    for bug in bugs:
        for seed in seeds:
            rows.append(_one(bug, seed, args, store_dir))
            if not args.json:
                row = rows[-1]
                print(f"{bug:24} seed={seed} found={'yes' if row['found'] else 'NO':3} "
                      f"first={row['seconds_to_first_failure']}s "
                      f"(cpu {row['cpu_seconds_to_first_failure']}s) tests={row['tests']} "
                      f"faults={row['shrunk_faults']} states={row['abstract_states']} "
                      f"checkers={','.join(row['checkers'])}", flush=True)
    if not args.json:
        print()
        print("| bug | " + " | ".join(f"seed {seed}" for seed in seeds) + " |")
        print("|---|" + "---|" * len(seeds))
        for bug in bugs:
            cells = []
            for row in rows:
                if row["bug"] != bug:
                    continue
                cells.append(f"{row['cpu_seconds_to_first_failure']} s, {row['tests']} tests, "
                             f"{row['shrunk_faults']} faults" if row["found"] else
                             f"not found in {row['tests']} tests")
            print(f"| {bug} | " + " | ".join(cells) + " |")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def _one(bug: str, seed: int, args: argparse.Namespace, store_dir: Path) -> dict:
    cpu0 = time.process_time()
    first_cpu: list[float] = []

    def progress(number: int, result, _first=first_cpu, _cpu0=cpu0) -> None:
        if result.valid is False and not _first:
            _first.append(time.process_time() - _cpu0)

    outcome = fuzz(examples=100_000, bugs=[bug], seed=seed, store_dir=store_dir,
                   search_seconds=args.budget, shrink_seconds=args.shrink_seconds,
                   progress=progress, clock=time.process_time,
                   workload=WORKLOAD.get(bug, "register"))
    return {
        "bug": bug,
        "seed": seed,
        "found": outcome.found,
        "seconds_to_first_failure": (round(outcome.seconds_to_first_failure, 1)
                                     if outcome.found else None),
        "cpu_seconds_to_first_failure": round(first_cpu[0], 1) if first_cpu else None,
        "tests": outcome.examples,
        "shrunk_faults": outcome.faults,
        "checkers": outcome.failing,
        "abstract_states": outcome.coverage.get("abstract_states"),
        "repro": str(outcome.repro) if outcome.repro else None,
    }


if __name__ == "__main__":
    sys.exit(main())
