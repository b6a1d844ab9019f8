"""Property-based fuzzing in the simulator: search, shrink, save a reproduction.

The property is the project's whole promise: *every checker says valid* for a
simulated test drawn by :func:`harness.sim.strategies.sim_tests`. Hypothesis
searches; when a test fails, it shrinks it (fewer faults, shorter schedule,
simpler values) and the minimal case is run once more into a store run
directory with a message trace and a report, next to ``repro.json``
(cluster, workload, schedule, seed, and the verdict it must reproduce).

``unknown`` verdicts (a checker could not judge) do not fail the property
but are counted and reported with their reasons: they are not evidence of a bug.

The search is guided: every run's observations (``harness.sim.guidance``) go
back to Hypothesis as ``target()`` scores, and the abstract cluster states the
campaign reached are its behaviour coverage (``FuzzOutcome.coverage``, stored in
``repro.json``). Planted bugs only switch code on; the drawn tests are the same
with or without them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import itertools
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings, target
from hypothesis import seed as hypothesis_seed

from checker.results import failing_checkers
from harness.run import store
from harness.sim.config import SimTest
from harness.sim.guidance import Coverage
from harness.sim.run import SimResult, simulate
from harness.sim.strategies import count_faults, sim_tests
from splitbrain_common import files


class CheckerFailed(AssertionError):
    """The property failed: some checker said invalid."""


class _SearchBudgetSpent(BaseException):
    """Stops Hypothesis's search when the time budget is spent (not a test failure)."""


@dataclass
class FuzzOutcome:
    """What a fuzz campaign found."""

    examples: int
    elapsed_s: float
    unknown: int = 0
    failure: SimTest | None = None
    run_dir: Path | None = None
    repro: Path | None = None
    report: Path | None = None
    results: dict[str, Any] | None = None
    faults: int | None = None
    seconds_to_first_failure: float | None = None
    failing: list[str] = field(default_factory=list)
    #: A failure another worker announced, which stopped this search (``--workers``,
    #: harness.sim.workers): ``{"worker", "test"}``.
    announced: dict[str, Any] | None = None
    #: Why each ``unknown`` verdict was unknown: reason -> how many runs.
    unknown_reasons: Counter[str] = field(default_factory=Counter)
    #: Behaviour coverage of the search (``guidance.Coverage.summary()``).
    coverage: dict[str, Any] = field(default_factory=dict)
    coverage_text: str = ""

    @property
    def found(self) -> bool:
        return self.failure is not None


#: An ``unknown`` verdict whose checkers gave no reason (a checker bug: every
#: unknown must say why).
NO_REASON = "(no reason given)"


def unknown_reasons(result: dict[str, Any], prefix: str = "") -> list[str]:
    """``"checker: reason"`` for each innermost checker whose verdict is unknown."""
    reasons: list[str] = []
    for name, sub in result.get("checkers", {}).items():
        if isinstance(sub, dict) and sub.get("valid") not in (True, False):
            inner = unknown_reasons(sub, f"{prefix}{name}.")
            why = sub.get("reason") or sub.get("error")
            reasons.extend(inner or [f"{prefix}{name}: {why}" if why else
                                     f"{prefix}{name}: {NO_REASON}"])
    if not reasons and not prefix and result.get("valid") not in (True, False):
        reasons.append(str(result.get("reason") or result.get("error") or NO_REASON))
    return reasons


def history_digest(run_dir: Path) -> str:
    return hashlib.sha256((run_dir / files.HISTORY).read_bytes()).hexdigest()


