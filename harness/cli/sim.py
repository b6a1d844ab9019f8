"""``splitbrain fuzz`` and ``splitbrain replay``: property-based search in the simulator.

``fuzz`` runs the property "every checker says valid" on simulated tests drawn
by Hypothesis; on a failure Hypothesis shrinks it and the minimal case is saved
as ``repro.json`` in a store run directory with its history and report.
Exit code 1 when a failure was found, 0 when none.

``replay repro.json`` runs the saved case in the simulator again (the history
must be byte-identical; it says so), or with ``--real`` replays the same
schedule, workload and cluster settings against real processes through the
harness's run pipeline (the real world is not deterministic: same plan, maybe
not the same interleaving).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.cli.main import check_number
from harness.run.workload import WORKLOADS
from harness.sim.config import READ_MODES
from splitbrain_common import files
from splitbrain_common.errors import UserError

#: Without a planted bug a fuzz is a check that passes: a short default suits CI.
DEFAULT_EXAMPLES = 100
#: With one, the user wants it found: search on, for a bounded time. (Every planted
#: bug is found within 2 minutes on one core; the budget leaves room for a busy machine.)
DEFAULT_BUG_EXAMPLES = 100_000
DEFAULT_BUG_SEARCH_SECONDS = 300.0


def register(subparsers: Any) -> None:
    fuzz = subparsers.add_parser(
        "fuzz",
        help="search for a failing fault schedule in the simulator (Hypothesis), shrink it",
        description=(
            "Run the property 'every checker says valid' on simulated raft_impl tests drawn "
            "by Hypothesis (cluster settings, workload, nemesis schedule, seed). The first "
            "failure is shrunk to a minimal case, saved as repro.json with its run directory "
            "and report. Exit 1 when a failure is found, 0 when none. With --bug the "
            "search goes on until the bug is found or --search-seconds have passed. Long "
            "campaigns: `splitbrain fuzz --examples 100000`."
        ),
    )
    fuzz.add_argument("--examples", type=int, default=None, metavar="N",
                      help=f"how many tests to try (default {DEFAULT_EXAMPLES}; with --bug "
                           f"{DEFAULT_BUG_EXAMPLES}, bounded by --search-seconds)")
    fuzz.add_argument("--search-seconds", type=float, default=None, metavar="S",
                      help="stop searching after S seconds without a failure (default: "
                           f"none; with --bug {DEFAULT_BUG_SEARCH_SECONDS:.0f})")
    fuzz.add_argument("--bug", action="append", default=[], metavar="NAME",
                      help="switch on a planted bug (repeatable)")
    fuzz.add_argument("--seed", type=int, default=None,
                      help="seed of the search itself (same seed, same sequence of tests)")
    fuzz.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    fuzz.add_argument("--store", default="store", metavar="DIR",
                      help="store directory for the failing case (default ./store)")
    fuzz.add_argument("--read-mode", action="append", default=[], choices=READ_MODES,
                      help="read modes to draw from (repeatable; default all but stale)")
    fuzz.add_argument("--time-limit", type=float, default=None, metavar="S",
                      help="simulated seconds of workload per test (default: drawn, 3-8)")
    fuzz.add_argument("--max-faults", type=int, default=8, metavar="N",
                      help="most faults in a drawn schedule (default 8)")
    fuzz.add_argument("--shrink-seconds", type=float, default=120.0, metavar="S",
                      help="time budget for shrinking a failure (default 120)")
    fuzz.add_argument("--workload", default="register", choices=WORKLOADS,
                      help="register only: the simulator's clients issue no transactions "
                           "yet (list-append and rw-register run with `splitbrain run`)")
    fuzz.add_argument("--quiet", action="store_true", help="no progress output")
    fuzz.add_argument("--workers", type=int, default=1, metavar="N",
                      help="N worker processes searching in parallel (each its own seed), "
                           "sharing one example database; the first failure stops all "
                           "(default 1)")
    shared = fuzz.add_mutually_exclusive_group()
    shared.add_argument("--db-dir", default=None, metavar="DIR",
                        help="Hypothesis example database in DIR, shared by the workers of "
                             "this machine and kept between campaigns (default with "
                             "--workers: a temporary one)")
    shared.add_argument("--redis", default=None, metavar="URL",
                        help="Hypothesis example database in Redis (redis://host:port/db), "
                             "shared by workers on several machines: a failure one finds "
                             "stops and is replayed by all")
    fuzz.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    fuzz.set_defaults(handler=run_fuzz)

    replay = subparsers.add_parser(
        "replay",
        help="reproduce a repro.json in the simulator, or against real processes (--real)",
        description=(
            "Run the test saved in repro.json again. In the simulator the history is "
            "byte-identical every time (checked against the digest in repro.json). With "
            "--real, the same schedule, workload and settings run on real node processes. "
            "Exit code 0 valid, 1 invalid, 2 unknown."
        ),
    )
    replay.add_argument("repro", help="a repro.json written by splitbrain fuzz (or the run "
                                      "directory holding it)")
    replay.add_argument("--real", action="store_true",
                        help="replay against real processes through `splitbrain run`")
    replay.add_argument("--store", default="store", metavar="DIR",
                        help="store directory (default ./store)")
    replay.set_defaults(handler=run_replay)


def run_fuzz(args: argparse.Namespace) -> int:
    from harness.sim.config import validate_bugs

    check_number(args.examples, "--examples", integer=True)
    check_number(args.search_seconds, "--search-seconds")
    check_number(args.time_limit, "--time-limit")
    check_number(args.max_faults, "--max-faults", inclusive=True, integer=True)
    check_number(args.shrink_seconds, "--shrink-seconds")
    check_number(args.workers, "--workers", integer=True)
    if args.nodes < 1 or args.nodes > 9:
        raise UserError(f"--nodes must be between 1 and 9, got {args.nodes}")
    try:
        bugs = sorted(validate_bugs(args.bug))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.workers < 1 or args.workers > 256:
        raise UserError(f"--workers must be between 1 and 256, got {args.workers}")
    examples = args.examples or (DEFAULT_BUG_EXAMPLES if bugs else DEFAULT_EXAMPLES)
    search_seconds = args.search_seconds
    if search_seconds is None and bugs:
        search_seconds = DEFAULT_BUG_SEARCH_SECONDS
    if args.workers > 1 and args.worker_index is None:
        return _run_workers(args, bugs, examples, search_seconds)
    return _run_search(args, bugs, examples, search_seconds)


def _campaign(args: argparse.Namespace, bugs: list[str]) -> dict[str, Any]:
    """What defines a campaign's property (workers with these share failures)."""
    return {"bugs": bugs, "nodes": args.nodes, "read_modes": sorted(args.read_mode),
            "time_limit": args.time_limit, "max_faults": args.max_faults,
            "workload": args.workload}


