"""``splitbrain run``: run tests against a real cluster and give a verdict.

Exit code: 0 every run valid, 1 some run invalid, 2 some run unknown or not
completed (invalid wins over unknown: a found bug is the news of a batch).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from harness.db.raft_impl import BUGS, READ_MODES, check_tuning_args
from harness.run.workload import MAX_CONCURRENCY, MAX_KEYS, MIXED, TXN_WORKLOADS, WORKLOADS
from splitbrain_common import exits
from splitbrain_common.errors import UserError

NETWORKS = ("proxy", "netns", "none")
NODE_COUNTS = (1, 3, 5, 7)

SEED_HELP = (
    "seed for the workload and the nemesis schedule (default: random; always recorded "
    "in test.json). A seed reproduces the plan — which operations, which faults when — "
    "not the run: process scheduling, timing and which node leads when a fault fires "
    "stay nondeterministic in the real world"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a test against a real cluster under faults",
        description=(
            "Start a cluster, drive concurrent clients while a nemesis injects faults, "
            "record the history, check it, and write a store directory with "
            "test.json, history.jsonl, results.json and report.html. "
            "Exit code 0 valid, 1 invalid, 2 unknown or not completed."
        ),
    )
    parser.add_argument("--db", default="raft_impl", help="system under test (default raft_impl)")
    parser.add_argument(
        "--nodes", type=int, default=5, help="cluster size: 3, 5 or 7 (1 for smoke tests)"
    )
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="S",
                        help="seconds of clients and faults (default 60)")
    parser.add_argument("--rate", type=float, default=100.0, metavar="R",
                        help="operations per second over all clients; 0 = unlimited")
    parser.add_argument("--concurrency", type=int, default=5, metavar="C",
                        help=f"concurrent client processes, at most {MAX_CONCURRENCY} "
                             f"(default 5)")
    parser.add_argument("--keys", type=int, default=5, metavar="K",
                        help="keys the workload spreads over at a time (default 5)")
    parser.add_argument("--workload", default="register", choices=WORKLOADS,
                        help="register (reads, writes, cas; checked for linearizability; "
                             "default) or transactions checked for Adya's anomalies: "
                             "list-append (append unique values to per-key lists, read "
                             "whole lists) or rw-register (unique writes); --db raft_impl "
                             "and maelstrom only")
    parser.add_argument("--mix", default=None, metavar="MIX",
                        help="operation mix, e.g. read=5,write=3,cas=2 (default 50/30/20)")
    parser.add_argument("--ops-per-key", type=int, default=None, metavar="N",
                        help="retire a key after N operations (transactions: N writes; "
                             "default 32) for a fresh one (shorter per-key histories, "
                             "faster checking)")
    parser.add_argument("--nemesis", default="", metavar="PACKAGES",
                        help="comma-separated fault packages (partition, kill, pause, loss, "
                             "clock, lose-unfsynced, delay, duplicate, reorder) or all (every "
                             "package this run can make). Each slot holds a single fault or, "
                             "about three slots in four, a composition of overlapping faults "
                             "of the chosen packages (partition with a paused node or lossy "
                             "links, kill during a partition, flickering and one-way cuts, "
                             "a slow election, a lagging node made electable, crashes right "
                             "after an election, as a leader steps down or after a "
                             "snapshot, clock skew as the leader goes, the hung leader); "
                             "a fault the run cannot make is refused before it starts; "
                             "default none")
    parser.add_argument("--nemesis-interval", type=float, default=5.0, metavar="S",
                        help="seconds per slot of a generated schedule: each slot's "
                             "scenario lasts 50-100%% of it and is undone before the next "
                             "(default 5)")
    parser.add_argument("--nemesis-schedule", default=None, metavar="FILE",
                        help="a JSON schedule file instead of a generated one")
    parser.add_argument("--net", default=None, choices=NETWORKS,
                        help="network backend: proxy (default for raft_impl and pysyncobj: "
                             "relays that know their frames), netns (Linux, root; default "
                             "for etcd when root), "
                             "none (direct, no link faults)")
    parser.add_argument("--no-trace", action="store_true",
                        help="do not record every message in messages.jsonl")
    parser.add_argument("--read-mode", default=MIXED, choices=(MIXED, *READ_MODES),
                        help="how reads are served (default mixed: each read takes one of "
                             "the system's linearizable paths, raft_impl read-index and "
                             "lease; stale follower reads only when asked); etcd: read-index "
                             "or stale (serializable); pysyncobj: log or stale")
    parser.add_argument("--bug", action="append", default=[], metavar="NAME",
                        help="switch on a planted bug (repeatable; see "
                             "`python -m raft_impl --list-bugs`)")
    parser.add_argument("--node-arg", action="append", default=[], metavar="WORD",
                        help="pass WORD to every raft_impl node's command line (repeatable, "
                             "e.g. --node-arg=--max-append-entries=1 "
                             "--node-arg=--election-timeout=0.15,0.3)")
    parser.add_argument("--bin", default=None, metavar="CMD",
                        help="--db maelstrom: the command that runs one node (it speaks "
                             "Maelstrom's protocol on stdin/stdout), e.g. "
                             "\"python3 examples/maelstrom/lin_kv.py\"")
    parser.add_argument("--seed", type=int, default=None, help=SEED_HELP)
    parser.add_argument("--store", default="store", metavar="DIR",
                        help="store directory (default ./store)")
    parser.add_argument("--test-count", type=int, default=1, metavar="N",
                        help="run the test N times (seeds seed, seed+1, …)")
    parser.add_argument("--quiet-period", type=float, default=2.0, metavar="S",
                        help="seconds to wait after healing before the final reads")
    parser.add_argument("--op-timeout", type=float, default=1.0, metavar="S",
                        help="an operation without an answer after S seconds is indefinite "
                             "(info) and its process is replaced")
    parser.add_argument("--retry-indefinite", action="store_true",
                        help="retry an in-doubt operation with the same client session "
                             "(relies on the system's exactly-once sessions) instead of "
                             "recording it info at once, in every process")
    parser.add_argument("--retry-share", type=float, default=0.4, metavar="F",
                        help="share of the client processes that retry in-doubt operations "
                             "in their session (default 0.4; 0 none; raft_impl only)")
    parser.add_argument("--pin-share", type=float, default=0.4, metavar="F",
                        help="share of the client processes pinned to their own node: each "
                             "operation goes there first, so a deposed leader that still "
                             "believes it leads gets asked (default 0.4; 0 none: every "
                             "process stays with the last leader it heard of)")
    parser.add_argument("--name", default=None, help="test name in the store (default derived)")
    parser.add_argument("--no-display", action="store_true", help="no live terminal display")
    parser.add_argument("--no-report", action="store_true", help="do not write report.html")
    parser.set_defaults(handler=handle_run)


def _positive(value: float, option: str, *, integer: bool = False) -> None:
    if not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise UserError(f"{option} must be {kind}, not {value:g}")


def config_from_args(args: argparse.Namespace) -> Any:
    """Validate the arguments into a RunConfig; every mistake is a UserError."""
    from harness.db.base import available_dbs
    from harness.run.run import RunConfig
    from harness.run.workload import DEFAULT_MIX, parse_mix

    if args.db not in available_dbs():
        raise UserError(f"unknown --db {args.db!r}; available: {', '.join(available_dbs())}")
    if args.nodes not in NODE_COUNTS:
        raise UserError(f"--nodes must be 3, 5 or 7 (or 1), not {args.nodes}")
    _positive(args.time_limit, "--time-limit")
    if not math.isfinite(args.rate) or args.rate < 0:
        raise UserError(f"--rate must be 0 (unlimited) or a positive number, not {args.rate:g}")
    _positive(args.concurrency, "--concurrency", integer=True)
    if args.concurrency > MAX_CONCURRENCY:
        raise UserError(
            f"--concurrency must be at most {MAX_CONCURRENCY} (one task and one connection "
            f"each), not {args.concurrency}"
        )
    _positive(args.keys, "--keys", integer=True)
    if args.keys > MAX_KEYS:
        raise UserError(f"--keys must be at most {MAX_KEYS} (keys active at once), "
                        f"not {args.keys}")
    if args.ops_per_key is not None:
        _positive(args.ops_per_key, "--ops-per-key", integer=True)
    _positive(args.nemesis_interval, "--nemesis-interval")
    _positive(args.test_count, "--test-count", integer=True)
    _positive(args.op_timeout, "--op-timeout")
    if not math.isfinite(args.retry_share) or not 0 <= args.retry_share <= 1:
        raise UserError(f"--retry-share must be between 0 and 1, not {args.retry_share:g}")
    if not math.isfinite(args.pin_share) or not 0 <= args.pin_share <= 1:
        raise UserError(f"--pin-share must be between 0 and 1, not {args.pin_share:g}")
    if not math.isfinite(args.quiet_period) or args.quiet_period < 0:
        raise UserError(f"--quiet-period must be 0 or more seconds, not {args.quiet_period:g}")
    if args.seed is not None and args.seed < 0:
        raise UserError(f"--seed must not be negative, not {args.seed}")
    if args.workload in TXN_WORKLOADS:
        if args.db not in ("raft_impl", "maelstrom", "etcd"):
            raise UserError(f"--workload {args.workload} needs transactions: only --db "
                            f"raft_impl, etcd and maelstrom have them (use --workload "
                            f"register)")
        if args.mix:
            raise UserError(f"--mix applies to --workload register, not {args.workload}")
    try:
        mix = parse_mix(args.mix) if args.mix else dict(DEFAULT_MIX)
    except ValueError as exc:
        raise UserError(f"--mix: {exc}") from None

    from nemesis.schedule import load, parse_packages

    if args.nemesis and args.nemesis_schedule:
        raise UserError("give either --nemesis or --nemesis-schedule, not both")
    packages = [] if args.nemesis in ("", "none") else parse_packages(args.nemesis)
    nodes = [f"n{i}" for i in range(1, args.nodes + 1)]
    if args.nemesis_schedule:
        # validate now: a bad file must not cost a run, nor an entry the run never reaches
        load(args.nemesis_schedule, nodes, time_limit=args.time_limit)
    if args.bug:
        if args.db != "raft_impl":
            raise UserError("--bug only applies to --db raft_impl")
        unknown = sorted(set(args.bug) - set(BUGS))
        if unknown:
            raise UserError(
                f"unknown --bug {', '.join(unknown)}; known: {', '.join(sorted(BUGS))}"
            )
    if args.node_arg:
        if args.db != "raft_impl":
            raise UserError("--node-arg only applies to --db raft_impl")
        try:
            check_tuning_args(args.node_arg)
        except ValueError as exc:
            raise UserError(f"--node-arg: {exc}") from None
    args.bin = getattr(args, "bin", None)
    if (args.bin is not None) != (args.db == "maelstrom"):
        raise UserError("--db maelstrom needs --bin CMD" if args.bin is None
                        else "--bin only applies to --db maelstrom")
    if args.bin is not None:
        from harness.db.maelstrom import check_bin

        problem = check_bin(args.bin)
        if problem:
            raise UserError(problem)
    from harness.db.options import LINK_FAULTS, AdapterOptionError, check_read_mode, network_for

    faults = set(packages)
    if args.nemesis_schedule:
        faults |= {str(step.get("f")) for step in load(args.nemesis_schedule, nodes)}
    try:
        args.net = network_for(args.db, args.net, faults)
        if args.read_mode != MIXED:
            check_read_mode(args.db, args.read_mode)
    except AdapterOptionError as exc:
        raise UserError(str(exc)) from None
    if args.net == "netns" and os.geteuid() != 0:
        raise UserError("--net netns needs root (network namespaces); use --net proxy")
    if args.net == "none" and set(packages) & LINK_FAULTS:
        raise UserError("--net none cannot inject link faults; use --net proxy")
    store = Path(args.store)
    if store.exists() and not store.is_dir():
        raise UserError(f"--store {store} exists and is not a directory")

    from harness.run.display import display_wanted

    return RunConfig(
        db=args.db,
        nodes=args.nodes,
        time_limit=args.time_limit,
        rate=args.rate,
        concurrency=args.concurrency,
        keys=args.keys,
        workload_name=args.workload,
        mix=mix,
        ops_per_key=args.ops_per_key,
        nemesis=packages,
        nemesis_interval=args.nemesis_interval,
        nemesis_schedule=args.nemesis_schedule,
        net=args.net,
        trace_messages=not args.no_trace,
        read_mode=args.read_mode,
        bugs=list(args.bug),
        node_args=list(args.node_arg),
        bin=args.bin,
        seed=args.seed,
        store=str(store),
        test_name=args.name,
        quiet_period=args.quiet_period,
        op_timeout=args.op_timeout,
        retry_indefinite=args.retry_indefinite,
        retry_share=args.retry_share,
        pin_share=args.pin_share,
        display=display_wanted(args.no_display),
        render_report=not args.no_report,
        command_line=["splitbrain", *getattr(args, "argv", sys.argv[1:])],
    )


def reproduce_command(words: list[str], seed: int) -> list[str]:
    """The command that repeats one test of this invocation: its own seed, one test."""
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in ("--seed", "--test-count"):
            skip = True
            continue
        if word.startswith(("--seed=", "--test-count=")):
            continue
        out.append(word)
    return [*out, "--seed", str(seed)]


def handle_run(args: argparse.Namespace) -> int:
    import dataclasses
    import random

    from harness.run.run import run_test, summary

    base = config_from_args(args)
    first_seed = base.seed if base.seed is not None else random.SystemRandom().randrange(2**31)
    codes = []
    for i in range(args.test_count):
        seed = first_seed + i
        config = dataclasses.replace(
            base, seed=seed, command_line=reproduce_command(base.command_line, seed)
        )
        if args.test_count > 1:
            print(f"== test {i + 1}/{args.test_count} (seed {config.seed})", flush=True)
        outcome = run_test(config)
        print(summary(outcome), flush=True)
        codes.append(outcome.exit_code)
        if outcome.interrupted:
            break
    return exits.worst(codes)
