"""One simulated run from a :class:`SimTest` to a verdict, in a store run directory.

``simulate`` is the simulator's whole public entry point: it runs the test on
the virtual clock, writes the same files a real run writes, runs the same
checkers (``checker.runner.run_all`` on the run directory) and, if asked,
renders the same HTML report. Nothing here reads the real clock except the
wall-time measurement reported in :class:`SimResult` (never written into the
history, so the history stays byte-identical for a given test). How its files
differ from a real run's: docs/DESIGN.md, sections 4, 6-8.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.run import store
from harness.sim.cluster import SimCluster
from harness.sim.config import SimTest
from harness.sim.guidance import Observer
from splitbrain_common import files

#: Budget of the linearizability search per run; past it the verdict is unknown.
CHECK_TIMEOUT = 30.0


@dataclass
class SimResult:
    run_dir: Path
    results: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None
    #: The abstract cluster states the run reached (see harness.sim.guidance).
    states: frozenset[str] = frozenset()

    @property
    def valid(self) -> Any:
        return self.results.get("valid")

    @property
    def history(self) -> Path:
        return self.run_dir / files.HISTORY


def run_checkers(run_dir: Path, timeout: float = CHECK_TIMEOUT) -> dict[str, Any]:
    """Every checker on what the run recorded (the same as ``splitbrain check RUN_DIR``)."""
    from checker.runner import run_all

    return run_all(run_dir, timeout=timeout)


def render_report(run_dir: Path) -> Path | None:
    """Render report.html; None when rendering failed (the run and its verdict
    stand without a report, as in a real run; the reason is in report-error.txt)."""
    from reports.render import render_run_report

    try:
        return Path(render_run_report(run_dir))
    except Exception as exc:
        (run_dir / files.REPORT_ERROR).write_text(f"{type(exc).__name__}: {exc}\n")
        return None


def test_json(test: SimTest) -> dict[str, Any]:
    """``test.json`` of a simulated run: the SimTest, plus the keys a real run's
    test.json has (so reports and tools read both alike)."""
    data = test.to_json()
    cluster, workload = test.cluster, test.workload
    data.update({
        "test_name": test.name,
        "db": "raft_impl (simulated)",
        "nodes": cluster.node_ids,
        "time_limit": workload.time_limit,
        "rate": workload.rate,
        "concurrency": workload.concurrency,
        "keys": workload.keys,
        "read_mode": cluster.read_mode,
        "bugs": list(cluster.bugs),
        "nemesis_schedule": data["schedule"],
        "quiet_period": workload.quiet,
        "op_timeout": workload.op_timeout,
        "retry_indefinite": workload.retry_indefinite,
        "workload_name": workload.name,
    })
    if workload.transactional:
        data["model"] = workload.name  # checker.runner runs the transactional checker
    return data


def simulate(test: SimTest, run_dir: str | Path, *, check: bool = True,
             report: bool = False) -> SimResult:
    """Run ``test`` in the simulator into ``run_dir`` (created if missing)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / files.NODES).mkdir(exist_ok=True)
    # A run directory holds one run: leftovers of an earlier one would be appended to.
    for name in (files.HISTORY, files.OBSERVATIONS, files.MESSAGES, files.RESULTS, files.REPORT):
        (run_dir / name).unlink(missing_ok=True)
    store.write_json(run_dir / files.TEST_JSON, test_json(test))
    started = time.perf_counter()
    cluster = SimCluster(test, run_dir)
    observer = Observer(cluster)
    try:
        cluster.run()
    finally:
        cluster.close()
    simulated = time.perf_counter() - started
    stats = {
        "events": cluster.loop.events_run,
        "simulated_s": round(cluster.loop.now, 6),
        "ops": dict(cluster.clients.completed),
        "network": dict(cluster.network.counters),
        "split_brain_s": round(cluster.split_brain_s, 3),
        "leader_changes": cluster.leader_changes,
        "wall_s": round(simulated, 4),
        "feedback": observer.scores(),
    }
    if cluster.stopped:
        stats["stopped"] = cluster.stopped
        data = test_json(test)
        data["stopped"] = cluster.stopped
        store.write_json(run_dir / files.TEST_JSON, data)
    results: dict[str, Any] = {"valid": "unknown", "reason": "not checked"}
    if check:
        results = run_checkers(run_dir)
        store.write_json(run_dir / files.RESULTS, results)
        stats["check_wall_s"] = round(time.perf_counter() - started - simulated, 4)
    report_path = render_report(run_dir) if report and check else None
    return SimResult(run_dir=run_dir, results=results, stats=stats, report=report_path,
                     states=frozenset(observer.states))
