"""Campaign detection: does a campaign find each planted bug without being told how?

``benchmarks/detection.py`` measures runs whose plan suits the bug (the fault
that exposes it, the read mode that shows it). This one measures what a user
who knows nothing about the bug gets: for each planted bug of raft_impl,
``splitbrain campaign --minutes M --bug NAME --seed S`` for the campaign seeds
(default 1-5), with no schedule, read mode or mix of its own — only the
campaign's rotation. Prints, per bug: campaigns that found it (exit 1) out of
campaigns, the median minutes to the first invalid run among those, and which
checkers caught it; and with ``--control``, the same campaigns without a bug
(each must come out valid: 0 invalid, 0 unknown).

    python benchmarks/campaign_detection.py                      # every bug, 5 min x 5 seeds
    python benchmarks/campaign_detection.py --minutes 2 --seeds 1,2 \\
        --bugs commit-without-quorum,no-dedup
    python benchmarks/campaign_detection.py --bugs '' --control --minutes 3 --seeds 1

Each campaign runs as ``python -m harness campaign`` in its own process (as CI
would call it) with ``--store`` (default ``store/campaign-detection``), so
every run is inspectable in its report and each campaign in campaign.json.
The whole matrix is 10 bugs x 5 seeds x 5 minutes, about 4 hours: run it
under ``nice`` and say the machine load with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_campaign(minutes: float, seed: int, bug: str | None, store: Path,
                 extra: list[str]) -> dict[str, Any]:
    """One campaign in a child process; its exit code and what campaign.json says."""
    before = set(store.glob("campaigns/*/campaign.json"))
    words = [sys.executable, "-m", "harness", "campaign", "--minutes", f"{minutes:g}",
             "--seed", str(seed), "--store", str(store), *extra]
    if bug:
        words += ["--bug", bug]
    began = time.monotonic()
    done = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - began
    new = sorted(set(store.glob("campaigns/*/campaign.json")) - before)
    data = json.loads(new[-1].read_text()) if new else {}
    first = data.get("first_invalid") or {}
    return {
        "bug": bug, "seed": seed, "exit_code": done.returncode,
        "runs": len(data.get("runs") or []), "counts": data.get("counts") or {},
        "minutes_to_invalid": first.get("minutes"), "failing": first.get("failing") or [],
        "elapsed_minutes": round(elapsed / 60, 2),
        "campaign": str(new[-1]) if new else None,
        "stderr": done.stderr.strip().splitlines()[-3:] if done.returncode == 2 else [],
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    found = [r for r in rows if r["exit_code"] == 1]
    minutes = [r["minutes_to_invalid"] for r in found if r["minutes_to_invalid"] is not None]
    checkers: Counter[str] = Counter(c for r in found for c in r["failing"])
    return {
        "found": len(found), "campaigns": len(rows),
        "unknown": sum(r["exit_code"] == 2 for r in rows),
        "median_minutes": round(statistics.median(minutes), 2) if minutes else None,
        "checkers": dict(checkers.most_common()),
        "runs": sum(r["runs"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    from raft_impl.bugs import BUGS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes per campaign")
    parser.add_argument("--seeds", default="1,2,3,4,5", help="campaign seeds (default 1-5)")
    parser.add_argument("--bugs", default=None,
                        help="comma-separated bugs (default: every planted bug; '' none)")
    parser.add_argument("--control", action="store_true",
                        help="also run the campaigns without a bug (must be valid)")
    parser.add_argument("--nodes", type=int, default=None, help="fix the cluster size")
    parser.add_argument("--store", default="store/campaign-detection", help="store directory")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    bugs = sorted(BUGS) if args.bugs is None else [b for b in args.bugs.split(",") if b]
    unknown = set(bugs) - set(BUGS)
    if unknown:
        parser.error(f"unknown bugs: {', '.join(sorted(unknown))}")
    extra = ["--nodes", str(args.nodes)] if args.nodes else []
    store = Path(args.store).resolve()
    print(f"# campaigns of {args.minutes:g} min, seeds {seeds}, load {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} cores", flush=True)
    targets: list[str | None] = list(bugs) + ([None] if args.control else [])
    results: dict[str, Any] = {}
    for bug in targets:
        rows = []
        for seed in seeds:
            row = run_campaign(args.minutes, seed, bug, store, extra)
            rows.append(row)
            print(f"  {bug or 'control'} seed {seed}: exit {row['exit_code']}, "
                  f"{row['runs']} runs {row['counts']}, first invalid at "
                  f"{row['minutes_to_invalid']} min, failing {row['failing']}", flush=True)
        summary = summarise(rows)
        results[bug or "control"] = {"summary": summary, "rows": rows}
        found = (f"{summary['found']}/{summary['campaigns']} found" if bug else
                 f"{summary['campaigns'] - summary['found'] - summary['unknown']}/"
                 f"{summary['campaigns']} valid")
        print(f"{bug or 'control (no bug)':<24} {found}, median "
              f"{summary['median_minutes']} min to the first invalid run, "
              f"{summary['unknown']} unknown, checkers {summary['checkers']}, "
              f"{summary['runs']} runs", flush=True)
    print(f"# load at the end {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