def _run_search(args: argparse.Namespace, bugs: list[str], examples: int,
                search_seconds: float | None) -> int:
    """One search: the whole of ``fuzz`` without --workers, or worker ``--worker-index``."""
    from checker.results import failing_checkers
    from harness.sim import workers
    from harness.sim.fuzz import fuzz

    worker = args.worker_index
    prefix = "" if worker is None else f"[w{worker}] "
    out = sys.stderr

    def say(text: str, *, result: bool = False) -> None:
        # Alone, results go to stdout; a worker's stdout carries JSON for its parent.
        print(prefix + text, file=sys.stdout if result and worker is None else out,
              flush=True)

    try:
        database = workers.open_database(args.db_dir, args.redis)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    announcements = None
    if database is not None:
        key = workers.campaign_key(**_campaign(args, bugs))
        database = workers.CampaignDatabase(database, key)
        name = f"{socket.gethostname()}:{os.getpid()}"
        announcements = workers.Announcements(database.inner, key, name)
        found = announcements.find()
        if found is not None:
            code = _replay_announced(found, announcements, say, worker)
            if code is not None:
                return code

    failed: list[int] = []

    def progress(number: int, result: Any) -> None:
        if result.valid is False and not failed:
            failed.append(number)
            if worker is not None:
                workers.emit({"event": "found", "test": number})
            if not args.quiet:
                say(f"  test {number} fails ({', '.join(failing_checkers(result.results))}); "
                    "shrinking it ...")
        elif number % 100 == 0 and not args.quiet:
            state = "shrinking" if failed else "searching"
            say(f"  {number} tests run ({state})")

    label = ", ".join(bugs) if bugs else "the correct implementation"
    bound = f", searching for at most {search_seconds:g} s" if search_seconds else ""
    say(f"splitbrain fuzz: up to {examples} simulated tests of {label}{bound}")
    outcome = fuzz(examples=examples, bugs=bugs, seed=args.seed, nodes=args.nodes,
                   store_dir=args.store, read_modes=args.read_mode or None,
                   time_limit=args.time_limit, max_faults=args.max_faults,
                   shrink_seconds=args.shrink_seconds, search_seconds=search_seconds,
                   progress=progress, workload=args.workload, database=database,
                   announcements=announcements)
    done: dict[str, Any] = {"event": "done", "found": outcome.found,
                            "examples": outcome.examples,
                            "elapsed_s": round(outcome.elapsed_s, 3),
                            "unknown": outcome.unknown}
    if outcome.announced is not None and announcements is not None:
        say(f"  stopped after {outcome.examples} tests: {outcome.announced['worker']} "
            "announced a failure")
        code = _replay_announced(outcome.announced, announcements, say, worker)
        if code is not None:
            return code
    if not outcome.found:
        unknown = f", {outcome.unknown} unknown verdicts" if outcome.unknown else ""
        spent = search_seconds is not None and outcome.elapsed_s >= search_seconds
        budget = f"; the search budget of {search_seconds:g} s ran out" if spent else ""
        say(f"no failure in {outcome.examples} tests ({outcome.elapsed_s:.1f} s{unknown})"
            f"{budget}", result=True)
        for line in _unknown_and_coverage(outcome):
            say(line, result=True)
        if worker is not None:
            workers.emit(done)
        return 0
    lines = [
        f"FAILURE found after {outcome.seconds_to_first_failure:.1f} s; shrunk to "
        f"{outcome.faults} fault(s) in {outcome.elapsed_s:.1f} s total",
        f"  failing checkers: {', '.join(outcome.failing) or '?'}",
        f"  run directory:    {outcome.run_dir}",
    ]
    if outcome.report is not None:
        lines.append(f"  report:           {outcome.report}")
    lines += [f"  reproduction:     {outcome.repro}",
              f"  replay with:      splitbrain replay {outcome.repro}",
              *_unknown_and_coverage(outcome)]
    if worker is not None:
        done.update(seconds_to_first_failure=outcome.seconds_to_first_failure,
                    lines=lines, repro=str(outcome.repro))
        workers.emit(done)
        return 1
    for line in lines:
        say(line, result=True)
    return 1


