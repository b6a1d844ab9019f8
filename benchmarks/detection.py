"""Detection matrix: does the harness catch every planted bug of raft_impl?

For each bug in ``raft_impl.bugs.BUGS``: ``--runs`` seeded runs (default 5)
of ``--time-limit`` seconds (default 30, at most 60) with a nemesis that
suits the bug (the PLANS table: what fault exposes it, which read mode and
workload mix make it visible). Prints, per bug: detected runs / runs, the
median seconds from the run's start to the first anomaly the checkers
point at, and which checkers caught it.

    python benchmarks/detection.py                       # the whole matrix
    python benchmarks/detection.py --bugs stale-leader-read,no-dedup --runs 3
    python benchmarks/detection.py --json > detection.json

Runs go to ``--store`` (default ``store/detection``) like any run, so each
detection can be inspected in its report. Seeds are fixed (``--seed``) so the
plan of each run is reproducible; the real timing is not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Allow `python benchmarks/detection.py` from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.run import RunConfig, run_test


def isolate_leader_schedule(time_limit: float, *, pause: bool, period: float = 3.0,
                            ) -> list[dict[str, Any]]:
    """Cycles of: cut the leader off, (pause it,) resume, heal.

    Check-quorum makes an isolated leader step down within about one
    election timeout, about when the others elect a new one, so the window
    in which two nodes both act as leader is tiny. Pausing the old leader
    right after cutting it off stretches that window: while it is stopped
    the majority elects a new leader and commits writes; when it resumes,
    the requests queued in its sockets meet a node that still believes it
    leads. A correct node confirms leadership (or its lease) first; a buggy
    one answers from stale state.
    """
    schedule: list[dict[str, Any]] = []
    at = 1.0
    while at + period <= time_limit + 0.01:
        schedule.append({"at": at, "f": "partition", "value": {"shape": "isolate-leader"}})
        if pause:
            schedule.append({"at": at + 0.05, "f": "pause", "value": "leader"})
            schedule.append({"at": at + period * 0.55, "f": "resume", "value": "all"})
        schedule.append({"at": at + period * 0.75, "f": "heal", "value": None})
        at += period
    return [{**entry, "at": round(entry["at"], 3)} for entry in schedule]


@dataclass(frozen=True)
class Plan:
    """How to expose one bug: faults, read mode, workload."""

    nemesis: tuple[str, ...] = ()
    interval: float = 3.0
    read_mode: str = "read-index"
    mix: dict[str, float] = field(default_factory=lambda: {"read": 0.5, "write": 0.3, "cas": 0.2})
    keys: int = 3
    rate: float = 150.0
    concurrency: int = 6
    nodes: int = 5
    retry_indefinite: bool = False
    op_timeout: float = 1.0
    why: str = ""
    #: An explicit schedule (from the time limit) instead of generated packages.
    schedule: Callable[[float], list[dict[str, Any]]] | None = None


READ_HEAVY = {"read": 0.7, "write": 0.2, "cas": 0.1}
CAS_HEAVY = {"read": 0.4, "write": 0.1, "cas": 0.5}

#: bug -> the plan that suits it. A bug missing here gets DEFAULT_PLAN.
PLANS: dict[str, Plan] = {
    "no-prev-check": Plan(
        ("partition", "kill", "reorder"), 2.5,
        why="divergent logs after leader changes are appended without the matching check",
    ),
    "truncate-on-append": Plan(
        ("reorder", "duplicate", "delay"), 2.0, rate=250,
        why="a delayed, shorter append arrives after a longer one and truncates acked entries",
    ),
    "commit-old-term": Plan(
        ("partition", "kill"), 2.0,
        why="Figure 8 needs leaders that change while older-term entries are half replicated",
    ),
    "commit-without-quorum": Plan(
        schedule=lambda t: isolate_leader_schedule(t, pause=False), nodes=3,
        why="a leader cut off from the majority commits alone; its acked writes vanish",
    ),
    "stale-leader-read": Plan(
        schedule=lambda t: isolate_leader_schedule(t, pause=True), mix=READ_HEAVY,
        why="a deposed leader behind a partition keeps serving read-index reads",
    ),
    "no-noop": Plan(
        ("partition", "kill"), 2.5, mix=READ_HEAVY,
        why="a fresh leader serves reads before it knows what is committed",
    ),
    "lease-too-long": Plan(
        schedule=lambda t: isolate_leader_schedule(t, pause=True), read_mode="lease",
        mix=READ_HEAVY,
        why="an oversized lease outlives leadership under partitions and pauses",
    ),
    "ack-before-fsync": Plan(
        ("lose-unfsynced",), 2.0, nodes=3,
        why="acked writes that were never fsynced disappear in a lose-unfsynced crash",
    ),
    "forget-vote": Plan(
        ("kill", "partition"), 2.0,
        why="a restarted node votes twice in one term: two leaders in a term",
    ),
    "no-dedup": Plan(
        ("kill", "partition"), 2.0, mix=CAS_HEAVY, keys=2, retry_indefinite=True, op_timeout=3.0,
        why="clients retry an in-doubt command with its session; without dedup it applies twice",
    ),
}
DEFAULT_PLAN = Plan(("partition", "kill"), 3.0)


def first_anomaly_seconds(results: dict[str, Any], run_dir: Path) -> float | None:
    """Seconds from run start to the earliest anomaly the failing checkers point at.

    Checkers name anomalies by history ``index`` or by ``time`` (ns since the
    run began); both are searched in the evidence of every invalid checker,
    indexes mapped to times through the history.
    """
    times: list[int] = []
    indexes: list[int] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "time" and isinstance(item, int) and item >= 0:
                    times.append(item)
                elif key == "index" and isinstance(item, int) and item >= 0:
                    indexes.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for result in (results.get("checkers") or {}).values():
        if isinstance(result, dict) and result.get("valid") is False:
            walk({k: v for k, v in result.items() if k != "valid"})
    if indexes:
        history_times = _history_times(run_dir / "history.jsonl")
        times += [history_times[i] for i in indexes if i in history_times]
    return min(times) / 1e9 if times else None


def _history_times(path: Path) -> dict[int, int]:
    found: dict[int, int] = {}
    try:
        with path.open() as lines:
            for line in lines:
                event = json.loads(line)
                if isinstance(event.get("index"), int) and isinstance(event.get("time"), int):
                    found[event["index"]] = event["time"]
    except (OSError, ValueError):
        pass
    return found


def run_bug(bug: str, runs: int, time_limit: float, seed: int, store: str) -> dict[str, Any]:
    plan = PLANS.get(bug, DEFAULT_PLAN)
    detected, seconds, caught_by, verdicts = 0, [], set(), []
    schedule_file = None
    if plan.schedule is not None:
        schedule_file = Path(tempfile.mkdtemp(prefix="sb-detect-")) / f"{bug}.json"
        schedule_file.write_text(json.dumps(plan.schedule(time_limit), indent=1))
    for i in range(runs):
        config = RunConfig(
            nodes=plan.nodes,
            time_limit=time_limit,
            rate=plan.rate,
            concurrency=plan.concurrency,
            keys=plan.keys,
            mix=dict(plan.mix),
            nemesis=[] if schedule_file else list(plan.nemesis),
            nemesis_schedule=str(schedule_file) if schedule_file else None,
            nemesis_interval=plan.interval,
            read_mode=plan.read_mode,
            bugs=[bug],
            seed=seed + i,
            store=store,
            retry_indefinite=plan.retry_indefinite,
            op_timeout=plan.op_timeout,
            render_report=False,
            command_line=[*sys.argv],
        )
        outcome = run_test(config)
        verdict = (outcome.results or {}).get("valid", "unknown")
        verdicts.append({"seed": seed + i, "valid": verdict, "run_dir": str(outcome.run_dir),
                         "error": outcome.error})
        if verdict is False and outcome.results is not None:
            detected += 1
            for name, result in outcome.results.get("checkers", {}).items():
                if isinstance(result, dict) and result.get("valid") is False:
                    caught_by.add(name)
            at = first_anomaly_seconds(outcome.results, outcome.run_dir)
            if at is not None:
                seconds.append(at)
    return {
        "bug": bug,
        "runs": runs,
        "detected": detected,
        "median_seconds_to_anomaly": round(statistics.median(seconds), 2) if seconds else None,
        "caught_by": sorted(caught_by),
        "plan": {
            "nemesis": "schedule" if schedule_file else list(plan.nemesis),
            "interval": plan.interval,
            "read_mode": plan.read_mode,
            "mix": plan.mix,
            "retry_indefinite": plan.retry_indefinite,
            "why": plan.why,
        },
        "verdicts": verdicts,
    }


def main(argv: list[str] | None = None) -> int:
    from raft_impl.bugs import BUGS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per bug (default 5)")
    parser.add_argument("--time-limit", type=float, default=30.0,
                        help="seconds per run, at most 60 (default 30)")
    parser.add_argument("--bugs", default=None,
                        help="comma-separated bugs (default: every bug of raft_impl)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first run of a bug")
    parser.add_argument("--store", default="store/detection", help="store directory")
    parser.add_argument("--json", action="store_true", help="print the matrix as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.time_limit <= 60:
        parser.error("--time-limit must be in (0, 60]")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    bugs = list(BUGS) if args.bugs is None else [b.strip() for b in args.bugs.split(",") if b]
    unknown = sorted(set(bugs) - set(BUGS))
    if unknown:
        parser.error(f"unknown bugs {unknown}; known: {', '.join(BUGS)}")
    began = time.monotonic()
    rows = []
    for bug in bugs:
        row = run_bug(bug, args.runs, args.time_limit, args.seed, args.store)
        rows.append(row)
        if not args.json:
            median = row["median_seconds_to_anomaly"]
            print(
                f"{bug:24} {row['detected']}/{row['runs']}  "
                f"median {'-' if median is None else f'{median:.1f} s':>8}  "
                f"{', '.join(row['caught_by']) or '-'}",
                flush=True,
            )
    elapsed = round(time.monotonic() - began, 1)
    if args.json:
        print(json.dumps({"time_limit": args.time_limit, "runs": args.runs,
                          "elapsed_seconds": elapsed, "bugs": rows}, indent=2))
    else:
        print(f"({elapsed} s in all)")
    return 0 if all(row["detected"] * 5 >= row["runs"] * 4 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
