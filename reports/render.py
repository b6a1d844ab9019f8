"""Render self-contained HTML reports: one per run, one for a bare history, and the store index.

The page carries its data as one compact JSON block and its CSS/JS inline, so
a report is a single file that opens from disk with no network. Facts are
prepared in :mod:`reports.model`, failure pictures in :mod:`reports.svg`.

Public API:
    render_run_report(run_dir) -> Path           writes run_dir/report.html
    render_history_report(history, result, out_path, title) -> Path
    update_store_index(store_dir) -> Path        writes store_dir/index.html

Size: just over 700 lines: the three renderers share the page data's assembly; the
facts are already in ``model.py``, the pictures in ``svg.py``, the sources in ``sources.py``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from checker.culprits import describe_message
from checker.errors import InputError
from reports import model, sources
from reports.model import (
    EVENT_CLOCK,
    NS_PER_S,
    Focus,
    History,
    LinEvidence,
    Op,
    fmt_time,
    fmt_value,
)
from reports.svg import Marked, sequence_svg, window_svg
from splitbrain_common import files

PACKAGE_DIR = Path(__file__).resolve().parent
LIN_CHECKER_NAMES = ("linearizable", "linearizability", "lin", "knossos", "porcupine")
MAX_WINDOW_OPS = 40  # rows of the failure window beyond the marked ops
MAX_STEPS_SHOWN = 14
#: The failing op's card, by the kind of failure (model.ANOMALY_HEADLINES' keys).
FAILED_TITLES = {
    "stale-read": "The stale read",
    "stale-cas": "The cas that succeeded against an overwritten value",
    "lost-write": "The final read, missing an acknowledged write",
    "never-written": "The operation that saw a value never written",
}
WINDOW_TITLES = {
    "stale-read": "the stale read and the newer write it missed",
    "stale-cas": "the stale cas and the newer write it missed",
    "lost-write": "the final read and the write it lost",
    "never-written": "the operation that saw a value never written",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["t"] = fmt_time
    env.filters["v"] = fmt_value
    env.filters["verdict"] = verdict_word
    return env


def verdict_word(valid: Any) -> str:
    return {True: "valid", False: "INVALID"}.get(valid, "unknown")


def _static(name: str) -> Markup:
    return Markup((PACKAGE_DIR / "static" / name).read_text(encoding="utf-8"))


def _json_for_script(data: Any) -> Markup:
    """Compact JSON safe inside <script>: no '</' can end the element early."""
    text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    return Markup(text.replace("</", "<\\/").replace("<!--", "<\\!--"))


# ---------------------------------------------------------------- page assembly


def _checker_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, checker in (result.get("checkers") or {}).items():
        if not isinstance(checker, Mapping):
            continue
        facts = {k: v for k, v in checker.items() if k not in ("valid", "evidence", "reason")
                 and not isinstance(v, dict | list)}
        evidence = checker.get("evidence")
        message = None
        if isinstance(evidence, Mapping):
            message = evidence.get("message") or evidence.get("reason")
        rows.append({"name": name, "valid": checker.get("valid"), "facts": facts,
                     "message": message or checker.get("message") or checker.get("error")
                     or checker.get("reason")})
    return rows


def _complaints(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the nodes said about their own safety (node-complaints), violations first."""
    checker = (result.get("checkers") or {}).get("node-complaints")
    if not isinstance(checker, Mapping):
        return []
    said = [*(checker.get("violations") or []), *(checker.get("warnings") or [])]
    rows = []
    for item in said:
        if not isinstance(item, Mapping):
            continue
        where = (f"{item['file']}:{item['file_line']}" if item.get("file")
                 else f"observations.jsonl:{item.get('line', '?')}")
        time = item.get("time")
        rows.append({"severity": item.get("severity", "violation"), "node": item.get("node"),
                     "time": fmt_time(time) if isinstance(time, int) else "",
                     "complaint": item.get("complaint"), "said": item.get("said") or "",
                     "text": item.get("text") or "", "where": where,
                     "culprit": (describe_message(item["culprit_message"])
                                 if isinstance(item.get("culprit_message"), Mapping)
                                 else "")})
    return rows


