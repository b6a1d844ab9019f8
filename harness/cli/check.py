"""``splitbrain check``: check a history file, or re-check a run directory of the store.

    splitbrain check PATH [--model M] [--init JSON] [--format F] [--timeout S]
                          [--memory MB] [--json] [--report HTML] [--edn-out EDN]

PATH is a history file (splitbrain JSONL, Jepsen EDN in any layout, Porcupine
kv or etcd logs; the format is detected unless given; ``-`` reads standard
input) or a run directory (it holds ``history.jsonl``), in which case every
checker runs again on what the run recorded. A torn last line of a JSONL
history (a crash, a full disk) is left out, and a note says so. Exit code: 0
linearizable / valid, 1 not, 2 unknown, bad input, or nothing to check (a
history without operations).
Nothing is written unless asked (``--report``, ``--edn-out``, ``--write-results``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from checker.elle import TXN_MODELS, check_txn_history
from checker.elle.text import format_txn_result, is_txn_result
from checker.errors import InputError
from checker.history import FORMATS, STDIN, History, load_history, write_edn
from checker.linearizable import DEFAULT_MEMORY_MB, check_history
from checker.models import MODELS, ModelError, get_model
from checker.runner import is_run_dir, run_all
from harness.cli.main import check_number, check_output_path
from reports.render import failure_headline, history_headline, render_history_report
from splitbrain_common import exits, files
from splitbrain_common.errors import UserError

_SHOWN_PREFIX = 8  # steps of the linearizable prefix shown in text output


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a history file or re-check a run directory",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH",
                        help="history file (- for standard input) or store run directory")
    parser.add_argument("--model", choices=sorted([*MODELS, *TXN_MODELS]),
                        help="model to check against (default: implied by the format, "
                             "or test.json's for a run directory; raft-kv otherwise)")
    parser.add_argument("--init", metavar="JSON",
                        help="the model's initial state as JSON, e.g. 0 or '{\"x\": 0}'")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="history format (default: detect)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="search budget in seconds; past it the verdict is unknown")
    parser.add_argument("--memory", type=float, metavar="MB", default=DEFAULT_MEMORY_MB,
                        help="search memory budget (growth of resident memory) in MB; past "
                             f"it the verdict is unknown (default {DEFAULT_MEMORY_MB})")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--report", metavar="PATH",
                        help="also write a self-contained HTML report to PATH")
    parser.add_argument("--edn-out", metavar="PATH",
                        help="also write the history as Jepsen EDN (for Knossos or Elle)")
    parser.add_argument("--write-results", action="store_true",
                        help=f"run directory only: write {files.RESULTS} there")
    parser.set_defaults(handler=handle)


def _user_error(message: str) -> Exception:
    return UserError(message)


def handle(args: argparse.Namespace) -> int:
    initial: Any = None
    if args.init is not None:
        try:
            initial = json.loads(args.init)
        except json.JSONDecodeError as exc:
            raise _user_error(f"--init is not valid JSON: {exc.msg}") from None
    check_number(args.timeout, "--timeout")
    check_number(args.memory, "--memory")
    # Outputs are refused before the (maybe long) check, not after it.
    for option in ("report", "edn_out"):
        if getattr(args, option):
            check_output_path(getattr(args, option), "--" + option.replace("_", "-"))
    path = Path(args.path)
    is_run = args.path != STDIN and path.is_dir()
    if args.write_results:
        if not is_run:
            raise _user_error("--write-results needs a run directory")
        check_output_path(str(path / files.RESULTS), "--write-results")
    try:
        if is_run:
            if not is_run_dir(path):
                raise _user_error(f"{path}: a directory, but not a run directory "
                                  "(no history.jsonl)")
            extra = {} if args.init is None else {"initial": initial}
            result = run_all(path, timeout=args.timeout, model=args.model,
                             memory_mb=args.memory, **extra)
            history_source: Any = path / files.HISTORY
            history = load_history(history_source, "jsonl") if args.edn_out else None
            title = f"check {path}"
        else:
            history = load_history(args.path, args.format)
            history_source = history
            for note in history.notes:
                print(f"note: {note}", file=sys.stderr)
            if not history.ops:
                print(f"splitbrain: {history.source}: no operations in the history: nothing "
                      "was checked", file=sys.stderr)
                return exits.EXIT_UNKNOWN
            model_name = args.model or history.default_model
            # a history the model cannot read is bad input here: ModelError -> exit 2
            if model_name in TXN_MODELS:
                result = check_txn_history(history, model_name)
            else:
                result = check_history(history, get_model(model_name, initial),
                                       timeout=args.timeout, memory_mb=args.memory)
            title = f"check {path.name}"
    except InputError as exc:
        raise _user_error(str(exc)) from None
    except ModelError as exc:
        raise _user_error(str(exc)) from None

    if is_run:
        for note in result.get("notes") or ():
            print(f"note: {note}", file=sys.stderr)
    nothing_checked = result.get("valid") is True and _checked_no_operation(result)
    if nothing_checked:
        _mark_nothing_checked(result)
    if args.edn_out and history is not None:
        _write_output(args.edn_out, lambda: write_edn(history, args.edn_out))
    if args.write_results:
        out = path / files.RESULTS
        text = json.dumps(result, indent=2, default=str) + "\n"
        _write_output(str(out), lambda: out.write_text(text, encoding="utf-8"))
    if args.report:
        _write_report(history_source, result, args.report, title)

    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        name = "transactional" if is_txn_result(result) else "linearizable"
        print(format_result(result, name=None if is_run else name))
        evidence = _headline(path if is_run else history_source, result, is_run, name)
        if evidence:
            print(f"evidence: {evidence}")
    code = exits.for_validity(result.get("valid"))
    if nothing_checked:
        print(f"splitbrain: {path}: no operation the model could constrain (none, or "
              "only reads of unknown outcome): linearizability checked nothing",
              file=sys.stderr)
        return exits.EXIT_UNKNOWN
    return code


def _headline(source: Any, result: dict[str, Any], is_run: bool, name: str) -> str | None:
    """The sentence a report's first screen would open with (the stale read and the
    newer value it missed, a value never written …), so the terminal tells the same
    story as ``--report``, ``splitbrain run`` and ``splitbrain replay``. Best effort:
    the verdict and the checker's evidence above stand without it."""
    if result.get("valid") is not False:
        return None
    try:
        if is_run:
            return failure_headline(source, result)
        composed = result if "checkers" in result else {
            "valid": result.get("valid"), "checkers": {name: result}}
        return history_headline(source, composed)
    except Exception:  # an explanation must never cost the verdict its exit code
        return None


