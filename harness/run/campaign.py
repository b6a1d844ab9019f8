"""``splitbrain campaign``: real runs back to back for M minutes, rotating configurations.

A single run tests one configuration; a bug that needs a 3-node cluster, a
lease read, a snapshot install or a kill during a partition hides from every
run that lacks it. A campaign is what a nightly CI job calls: it plans a
sequence of runs from one campaign seed, each drawing the axes that change
what a run exercises — cluster size, read mode, snapshot threshold, in-doubt
retries, fault mix and interval, run length, election timing, client processes
and how many are pinned to their node — independently of each other (weighted
toward the revealing values, every value within a dozen runs), and each with
its own seed drawn from the campaign seed, so ``--seed S`` repeats the
campaign's plans.

Every run is an ordinary ``splitbrain run``: the campaign builds its command
line first and parses it with the run command's own parser, so the
``splitbrain run …`` line printed for a failing run is exactly what ran.

Exit codes (the contract of every command): 1 at the first invalid run
(with its evidence, report and reproduction line; ``--keep-going`` runs on
to the end), 2 when a run could not complete or a verdict was unknown, or
the campaign was interrupted before finding anything, 0 when every run was
valid. ``campaign.json`` (in ``STORE/campaigns/<UTC stamp>/``) is rewritten
after every run, so a killed campaign keeps what it did (its keys: docs/DESIGN.md,
"Store layout").
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.run import store
from splitbrain_common import files
from splitbrain_common.exits import EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID

# -- the rotation -----------------------------------------------------------------
# Every axis is drawn per run from a seeded stream of its own, so no two axes move in
# lockstep: the earlier co-prime cycles (read mode every 3 runs, fault mix every 11)
# paired the same values for the first runs of a seed, and in seeds 1-2 every hung
# leader fell in a read-index run (no lease reads), so lease-too-long was never
# exposed. An axis draws from a *deck*: each value as many times as its weight,
# shuffled by the axis's stream and dealt out before the next shuffle. So the
# revealing values are common (a weight is a share of the runs), and every value of
# an axis comes within one deck's length of runs: 12 runs for the fault mixes, at most
# 7 for every other axis, whatever the seed.

#: Each axis is a tuple of values with their weights in the deck.
Weighted = tuple[tuple[Any, int], ...]

NODE_COUNTS: Weighted = ((5, 2), (3, 1), (7, 1))
#: ``mixed`` uses read-index and lease reads in one run (and so both paths near every
#: fault): three runs in five; each single mode one in five.
READ_MODES: Weighted = (("mixed", 3), ("lease", 1), ("read-index", 1))
#: None: the run's default threshold (``harness.run.run.DEFAULT_SNAPSHOT_THRESHOLD``, 200);
#: others are passed as ``--node-arg=--snapshot-threshold=N``. The nodes push every
#: committed entry before compacting it, so low thresholds are judged too.
#: Low ones make nodes snapshot, and lagging followers install snapshots, every few
#: seconds; high ones keep long logs (and long catch-ups by AppendEntries).
SNAPSHOT_THRESHOLDS: Weighted = ((None, 1), (50, 1), (1000, 1), (100, 1), (500, 1))
RETRY_SHARES: Weighted = ((0.4, 2), (1.0, 2), (0.0, 1), (0.6, 1), (0.2, 1))
#: Composed mixes (several kinds overlapping) are all of them; the ones that hang
#: leaders (pause) are 7 runs in 12, ``all`` a quarter of the runs. Every mix comes
#: within 12 runs.
FAULT_MIXES: Weighted = (
    ("all", 3),
    ("clock,partition,pause", 1),
    ("partition,pause,kill,delay", 1),
    ("pause,kill,loss", 1),
    ("partition,pause", 1),
    ("partition,kill", 1),
    ("partition,loss,delay", 1),
    ("kill,lose-unfsynced,partition", 1),
    ("partition,duplicate,reorder,delay", 1),
    ("partition,clock,kill", 1),
)
#: Systems that speak their own peer protocol get faults that need no relays.
NODE_FAULT_MIXES: Weighted = (("kill", 1), ("pause", 1), ("kill,pause", 1))
#: raft_impl's election timing (``--node-arg=--election-timeout=MIN,MAX``); None is the
#: node's default (0.30-0.60 s). Faster timeouts make elections, and the windows right
#: after them, several times as frequent under the same faults; a narrow window makes
#: candidates time out together, so split votes and chains of terms happen, which a
#: 300 ms spread against ~1 ms round trips never gives.
ELECTION_TIMEOUTS: Weighted = ((None, 1), ("0.15,0.3", 1), ("0.3,0.32", 1), ("0.2,0.8", 1),
                               ("0.1,0.2", 1))
#: Share of client processes pinned to their own node (``--pin-share``): 0 leaves every
#: process with the last leader it heard of, so a deposed leader is never asked; 1 sends
#: every operation to its process's node first.
PIN_SHARES: Weighted = ((0.4, 1), (1.0, 1), (0.2, 1), (0.6, 1), (0.0, 1))
#: Client processes (``--concurrency``) at the same total rate: more processes spread over
#: more nodes (every node has pinned clients), more operations in flight at a fault.
CONCURRENCIES: Weighted = ((5, 1), (10, 1), (16, 1))
NEMESIS_INTERVALS: Weighted = ((2.0, 1), (3.0, 1), (5.0, 1))
RUN_SECONDS: Weighted = ((20.0, 1), (30.0, 1), (45.0, 1), (60.0, 1))
#: Seconds a run costs beyond its time limit (startup, quiet period, final reads,
#: checking), used to fit the last run into the campaign's minutes.
RUN_OVERHEAD = 12.0
#: No run shorter than this: faults need a few seconds to do anything.
MIN_RUN_SECONDS = 5.0


def values(axis: Weighted) -> set[Any]:
    """The distinct values of an axis."""
    return {value for value, _ in axis}


def deck(axis: Weighted, rng: random.Random) -> Iterator[Any]:
    """Endless draws of one axis: each value ``weight`` times per shuffled deck, so a
    value's share of the runs is its weight's share and no value waits longer than
    two decks (one, counted from a deck's start)."""
    cards = [value for value, weight in axis for _ in range(weight)]
    while True:
        rng.shuffle(cards)
        yield from cards


@dataclass(frozen=True)
class RunPlan:
    """One run of a campaign: its position, its seed and its configuration axes."""

    index: int
    seed: int
    nodes: int
    read_mode: str
    snapshot_threshold: int | None
    retry_share: float
    nemesis: str
    nemesis_interval: float
    time_limit: float
    election_timeout: str | None = None
    pin_share: float = 0.4
    concurrency: int = 5

    def run_args(self, *, db: str, bugs: Sequence[str], store_dir: str,
                 workload: str = "register") -> list[str]:
        """The ``splitbrain run`` words (without the program name) of this plan; the
        campaign's ``--workload`` is fixed for all its runs, not rotated."""
        words = ["run", "--db", db, "--nodes", str(self.nodes),
                 "--time-limit", f"{self.time_limit:g}",
                 "--nemesis", self.nemesis, "--nemesis-interval", f"{self.nemesis_interval:g}",
                 "--read-mode", self.read_mode, "--retry-share", f"{self.retry_share:g}",
                 "--pin-share", f"{self.pin_share:g}", "--concurrency", str(self.concurrency)]
        if self.snapshot_threshold is not None:
            words.append(f"--node-arg=--snapshot-threshold={self.snapshot_threshold}")
        if self.election_timeout is not None:
            words.append(f"--node-arg=--election-timeout={self.election_timeout}")
        if workload != "register":
            words += ["--workload", workload]
        for bug in bugs:
            words += ["--bug", bug]
        return [*words, "--seed", str(self.seed), "--store", store_dir]

    def axes(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes, "read_mode": self.read_mode,
            "snapshot_threshold": self.snapshot_threshold, "retry_share": self.retry_share,
            "nemesis": self.nemesis, "nemesis_interval": self.nemesis_interval,
            "time_limit": self.time_limit, "election_timeout": self.election_timeout,
            "pin_share": self.pin_share, "concurrency": self.concurrency,
        }


def rotation(seed: int, *, db: str = "raft_impl", nodes: int | None = None) -> Iterator[RunPlan]:
    """The endless, seed-determined sequence of run plans of a campaign.

    Each axis deals from its own deck with its own stream (named after the axis), so
    fixing one axis (``nodes``, another database) leaves every other draw of a seed as
    it was. ``nodes`` fixes the cluster size; other databases than raft_impl keep their
    own read mode (``mixed`` resolves to theirs), snapshot threshold and election
    timing, and retry only where their sessions allow it (the run decides that).
    """
    own = db == "raft_impl"
    axes: dict[str, Weighted] = {
        "nodes": NODE_COUNTS if nodes is None else ((nodes, 1),),
        "read_mode": READ_MODES if own else (("mixed", 1),),
        "snapshot_threshold": SNAPSHOT_THRESHOLDS if own else ((None, 1),),
        "retry_share": RETRY_SHARES,
        "nemesis": FAULT_MIXES if own else NODE_FAULT_MIXES,
        "nemesis_interval": NEMESIS_INTERVALS,
        "time_limit": RUN_SECONDS,
        "election_timeout": ELECTION_TIMEOUTS if own else ((None, 1),),
        "pin_share": PIN_SHARES,
        "concurrency": CONCURRENCIES,
    }
    decks = {name: deck(axis, random.Random(f"campaign-{name}:{seed}"))
             for name, axis in axes.items()}
    seeds = random.Random(f"campaign:{seed}")
    index = 0
    while True:
        yield RunPlan(index=index, seed=seeds.randrange(2**31),
                      **{name: next(cards) for name, cards in decks.items()})
        index += 1


def fit_time_limit(wanted: float, remaining: float, cap: float | None) -> float | None:
    """The time limit a run gets with ``remaining`` campaign seconds left, or None
    when no worthwhile run fits any more."""
    limit = min(wanted, remaining - RUN_OVERHEAD)
    if cap is not None:
        limit = min(limit, cap)
    if limit < MIN_RUN_SECONDS:
        return None
    return float(round(limit))


# -- verdicts -------------------------------------------------------------------------


def run_status(outcome: Any) -> str:
    """valid / invalid / unknown (a verdict nobody could give) / error / interrupted."""
    if outcome.interrupted:
        return "interrupted"
    if outcome.error and outcome.results is None:
        return "error"
    return {EXIT_VALID: "valid", EXIT_INVALID: "invalid"}.get(outcome.exit_code, "unknown")


def campaign_exit_code(statuses: Sequence[str], *, interrupted: bool = False) -> int:
    """1 if any run was invalid; else 2 if one was not valid or the campaign stopped
    early; 0 only when every run it planned to do was valid (and there was one)."""
    if "invalid" in statuses:
        return EXIT_INVALID
    if interrupted or not statuses or any(s != "valid" for s in statuses):
        return EXIT_UNKNOWN
    return EXIT_VALID


# -- the campaign ------------------------------------------------------------------------


@dataclass
class CampaignConfig:
    minutes: float
    db: str = "raft_impl"
    nodes: int | None = None
    bugs: list[str] = field(default_factory=list)
    seed: int | None = None
    store: str = "store"
    #: ``--workload`` of every run (register, list-append, rw-register).
    workload: str = "register"
    keep_going: bool = False
    #: Cap on every run's time limit (tests and quick smoke campaigns).
    max_run_seconds: float | None = None
    command_line: list[str] = field(default_factory=list)


@dataclass
class RunRecord:
    plan: RunPlan
    command: list[str]
    status: str = "unknown"
    exit_code: int = EXIT_UNKNOWN
    run_dir: str | None = None
    report: str | None = None
    failing: list[str] = field(default_factory=list)
    evidence: str | None = None
    error: str | None = None
    seconds: float = 0.0
    started_minute: float = 0.0
    coverage: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.plan.index, "seed": self.plan.seed, "config": self.plan.axes(),
            "command": self.command, "status": self.status, "exit_code": self.exit_code,
            "run_dir": self.run_dir, "report": self.report, "failing": self.failing,
            "evidence": self.evidence, "error": self.error, "seconds": round(self.seconds, 1),
            "started_minute": round(self.started_minute, 2), "coverage": self.coverage,
        }