def _replay_announced(found: dict[str, Any], announcements: Any, say: Any,
                      worker: int | None) -> int | None:
    """Replay a failure another worker announced: 1 when it fails here too (this search
    stops), None when it no longer fails (withdrawn: the search goes on)."""
    from checker.results import failing_checkers
    from harness.sim import workers
    from harness.sim.config import SimTest
    from harness.sim.run import simulate

    test = SimTest.from_json(found["test"])
    with tempfile.TemporaryDirectory(prefix="splitbrain-replay-") as scratch:
        result = simulate(test, Path(scratch) / "replay")
    if result.valid is False:
        checkers = ", ".join(failing_checkers(result.results)) or "invalid"
        say(f"replayed the failure {found['worker']} announced: it fails here too "
            f"({checkers}); its finder saves the shrunk case", result=True)
        if worker is not None:
            workers.emit({"event": "done", "found": False, "replayed": True,
                          "announced_by": found["worker"]})
        return 1
    say(f"the failure {found['worker']} announced does not fail here "
        f"({result.valid}): withdrawn, searching")
    announcements.withdraw(found)
    return None


def _run_workers(args: argparse.Namespace, bugs: list[str], examples: int,
                 search_seconds: float | None) -> int:
    """``--workers N``: N ``splitbrain fuzz`` processes under Trio (harness.sim.workers)."""
    import shutil

    import trio

    from harness.sim import workers

    scratch_db = None
    db_args: list[str]
    if args.redis:
        db_args = ["--redis", args.redis]
        where = f"Redis {args.redis}"
    else:
        db_dir = args.db_dir
        if db_dir is None:
            db_dir = scratch_db = tempfile.mkdtemp(prefix="splitbrain-fuzz-db-")
        db_args = ["--db-dir", db_dir]
        where = f"directory {db_dir}"
    common = [sys.executable, "-m", "harness", "fuzz", "--examples", str(examples),
              "--nodes", str(args.nodes), "--store", args.store,
              "--max-faults", str(args.max_faults),
              "--shrink-seconds", str(args.shrink_seconds), "--workload", args.workload,
              *db_args]
    for bug in bugs:
        common += ["--bug", bug]
    for mode in args.read_mode:
        common += ["--read-mode", mode]
    if search_seconds is not None:
        common += ["--search-seconds", str(search_seconds)]
    if args.time_limit is not None:
        common += ["--time-limit", str(args.time_limit)]
    if args.quiet:
        common.append("--quiet")
    argvs = []
    for index in range(args.workers):
        argv = [*common, "--worker-index", str(index)]
        seed = workers.worker_seed(args.seed, index)
        if seed is not None:
            argv += ["--seed", str(seed)]
        argvs.append(argv)
    label = ", ".join(bugs) if bugs else "the correct implementation"
    print(f"splitbrain fuzz: {args.workers} workers searching {label}; example database: "
          f"{where}", file=sys.stderr, flush=True)
    try:
        outcome = trio.run(functools.partial(workers.supervise, argvs, err=sys.stderr))
    finally:
        if scratch_db is not None:
            shutil.rmtree(scratch_db, ignore_errors=True)
    for state in outcome.workers:
        done = state.done
        if done.get("found"):
            print(f"worker {state.index} found a failure (first failing test after "
                  f"{state.found_after:.1f} s of the campaign):")
            for line in done.get("lines", []):
                print(line)
        elif done.get("replayed"):
            print(f"worker {state.index} replayed it: fails there too")
        elif done:
            print(f"worker {state.index}: no failure in {done.get('examples')} tests")
        else:
            print(f"worker {state.index}: stopped (exit {state.code})")
    if outcome.interrupted:
        print("splitbrain: interrupted", file=sys.stderr)
    return outcome.exit_code