class _ClockedTime:
    """The ``time`` module as Hypothesis's engine sees it while a fuzz runs, with its
    ``perf_counter`` replaced by the fuzz's clock: the shrink budget then counts the
    same seconds as the search budget (CPU seconds in a benchmark on a shared machine,
    where a process niced among twenty gets a tenth of the wall time)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.perf_counter = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextlib.contextmanager
def _shrink_budget(seconds: float | None,
                   clock: Callable[[], float] = time.perf_counter) -> Iterator[None]:
    """Bound Hypothesis's shrinking time (its engine stops after MAX_SHRINKING_SECONDS
    of its ``time.perf_counter``), measured by ``clock``."""
    from hypothesis.internal.conjecture import engine

    if seconds is None or not hasattr(engine, "MAX_SHRINKING_SECONDS"):
        yield
        return
    saved = engine.MAX_SHRINKING_SECONDS
    saved_time = engine.time
    engine.MAX_SHRINKING_SECONDS = max(1, int(seconds))
    if clock is not time.perf_counter:
        engine.time = _ClockedTime(clock)  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved
        engine.time = saved_time


def fuzz(*, examples: int = 100, bugs: Sequence[str] = (), seed: int | None = None,
         nodes: int = 3, store_dir: str | Path = "store", name: str | None = None,
         read_modes: Sequence[str] | None = None, packages: Sequence[str] | None = None,
         time_limit: float | None = None, max_faults: int = 8,
         shrink_seconds: float | None = 120.0, search_seconds: float | None = None,
         progress: Callable[[int, SimResult], None] | None = None,
         workload: str = "register", database: Any = None,
         announcements: Any = None,
         clock: Callable[[], float] = time.perf_counter) -> FuzzOutcome:
    """Run the property on up to ``examples`` drawn tests; shrink and save the first failure.

    ``bugs`` only switches planted bugs on: the search is the same without them.
    ``packages`` None draws every fault kind.

    ``search_seconds`` bounds the search before a first failure (shrinking has its own
    budget, ``shrink_seconds``), both measured by ``clock`` (``time.process_time``
    bounds CPU seconds, what a benchmark on a shared machine means by "one core").
    ``workload`` is ``register``, ``list-append`` or ``rw-register``
    (``--workload``): the transactional ones are checked by ``checker.elle`` as in a
    real run.

    ``database`` is Hypothesis's example database (None: none), shared by the
    workers of a campaign; ``announcements`` (``harness.sim.workers.Announcements``)
    tells the other workers of a failure as soon as it is met, and stops this search
    when another worker announces one (``outcome.announced``).
    """
    _import_what_a_campaign_imports()
    store_dir = Path(store_dir)
    name = name or "fuzz-" + ("-".join(bugs) if bugs else "correct")
    strategy = sim_tests(nodes=nodes, bugs=tuple(bugs), read_modes=read_modes,
                         packages=packages, time_limit=time_limit, max_faults=max_faults,
                         name=name, workload=workload)
    scratch = Path(tempfile.mkdtemp(prefix="splitbrain-fuzz-"))
    counter = itertools.count(1)
    state: dict[str, Any] = {"failing": None, "first": None, "unknown": 0, "calls": 0,
                             "announced": None}
    reasons: Counter[str] = Counter()
    coverage = Coverage()
    started = clock()

    def check_one(test: SimTest) -> None:
        if (search_seconds is not None and state["first"] is None
                and clock() - started > search_seconds):
            raise _SearchBudgetSpent
        if announcements is not None and state["first"] is None:
            found = announcements.find(rate_limited=True)
            if found is not None:
                state["announced"] = found
                raise _SearchBudgetSpent
        number = next(counter)
        state["calls"] = number
        run_dir = scratch / f"example-{number}"
        try:
            result = simulate(test, run_dir)
            # Steer the search toward the situations bugs need (leadership contested,
            # logs diverging, a short log electable, entries truncated, retries in
            # doubt) and toward states the campaign has not reached yet.
            new_states = coverage.add(result.states)
            target(result.stats["split_brain_s"], label="split-brain seconds")
            target(float(result.stats["leader_changes"]), label="leader changes")
            for label, score in result.stats["feedback"].items():
                target(score, label=label)
            target(float(new_states), label="new abstract states")
            if progress is not None:
                progress(number, result)
            if result.valid is False:
                state["failing"] = test
                if state["first"] is None:
                    state["first"] = clock() - started
                    if announcements is not None:
                        announcements.announce(test.to_json())
                raise CheckerFailed(", ".join(failing_checkers(result.results)) or "invalid")
            if result.valid != True:  # noqa: E712 - "unknown" is truthy
                state["unknown"] += 1
                reasons.update(unknown_reasons(result.results))
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    runner = given(strategy)(check_one)
    runner = settings(
        max_examples=examples, deadline=None, database=database, derandomize=False,
        suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    )(runner)
    if seed is not None:
        runner = hypothesis_seed(seed)(runner)
    try:
        with _shrink_budget(shrink_seconds, clock):
            runner()
    except (CheckerFailed, _SearchBudgetSpent):
        pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome = FuzzOutcome(examples=state["calls"], elapsed_s=clock() - started,
                          unknown=state["unknown"], announced=state["announced"],
                          unknown_reasons=reasons, coverage=coverage.summary(),
                          coverage_text=coverage.describe())
    failing: SimTest | None = state["failing"]
    if failing is None:
        return outcome
    outcome.seconds_to_first_failure = state["first"]
    save_failure(outcome, failing, store_dir)
    return outcome


def _import_what_a_campaign_imports() -> None:
    """Load the checkers and the report renderer before the search starts.

    Hypothesis mixes constants found in the loaded modules of the project into
    its draws (about one draw in twenty), and rescans when a module is added. A
    module first imported mid-campaign (the checkers at the first example, the
    renderer when a failure is saved) changed every later draw, so a seed's
    search depended on what had run before it in the process. With these loaded
    first, it depends on the seed and on the caller's own modules only.
    """
    for module in ("checker.linearizable", "checker.logorder", "checker.runner",
                   "reports.render"):
        importlib.import_module(module)


def save_failure(outcome: FuzzOutcome, test: SimTest, store_dir: Path) -> None:
    """Run the minimal failing test once more, traced and reported, and write repro.json."""
    traced = dataclasses.replace(
        test, cluster=dataclasses.replace(test.cluster, trace_messages=True))
    run_dir = store.create_run_dir(store_dir, test.name)
    result = simulate(traced, run_dir, report=True)
    outcome.failure = traced
    outcome.run_dir = run_dir
    outcome.results = result.results
    outcome.report = result.report
    outcome.faults = count_faults(traced.schedule)
    outcome.failing = failing_checkers(result.results)
    repro = traced.to_json()
    repro["expect"] = {
        "valid": result.valid,
        "failing_checkers": outcome.failing,
        "history_sha256": history_digest(run_dir),
        "faults": outcome.faults,
    }
    repro["coverage"] = outcome.coverage
    outcome.repro = run_dir / files.REPRO
    outcome.repro.write_text(json.dumps(repro, indent=2) + "\n", encoding="utf-8")


def load_repro(path: str | Path) -> tuple[SimTest, dict[str, Any]]:
    """A repro.json (or a simulated run's test.json) as a SimTest plus its expectations."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "cluster" not in data:
        raise ValueError(f"{path} is not a repro.json of splitbrain fuzz (no 'cluster')")
    expect = data.get("expect") or {}
    if not isinstance(expect, dict):
        raise ValueError(f"'expect' must be a JSON object, got {expect!r:.60}")
    return SimTest.from_json(data), dict(expect)
