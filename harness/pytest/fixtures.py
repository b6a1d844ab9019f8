"""What the pytest plugin's ``sim_cluster`` and ``cluster`` fixtures hand to a test.

A Jepsen-style test in a user's suite is a few lines::

    def test_survives_partitions(sim_cluster):
        sim_cluster.run(nemesis="partition,kill", time_limit=10).assert_valid()

    def test_finds_the_bug(sim_cluster):
        schedule = [{"at": 0.5, "f": "partition", "value": {"shape": "isolate-leader"}},
                    {"at": 3.0, "f": "heal", "value": None}]
        sim_cluster.run(schedule=schedule, bugs=["stale-leader-read"],
                        cluster={"check_quorum": False}, seed=0).assert_invalid()

    def test_fuzz(sim_cluster):
        sim_cluster.fuzz(examples=50).assert_valid()

    def test_real_cluster(cluster):           # real processes, opt-in with --run-slow
        cluster.run(nemesis="partition", time_limit=15).assert_valid()

Every result knows its run directory and report; a failing assertion prints
both (and the plugin adds them to the failure report of the test), so the
evidence is one click away.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitbrain_common import files

#: Called with every result a fixture produced, so the plugin can print it on failure.
Recorder = Callable[["RunResult"], None]


@dataclass
class RunResult:
    """A finished run (simulated or real): verdict, where its files are, what failed."""

    kind: str  # "simulated" | "real" | "fuzz"
    run_dir: Path | None
    results: dict[str, Any]
    report: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> Any:
        return self.results.get("valid")

    def failing_checkers(self) -> list[str]:
        from checker.results import failing_checkers

        return failing_checkers(self.results)

    def describe(self) -> str:
        verdict = {True: "valid", False: "INVALID"}.get(self.valid, "unknown")
        lines = [f"splitbrain {self.kind} run: {verdict}"]
        failing = self.failing_checkers()
        if failing:
            lines.append(f"  failing checkers: {', '.join(failing)}")
        if self.valid is False and self.run_dir is not None:
            from reports.render import failure_headline

            headline = failure_headline(self.run_dir)
            if headline:
                lines.append(f"  evidence: {headline}")
        reason = self.results.get("reason")
        if reason:
            lines.append(f"  reason: {reason}")
        for key, value in self.extra.items():
            lines.append(f"  {key}: {value}")
        if self.run_dir is not None:
            lines.append(f"  run directory: {self.run_dir}")
        if self.report is not None:
            lines.append(f"  report: {self.report}")
        return "\n".join(lines)

    def assert_valid(self, allow_unknown: bool = False) -> None:
        """Fail the test unless every checker said valid (``unknown`` too, unless allowed)."""
        if self.valid is True or (allow_unknown and self.valid == "unknown"):
            return
        raise AssertionError(self.describe())

    def assert_invalid(self) -> None:
        """Fail the test unless some checker found the system incorrect."""
        if self.valid is not False:
            raise AssertionError("expected an anomaly, but " + self.describe())


def _packages(nemesis: str | Sequence[str] | None) -> list[str]:
    from nemesis.schedule import parse_packages

    if not nemesis:
        return []
    return parse_packages(nemesis)


class SimClusterFixture:
    """Simulated raft_impl clusters: deterministic, fast, in-process."""

    def __init__(self, store: Path, seed: int, name: str, record: Recorder) -> None:
        self.store = store
        self.seed = seed
        self.name = name
        self._record = record

    def test(self, *, nodes: int = 3, nemesis: str | Sequence[str] | None = None,
             nemesis_interval: float = 2.0, schedule: Sequence[dict[str, Any]] | None = None,
             bugs: Sequence[str] = (), read_mode: str = "read-index",
             time_limit: float = 5.0, seed: int | None = None,
             cluster: dict[str, Any] | None = None, **workload: Any) -> Any:
        """Build the :class:`harness.sim.SimTest` that :meth:`run` would run."""
        from harness.sim import SimClusterConfig, SimTest, SimWorkload
        from nemesis.schedule import generate

        # ``workload=`` names the kind, as the real fixture's and --workload do
        workload["name"] = workload.pop("workload", workload.get("name", "register"))
        seed = self.seed if seed is None else seed
        config = SimClusterConfig(nodes=nodes, bugs=tuple(bugs), read_mode=read_mode,
                                  **(cluster or {}))
        work = SimWorkload(time_limit=time_limit, **workload)
        if schedule is None:
            packages = _packages(nemesis)
            schedule = generate(packages, config.node_ids, time_limit, nemesis_interval,
                                random.Random(seed)) if packages else []
        return SimTest(cluster=config, workload=work, schedule=tuple(schedule), seed=seed,
                       name=self.name)

    def run(self, test: Any = None, *, report: bool = True, **options: Any) -> RunResult:
        """Run one simulated test (a SimTest, or built from ``options`` as in :meth:`test`)."""
        from harness.run import store
        from harness.sim import simulate

        if test is None:
            test = self.test(**options)
        run_dir = store.create_run_dir(self.store, test.name)
        result = simulate(test, run_dir, report=report)
        outcome = RunResult("simulated", run_dir, result.results, result.report,
                            {"seed": test.seed})
        self._record(outcome)
        return outcome

    def fuzz(self, *, examples: int = 50, bugs: Sequence[str] = (), nodes: int = 3,
             time_limit: float | None = None, seed: int | None = None,
             **options: Any) -> RunResult:
        """Hypothesis search in the simulator; a failure is shrunk and saved (repro.json)."""
        from harness.sim.fuzz import fuzz

        outcome = fuzz(examples=examples, bugs=bugs, nodes=nodes, time_limit=time_limit,
                       seed=self.seed if seed is None else seed, store_dir=self.store,
                       name=self.name, **options)
        extra: dict[str, Any] = {"examples": outcome.examples, "coverage": outcome.coverage}
        if outcome.unknown_reasons:
            extra["unknown_reasons"] = dict(outcome.unknown_reasons)
        if outcome.found:
            extra.update(faults=outcome.faults, repro=outcome.repro)
            results = outcome.results or {"valid": False}
        elif outcome.unknown:
            results = {"valid": True, "unknown_examples": outcome.unknown}
        else:
            results = {"valid": True}
        result = RunResult("fuzz", outcome.run_dir, results, outcome.report, extra)
        self._record(result)
        return result


class RealClusterFixture:
    """Real raft_impl node processes on loopback, through ``harness.run.run``."""

    def __init__(self, store: Path, seed: int, name: str, record: Recorder) -> None:
        self.store = store
        self.seed = seed
        self.name = name
        self._record = record

    def run(self, *, nodes: int = 3, nemesis: str | Sequence[str] | None = None,
            nemesis_interval: float = 3.0, schedule: Sequence[dict[str, Any]] | None = None,
            bugs: Sequence[str] = (), read_mode: str = "read-index",
            time_limit: float = 10.0, seed: int | None = None, workload: str = "register",
            **config: Any) -> RunResult:
        """One real run; ``workload`` is ``register``, ``list-append`` or ``rw-register``
        (as ``splitbrain run --workload``)."""
        from harness.run.run import RunConfig, run_test
        from harness.run.workload import WORKLOADS

        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
        options: dict[str, Any] = dict(
            workload_name=workload,
            nodes=nodes, nemesis=_packages(nemesis), nemesis_interval=nemesis_interval,
            bugs=list(bugs), read_mode=read_mode, time_limit=time_limit,
            seed=self.seed if seed is None else seed, store=str(self.store),
            test_name=self.name, **config)
        schedule_file = None
        if schedule is not None:
            schedule_file = self.store / f"{self.name}-schedule.json"
            self.store.mkdir(parents=True, exist_ok=True)
            schedule_file.write_text(json.dumps(list(schedule)), encoding="utf-8")
            options["nemesis_schedule"] = str(schedule_file)
        outcome = run_test(RunConfig(**options))
        results = outcome.results or {"valid": "unknown",
                                      "reason": outcome.error or "the run did not complete"}
        report = outcome.run_dir / files.REPORT
        result = RunResult("real", outcome.run_dir, results,
                           report if report.is_file() else None, {"seed": options["seed"]})
        self._record(result)
        return result
