"""What a run exercised: the coverage behind a verdict.

A valid verdict says nothing happened that the checkers could see; it does
not say that anything interesting happened. This module reads a run's
files — ``history.jsonl`` (client operations and nemesis events) and
``observations.jsonl`` (what the nodes said about themselves) — and counts
what the run actually went through:

* ``faults``: fault kinds that fired (skipped triggers and faults that
  failed to apply excluded; ``fault_errors`` counts the latter), and
  ``compositions``: which kinds were active *at the same time* (a kill during
  a partition is ``kill+partition``), so a campaign can tell overlapping
  faults from faults that only ever came one at a time; ``scenarios``: the
  composite scenarios of the schedule that ran (``compose`` labels), per name;
* ``elections`` (a node taking office in a new term), ``step_downs`` (a
  leader losing office), ``snapshots``: taken or installed, from the nodes'
  pushed ``snapshot`` records (with ``snapshots_installed``: those a leader
  sent) or, for systems that cannot push, a node's polled snapshot index
  advancing; ``complaints`` the nodes made about themselves;
* ``retries``: operations whose session re-sent an in-doubt attempt, and
  how many attempts were re-sent;
* ``max_follower_lag``: the largest gap seen between the highest index any
  node reported committed or applied so far and what a node had applied
  (polled statuses, and pushed ``committed`` batches: a node catching up
  pushes its first batch far behind the others);
* ``reads``: reads per read path (invoked and ok), and ``ops`` per outcome.

It is computed from the files alone, so ``coverage.json`` can be rebuilt for
any stored run, and per campaign by :func:`merge`. Unknown observation kinds
and malformed lines are skipped: coverage is a summary, never a verdict.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nemesis.faults import STARTED_BY, STOPPED_BY
from splitbrain_common import files


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """JSON objects of a JSONL file, skipping what does not parse (a torn last line)."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError:
        return
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def _nodes_of(value: Any) -> list[str]:
    if isinstance(value, dict) and isinstance(value.get("nodes"), list):
        return [str(n) for n in value["nodes"]]
    return []