def _mark_nothing_checked(result: dict[str, Any]) -> None:
    """Turn a vacuous "valid" into "unknown" in the result itself, so the text, ``--json``,
    ``--report`` and ``--write-results`` all say what the exit code (2) says: a history
    without a constraining operation proves nothing and must never read as valid."""
    reason = ("no operation the model could constrain (none, or only reads of unknown "
              "outcome): linearizability checked nothing")
    linearizable = (result.get("checkers") or {}).get("linearizable", result)
    linearizable["valid"] = "unknown"
    linearizable["reason"] = reason
    result["valid"] = "unknown"


def _checked_no_operation(result: dict[str, Any]) -> bool:
    linearizable = (result.get("checkers") or {}).get("linearizable", result)
    return isinstance(linearizable, dict) and linearizable.get("ops") == 0


def _write_output(path: str, write: Any) -> None:
    """Run ``write``; a filesystem that refuses (read-only, full) is one line, exit 2."""
    try:
        write()
    except OSError as exc:
        raise _user_error(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_report(history: History | Path, result: dict[str, Any], out: str, title: str) -> None:
    name = "transactional" if is_txn_result(result) else "linearizable"
    composed = result if "checkers" in result else {
        "valid": result.get("valid"), "checkers": {name: result}}
    written: list[Path] = []
    _write_output(out, lambda: written.append(
        render_history_report(history, composed, out, title)))
    print(f"report: {written[0]}", file=sys.stderr)


# ---------------------------------------------------------------------------
# Text output


def _verdict(value: Any) -> str:
    return {True: "valid", False: "INVALID"}.get(value, "unknown")


def format_result(result: dict[str, Any], name: str | None = None, indent: str = "") -> str:
    """A human-readable account of a (possibly composed) checker result."""
    lines: list[str] = []
    label = f"{name}: " if name else ""
    lines.append(f"{indent}{label}{_verdict(result.get('valid'))}")
    if result.get("reason"):
        lines.append(f"{indent}  reason: {result['reason']}")
    if "checkers" in result and isinstance(result["checkers"], dict):
        for sub_name, sub in result["checkers"].items():
            if isinstance(sub, dict):
                lines.append(format_result(sub, sub_name, indent + "  "))
        return "\n".join(lines)
    if is_txn_result(result):
        lines.extend(format_txn_result(result, indent + "  "))
    elif "partitions" in result:
        lines.append(
            f"{indent}  model {result.get('model')}, {result.get('ops')} operations in "
            f"{result.get('partitions')} partition(s), {result.get('elapsed_s', 0):.3f} s")
        evidence = result.get("evidence") or {}
        if evidence:
            lines.extend(_format_evidence(evidence, indent + "  "))
    elif result.get("valid") is False:
        shown = {k: v for k, v in result.items() if k not in ("valid",)}
        text = json.dumps(shown, default=str)
        lines.append(f"{indent}  {text[:600]}{'…' if len(text) > 600 else ''}")
    return "\n".join(lines)


def _describe(op: dict[str, Any]) -> str:
    where = f" on {op['key']!r}" if "key" in op else ""
    end = op.get("complete")
    span = f"events {op.get('invoke')}..{'∞' if end is None else end}"
    return (f"op {op.get('id')} (process {op.get('process')}{where}, {op.get('type')}, {span}): "
            f"{op.get('description')}")


def _format_evidence(evidence: dict[str, Any], indent: str) -> list[str]:
    lines = []
    if evidence.get("partition") is not None:
        lines.append(f"{indent}partition: {evidence['partition']!r}")
    if "op" in evidence:
        lines.append(f"{indent}cannot linearize {_describe(evidence['op'])}")
    if evidence.get("explanation"):
        lines.append(f"{indent}  {evidence['explanation']}")
    if evidence.get("decided_from_values") and not evidence.get("prefix"):
        lines.append(f"{indent}proved from the values read and written (no search):")
        for op in evidence.get("witness") or []:
            lines.append(f"{indent}  {_describe(op)}")
        return lines
    prefix = evidence.get("prefix") or []
    lines.append(f"{indent}longest linearizable prefix: {len(prefix)} operation(s) "
                 f"from state {evidence.get('initial_state')!r}")
    if len(prefix) > _SHOWN_PREFIX:
        lines.append(f"{indent}  … {len(prefix) - _SHOWN_PREFIX} earlier step(s)")
    for stepped in prefix[-_SHOWN_PREFIX:]:
        lines.append(f"{indent}  {_describe(stepped['op'])}  => {stepped['state']!r}")
    concurrent = evidence.get("concurrent") or []
    if concurrent:
        lines.append(f"{indent}concurrent with it: {len(concurrent)} operation(s)")
        for op in concurrent[:_SHOWN_PREFIX * 2]:
            mark = "in prefix" if op.get("linearized_in_prefix") else (
                "legal next" if op.get("legal_after_prefix") else "not legal next")
            lines.append(f"{indent}  {_describe(op)} [{mark}]")
        if len(concurrent) > _SHOWN_PREFIX * 2:
            lines.append(f"{indent}  … {len(concurrent) - _SHOWN_PREFIX * 2} more")
    return lines