@dataclass
class Campaign:
    config: CampaignConfig
    seed: int
    directory: Path
    runs: list[RunRecord] = field(default_factory=list)
    started_utc: str = field(default_factory=store.utc_stamp)
    finished_utc: str | None = None
    interrupted: bool = False
    stopped_because: str | None = None

    @property
    def exit_code(self) -> int:
        return campaign_exit_code([r.status for r in self.runs], interrupted=self.interrupted)

    @property
    def first_invalid(self) -> RunRecord | None:
        return next((r for r in self.runs if r.status == "invalid"), None)

    def to_json(self) -> dict[str, Any]:
        from harness.run.coverage import merge

        first = self.first_invalid
        statuses = [r.status for r in self.runs]
        return {
            "campaign": {
                "minutes": self.config.minutes, "seed": self.seed, "db": self.config.db,
                "nodes": self.config.nodes, "bugs": self.config.bugs,
                "keep_going": self.config.keep_going,
                "max_run_seconds": self.config.max_run_seconds,
                "command_line": self.config.command_line,
            },
            "started_utc": self.started_utc,
            "finished_utc": self.finished_utc,
            "exit_code": self.exit_code,
            "status": ("invalid" if first else "interrupted" if self.interrupted
                       else {EXIT_VALID: "valid"}.get(self.exit_code, "unknown")),
            "stopped_because": self.stopped_because,
            "counts": {s: statuses.count(s) for s in sorted(set(statuses))},
            "first_invalid": None if first is None else {
                "index": first.plan.index, "minutes": round(first.started_minute
                                                            + first.seconds / 60, 2),
                "failing": first.failing, "report": first.report, "command": first.command,
            },
            "coverage": merge(r.coverage for r in self.runs if r.coverage is not None),
            "runs": [r.to_json() for r in self.runs],
        }

    def save(self) -> Path:
        path = self.directory / files.CAMPAIGN_JSON
        store.write_json(path, self.to_json())
        return path