def _unknown_and_coverage(outcome: Any) -> list[str]:
    """Why the unknown verdicts were unknown (most frequent first), and the behaviour
    coverage the search reached."""
    lines = [f"  unknown x{count}: {reason}"
             for reason, count in outcome.unknown_reasons.most_common(10)]
    if outcome.coverage_text:
        lines.append(outcome.coverage_text)
    return lines


def run_replay(args: argparse.Namespace) -> int:
    from harness.sim.fuzz import load_repro

    path = Path(args.repro)
    if path.is_dir():  # a fuzz run directory: its repro.json
        if not (path / files.REPRO).is_file():
            raise UserError(f"{path} is a directory without a {files.REPRO}; give the "
                            f"{files.REPRO} that splitbrain fuzz wrote")
        path = path / files.REPRO
    elif not path.exists():
        raise UserError(f"no such file: {path}")
    try:
        test, expect = load_repro(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a usable {files.REPRO}: {exc}") from None
    if args.real:
        return _replay_real(test, Path(args.store))
    return _replay_sim(test, expect, Path(args.store))


def _replay_sim(test: Any, expect: dict[str, Any], store_dir: Path) -> int:
    from checker.results import exit_code, failing_checkers
    from harness.run import store
    from harness.sim.fuzz import history_digest
    from harness.sim.run import simulate
    from reports.render import failure_headline

    run_dir = store.create_run_dir(store_dir, f"replay-{test.name}")
    result = simulate(test, run_dir, report=True)
    verdict = {True: "valid", False: "INVALID"}.get(result.valid, "unknown")
    print(f"replayed in the simulator: {verdict}")
    failing = failing_checkers(result.results)
    if failing:
        print(f"  failing checkers: {', '.join(failing)}")
        print(f"  evidence: {failure_headline(run_dir)}")
    expected_digest = expect.get("history_sha256")
    if expected_digest:
        same = history_digest(run_dir) == expected_digest
        print(f"  history identical to the recorded one: {'yes' if same else 'NO'}")
    print(f"  run directory: {run_dir}")
    if result.report is not None:
        print(f"  report:        {result.report}")
    return exit_code(result.results)


#: Simulator settings a real run cannot take (the node command line has no flag for them).
_SIM_ONLY = ("heartbeat_interval", "snapshot_threshold", "pre_vote", "check_quorum",
             "max_entries_per_append", "max_inflight_appends", "election_timeout")


def _warn_not_carried(cluster: Any) -> None:
    from harness.sim.config import SimClusterConfig

    default = SimClusterConfig()
    differing = [name for name in _SIM_ONLY
                 if getattr(cluster, name, None) != getattr(default, name, None)]
    if differing:
        print("note: a real run uses raft_impl's defaults for "
              f"{', '.join(differing)} (the simulated case set them differently)",
              file=sys.stderr)


def _replay_real(test: Any, store_dir: Path) -> int:
    from harness.run.run import RunConfig, run_test, summary
    from nemesis.schedule import final_heal

    workload = test.workload
    cluster = test.cluster
    limit = workload.time_limit
    _warn_not_carried(cluster)
    schedule = [entry for entry in test.schedule if entry["at"] <= limit]
    schedule += final_heal(limit)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="schedule-",
                                     delete=False) as handle:
        json.dump(schedule, handle)
        schedule_file = handle.name
    config = RunConfig(
        nodes=cluster.nodes, time_limit=limit, rate=workload.rate,
        concurrency=workload.concurrency, keys=workload.keys, mix=dict(workload.mix),
        ops_per_key=workload.ops_per_key, nemesis_schedule=schedule_file,
        read_mode=cluster.read_mode, bugs=list(cluster.bugs), seed=test.seed,
        store=str(store_dir), test_name=f"replay-real-{test.name}",
        quiet_period=workload.quiet, op_timeout=workload.op_timeout,
        retry_indefinite=workload.retry_indefinite, workload_name=workload.name,
    )
    try:
        outcome = run_test(config)
    finally:
        Path(schedule_file).unlink(missing_ok=True)
    print(summary(outcome))
    return outcome.exit_code
