"""The `splitbrain` command line: one entry point, subcommands owned by their packages.

Each group of subcommands has its module in this package (``check.py`` owns
``check``, ``run.py`` owns ``run`` …), which imports the layers it drives. A module contributes its
subcommands through ``register(subparsers)``, and each subparser sets
``handler`` to a function ``(args) -> int`` returning the exit code
(0 valid, 1 invalid, 2 unknown or could not complete).

Exit code 1 means "invalid" and nothing else: a user mistake (:class:`UserError`)
and any unexpected exception end as one line on stderr and exit 2. The
traceback of an unexpected one is printed only when asked for, with
``splitbrain --debug`` or ``SPLITBRAIN_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from splitbrain_common.errors import UserError
from splitbrain_common.exits import ALL, EXIT_UNKNOWN

#: Modules that contribute subcommands, in the order they are listed in --help.
SUBCOMMAND_MODULES = (
    "harness.cli.run",
    "harness.cli.campaign",
    "harness.cli.check",
    "harness.cli.report",
    "harness.cli.sim",
)

#: Set (to anything but "" or "0") for the traceback of an unexpected error, like --debug.
DEBUG_ENV = "SPLITBRAIN_DEBUG"


def check_number(value: float | None, option: str, *, minimum: float = 0.0,
                 inclusive: bool = False, integer: bool = False) -> None:
    """Refuse a numeric flag that is nan, infinite or out of range, in one line.

    Every subcommand validates its numbers through here, so ``--timeout nan``,
    ``--max-faults -1`` and ``--shrink-seconds inf`` get the same kind of answer
    everywhere. None (flag not given) passes. ``minimum`` is excluded unless
    ``inclusive``: ``check_number(x, "--timeout")`` means x > 0.
    """
    if value is None:
        return
    below = value < minimum if inclusive else value <= minimum
    if math.isfinite(value) and not below:
        return
    kind = "an integer" if integer else "a number"
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    shown = value if integer else f"{value:g}"
    raise UserError(f"{option} must be {kind} {bound}, not {shown}")


#: The file name suggested when an output option names a directory (what it writes).
_EXAMPLE_NAMES = {"--report": "report.html", "--edn-out": "history.edn",
                  "--write-results": "results.json"}


def check_output_path(path: str, option: str) -> Path:
    """Refuse, before any work is done, an output file that cannot be written.

    A directory (``--report some_dir/``) or a missing parent directory is a
    mistake: nothing is created on the user's behalf (``--report /nonexistent/x``
    must not make ``/nonexistent``).
    """
    out = Path(path)
    if path.endswith(("/", os.sep)) or out.is_dir():
        example = _EXAMPLE_NAMES.get(option, "out")
        raise UserError(f"{option} {path}: is a directory; name a file in it, "
                        f"e.g. {out / example}")
    parent = out.parent
    if not parent.is_dir():
        what = "not a directory" if parent.exists() else "no such directory"
        raise UserError(f"{option} {path}: {parent}: {what}")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"{option} {path}: {_why_unwritable(parent)}")
    return out


def _why_unwritable(directory: Path) -> str:
    """A read-only mount is not a permission problem (chmod will not help): say which."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        pass
    return "permission denied"


def _debug_wanted(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _describe_unexpected(exc: BaseException) -> str:
    """One line for an error nobody anticipated (an OSError names its file)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitbrain",
        description="Jepsen-style correctness testing for replicated state machines.",
        epilog="Exit codes: 0 valid, 1 invalid, 2 unknown, could not run, bad input or an "
               "internal error (one line on stderr; its traceback with --debug or "
               f"{DEBUG_ENV}=1).",
    )
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (also: "
                             f"{DEBUG_ENV}=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; SIGTERM stops every command like Ctrl-C (exit 2, one line), not
    by the signal's default death (`check` exited 143, outside the 0/1/2 contract).
    Commands with their own cleanup (run, campaign, serve) install their own handler."""
    previous = None
    try:
        # A SIGTERM that lands right after the handler goes in, before _main's own try
        # (the hostile-CLI test sends it the moment the handler shows), ends here too.
        with contextlib.suppress(ValueError):  # not the main thread: leave it alone
            previous = signal.signal(signal.SIGTERM, _terminated)
        return _main(argv)
    except KeyboardInterrupt:
        print("splitbrain: interrupted", file=sys.stderr)
        return EXIT_UNKNOWN
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_wanted(argv)
    argv = [word for word in argv if word != "--debug"]  # accepted before or after COMMAND
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = argv  # the exact words, so a run can record how to reproduce it
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return EXIT_UNKNOWN
        code = int(handler(args))
    except UserError as exc:
        print(f"splitbrain: error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        print("splitbrain: interrupted", file=sys.stderr)
        return EXIT_UNKNOWN
    except BrokenPipeError:  # `splitbrain check ... | head`: the reader left, stay quiet
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_UNKNOWN
    except Exception as exc:  # never a traceback, never exit 1 ("invalid")
        if debug:
            traceback.print_exc()
        else:
            print(f"splitbrain: error: {_describe_unexpected(exc)} (the traceback: "
                  f"splitbrain --debug ..., or {DEBUG_ENV}=1)", file=sys.stderr)
        return EXIT_UNKNOWN
    return code if code in ALL else EXIT_UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
