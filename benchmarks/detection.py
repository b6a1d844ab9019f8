"""Detection matrix: does the harness catch every planted bug of raft_impl?

For each bug in ``raft_impl.bugs.BUGS``: ``--runs`` seeded runs (default 5)
of ``--time-limit`` seconds (default: the plan's own, 30 or 60; at most 60)
with a nemesis that suits the bug (the PLANS table: what fault exposes it,
which read mode and workload mix make it visible). Prints, per bug: detected runs / runs, the
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

from harness.run.run import RunConfig, run_test


def _rounded(schedule: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**entry, "at": round(entry["at"], 3)} for entry in schedule]


def isolate_leader_schedule(time_limit: float, *, pause: bool, period: float = 3.0,
                            heal_after: float | None = None) -> list[dict[str, Any]]:
    """Cycles of: cut the leader off, (pause it,) resume, heal.

    Check-quorum makes an isolated leader step down within about one
    election timeout, about when the others elect a new one, so the window
    in which two nodes both act as leader is tiny. Pausing the old leader
    right after cutting it off stretches that window: while it is stopped
    the majority elects a new leader and commits writes; when it resumes,
    the requests queued in its sockets meet a node that still believes it
    leads. A correct node confirms leadership (or its lease) first; a buggy
    one answers from stale state. ``heal_after`` (seconds) heals early: just
    after the majority elected a new leader, while the cut-off one still
    holds a longer log of its own.
    """
    schedule: list[dict[str, Any]] = []
    at = 1.0
    while at + period <= time_limit + 0.01:
        schedule.append({"at": at, "f": "partition", "value": {"shape": "isolate-leader"}})
        if pause:
            schedule.append({"at": at + 0.05, "f": "pause", "value": "leader"})
            schedule.append({"at": at + period * 0.55, "f": "resume", "value": "all"})
        heal = at + (heal_after if heal_after is not None else period * 0.75)
        schedule.append({"at": heal, "f": "heal", "value": None})
        at += period
    return _rounded(schedule)


def leader_churn_schedule(time_limit: float, *, period: float = 2.0, down: float = 0.8,
                          reorder: float = 0.0, target: str = "leader") -> list[dict[str, Any]]:
    """Kill the leader (or another target) every ``period`` s, restart it ``down`` s later.

    Optionally with message reordering on every link for the whole run, so
    faults that need both (a leader dying while followers' logs are in flux)
    meet — generated schedules run one fault at a time. (Slow links:
    :func:`with_slow_links`.)
    """
    schedule: list[dict[str, Any]] = []
    if reorder:
        schedule.append({"at": 0.5, "f": "reorder", "value": {"p": reorder, "links": None}})
    at = 1.0
    while at + down <= time_limit:
        schedule.append({"at": at, "f": "kill", "value": target})
        schedule.append({"at": at + down, "f": "start", "value": "all"})
        at += period
    if reorder:
        schedule.append({"at": time_limit, "f": "reorder", "value": {"p": 0.0, "links": None}})
    return _rounded(schedule)


def with_slow_links(schedule: list[dict[str, Any]], mean: float,
                    jitter: float | None = None) -> list[dict[str, Any]]:
    """``schedule`` on links slowed from 0.5 s on by ``mean`` (+- ``jitter``, default mean/4).

    The proxy drops frames still in flight when a partition cuts their link, so
    slow links plus a partition lose the messages of the last ``mean`` seconds.
    """
    jitter = mean / 4 if jitter is None else jitter
    slow = {"at": 0.5, "f": "delay", "value": {"mean": mean, "jitter": jitter, "links": None}}
    return [slow, *schedule]


def figure8_trigger_schedule(time_limit: float, *, delay: float = 0.05, jitter: float = 0.005,
                             cuts: tuple[float, ...] = (0.2, 0.24, 0.28, 0.22, 0.26, 0.3),
                             arm_second: float = 1.1, heal_at: float = 4.2,
                             period: float = 6.0) -> list[dict[str, Any]]:
    """Raft's Figure 8, three elections per cycle, each step fired by an election.

    On slow links (``delay`` each way): 1. cut the leader A off; clients'
    writes pile up in its log only. 2. When B wins the next term, cut it off
    at once (healing A) and kill it: its no-op, still on the wire, is lost,
    and it takes no client writes. 3. A wins again (its log is the longest)
    and, one entry per append, replicates its old-term suffix to the third
    node C, its own no-op last; ``cuts[i]`` s after A's election (about two
    round trips: C holds A's first old-term entries, not yet its no-op) cut
    A off and restart B. 4. B, whose last entry has the newer term, wins
    with C's vote and overwrites the suffix. A leader that counts replicas
    of old-term entries (commit-old-term) committed and acked them in step
    3; a follower that skips the term check at prevIndex (no-prev-check)
    keeps A's entry under B's no-op and commits it. Trigger 3 is armed
    ``arm_second`` s into the cycle, after B's election and before A's.
    """
    schedule: list[dict[str, Any]] = [
        {"at": 0.5, "f": "delay", "value": {"mean": delay, "jitter": jitter, "links": None}},
    ]
    isolate = {"shape": "isolate-leader"}
    at, cycle = 1.0, 0
    while at + period <= time_limit:
        cut = cuts[cycle % len(cuts)]
        b_elected = {"event": "new-leader", "within": arm_second - 0.1}
        a_elected = {"event": "new-leader", "within": 3.0}
        schedule += [
            {"at": at, "f": "partition", "value": isolate},
            {"at": at + 0.05, "f": "partition", "value": isolate,
             "when": {**b_elected, "delay": 0.0}},
            {"at": at + 0.05, "f": "kill", "value": "leader", "when": {**b_elected, "delay": 0.03}},
            {"at": at + arm_second, "f": "partition", "value": isolate,
             "when": {**a_elected, "delay": cut}},
            {"at": at + arm_second, "f": "start", "value": "all",
             "when": {**a_elected, "delay": cut + 0.05}},
            # Early enough for the node cut off in step 3 to catch up before the next
            # cycle: a lagging third node would meet A's old-term entries late.
            {"at": at + heal_at, "f": "heal", "value": None},
            {"at": at + heal_at, "f": "start", "value": "all"},
        ]
        at += period
        cycle += 1
    schedule.append({"at": time_limit, "f": "heal", "value": None})
    return _rounded(schedule)


def forget_vote_trigger_schedule(time_limit: float, *, delay: float = 0.06,
                                 jitter: float = 0.01, period: float = 6.0,
                                 ) -> list[dict[str, Any]]:
    """Two leaders in one term, from a vote forgotten in a restart, every ``period`` s.

    On slow links: kill the leader L (it stays down, one term behind). When
    M wins the next term T with the vote of V, cut M off at once (its first
    append, still on the wire, is lost), kill M and V, and start all three.
    M is still cut off; L (term T-1) and V (term T) remain. If L's timer
    fires first it campaigns in term T: a V that did not persist its vote for
    M grants it, and term T has two leaders. (If V's fires first, nothing
    happens this cycle.) A correct V remembers its vote and refuses.
    """
    schedule: list[dict[str, Any]] = [
        {"at": 0.5, "f": "delay", "value": {"mean": delay, "jitter": jitter, "links": None}},
    ]
    elected = {"event": "new-leader", "within": 3.0}
    at = 1.0
    while at + period <= time_limit:
        schedule += [
            {"at": at, "f": "kill", "value": "leader"},
            {"at": at + 0.05, "f": "partition", "value": {"shape": "isolate-leader"},
             "when": {**elected, "delay": 0.0}},
            {"at": at + 0.05, "f": "kill", "value": "all", "when": {**elected, "delay": 0.05}},
            {"at": at + 0.05, "f": "start", "value": "all", "when": {**elected, "delay": 0.2}},
            {"at": at + period - 1.0, "f": "heal", "value": None},
            {"at": at + period - 1.0, "f": "start", "value": "all"},
        ]
        at += period
    schedule.append({"at": time_limit, "f": "heal", "value": None})
    return _rounded(schedule)


def delay_schedule(time_limit: float, *, mean: float = 0.2, jitter: float = 0.05,
                   period: float = 4.0) -> list[dict[str, Any]]:
    """Slow links on and off: commits take longer than a client's attempt timeout."""
    schedule: list[dict[str, Any]] = []
    at = 1.0
    while at + period / 2 <= time_limit:
        schedule.append({"at": at, "f": "delay",
                         "value": {"mean": mean, "jitter": jitter, "links": None}})
        schedule.append({"at": at + period * 0.6, "f": "delay",
                         "value": {"mean": 0.0, "jitter": 0.0, "links": None}})
        at += period
    return _rounded(schedule)


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
    attempt_timeout: float | None = None
    #: Fresh keys keep per-key histories short: faults make many ops indefinite,
    #: and every indefinite op multiplies the linearizability search.
    ops_per_key: int = 60
    #: Extra words for every node's command line (``--max-append-entries 1`` …).
    node_args: tuple[str, ...] = ()
    #: Seconds between log dumps; shorter catches states that last only a moment.
    collect_interval: float = 1.0
    why: str = ""
    #: An explicit schedule (from the time limit) instead of generated packages.
    schedule: Callable[[float], list[dict[str, Any]]] | None = None
    #: Seconds per run unless --time-limit says otherwise: plans that repeat a
    #: 6 s cycle of elections get 60 s, enough cycles for a miss or two.
    time_limit: float = 30.0


READ_HEAVY = {"read": 0.7, "write": 0.2, "cas": 0.1}
CAS_HEAVY = {"read": 0.4, "write": 0.1, "cas": 0.5}
WRITE_HEAVY = {"read": 0.3, "write": 0.5, "cas": 0.2}

#: bug -> the plan that suits it. A bug missing here gets DEFAULT_PLAN.
PLANS: dict[str, Plan] = {
    "no-prev-check": Plan(
        schedule=lambda t: figure8_trigger_schedule(t, cuts=(0.25, 0.3, 0.35, 0.4, 0.28, 0.33),
                                                    heal_at=5.0),
        nodes=3, mix=WRITE_HEAVY, rate=30, concurrency=12, collect_interval=0.25,
        node_args=("--max-append-entries", "1", "--max-inflight-appends", "1"),
        time_limit=60.0,
        why="Figure 8 by election triggers: the re-elected old leader is cut off while the "
            "third node holds some of its old-term entries; the next leader's first probe "
            "points at its own newer-term entry there, and a follower that skips the term "
            "check keeps the old one and commits it",
    ),
    "truncate-on-append": Plan(
        schedule=lambda t: leader_churn_schedule(t, reorder=0.5), nodes=3, rate=250,
        mix=WRITE_HEAVY,
        why="reordered appends make followers drop acked entries; killing the leader then "
            "loses committed writes",
    ),
    "commit-old-term": Plan(
        schedule=figure8_trigger_schedule, nodes=3, mix=WRITE_HEAVY, rate=8,
        concurrency=12, collect_interval=0.25,
        node_args=("--max-append-entries", "1", "--max-inflight-appends", "1"),
        # Few writes: a third node still catching up from the last cycle would meet A's
        # old-term entries at a time the fixed cut delays cannot predict.
        time_limit=60.0,
        why="Figure 8 by election triggers: a re-elected leader replicating its old-term "
            "suffix one entry per round trip commits it when a replica acks it; cut off "
            "before the follower hears of that commit, a leader of a newer term overwrites it",
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
        schedule=lambda t: with_slow_links(
            isolate_leader_schedule(t, pause=False, period=2.5, heal_after=1.5), 0.05),
        mix={"read": 0.5, "write": 0.5}, keys=12, nodes=3, rate=120, concurrency=24,
        why="slow links: a follower learns of a commit one link delay after the leader "
            "made it; cutting the leader off drops what is still in flight, so the next "
            "leader's commit index misses the writes of the old one's last 50 ms, and "
            "with no entry of its own term committed (another round trip or more) it "
            "serves reads at that stale index",
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
        schedule=forget_vote_trigger_schedule, nodes=3, mix=WRITE_HEAVY,
        time_limit=60.0,
        why="the voter of a new leader restarts before it hears from it; the old leader, "
            "one term behind, campaigns in that term and a voter that forgot its vote "
            "elects a second leader",
    ),
    "no-dedup": Plan(
        schedule=lambda t: delay_schedule(t), mix=CAS_HEAVY, keys=2, retry_indefinite=True,
        op_timeout=4.0, attempt_timeout=0.3,
        why="slow commits make clients retry with their session; without dedup the "
            "retried command applies twice",
    ),
}
DEFAULT_PLAN = Plan(("partition", "kill"), 3.0)


def first_anomaly_seconds(results: dict[str, Any]) -> float | None:
    """Seconds from run start until the first anomaly the checkers report was observable.

    Linearizability: the completion time of the operation that could not be
    linearized. Log order and the other violation-listing checkers: for each
    violation, the latest ``time`` among its pieces of evidence (the moment
    both conflicting observations were in hand); the earliest violation wins.
    """
    times = _anomaly_times(results)
    return min(times) / 1e9 if times else None


def _anomaly_times(result: Any) -> list[int]:
    if not isinstance(result, dict) or result.get("valid") is not False:
        return []
    times: list[int] = []
    evidence = result.get("evidence")
    op = evidence.get("op") if isinstance(evidence, dict) else None
    if isinstance(op, dict):
        when = op.get("complete_time") or op.get("invoke_time")
        if isinstance(when, int):
            times.append(when)
    for violation in result.get("violations") or []:
        found = list(_times_in(violation))
        if found:
            times.append(max(found))
    for sub in (result.get("checkers") or {}).values():
        times += _anomaly_times(sub)
    return times


def _times_in(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "time" and isinstance(item, int):
                yield item
            else:
                yield from _times_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _times_in(item)


def run_bug(bug: str, runs: int, time_limit: float | None, seed: int, store: str,
            control: bool = False) -> dict[str, Any]:
    """``runs`` runs of the bug's plan; with ``control`` the same plan without the bug.

    A control run that comes out invalid is a false alarm of the harness.
    """
    plan = PLANS.get(bug, DEFAULT_PLAN)
    time_limit = plan.time_limit if time_limit is None else time_limit
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
            ops_per_key=plan.ops_per_key,
            check_timeout=120.0,
            mix=dict(plan.mix),
            nemesis=[] if schedule_file else list(plan.nemesis),
            nemesis_schedule=str(schedule_file) if schedule_file else None,
            nemesis_interval=plan.interval,
            read_mode=plan.read_mode,
            bugs=[] if control else [bug],
            node_args=list(plan.node_args),
            collect_interval=plan.collect_interval,
            seed=seed + i,
            store=store,
            retry_indefinite=plan.retry_indefinite,
            op_timeout=plan.op_timeout,
            attempt_timeout=plan.attempt_timeout,
            render_report=False,
            command_line=[*sys.argv],
        )
        outcome = run_test(config)
        if outcome.interrupted:
            raise KeyboardInterrupt
        verdict = (outcome.results or {}).get("valid", "unknown")
        verdicts.append({"seed": seed + i, "valid": verdict, "run_dir": str(outcome.run_dir),
                         "error": outcome.error})
        if verdict is False and outcome.results is not None:
            detected += 1
            for name, result in outcome.results.get("checkers", {}).items():
                if isinstance(result, dict) and result.get("valid") is False:
                    caught_by.add(name)
            at = first_anomaly_seconds(outcome.results)
            if at is not None:
                seconds.append(at)
    return {
        "bug": bug,
        "runs": runs,
        "time_limit": time_limit,
        "detected": detected,
        "median_seconds_to_anomaly": round(statistics.median(seconds), 2) if seconds else None,
        "caught_by": sorted(caught_by),
        "plan": {
            "nemesis": "schedule" if schedule_file else list(plan.nemesis),
            "interval": plan.interval,
            "read_mode": plan.read_mode,
            "mix": plan.mix,
            "retry_indefinite": plan.retry_indefinite,
            "node_args": list(plan.node_args),
            "why": plan.why,
        },
        "verdicts": verdicts,
    }


def main(argv: list[str] | None = None) -> int:
    from raft_impl.bugs import BUGS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per bug (default 5)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds per run, at most 60 (default: each plan's, 30 or 60)")
    parser.add_argument("--bugs", default=None,
                        help="comma-separated bugs (default: every bug of raft_impl)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first run of a bug")
    parser.add_argument("--store", default="store/detection", help="store directory")
    parser.add_argument("--json", action="store_true", help="print the matrix as JSON")
    parser.add_argument("--control", action="store_true",
                        help="run each plan WITHOUT its bug: every detection is a false alarm")
    args = parser.parse_args(argv)
    if args.time_limit is not None and not 0 < args.time_limit <= 60:
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
        row = run_bug(bug, args.runs, args.time_limit, args.seed, args.store, args.control)
        row["control"] = args.control
        rows.append(row)
        median = row["median_seconds_to_anomaly"]
        line = (
            f"{bug:24} {row['time_limit']:>4.0f} s  {row['detected']}/{row['runs']}  "
            f"median {'-' if median is None else f'{median:.1f} s':>8}  "
            f"{', '.join(row['caught_by']) or '-'}"
            + ("   (control: false alarms)" if args.control else "")
        )
        # With --json the table rows still show progress, on stderr.
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)
    elapsed = round(time.monotonic() - began, 1)
    if args.json:
        print(json.dumps({"time_limit": args.time_limit, "runs": args.runs,
                          "elapsed_seconds": elapsed, "bugs": rows}, indent=2))
    else:
        print(f"({elapsed} s in all)")
    if args.control:
        return 0 if all(row["detected"] == 0 for row in rows) else 1
    return 0 if all(row["detected"] * 5 >= row["runs"] * 4 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
