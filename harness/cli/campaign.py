"""``splitbrain campaign``: real runs back to back for M minutes (see harness.run.campaign).

Exit code: 0 every run valid, 1 a run was invalid (the campaign stops there
unless --keep-going), 2 a run could not complete, a verdict was unknown, or
the campaign was interrupted.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path
from typing import Any

from harness.run.workload import TXN_WORKLOADS, WORKLOADS
from splitbrain_common.errors import UserError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "campaign",
        help="real runs back to back for M minutes, rotating configurations",
        description=(
            "Run real tests back to back for M minutes, rotating cluster size, read "
            "modes, snapshot threshold, in-doubt retries, fault mixes and run length, "
            "each run with its own seed drawn from the campaign seed. Stops at the first "
            "invalid run and prints its evidence, report and the `splitbrain run` line "
            "that repeats it. Writes STORE/campaigns/<stamp>/campaign.json. "
            "Exit code 0 all valid, 1 a run invalid, 2 a run unknown or not completed."
        ),
    )
    parser.add_argument("--minutes", type=float, required=True, metavar="M",
                        help="how long to keep starting runs (the last one is fitted in)")
    parser.add_argument("--nodes", type=int, default=None,
                        help="fix the cluster size (3, 5 or 7; default: rotate)")
    parser.add_argument("--db", default="raft_impl", help="system under test (default raft_impl)")
    parser.add_argument("--bug", action="append", default=[], metavar="NAME",
                        help="switch on a planted bug in every run (repeatable)")
    parser.add_argument("--workload", default="register", choices=WORKLOADS,
                        help="the workload of every run (default register; list-append and "
                             "rw-register are transactions, raft_impl only)")
    parser.add_argument("--seed", type=int, default=None,
                        help="campaign seed: the same seed plans the same runs (default random)")
    parser.add_argument("--store", default="store", metavar="DIR",
                        help="store directory (default ./store)")
    parser.add_argument("--keep-going", action="store_true",
                        help="do not stop at an invalid run; exit 1 at the end if any was")
    parser.add_argument("--max-run-seconds", type=float, default=None, metavar="S",
                        help="cap every run's time limit (default: rotate 20-60 s)")
    parser.set_defaults(handler=handle_campaign)


def config_from_args(args: argparse.Namespace) -> Any:
    from harness.db.base import available_dbs
    from harness.run.campaign import CampaignConfig

    if not math.isfinite(args.minutes) or args.minutes <= 0:
        raise UserError(f"--minutes must be a positive number, not {args.minutes:g}")
    if args.nodes is not None and args.nodes not in (1, 3, 5, 7):
        raise UserError(f"--nodes must be 3, 5 or 7 (or 1), not {args.nodes}")
    if args.db not in available_dbs():
        raise UserError(f"unknown --db {args.db!r}; available: {', '.join(available_dbs())}")
    if args.db == "maelstrom":
        # every run would stop at once on the missing --bin; say so before the first one
        raise UserError("--db maelstrom needs a node binary (--bin), which campaign does "
                        "not take; use `splitbrain run --db maelstrom --bin CMD`")
    if args.bug:
        if args.db != "raft_impl":
            raise UserError("--bug only applies to --db raft_impl")
        from harness.db.raft_impl import BUGS

        unknown = sorted(set(args.bug) - set(BUGS))
        if unknown:
            raise UserError(f"unknown --bug {', '.join(unknown)}; known: {', '.join(sorted(BUGS))}")
    if args.seed is not None and args.seed < 0:
        raise UserError(f"--seed must not be negative, not {args.seed}")
    if args.workload in TXN_WORKLOADS and args.db != "raft_impl":
        raise UserError(f"--workload {args.workload} needs transactions: only --db raft_impl "
                        f"has them (use --workload register)")
    if args.max_run_seconds is not None and (
        not math.isfinite(args.max_run_seconds) or args.max_run_seconds < 5
    ):
        raise UserError(f"--max-run-seconds must be at least 5, not {args.max_run_seconds:g}")
    store = Path(args.store)
    if store.exists() and not store.is_dir():
        raise UserError(f"--store {store} exists and is not a directory")
    return CampaignConfig(
        minutes=args.minutes, db=args.db, nodes=args.nodes, bugs=list(args.bug),
        seed=args.seed, store=str(store), workload=args.workload, keep_going=args.keep_going,
        max_run_seconds=args.max_run_seconds,
        command_line=["splitbrain", *getattr(args, "argv", sys.argv[1:])],
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def execute_run(command: list[str]) -> Any:
    """Parse ``command`` as ``splitbrain run`` does and run it (no live display)."""
    from harness.cli.main import build_parser
    from harness.cli.run import config_from_args
    from harness.run.run import run_test

    args = build_parser().parse_args([*command, "--no-display"])
    args.argv = command
    return run_test(config_from_args(args))


def handle_campaign(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.run.campaign import (
        progress_line,
        run_campaign,
        start_line,
        summary_lines,
        summary_table,
    )

    config = config_from_args(args)
    console = Console(highlight=False)
    if not console.is_terminal:  # a CI log: no terminal width to respect, keep rows whole
        console = Console(highlight=False, width=200)
    print(f"campaign: {config.minutes:g} min on {config.db}"
          + (f" with --bug {', '.join(config.bugs)}" if config.bugs else ""), flush=True)
    # SIGTERM between runs (while one runs, the run handles it) stops like Ctrl-C:
    # the summary so far, campaign.json final.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        campaign = run_campaign(config, execute=execute_run,
                                on_start=lambda r: print(start_line(r), flush=True),
                                on_run=lambda r: print(progress_line(r), flush=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print(summary_table(campaign))
    for line in summary_lines(campaign):
        print(line, flush=True)
    return campaign.exit_code
