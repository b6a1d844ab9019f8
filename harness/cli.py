"""The `splitbrain` command line: one entry point, subcommands owned by their packages.

Each subcommand lives next to the code it drives (``checker/cli.py`` owns
``check``, ``harness/run_cli.py`` owns ``run`` …). A module contributes its
subcommands through ``register(subparsers)``, and each subparser sets
``handler`` to a function ``(args) -> int`` returning the exit code
(0 valid, 1 invalid, 2 unknown or could not complete).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules that contribute subcommands, in the order they are listed in --help.
SUBCOMMAND_MODULES = (
    "harness.run_cli",
    "harness.campaign_cli",
    "checker.cli",
    "reports.cli",
    "harness.sim_cli",
)

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2


class UserError(Exception):
    """A mistake the user can fix (bad argument, missing file): printed, never a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitbrain",
        description="Jepsen-style correctness testing for replicated state machines.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # that part of the tool is not built yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the exact words, so a run can record how to reproduce it
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_UNKNOWN
    try:
        return int(handler(args))
    except UserError as exc:
        print(f"splitbrain: error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        print("splitbrain: interrupted", file=sys.stderr)
        return EXIT_UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