def reproduce_line(command: Sequence[str]) -> str:
    import shlex

    return shlex.join(["splitbrain", *command])


def run_campaign(
    config: CampaignConfig,
    *,
    execute: Callable[[list[str]], Any],
    on_start: Callable[[RunRecord], None] | None = None,
    on_run: Callable[[RunRecord], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Campaign:
    """Run the campaign to its end, its first invalid run, or Ctrl-C.

    ``execute`` runs one ``splitbrain run`` argument list and returns its
    RunOutcome: the CLI passes one that parses it with the run command's own
    parser (so the printed line repeats the run exactly), tests pass fakes to
    check the loop without clusters. It is a parameter so that this layer
    never imports the CLI above it.
    """
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    store_dir = Path(config.store)
    directory = _campaign_dir(store_dir)
    campaign = Campaign(config, seed, directory)
    began = clock()
    deadline = began + config.minutes * 60
    campaign.save()
    try:
        for plan in rotation(seed, db=config.db, nodes=config.nodes):
            limit = fit_time_limit(plan.time_limit, deadline - clock(), config.max_run_seconds)
            if limit is None:
                if campaign.runs:
                    campaign.stopped_because = "time is up"
                    break
                limit = MIN_RUN_SECONDS  # a campaign always makes at least one run
            plan = _with_time_limit(plan, limit)
            record = RunRecord(plan, plan.run_args(db=config.db, bugs=config.bugs,
                                                   store_dir=str(store_dir),
                                                   workload=config.workload))
            record.started_minute = (clock() - began) / 60
            campaign.runs.append(record)
            if on_start is not None:
                on_start(record)
            started = clock()
            try:
                outcome = execute(record.command)
            except Exception as exc:  # an internal error is "could not complete", never 1
                record.seconds = clock() - started
                record.status, record.error = "error", f"{type(exc).__name__}: {exc}"
            else:
                record.seconds = clock() - started
                _record_outcome(record, outcome, store_dir)
            campaign.save()
            if on_run is not None:
                on_run(record)
            if record.status == "interrupted":
                campaign.interrupted = True
                campaign.stopped_because = "interrupted"
                break
            if record.status == "invalid" and not config.keep_going:
                campaign.stopped_because = "invalid run"
                break
            if record.status == "error" and not config.keep_going:
                campaign.stopped_because = "a run could not complete"
                break
    except KeyboardInterrupt:
        campaign.interrupted = True
        campaign.stopped_because = "interrupted"
        last = campaign.runs[-1] if campaign.runs else None
        if last is not None and last.run_dir is None:  # stopped before it had an outcome
            last.status = "interrupted"
    campaign.finished_utc = store.utc_stamp()
    campaign.save()
    _update_index(store_dir)
    return campaign


def _update_index(store_dir: Path) -> None:
    """List the campaign in ``store/index.html`` (what ``splitbrain serve`` shows)."""
    try:
        from reports.render import update_store_index

        update_store_index(store_dir)
    except Exception as exc:  # the index is a convenience; campaign.json is written
        print(f"splitbrain: store index not updated: {type(exc).__name__}: {exc}",
              file=sys.stderr)


def _with_time_limit(plan: RunPlan, limit: float) -> RunPlan:
    import dataclasses

    return dataclasses.replace(plan, time_limit=limit)


def _campaign_dir(store_dir: Path) -> Path:
    base = store_dir / files.CAMPAIGNS
    base.mkdir(parents=True, exist_ok=True)
    stamp = store.utc_stamp()
    directory, suffix = base / stamp, 1
    while True:
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            suffix += 1
            directory = base / f"{stamp}-{suffix}"


def _record_outcome(record: RunRecord, outcome: Any, store_dir: Path) -> None:
    from checker.results import failing_checkers

    record.status = run_status(outcome)
    record.exit_code = outcome.exit_code
    record.error = outcome.error
    record.evidence = outcome.headline
    record.coverage = outcome.coverage
    record.failing = failing_checkers(outcome.results) if outcome.results else []
    if record.status == "unknown" and record.error is None:
        record.error = unknown_reason(outcome)
    run_dir = Path(outcome.run_dir)
    record.run_dir = _relative(run_dir, store_dir)
    report = run_dir / files.REPORT
    record.report = str(report) if report.is_file() else None


def unknown_reason(outcome: Any) -> str:
    """Why a run's verdict is unknown, in one line: what the undecided checkers said,
    faults that failed to apply, nodes that exited by themselves."""
    reasons: list[str] = []

    def walk(name: str, result: Any) -> None:
        if not isinstance(result, dict):
            return
        if result.get("valid") == "unknown" and result.get("reason"):
            reasons.append(f"{name}: {result['reason']}")
        for child, inner in (result.get("checkers") or {}).items():
            walk(f"{name}.{child}" if name else child, inner)

    results = outcome.results or {}
    walk("", results)
    if results.get("error"):
        reasons.append(str(results["error"]))
    reasons += [f"fault failed: {e}" for e in results.get("fault_errors") or ()]
    if outcome.unexpected_exits:
        reasons.append("nodes exited by themselves: " + ", ".join(outcome.unexpected_exits))
    text = "; ".join(reasons) or "the checkers could not decide"
    return text if len(text) <= 300 else text[:297] + "..."


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


# -- output ------------------------------------------------------------------------


def start_line(record: RunRecord) -> str:
    plan = record.plan
    snap = plan.snapshot_threshold or "default"
    return (f"run {plan.index + 1} at {record.started_minute:.1f} min: {plan.nodes} nodes, "
            f"{plan.read_mode} reads, snapshot {snap}, retry {plan.retry_share:g}, "
            f"{plan.nemesis} every {plan.nemesis_interval:g} s, {plan.time_limit:g} s, "
            f"election timeout {plan.election_timeout or 'default'}, "
            f"{plan.concurrency} clients ({plan.pin_share:g} pinned), seed {plan.seed}")


def progress_line(record: RunRecord) -> str:
    text = f"run {record.plan.index + 1}: {record.status} in {record.seconds:.0f} s"
    if record.failing:
        text += f", failing: {', '.join(record.failing)}"
    if record.run_dir:
        text += f" ({record.run_dir})"
    return text


def summary_table(campaign: Campaign) -> Any:
    """A rich table of the runs: configuration, verdict and what each covered."""
    from rich.table import Table

    table = Table(title=f"campaign seed {campaign.seed} · {len(campaign.runs)} runs",
                  title_justify="left")
    for name in ("#", "verdict", "nodes", "reads", "snapshot", "retry", "clients / pinned",
                 "faults / interval",
                 "election t/o", "s", "ops ok", "elections", "overlaps", "snapshots", "lag",
                 "seed"):
        numeric = name in ("#", "nodes", "snapshot", "retry", "s", "ops ok", "elections",
                           "overlaps", "snapshots", "lag", "seed")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    styles = {"valid": "green", "invalid": "bold red"}
    for record in campaign.runs:
        plan, cov = record.plan, record.coverage or {}
        table.add_row(
            str(plan.index + 1), f"[{styles.get(record.status, 'yellow')}]{record.status}[/]",
            str(plan.nodes), plan.read_mode, str(plan.snapshot_threshold or "default"),
            f"{plan.retry_share:g}", f"{plan.concurrency} / {plan.pin_share:g}",
            f"{plan.nemesis} / {plan.nemesis_interval:g} s",
            plan.election_timeout or "default", f"{plan.time_limit:g}",
            str((cov.get("ops") or {}).get("ok", "-")),
            str(cov.get("elections", "-")), str(sum((cov.get("compositions") or {}).values())),
            str(cov.get("snapshots", "-")), str(cov.get("max_follower_lag", "-")),
            str(plan.seed),
        )
    return table


def summary_lines(campaign: Campaign) -> list[str]:
    """The campaign's verdict and coverage, and for a failure how to repeat it."""
    from harness.run.coverage import describe, merge

    data = campaign.to_json()
    counts = ", ".join(f"{n} {s}" for s, n in data["counts"].items()) or "no runs"
    lines = [f"campaign: {campaign.directory / files.CAMPAIGN_JSON}",
             f"runs: {counts}" + (f" (stopped: {campaign.stopped_because})"
                                  if campaign.stopped_because else "")]
    covered = [r.coverage for r in campaign.runs if r.coverage is not None]
    if covered:
        lines += [f"covered: {line}" for line in describe(merge(covered))]
    first = campaign.first_invalid
    if first is not None:
        lines.append(f"invalid: run {first.plan.index + 1} after "
                     f"{data['first_invalid']['minutes']:.1f} min, failing "
                     f"{', '.join(first.failing) or '?'}")
        if first.evidence:
            lines.append(f"evidence: {first.evidence}")
        if first.report:
            lines.append(f"report: {first.report}")
        lines.append(f"repeat: {reproduce_line(first.command)}")
    for record in campaign.runs:
        if record.status in ("error", "unknown"):
            why = record.error or "the checkers could not decide"
            where = f" ({record.run_dir})" if record.run_dir else ""
            lines.append(f"{record.status}: run {record.plan.index + 1}{where}: {why}")
    verdict = {EXIT_VALID: "valid", EXIT_INVALID: "invalid"}.get(campaign.exit_code, "unknown")
    lines.append(f"verdict: {verdict}")
    return lines