def _lin_result(result: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    checkers = result.get("checkers") or {}
    for name in (*LIN_CHECKER_NAMES, *checkers):
        checker = checkers.get(name)
        if isinstance(checker, Mapping) and checker.get("valid") is False and (
            name in LIN_CHECKER_NAMES
            or (isinstance(checker.get("evidence"), Mapping)
                and any(k in checker["evidence"] for k in ("op", "failed_op", "prefix")))
        ):
            return name, checker
    return None


def failing_leaves(result: Mapping[str, Any], prefix: str = "") -> list[tuple[str, dict]]:
    """Failed checkers, descending into composed ones (log-order nests five sub-checkers)."""
    found: list[tuple[str, dict]] = []
    for name, checker in (result.get("checkers") or {}).items():
        if not isinstance(checker, Mapping) or checker.get("valid") is not False:
            continue
        path = f"{prefix}{name}"
        nested = failing_leaves(checker, path + " / ")
        found.extend(nested or [(path, dict(checker))])
    return found


def _first_violation(checker: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence of a failed checker as one flat dict (first violation if it lists many)."""
    evidence = checker.get("evidence")
    evidence = dict(evidence) if isinstance(evidence, Mapping) else {}
    violations = checker.get("violations") or evidence.get("violations")
    if isinstance(violations, list) and violations and isinstance(violations[0], Mapping):
        evidence = {**evidence, **violations[0]}
    return evidence


def _violation_index(evidence: Mapping[str, Any]) -> int | None:
    index = evidence.get("index")
    if isinstance(index, int):
        return index
    indexes = evidence.get("indexes")
    if isinstance(indexes, list) and indexes and isinstance(indexes[0], int):
        return indexes[0]
    return None


def _generic_focus(history: History, result: Mapping[str, Any],
                   logs: model.LogView | None) -> Focus | None:
    """A failure without linearizability evidence: name the checker and its message."""
    leaves = failing_leaves(result)
    if not leaves:
        return None
    name, checker = leaves[0]
    evidence = _first_violation(checker)
    message = (evidence.get("message") or evidence.get("reason") or checker.get("message")
               or checker.get("error") or "see its evidence below")
    time = evidence.get("time")
    for side in ("second", "first"):  # log-order violations say where each side was seen
        if not isinstance(time, int) and isinstance(evidence.get(side), Mapping):
            time = evidence[side].get("time")
    if not isinstance(time, int):
        time = logs.time if logs and logs.differing else None
    details = []
    total = checker.get("violations_total")
    if isinstance(total, int) and total > 1:
        details.append(f"{total} violations in all; the first is shown.")
    if len(leaves) > 1:
        details.append("Also failed: " + ", ".join(n for n, _ in leaves[1:]) + ".")
    if logs and logs.diverging_index is not None:
        nodes = sorted({node for node, _ in logs.differing})
        details.append(f"Node logs first disagree at index {logs.diverging_index} "
                       f"(differing: {', '.join(nodes)}).")
    focus = Focus(checker=name, headline=f"{name} failed: {message}", details=details)
    if time is not None:
        focus.faults = [f for f in history.faults if f.overlaps(time - NS_PER_S // 10, time)]
        focus.window = (max(time - 2 * NS_PER_S, 0), time + NS_PER_S // 2)
    if not focus.faults:  # e.g. divergence seen after healing: name what came before
        focus.faults = list(history.faults)[:6]
        focus.fault_title = "Faults earlier in the run (none active when it was seen)"
    return focus


def _txn_cycle_picture(result: Mapping[str, Any]) -> Markup | None:
    """The cycle a failed transactional checker names in its message, drawn as SVG."""
    from checker.elle import cycle_svg

    for _, checker in failing_leaves(result):
        anomalies = checker.get("anomalies")
        if not isinstance(anomalies, Mapping):
            continue
        named = str(checker.get("message") or "").split(":", 1)[0]
        for name in (named, *anomalies):
            for example in anomalies.get(name) or []:
                if isinstance(example, Mapping) and example.get("steps"):
                    return Markup(cycle_svg(example))
    return None


def _window_ops(history: History, focus: Focus, ev: LinEvidence | None,
                wide: bool) -> list[Marked]:
    """The ops to draw around the failure.

    Always the failing op, the write it missed and the write of the value it
    returned; then the ops on the same key concurrent with the failing op; when
    ``wide``, also the last steps of the linearizable prefix and every
    concurrent op the checker named.
    """
    assert focus.failed is not None
    roles: dict[int, str] = {}
    for role, op in (("failed", focus.failed), ("missed", focus.missed),
                     ("source", focus.source), ("witness", focus.witness)):
        if op is not None and op.id not in roles:
            roles[op.id] = role
    chosen: dict[int, Marked] = {i: Marked(history.ops[i], r) for i, r in roles.items()}
    failed = focus.failed
    lo, hi = failed.start, failed.end if failed.end is not None else history.end
    related: list[Op] = []
    if wide and ev is not None:
        related += [s.op for s in ev.prefix[-MAX_STEPS_SHOWN:]] + list(ev.concurrent)
    related += sorted(
        (o for o in history.ops if o.key == failed.key and o.start <= hi
         and (o.end or history.end) >= lo),
        key=lambda o: abs(o.start - failed.start))
    limit = len(roles) + (MAX_WINDOW_OPS if wide else 6)
    for op in related:
        if len(chosen) >= limit:
            break
        chosen.setdefault(op.id, Marked(op))
    return sorted(chosen.values(), key=lambda m: m.op.start)


def _fit_window(focus: Focus, marked: Sequence[Marked], end: int) -> tuple[int, int]:
    """Widen the focus window so every drawn op fits, with a margin."""
    if not marked:
        return focus.window
    lo = min([focus.window[0]] + [m.op.start for m in marked])
    hi = max([focus.window[1]] + [(m.op.end or end) for m in marked if m.role])
    pad = (hi - lo) // 20
    return max(lo - pad, 0), hi + pad


def _lin_window(focus: Focus, evidence: LinEvidence) -> tuple[int, int]:
    """The stretch where the last prefix steps and the failing op happen.

    Long ops (an unknown write, the source write long before) would stretch
    it to seconds; they are drawn clipped at the edge instead.
    """
    assert focus.failed is not None
    times = [focus.failed.start, focus.failed.end or focus.failed.start]
    times += [s.point for s in evidence.prefix[-MAX_STEPS_SHOWN:]]
    if focus.missed is not None:
        times += [focus.missed.start, focus.missed.end or focus.missed.start]
    lo, hi = min(times), max(times)
    pad = max((hi - lo) // 12, 2_000_000)
    return lo - pad, hi + pad


def _op_card(op: Op | None) -> dict[str, Any] | None:
    if op is None:
        return None
    return {
        "id": op.id, "text": op.describe(), "process": op.process, "node": op.node,
        "start": fmt_time(op.start), "end": fmt_time(op.end), "result": op.result,
        "latency": None if op.end is None or EVENT_CLOCK.get()
        else f"{(op.end - op.start) / 1e6:.1f} ms",
        "error": op.error, "client": op.extra.get("client"), "seq": op.extra.get("seq"),
    }


def _schedule(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    schedule = config.get("schedule") or config.get("nemesis_schedule")
    nemesis = config.get("nemesis")
    if schedule is None and isinstance(nemesis, Mapping):
        schedule = nemesis.get("schedule")
    if schedule is None and isinstance(nemesis, list):
        schedule = nemesis
    return [dict(s) for s in schedule or [] if isinstance(s, Mapping)]


def schedule_faults(schedule: Sequence[Mapping[str, Any]]) -> list[str]:
    """The kinds of fault a schedule injects; its healing steps (p=0, reset …) are not faults."""
    kinds = set()
    for step in schedule:
        f, value = str(step.get("f")), step.get("value")
        value = value if isinstance(value, Mapping) else {}
        injects = {
            "partition": True, "kill": True, "pause": True, "lose-unfsynced": True,
            "loss": (value.get("p") or 0) > 0,
            "duplicate": (value.get("p") or 0) > 0,
            "reorder": (value.get("p") or 0) > 0,
            "delay": (value.get("mean") or 0) > 0 or (value.get("jitter") or 0) > 0,
            "clock": not value.get("reset"),
        }.get(f, False)
        if injects:
            kinds.add(f)
    return sorted(kinds)


def reproduce_command(config: Mapping[str, Any]) -> str | None:
    command = config.get("command") or config.get("command_line") or config.get("reproduce")
    if isinstance(command, list):
        return shlex.join(str(c) for c in command)
    return str(command) if command else None


def _explain(
    history: History, result: Mapping[str, Any], observations: Sequence[Mapping[str, Any]],
) -> tuple[str | None, LinEvidence | None, model.LogView | None, Focus | None]:
    """The linearizability checker's name and evidence, the node-log view and the
    story of the failure.

    One place decides what a failure is about, so the report's first screen and
    the terminal's one-line summary tell the same story.
    """
    lin = _lin_result(result)
    evidence = model.lin_evidence(history, lin[1]) if lin else None
    log_focus_index = None
    if not lin:
        for _, checker in failing_leaves(result):
            log_focus_index = _violation_index(_first_violation(checker))
            if log_focus_index is not None:
                break
    logs = model.log_view(observations, log_focus_index) if observations else None

    focus: Focus | None = None
    if evidence is not None:
        focus = model.explain_lin_failure(history, evidence)
        for name, checker in failing_leaves(result):  # the other failures, one line each
            if lin is not None and name != lin[0]:
                violation = _first_violation(checker)
                message = violation.get("message") or checker.get("message") or ""
                focus.details.append(f"Also failed: {name}" + (f": {message}" if message
                                                                 else "") + ".")
    elif result.get("valid") is False:
        focus = _generic_focus(history, result, logs)
    return (lin[0] if lin else None), evidence, logs, focus


def build_context(
    history: History, result: Mapping[str, Any], title: str,
    config: Mapping[str, Any] | None = None,
    observations: Sequence[Mapping[str, Any]] = (),
    run_dir: Path | None = None,
) -> dict[str, Any]:
    config = dict(config or {})
    concurrency = config.get("concurrency")
    lanes = model.assign_lanes(history, concurrency if isinstance(concurrency, int) else None)

    lin_name, evidence, logs, focus = _explain(history, result, observations)

    window_picture = lin_picture = None
    if focus is not None and focus.failed is not None:
        marked = _window_ops(history, focus, evidence, wide=False)
        focus.window = _fit_window(focus, marked, history.end)
        window_picture = window_svg(marked, focus.faults, focus.window, run_end=history.end,
                                    title=WINDOW_TITLES.get(focus.kind or "",
                                                            "the failing operation"))
        if evidence is not None:
            wide = _window_ops(history, focus, evidence, wide=True)
            first_step = max(len(evidence.prefix) - MAX_STEPS_SHOWN, 0) + 1
            lin_picture = window_svg(wide, focus.faults, _lin_window(focus, evidence),
                                     steps=evidence.prefix[-MAX_STEPS_SHOWN:],
                                     first_step=first_step,
                                     run_end=history.end, title="linearization window")

    # messages: a tight window at the failing op; node logs: a wider one (they are sparse)
    anomaly = focus.window if focus is not None and focus.window != (0, 0) else None
    if focus is not None and focus.failed is not None:
        failed_end = focus.failed.end if focus.failed.end is not None else focus.failed.start
        anomaly = (max(focus.failed.start - NS_PER_S // 4, 0), failed_end + NS_PER_S // 10)
    if anomaly is None and history.faults:
        first = history.faults[0].start
        anomaly = (max(first - NS_PER_S // 4, 0), first + NS_PER_S // 2)
    messages = stderr = None
    nodes = config.get("nodes")  # a list of names; a hand-edited count names nothing
    node_names = sorted({str(n) for n in (nodes if isinstance(nodes, list) else [])} | set(
        logs.nodes if logs else []))
    if run_dir is not None and anomaly is not None:
        marks = []
        if focus is not None and focus.failed is not None:
            marks = [(focus.failed.start, f"invoke: {focus.failed.describe()}", "#c0002a")]
            if focus.witness is not None and focus.witness.end is not None:
                marks.append((focus.witness.end, "newer value already read", "#0057d9"))
            if focus.failed.end is not None:
                marks.append((focus.failed.end, "it returned", "#c0002a"))
            if focus.missed is not None and focus.missed.end is not None and (
                    focus.missed.result == "ok"):
                marks.append((focus.missed.end, "missed write acknowledged", "#0057d9"))
        marks += [(f.start, f"fault: {f.label}", "#6a4fb3") for f in history.faults
                  if anomaly[0] <= f.start <= anomaly[1]]
        messages = sources.message_window(run_dir / files.MESSAGES, anomaly, node_names)
        if messages is not None:
            node_names = messages["nodes"]
            messages["header"], messages["svg"] = sequence_svg(messages["shown"], node_names,
                                                               marks)
        stderr = sources.stderr_window(
            run_dir / files.NODES, (max(anomaly[0] - 2 * NS_PER_S, 0), anomaly[1] + NS_PER_S),
            config, observations)

    data = {
        "title": title,
        "untimed": not history.timed,
        "end_us": history.end // 1000,
        "faults": [{"kind": f.kind, "label": f.label, "s": f.start // 1000,
                    "e": -1 if f.end is None else f.end // 1000} for f in history.faults],
        "nemesis": [{"t": int(e.get("time") or 0) // 1000, "f": e.get("f"),
                     "v": fmt_value(e.get("value"))} for e in history.nemesis],
        "timeline": model.timeline_data(history, lanes),
        "latency": model.latency_series(history),
        "throughput": model.throughput_series(history),
        "focus": None if focus is None else {
            "window": [focus.window[0] // 1000, focus.window[1] // 1000],
            "failed": focus.failed.id if focus.failed else None,
            "missed": focus.missed.id if focus.missed else None,
            "source": focus.source.id if focus.source else None,
        },
    }
    counts = {r: sum(1 for o in history.ops if o.result == r)
              for r in ("ok", "fail", "info", "pending")}
    return {
        "title": title,
        "result": result,
        "verdict": result.get("valid", "unknown"),
        "checkers": _checker_rows(result),
        "complaints": _complaints(result),
        "config": config,
        "config_json": json.dumps(config, indent=2, default=str),
        "schedule": _schedule(config),
        "nemesis_events": [
            {"time": int(e.get("time") or 0), "f": e.get("f"),
             "label": model.describe_fault(
                 str(e.get("f")).removeprefix("start-").removeprefix("stop-"), e.get("value"))
             if e.get("value") is not None else ""}
            for e in history.nemesis],
        "command": reproduce_command(config),
        "counts": counts,
        "op_total": len(history.ops),
        "duration": fmt_time(history.end) if history.timed
        else f"{round(history.end / NS_PER_S) + 1} events, no times recorded",
        "timed": history.timed,
        "faults": history.faults,
        "focus": focus,
        "failed_card": _op_card(focus.failed) if focus else None,
        "failed_title": FAILED_TITLES.get(focus.kind or "", "Where the checker's search stopped")
        if focus else None,
        "missed_card": _op_card(focus.missed) if focus else None,
        "source_card": _op_card(focus.source) if focus else None,
        "witness_card": _op_card(focus.witness) if focus else None,
        "window_svg": window_picture,
        "cycle_svg": _txn_cycle_picture(result),
        "lin": evidence,
        "lin_name": lin_name,
        "lin_svg": lin_picture,
        "lin_steps": [
            {"n": i, "op": s.op.describe(), "node": s.op.node, "state": fmt_value(s.state),
             "point": fmt_time(s.point), "id": s.op.id}
            for i, s in list(enumerate(evidence.prefix, 1))[-MAX_STEPS_SHOWN:]
        ] if evidence else [],
        "logs": logs,
        "messages": messages,
        "stderr": stderr,
        "data_json": _json_for_script(data),
        "css": _static("report.css"),
        "js": _static("report.js"),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def _write(out_path: Path, html: str) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out_path)  # a reader (serve) never sees half a report
    except OSError:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise
    return out_path


def render_history_report(history: Any, result: Mapping[str, Any] | None, out_path: str | Path,
                          title: str = "history") -> Path:
    """Write a report for a bare history (JSONL path, event list or checker History).

    A path to a run directory's ``history.jsonl`` gets the full run report
    (configuration, node logs, messages) with ``result``, written to ``out_path``.
    """
    result = dict(result or {"valid": "unknown", "checkers": {}})
    if isinstance(history, str | Path) and Path(history).name == files.HISTORY and (
            Path(history).parent / files.TEST_JSON).is_file():
        return _write(Path(out_path), _run_page(Path(history).parent.resolve(), result)[0])
    built = model.build_history(model.events_from(history))
    return _write(Path(out_path), _render_page(built, result, title)[0])


@contextlib.contextmanager
def _clock_of(history: History) -> Iterator[None]:
    """Times print as seconds, or as event positions for a history without times."""
    token = EVENT_CLOCK.set(not history.timed)
    try:
        yield
    finally:
        EVENT_CLOCK.reset(token)


def _render_page(history: History, result: Mapping[str, Any], title: str,
                 config: Mapping[str, Any] | None = None,
                 observations: Sequence[Mapping[str, Any]] = (),
                 run_dir: Path | None = None) -> tuple[str, str | None]:
    """The page's HTML and the failure's headline (None when nothing failed)."""
    with _clock_of(history):
        context = build_context(history, result, title, config, observations, run_dir)
        context["coverage"] = _coverage(run_dir)
        html = _environment().get_template("report.html.j2").render(context)
    focus = context["focus"]
    return html, focus.headline if focus is not None else None


def _coverage(run_dir: Path | None) -> dict[str, Any] | None:
    """The run's coverage.json (what it exercised; written by the harness), if any."""
    if run_dir is None or not (run_dir / files.COVERAGE).is_file():
        return None
    try:
        return _read_json(run_dir / files.COVERAGE)
    except InputError:
        return None  # a summary, never a reason to lose the report


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, exc.lineno, f"not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InputError(path, None, "expected a JSON object")
    return data


def run_title(run_dir: Path, config: Mapping[str, Any]) -> str:
    name = (config.get("test_name") or config.get("name") or config.get("test")
            or run_dir.parent.name)
    return f"{name} · {run_dir.name}"


def render_run_report(run_dir: str | Path) -> Path:
    """Render ``run_dir/report.html`` from the run's files; returns its path.

    When the run sits in a store (``store/<test>/<timestamp>/``, recognised by
    ``store/latest`` or an existing index), ``store/index.html`` is refreshed too.
    """
    return write_run_report(run_dir)[0]


def write_run_report(run_dir: str | Path) -> tuple[Path, str | None]:
    """``render_run_report``, also returning the failure's headline (see
    ``failure_headline``) from the same reading of the run."""
    run_dir = Path(run_dir).resolve()  # store/latest is a link: name the real run
    html, headline = _run_page(run_dir)
    written = _write(run_dir / files.REPORT, html)
    store = store_of(run_dir)
    if store is not None:  # keep store/index.html current with every report written
        update_store_index(store)
    return written, headline


def history_headline(history: Any, result: Mapping[str, Any]) -> str | None:
    """The failure's one sentence for a bare history (what ``splitbrain check FILE``
    prints as ``evidence:``), told as a report of that history would; None when
    nothing failed or nothing can be said beyond the checker's own evidence."""
    if result.get("valid") is not False:
        return None
    built = model.build_history(model.events_from(history))
    with _clock_of(built):
        *_, focus = _explain(built, result, ())
        return focus.headline if focus is not None else None


def failure_headline(run_dir: str | Path,
                     result: Mapping[str, Any] | None = None) -> str | None:
    """One sentence naming what went wrong in a checked run, as the report's first
    screen says it (e.g. which read was stale and which write it missed); None when
    the run was not found invalid or its files cannot be read (the verdict stands).
    ``result`` (a fresh check) overrides the run's results.json."""
    try:
        history, result, _, observations = _load_run(Path(run_dir), result)
    except InputError:
        return None
    if result.get("valid") is not False:
        return None
    with _clock_of(history):
        *_, focus = _explain(history, result, observations)
        return focus.headline if focus is not None else None


def _load_run(run_dir: Path, result: Mapping[str, Any] | None = None) -> tuple[
        History, Mapping[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """A run's history, results (``result`` overrides results.json), test.json and
    observations."""
    history_path = run_dir / files.HISTORY
    if not history_path.is_file():
        raise InputError(run_dir, None, "not a run directory: no history.jsonl")
    config = _read_json(run_dir / files.TEST_JSON) if (run_dir / files.TEST_JSON).is_file() else {}
    if result is None:
        result = (_read_json(run_dir / files.RESULTS) if (run_dir / files.RESULTS).is_file()
                  else {"valid": "unknown", "checkers": {}})
    observations = (model.read_jsonl(run_dir / files.OBSERVATIONS)
                    if (run_dir / files.OBSERVATIONS).is_file() else [])
    history = model.build_history(model.read_jsonl(history_path))
    return history, result, config, observations


def _run_page(run_dir: Path, result: Mapping[str, Any] | None = None) -> tuple[str, str | None]:
    """The HTML of a run's report and its failure's headline; ``result`` overrides the
    stored results.json."""
    history, result, config, observations = _load_run(run_dir, result)
    return _render_page(history, result, run_title(run_dir, config), config, observations,
                        run_dir)


def store_of(run_dir: Path) -> Path | None:
    """The store holding ``store/<test>/<timestamp>/``, if run_dir sits in one."""
    store = run_dir.resolve().parent.parent
    return store if (store / files.LATEST).is_symlink() or (store / files.INDEX).is_file() else None


# ---------------------------------------------------------------- store index


def _run_summary(store_dir: Path, run_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = {}
    result: dict[str, Any] = {}
    try:
        if (run_dir / files.TEST_JSON).is_file():
            config = _read_json(run_dir / files.TEST_JSON)
        if (run_dir / files.RESULTS).is_file():
            result = _read_json(run_dir / files.RESULTS)
    except InputError:
        pass  # a run still being written: list it with what is known
    faults = schedule_faults(_schedule(config))
    if not faults and isinstance(config.get("nemesis"), list):
        faults = sorted(str(f) for f in config["nemesis"])
    report = run_dir / files.REPORT
    target = report if report.is_file() else run_dir / files.HISTORY
    return {
        "test": (config.get("test_name") or config.get("name") or config.get("test")
                 or run_dir.parent.name),
        "time": run_dir.name,
        "verdict": result.get("valid", "unknown") if result else "unknown",
        "faults": faults,
        "seed": config.get("seed"),
        "link": target.relative_to(store_dir).as_posix(),
        "has_report": report.is_file(),
        "failed_checkers": [name for name, _ in failing_leaves(result)],
    }


def list_runs(store_dir: str | Path) -> list[dict[str, Any]]:
    """Every run under ``store/<test>/<timestamp>/``, newest first."""
    store_dir = Path(store_dir)
    runs = []
    for test_dir in sorted(p for p in store_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        for run_dir in test_dir.iterdir():
            if run_dir.is_dir() and not run_dir.is_symlink() and (
                (run_dir / files.TEST_JSON).is_file() or (run_dir / files.HISTORY).is_file()
            ):
                runs.append(_run_summary(store_dir, run_dir))
    runs.sort(key=lambda r: (r["time"], r["test"]), reverse=True)
    return runs


def list_campaigns(store_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``store/campaigns/<stamp>/campaign.json`` (``splitbrain campaign``), newest
    first, with its verdict, run counts, coverage and the first invalid run's report."""
    store_dir = Path(store_dir)
    campaigns = []
    found = (store_dir / files.CAMPAIGNS).glob(f"*/{files.CAMPAIGN_JSON}")
    for path in sorted(found, reverse=True):
        try:
            data = _read_json(path)
        except (InputError, OSError):
            continue  # being rewritten right now, or damaged: the runs are still listed
        setup = data.get("campaign") if isinstance(data.get("campaign"), dict) else {}
        first = data.get("first_invalid") if isinstance(data.get("first_invalid"), dict) else None
        report = None
        if first and first.get("report"):
            with contextlib.suppress(ValueError):
                report = Path(first["report"]).resolve().relative_to(
                    store_dir.resolve()).as_posix()
        coverage = data.get("coverage") if isinstance(data.get("coverage"), dict) else {}
        campaigns.append({
            "time": path.parent.name,
            "status": data.get("status", "unknown"),
            "minutes": setup.get("minutes"), "seed": setup.get("seed"),
            "bugs": setup.get("bugs") or [], "db": setup.get("db"),
            "counts": data.get("counts") or {},
            "faults": coverage.get("faults") or {},
            "overlaps": sum((coverage.get("compositions") or {}).values()),
            "elections": coverage.get("elections", 0),
            "snapshots": coverage.get("snapshots", 0),
            "first_invalid": first, "report": report,
            "link": path.relative_to(store_dir).as_posix(),
        })
    return campaigns


def update_store_index(store_dir: str | Path) -> Path:
    """Write ``store_dir/index.html``: campaigns, then all runs with verdict, faults, link."""
    store_dir = Path(store_dir)
    if not store_dir.is_dir():
        raise InputError(store_dir, None, "store directory does not exist")
    html = _environment().get_template("index.html.j2").render(
        runs=list_runs(store_dir), campaigns=list_campaigns(store_dir),
        store=str(store_dir), css=_static("report.css"),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    return _write(store_dir / files.INDEX, html)