def fault_coverage(history: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Fault kinds that fired and the kinds active together when each fired."""
    faults: Counter[str] = Counter()
    compositions: Counter[str] = Counter()
    scenarios: Counter[str] = Counter()
    errors = 0
    last_label: Any = None  # compose label of the previous nemesis event
    active: set[str] = set()  # link and clock faults in force
    down: set[str] = set()  # killed (or crashed by lose-unfsynced), not restarted
    paused: set[str] = set()
    for event in history:
        if event.get("process") != "nemesis":
            continue
        f, value = str(event.get("f", "")), event.get("value")
        label = event.get("compose")
        previous_label, last_label = last_label, label
        if isinstance(value, dict) and value.get("skipped"):
            continue  # a triggered fault whose moment never came
        if isinstance(value, dict) and value.get("error"):
            errors += 1  # it did not happen (the run's verdict says so too)
            continue
        if isinstance(label, str) and label != previous_label:
            scenarios[label] += 1  # slots never overlap: a new label is a new instance
        kind = STARTED_BY.get(f)
        if kind is not None:
            if kind in ("kill", "lose-unfsynced", "pause") and not _nodes_of(value):
                continue  # the target named no node (e.g. no leader at that moment)
            faults[kind] += 1
            others = set(active)
            if down:
                others.add("kill")
            if paused:
                others.add("pause")
            others.discard(kind)
            if others:
                compositions["+".join(sorted({kind, *others}))] += 1
            if kind in ("kill", "lose-unfsynced"):
                down.update(_nodes_of(value))
            elif kind == "pause":
                paused.update(_nodes_of(value))
            else:
                active.add(kind)
        elif f == "start":
            down.difference_update(_nodes_of(value))
        elif f == "resume":
            paused.difference_update(_nodes_of(value))
        elif f == "heal-all":
            active.clear()
            down.clear()
            paused.clear()
        else:
            active.difference_update(STOPPED_BY.get(f, ()))
    result: dict[str, Any] = {"faults": dict(sorted(faults.items())),
                              "compositions": dict(sorted(compositions.items())),
                              "scenarios": dict(sorted(scenarios.items()))}
    if errors:
        result["fault_errors"] = errors
    return result


def client_coverage(history: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Operations per outcome, reads per path, in-doubt retries."""
    ops: Counter[str] = Counter()
    reads: dict[str, Counter[str]] = {}
    open_reads: dict[Any, str] = {}
    retried_ops = retries = 0
    for event in history:
        process = event.get("process")
        if process == "nemesis":
            continue
        kind = event.get("type")
        if kind == "invoke":
            # A read-only txn that names its read path counts as a read of that path.
            if event.get("f") == "read" or (event.get("f") == "txn" and event.get("read")):
                path = str(event.get("read") or "node-default")
                open_reads[process] = path
                reads.setdefault(path, Counter())["invoked"] += 1
            continue
        if kind not in ("ok", "fail", "info"):
            continue
        ops[str(kind)] += 1
        path = open_reads.pop(process, None)
        if path is not None:
            reads[path][str(kind)] += 1
        count = event.get("retries")
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            retried_ops += 1
            retries += count
    return {
        "ops": {k: ops[k] for k in ("ok", "fail", "info")},
        "reads": {path: {k: c[k] for k in ("invoked", "ok", "fail", "info")}
                  for path, c in sorted(reads.items())},
        "retried_ops": retried_ops,
        "retries": retries,
    }


def node_coverage(observations: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Elections, step-downs, snapshots and follower lag from what nodes said."""
    leaders: set[tuple[Any, str]] = set()  # (term, node) taking office
    # Roles as pushed (role events) and as polled (status), tracked apart: a poll
    # answered just before a change may be written after it, and must not count
    # the change twice. Pushed events win when a system has them.
    roles: dict[str, dict[str, str]] = {"role": {}, "status": {}}
    step_downs = {"role": 0, "status": 0}
    snapshot_index: dict[str, int] = {}
    polled_snapshots = 0
    pushed: Counter[str] = Counter()  # pushed snapshot records by source
    highest_commit = 0
    max_lag = 0
    crashes = restarts = complaints = 0
    for record in observations:
        kind, node = record.get("kind"), str(record.get("node", ""))
        if kind in ("role", "status"):
            role = roles[str(kind)]
            now = record.get("role")
            if now == "leader":
                leaders.add((record.get("term"), node))
            elif role.get(node) == "leader" and now in ("follower", "candidate", "pre-candidate"):
                step_downs[str(kind)] += 1
            if isinstance(now, str):
                role[node] = now
        if kind in ("crash", "lose-unfsynced"):
            for role in roles.values():
                if role.get(node) == "leader":
                    role[node] = "down"  # a dead leader did not step down
            crashes += kind == "crash"
        elif kind == "restart":
            restarts += 1
        if kind == "status":
            commit, applied = record.get("commit"), record.get("applied")
            if _is_int(commit):
                highest_commit = max(highest_commit, commit)
            if _is_int(applied):
                max_lag = max(max_lag, highest_commit - applied)
        elif kind == "committed":
            indexes = [e.get("index") for e in record.get("entries") or ()
                       if isinstance(e, dict) and _is_int(e.get("index"))]
            if indexes:
                # the batch's first entry is where the node stood when it resumed applying
                max_lag = max(max_lag, highest_commit - (min(indexes) - 1))
                highest_commit = max(highest_commit, max(indexes))
        elif kind == "snapshot":
            pushed[str(record.get("source") or "taken")] += 1
        elif kind == "complaint":
            complaints += 1
        elif kind == "log":
            index = record.get("snapshot_index")
            if _is_int(index):
                if index > snapshot_index.get(node, 0):
                    polled_snapshots += 1
                snapshot_index[node] = max(index, snapshot_index.get(node, 0))
    result: dict[str, Any] = {
        "elections": len(leaders),
        "step_downs": step_downs["role"] if roles["role"] else step_downs["status"],
        "snapshots": sum(pushed.values()) if pushed else polled_snapshots,
        "max_follower_lag": max(0, max_lag),
        "crashes": crashes,
        "restarts": restarts,
        "complaints": complaints,
    }
    if pushed:
        result["snapshots_installed"] = pushed["installed"]
    return result


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def run_coverage(run_dir: Path) -> dict[str, Any]:
    """Coverage of one stored run (``coverage.json``'s content)."""
    history = run_dir / files.HISTORY
    coverage: dict[str, Any] = {}
    coverage.update(fault_coverage(_lines(history)))
    coverage.update(client_coverage(_lines(history)))
    coverage.update(node_coverage(_lines(run_dir / files.OBSERVATIONS)))
    return coverage


def write_run_coverage(run_dir: Path) -> dict[str, Any]:
    """Compute and store ``coverage.json`` in the run directory; returns it."""
    from harness.run import store

    coverage = run_coverage(run_dir)
    store.write_json(run_dir / files.COVERAGE, coverage)
    return coverage


def merge(coverages: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A campaign's coverage: sums of counts, maximum lag, runs merged."""
    total: dict[str, Any] = {
        "runs": 0, "faults": Counter(), "compositions": Counter(), "scenarios": Counter(),
        "ops": Counter(), "reads": {}, "retried_ops": 0, "retries": 0, "elections": 0,
        "step_downs": 0, "snapshots": 0, "max_follower_lag": 0, "crashes": 0, "restarts": 0,
        "fault_errors": 0, "complaints": 0,
    }
    installed: int | None = None
    for cov in coverages:
        total["runs"] += 1
        for name in ("faults", "compositions", "scenarios", "ops"):
            total[name].update(cov.get(name) or {})
        for path, counts in (cov.get("reads") or {}).items():
            total["reads"].setdefault(path, Counter()).update(counts)
        for name in ("retried_ops", "retries", "elections", "step_downs", "snapshots",
                     "crashes", "restarts", "fault_errors", "complaints"):
            total[name] += int(cov.get(name) or 0)
        total["max_follower_lag"] = max(total["max_follower_lag"],
                                        int(cov.get("max_follower_lag") or 0))
        if "snapshots_installed" in cov:
            installed = (installed or 0) + int(cov["snapshots_installed"])
    for name in ("faults", "compositions", "scenarios", "ops"):
        total[name] = dict(sorted(total[name].items()))
    total["reads"] = {p: dict(c) for p, c in sorted(total["reads"].items())}
    if installed is not None:
        total["snapshots_installed"] = installed
    return total


def describe(coverage: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: what the verdict covered."""
    faults = coverage.get("faults") or {}
    comps = coverage.get("compositions") or {}
    lines = [
        "faults: " + (", ".join(f"{k} {v}" for k, v in faults.items()) or "none"),
        "overlapping: " + (", ".join(f"{k} {v}" for k, v in comps.items()) or "none"),
    ]
    scenarios = coverage.get("scenarios") or {}
    if scenarios:
        lines.append("scenarios: " + ", ".join(f"{k} {v}" for k, v in scenarios.items()))
    if coverage.get("fault_errors"):
        lines.append(f"faults that failed to apply: {coverage['fault_errors']}")
    nodes = (f"elections {coverage.get('elections', 0)}, "
             f"step-downs {coverage.get('step_downs', 0)}, "
             f"snapshots {coverage.get('snapshots', 0)}")
    if "snapshots_installed" in coverage:
        nodes += f" ({coverage['snapshots_installed']} installed)"
    nodes += f", max follower lag {coverage.get('max_follower_lag', 0)} entries"
    if coverage.get("complaints"):
        nodes += f", {coverage['complaints']} complaints by the nodes"
    lines.append(nodes)
    reads = coverage.get("reads") or {}
    read_text = ", ".join(f"{p} {c.get('ok', 0)}/{c.get('invoked', 0)}"
                          for p, c in reads.items()) or "none"
    lines.append(f"reads ok/invoked: {read_text}; in-doubt retries "
                 f"{coverage.get('retries', 0)} in {coverage.get('retried_ops', 0)} ops")
    return lines
