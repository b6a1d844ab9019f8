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
under ``nice`` and say the machine load with the figures. ``--jobs 2`` runs two
campaigns at a time (real time is the bottleneck; more than two on a 2-core
machine starves the nodes and measures the machine, not the harness).

At the end it prints the matrix, bug x seed: ``found@M (checker)`` — found,
M minutes into the campaign at the end of the first invalid run, the first
failing checker — ``-`` for a campaign that ended valid, ``?`` for one that
ended unknown or could not run, with the load average when each campaign
ended.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def run_campaign(minutes: float, seed: int, bug: str | None, store: Path,
                       extra: list[str]) -> dict[str, Any]:
    """One campaign in a child process; its exit code and what its campaign.json says
    (found by the ``campaign: PATH`` line it prints, so campaigns may share a store)."""
    import trio

    words = [sys.executable, "-m", "harness", "campaign", "--minutes", f"{minutes:g}",
             "--seed", str(seed), "--store", str(store), *extra]
    if bug:
        words += ["--bug", bug]
    began = time.monotonic()
    done = await trio.run_process(words, cwd=ROOT, capture_stdout=True, capture_stderr=True,
                                  check=False)
    elapsed = time.monotonic() - began
    out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    paths = [line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.startswith("campaign: ") and line.rstrip().endswith(".json")]
    path = Path(paths[-1]) if paths else None
    if path is not None and not path.is_absolute():
        path = ROOT / path
    data = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    first = data.get("first_invalid") or {}
    return {
        "bug": bug, "seed": seed, "exit_code": done.returncode,
        "runs": len(data.get("runs") or []), "counts": data.get("counts") or {},
        "minutes_to_invalid": first.get("minutes"), "failing": first.get("failing") or [],
        "elapsed_minutes": round(elapsed / 60, 2),
        "campaign": str(path) if path else None,
        "stderr": err.strip().splitlines()[-3:] if done.returncode == 2 else [],
    }


def cell(row: dict[str, Any]) -> str:
    """One matrix cell: ``found@M (checker)``, ``-`` valid, ``?`` unknown or error."""
    if row["exit_code"] == 1:
        first = row["failing"][0] if row["failing"] else "?"
        return f"found@{row['minutes_to_invalid']} ({first})"
    return "-" if row["exit_code"] == 0 else "?"


def matrix(rows: list[dict[str, Any]], seeds: list[int]) -> list[str]:
    """The bug x seed table (markdown), one line per bug, in the order measured."""
    bugs: list[str] = []
    for row in rows:
        name = row["bug"] or "control"
        if name not in bugs:
            bugs.append(name)
    by = {(row["bug"] or "control", row["seed"]): row for row in rows}
    lines = ["| bug | " + " | ".join(f"seed {s}" for s in seeds) + " | found |",
             "|---|" + "---|" * (len(seeds) + 1)]
    for bug in bugs:
        cells = [cell(by[bug, s]) if (bug, s) in by else "" for s in seeds]
        done = [by[bug, s] for s in seeds if (bug, s) in by]
        if bug == "control":
            score = f"{sum(r['exit_code'] == 0 for r in done)}/{len(done)} valid"
        else:
            score = f"{sum(r['exit_code'] == 1 for r in done)}/{len(done)}"
        lines.append(f"| {bug} | " + " | ".join(cells) + f" | {score} |")
    return lines


def run_all(jobs: list[tuple[str | None, int]], minutes: float, store: Path,
            extra: list[str], parallel: int) -> list[dict[str, Any]]:
    """Every (bug, seed) campaign, ``parallel`` at a time (in a Trio nursery), printing
    each row as it ends."""
    import trio

    rows: list[dict[str, Any]] = []

    async def one(bug: str | None, seed: int, slots: trio.Semaphore) -> None:
        async with slots:
            row = await run_campaign(minutes, seed, bug, store, extra)
        row["load"] = round(os.getloadavg()[0], 1)
        rows.append(row)
        print(f"  {bug or 'control'} seed {seed}: exit {row['exit_code']}, "
              f"{row['runs']} runs {row['counts']}, first invalid at "
              f"{row['minutes_to_invalid']} min, failing {row['failing']}, "
              f"load {row['load']}", flush=True)

    async def main() -> None:
        slots = trio.Semaphore(parallel)
        async with trio.open_nursery() as nursery:
            for bug, seed in jobs:
                nursery.start_soon(one, bug, seed, slots)
                await trio.sleep(1.0)  # distinct store stamps; starts in order

    trio.run(main)
    return rows


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
    parser.add_argument("--jobs", type=int, default=1,
                        help="campaigns at a time (default 1; at most 2 on 2 cores)")
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
    jobs = [(bug, seed) for bug in targets for seed in seeds]
    rows = run_all(jobs, args.minutes, store, extra, max(1, args.jobs))
    results: dict[str, Any] = {}
    for bug in targets:
        mine = [r for r in rows if r["bug"] == bug]
        summary = summarise(mine)
        results[bug or "control"] = {"summary": summary, "rows": mine}
        found = (f"{summary['found']}/{summary['campaigns']} found" if bug else
                 f"{summary['campaigns'] - summary['found'] - summary['unknown']}/"
                 f"{summary['campaigns']} valid")
        print(f"{bug or 'control (no bug)':<24} {found}, median "
              f"{summary['median_minutes']} min to the first invalid run, "
              f"{summary['unknown']} unknown, checkers {summary['checkers']}, "
              f"{summary['runs']} runs", flush=True)
    print()
    print("\n".join(matrix(sorted(rows, key=lambda r: (targets.index(r["bug"]), r["seed"])),
                           seeds)))
    print(f"# load at the end {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
