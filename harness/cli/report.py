"""Subcommands ``report`` and ``serve`` (``check --report`` lives in harness/cli/check.py).

    splitbrain report RUN_DIR            re-render RUN_DIR/report.html (and the store index)
    splitbrain serve [--store DIR] [--port P]   browse the store on http://127.0.0.1:P/

``serve`` runs until Ctrl-C or SIGTERM, its documented way to stop: then it
says "stopped" and exits 0.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from pathlib import Path

import trio

from checker.errors import InputError
from reports.render import render_run_report
from splitbrain_common.errors import UserError
from splitbrain_common.exits import EXIT_VALID

DEFAULT_PORT = 8080


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report", help="re-render the HTML report of a run directory",
        description="Write RUN_DIR/report.html from the run's files (history, results, "
                    "observations, message trace, node logs) and refresh the store index.")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. store/latest")
    report.set_defaults(handler=run_report)

    serve = subparsers.add_parser(
        "serve", help="serve the store's reports on 127.0.0.1 with an index of runs",
        description="Serve the store over HTTP on 127.0.0.1 (never other interfaces). "
                    "/ lists every run (test, time, verdict, faults) with a link to its report. "
                    "Ctrl-C or SIGTERM stops it (exit 0).")
    serve.add_argument("--store", default="store", help="store directory (default: store)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.set_defaults(handler=run_serve)


def run_report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    try:
        path = render_run_report(run_dir)
    except InputError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # a read-only or full run directory
        raise UserError(f"cannot write the report of {run_dir}: {exc.filename or ''}"
                        f"{': ' if exc.filename else ''}{exc.strerror or exc}") from None
    print(path)
    return EXIT_VALID


def run_serve(args: argparse.Namespace) -> int:
    from reports.server import serve

    store = Path(args.store)
    if not store.is_dir():
        raise UserError(f"{store}: no such store directory (run `splitbrain run` first)")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a TCP port")

    problems: list[str] = []

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as terminate:
            async with trio.open_nursery() as nursery:
                try:
                    port = await nursery.start(functools.partial(serve, store, args.port))
                except OSError as exc:  # port taken: say so after the nursery closed
                    problems.append(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}")
                    nursery.cancel_scope.cancel()
                    return
                print(f"serving {store} on http://127.0.0.1:{port}/ (Ctrl-C to stop)",
                      flush=True)
                async for _ in terminate:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except BaseException as exc:
        # Ctrl-C lands in some task and reaches us alone or inside the nursery's group.
        if not _only_interrupts(exc):
            raise
    if not problems:
        print("stopped", file=sys.stderr)
    if problems:
        raise UserError(problems[0])
    return EXIT_VALID


def _only_interrupts(exc: BaseException) -> bool:
    """Whether ``exc`` is a KeyboardInterrupt, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(inner) for inner in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)
