"""One test run, end to end.

    setup → start cluster → wait for a leader
    → clients + nemesis for the time limit
    → heal everything → quiet period → final read of every key through the leader
    → final collection → checkers → results.json → report.html → exit code

Everything a run produces goes to its store directory as it happens
(``test.json`` first, so even a run killed in its first second explains
itself). The async part (:func:`execute`) owns every process and relay of
the run inside one nursery; the checkers and the report run afterwards,
outside Trio, on the files alone — exactly what ``splitbrain check RUN_DIR``
does later. The files and ``test.json``'s keys: docs/DESIGN.md, sections 7 and 8.

Size: ``RunConfig``, the plan and a run's phases in the order they happen, so a run
reads top to bottom like the diagram above; the parts it drives live in this package.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from harness.db.base import DBOptions, Unsupported, create_db
from harness.run import store
from harness.run.clients import ClientStats, HistoryRecorder, ProcessPool
from harness.run.cluster import RunClock, node_names, open_cluster
from harness.run.collect import Collector, ObservationWriter
from harness.run.workload import (
    DEFAULT_MIX,
    MIXED,
    RegisterWorkload,
    TxnWorkload,
    make_workload,
    op_keys,
    read_plan,
)
from splitbrain_common import exits, files

#: raft_impl nodes of a run snapshot every this many applied entries unless a
#: ``--node-arg=--snapshot-threshold=N`` says otherwise: at the default rate a 60 s
#: run commits about 3,000 entries, so every node takes snapshots several times and
#: a node that was down or cut off for a few seconds catches up by installing one.
#: (The node's own default, 10,000, would never snapshot in a run.)
DEFAULT_SNAPSHOT_THRESHOLD = 200


@dataclass
class RunConfig:
    db: str = "raft_impl"
    nodes: int = 5
    time_limit: float = 60.0
    rate: float = 100.0
    concurrency: int = 5
    keys: int = 5
    #: ``register`` (linearizability) or ``list-append`` / ``rw-register`` (transactions).
    workload_name: str = "register"
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    ops_per_key: int | None = None
    nemesis: list[str] = field(default_factory=list)
    nemesis_interval: float = 5.0
    nemesis_schedule: str | None = None
    net: str = "proxy"
    trace_messages: bool = True
    #: ``mixed`` (every linearizable read path of the system) or one read mode.
    read_mode: str = MIXED
    bugs: list[str] = field(default_factory=list)
    #: Extra words for every node's command line (see DBOptions.node_args).
    node_args: list[str] = field(default_factory=list)
    #: ``--db maelstrom``: the node command line.
    bin: str | None = None
    #: raft_impl's snapshot threshold for the run (None: the node's own default); a
    #: ``--snapshot-threshold`` among ``node_args`` wins, and is what test.json records.
    snapshot_threshold: int | None = DEFAULT_SNAPSHOT_THRESHOLD
    seed: int | None = None
    store: str = "store"
    test_name: str | None = None
    quiet_period: float = 2.0
    op_timeout: float = 1.0
    retry_indefinite: bool = False
    #: Share of the client processes that retry in-doubt operations in their
    #: session (all of them with retry_indefinite); only where sessions dedup.
    retry_share: float = 0.4
    #: Share of the client processes *pinned* to their own node: each of their
    #: operations goes first to that node (following a not-leader hint only within the
    #: operation), as Jepsen binds a client to a node; the others stay with the last
    #: leader they heard of. Without pinned processes every client ends up at the
    #: leader of the moment, so a deposed leader that still believes it leads is never
    #: asked anything, and its stale answers never reach the history.
    pin_share: float = 0.4
    attempt_timeout: float | None = None  # retry mode: default min(0.5, op_timeout / 2)
    leader_timeout: float = 10.0
    final_read_timeout: float = 15.0
    collect_interval: float = 1.0
    display: bool = False
    run_checkers: bool = True
    #: Linearizability search budget (seconds); past it the verdict is "unknown".
    check_timeout: float | None = 300.0
    render_report: bool = True
    command_line: list[str] = field(default_factory=list)

    def resolved_snapshot_threshold(self) -> int | None:
        """The threshold the nodes will use (``node_args`` first); None if not raft_impl."""
        if self.db != "raft_impl":
            self.snapshot_threshold = None
        elif any(word.startswith("--snapshot-threshold") for word in self.node_args):
            from harness.db.raft_impl import snapshot_threshold

            self.snapshot_threshold = snapshot_threshold(self.node_args)
        return self.snapshot_threshold

    def resolved_node_args(self) -> list[str]:
        """Words for every node: the run's snapshot threshold, then ``node_args``."""
        words = list(self.node_args)
        threshold = self.resolved_snapshot_threshold()
        if threshold is not None and not any(w.startswith("--snapshot-threshold") for w in words):
            words.insert(0, f"--snapshot-threshold={threshold}")
        return words

    def resolved_seed(self) -> int:
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(2**31)
        return self.seed

    def name(self) -> str:
        if self.test_name:
            return self.test_name
        if self.nemesis_schedule:
            faults = Path(self.nemesis_schedule).stem
        else:
            faults = ",".join(self.nemesis) or "no-nemesis"
        parts = [self.db, faults]
        if self.workload_name != "register":
            parts.append(self.workload_name)
        parts += [f"bug-{bug}" for bug in self.bugs]
        if self.read_mode != MIXED:
            parts.append(self.read_mode)
        return "-".join(parts)

    def workload(self) -> RegisterWorkload | TxnWorkload:
        return make_workload(
            self.workload_name,
            keys=self.keys,
            mix=self.mix,
            rate=self.rate,
            concurrency=self.concurrency,
            ops_per_key=self.ops_per_key,
            read_paths=read_plan(self.db, self.read_mode)[1],
        )

    def retry_slots(self) -> int:
        """How many worker slots retry in-doubt operations (at least one if any share)."""
        if self.retry_indefinite:
            return self.concurrency
        if self.retry_share <= 0:
            return 0
        return max(1, min(self.concurrency, round(self.retry_share * self.concurrency)))

    def pin_slots(self) -> int:
        """How many worker slots (the last ones) are pinned to their node (at least one if
        any share)."""
        if self.pin_share <= 0:
            return 0
        return max(1, min(self.concurrency, round(self.pin_share * self.concurrency)))


@dataclass
class RunOutcome:
    run_dir: Path
    exit_code: int
    results: dict[str, Any] | None = None
    interrupted: bool = False
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    unexpected_exits: list[str] = field(default_factory=list)
    heal_errors: list[str] = field(default_factory=list)
    #: Faults of the schedule that failed when applied (the run exits 2 if otherwise valid).
    fault_errors: list[str] = field(default_factory=list)
    #: Packages ``--nemesis all`` left out because this run cannot make them: name -> why.
    nemesis_left_out: dict[str, str] = field(default_factory=dict)
    headline: str | None = None  # what went wrong, in one sentence, when the run failed
    #: The store refused a write (full, read-only): the run stopped there.
    store_failed: bool = False
    #: What the run exercised (harness.run.coverage), also in coverage.json.
    coverage: dict[str, Any] | None = None


def unsupported_faults(config: RunConfig) -> dict[str, str]:
    """Fault -> why this run's network backend or database cannot make it, and what
    would: the network backends declare theirs (``harness.net.unsupported_faults``),
    a database lacks what its adapter does not implement (clock, lose-unfsynced)."""
    from harness.db.base import DB
    from harness.net import unsupported_faults as network_unsupported

    refused = dict(network_unsupported(config.net))
    try:
        # The read mode the run will give the DB ("mixed" is no adapter's own mode).
        db = create_db(config.db, DBOptions(read_mode=read_plan(config.db, config.read_mode)[0],
                                            bugs=tuple(config.bugs)))
    except Exception:  # the run itself says what is wrong with the database
        return refused
    if type(db).set_clock is DB.set_clock:
        refused["clock"] = f"--db {config.db} has no clock control; leave clock out"
    if type(db).lose_unfsynced is DB.lose_unfsynced:
        refused["lose-unfsynced"] = (f"--db {config.db} cannot drop unfsynced writes; "
                                     f"use kill instead")
    return refused


def plan_faults(config: RunConfig, nodes: list[str]) -> dict[str, str]:
    """Refuse, before anything starts, a fault this run could not make (UserError, one
    line naming the faults, why, and what would work), so no run records faults it
    never made. ``--nemesis all`` means every package this run can make: the others
    are left out of ``config.nemesis`` and returned (package -> why) to be reported.
    """
    from nemesis import schedule as schedules
    from nemesis.faults import history_f, one_way
    from splitbrain_common.errors import UserError

    refused = unsupported_faults(config)
    if config.nemesis_schedule:
        entries = schedules.load(config.nemesis_schedule, nodes)
        wanted = {entry["f"] for entry in entries if not history_f(entry).startswith("stop-")}
        if any(one_way(entry) for entry in entries):
            wanted.add("one-way")
    elif list(config.nemesis) == list(schedules.PACKAGES):  # "all"
        left_out = {name: refused[name] for name in config.nemesis if name in refused}
        config.nemesis = [name for name in config.nemesis if name not in refused]
        return left_out
    else:
        wanted = set(config.nemesis)
    cannot = sorted(wanted & set(refused))
    if cannot:
        reasons = sorted({refused[name] for name in cannot})
        names = ", ".join("one-way cuts" if name == "one-way" else name for name in cannot)
        raise UserError(f"cannot inject {names} in this run: {'; '.join(reasons)}")
    return {}


def build_schedule(config: RunConfig, nodes: list[str]) -> list[dict[str, Any]]:
    from nemesis import schedule as schedules

    if config.nemesis_schedule:
        return schedules.load(config.nemesis_schedule, nodes)
    rng = random.Random(config.resolved_seed() ^ 0x5EED)
    return schedules.generate(
        config.nemesis, nodes, config.time_limit, config.nemesis_interval, rng,
        one_way="one-way" not in unsupported_faults(config),
    )


def make_network(kind: str, run_dir: Path, seed: int, trace: bool, clock: RunClock,
                 db: Any = None) -> Any:
    """The network backend for ``--net``; None means direct connections. ``router``
    is the DB's own (``db.make_network``): its nodes send every message through it."""
    if kind == "none":
        return None
    if kind == "router":
        return db.make_network(seed, run_dir / files.MESSAGES if trace else None, clock.now_ns)
    if kind == "proxy":
        from harness.net.framing import FRAMINGS
        from harness.net.proxy import ProxyNetwork

        trace_path = run_dir / files.MESSAGES if trace else None
        return ProxyNetwork(
            rng=random.Random(seed ^ 0xBEEF), trace_path=trace_path, clock=clock.now_ns,
            framing=FRAMINGS[getattr(db, "peer_framing", "splitbrain")],
        )
    if kind == "netns":
        from harness.net.netns import NetnsNetwork

        return NetnsNetwork()
    raise ValueError(f"unknown network backend {kind!r}")


class RunState:
    """What the live display (and the summary) read while the run goes on."""

    def __init__(self, config: RunConfig, clock: RunClock) -> None:
        self.config = config
        self.clock = clock
        self.phase = "setup"
        self.stats = ClientStats()
        self.network_faults: dict[str, Any] = {}
        self.cluster: Any = None
        self.collector: Collector | None = None
        self.faults_started_at: float | None = None
        self.leader: str | None = None
        self.heal_errors: list[str] = []
        self.fault_errors: list[str] = []

    def observe(self, event: dict[str, Any]) -> None:
        self.stats.observe(event)
        if event.get("process") != "nemesis":
            return
        f = str(event.get("f", ""))
        if f.startswith("start-"):
            self.network_faults[f[len("start-") :]] = event.get("value")
        elif f.startswith("stop-"):
            self.network_faults.pop(f[len("stop-") :], None)
        elif f in ("heal-all",):
            self.network_faults.clear()

    def current_faults(self) -> list[str]:
        faults = sorted(self.network_faults)
        if self.cluster is not None:
            faults += self.cluster.current_faults()
        return faults

    def time_left(self) -> float | None:
        if self.faults_started_at is None:
            return None
        return max(0.0, self.faults_started_at + self.config.time_limit - trio.current_time())


async def execute(
    config: RunConfig, run_dir: Path, state: RunState, schedule: list[dict[str, Any]]
) -> dict[str, Any]:
    """The live part of a run; returns timing and count facts for test.json."""
    nodes = node_names(config.nodes)
    seed = config.resolved_seed()
    workload = config.workload()
    facts: dict[str, Any] = {}
    clock = state.clock
    recorder = HistoryRecorder(run_dir / files.HISTORY, clock)
    recorder.listeners.append(state.observe)
    observations = ObservationWriter(run_dir / files.OBSERVATIONS, clock)
    db = create_db(
        config.db,
        DBOptions(
            read_mode=read_plan(config.db, config.read_mode)[0],
            bugs=tuple(config.bugs),
            node_args=tuple(config.resolved_node_args()),
            retry_indefinite=config.retry_indefinite,
            attempt_timeout=config.attempt_timeout or min(0.5, config.op_timeout / 2),
            extra={"bin": config.bin} if config.bin else {},
        ),
    )
    collector = Collector(db, nodes, observations, interval=config.collect_interval)
    state.collector = collector
    network = make_network(config.net, run_dir, seed, config.trace_messages, clock, db)
    # A safety net, far above what a healthy run needs: a run never hangs forever.
    deadline = (
        2 * config.leader_timeout + config.time_limit + config.quiet_period
        + config.final_read_timeout + 180.0
    )
    try:
        with trio.fail_after(deadline):
            await _execute_inside(config, run_dir, state, db, network, collector, recorder,
                                  schedule, workload, facts)
    except trio.TooSlowError:
        message = f"the run did not finish within its {deadline:.0f} s deadline"
        raise RuntimeError(message) from None
    finally:
        recorder.close()
        observations.close()
        facts["stats"] = state.stats.to_json()
        facts["observations"] = observations.count
        facts["unexpected_node_exits"] = list(collector.unexpected_exits)
        # Why some observations are missing (e.g. etcd has no log dump): the
        # log-order checks then say unknown, and this says why.
        facts["unobservable"] = dict(collector.unsupported_reasons)
        # What could complain (the node-complaints checker says what it could not judge).
        facts["complaint_watch"] = {
            "events": bool(getattr(db, "pushes_events", False)),
            "patterns": [p.name for p in getattr(db, "complaint_patterns", ())],
        }
        facts["pushed"] = dict(collector.pushed)
        facts["heal_errors"] = state.heal_errors
        facts["fault_errors"] = state.fault_errors
    return facts


async def _execute_inside(
    config: RunConfig,
    run_dir: Path,
    state: RunState,
    db: Any,
    network: Any,
    collector: Collector,
    recorder: HistoryRecorder,
    schedule: list[dict[str, Any]],
    workload: RegisterWorkload | TxnWorkload,
    facts: dict[str, Any],
) -> None:
    nodes = node_names(config.nodes)
    async with trio.open_nursery() as outer:
        outer.start_soon(_terminate_on_sigterm)
        if config.display:
            from harness.run.display import live_display

            outer.start_soon(live_display, state)
        state.phase = "starting"
        started = trio.current_time()
        async with open_cluster(
            db,
            network,
            nodes,
            run_dir,
            on_event=collector.on_node_event,
            on_mark=collector.mark,
            leader_timeout=config.leader_timeout,
        ) as cluster:
            state.cluster = cluster
            facts["startup_seconds"] = round(trio.current_time() - started, 3)
            facts["first_leader"] = cluster.last_leader
            await _drive(config, cluster, db, recorder, collector, state, schedule, workload)
        state.phase = "done"
        outer.cancel_scope.cancel()


async def _drive(
    config: RunConfig,
    cluster: Any,
    db: Any,
    recorder: HistoryRecorder,
    collector: Collector,
    state: RunState,
    schedule: list[dict[str, Any]],
    workload: RegisterWorkload | TxnWorkload,
) -> None:
    from nemesis.executor import HealError, NemesisState, run_schedule

    nodes = cluster.nodes
    pool = ProcessPool(
        db,
        nodes,
        recorder,
        concurrency=workload.concurrency,
        op_timeout=config.op_timeout,
        stats=state.stats,
        retry_slots=config.retry_slots(),
        pin_slots=config.pin_slots(),
    )
    seed = config.resolved_seed()
    used_keys: list[str] = []

    def operations() -> Any:
        seen: set[Any] = set()
        for op in workload.operations(seed):
            for key in op_keys(op):
                if key not in seen:
                    seen.add(key)
                    used_keys.append(key)
            yield op

    async def nemesis() -> None:
        done = NemesisState()
        try:
            await run_schedule(
                schedule, cluster, recorder.write, state.clock,
                rng=random.Random(seed ^ 0xFA17), state=done,
            )
        except HealError as exc:
            # Recorded in the history by the executor; the harness heals
            # again below, and the checkers judge what happened.
            state.heal_errors.append(str(exc))
        finally:
            state.fault_errors = done.errors  # also the ones before a cancellation

    stop_collecting = trio.Event()
    async with trio.open_nursery() as background:
        background.start_soon(collector.run, stop_collecting)

        # -- faults and clients for the time limit ---------------------------
        state.phase = "faults"
        state.faults_started_at = trio.current_time()
        stop_clients = trio.Event()
        async with trio.open_nursery() as phase:
            phase.start_soon(pool.run_workers, operations(), workload.rate, stop_clients)
            phase.start_soon(nemesis)
            await trio.sleep(config.time_limit)
            stop_clients.set()

        # -- heal, quiet, final reads -------------------------------------------
        state.phase = "healing"
        await cluster.heal_all()
        state.phase = "quiet"
        await trio.sleep(config.quiet_period)
        with contextlib.suppress(trio.TooSlowError):
            await cluster.wait_for_leader(config.leader_timeout)
        state.phase = "final reads"
        await pool.final_reads(used_keys, config.final_read_timeout, leader=cluster.leader,
                               read_op=workload.final_read)
        await _await_convergence(cluster, db, within=10.0)
        collector.healed()
        state.phase = "final collection"
        stop_collecting.set()
    await collector.collect_once(full=True)
    await _dump_final_logs(db, nodes, cluster.run_dir)


async def _await_convergence(cluster: Any, db: Any, within: float) -> bool:
    """Wait until every node has applied the same index (digests are comparable then)."""
    with trio.move_on_after(within):
        while True:
            try:
                statuses = await db.statuses() if hasattr(db, "statuses") else {}
            except Unsupported:  # no status API: nothing to wait for
                return False
            applied = {s.get("applied") for s in statuses.values()}
            if len(statuses) == len(cluster.nodes) and len(applied) == 1:
                return True
            await trio.sleep(0.1)
    return False


async def _dump_final_logs(db: Any, nodes: list[str], run_dir: Path) -> None:
    for node in nodes:
        with contextlib.suppress(Exception):
            dump = await db.log(node)
            store.write_json(run_dir / files.NODES / node / files.NODE_FINAL_LOG, dump)


def describe_test(config: RunConfig, schedule: list[dict[str, Any]] | None) -> dict[str, Any]:
    data = asdict(config)
    data["test_name"] = config.name()
    data["workload"] = config.workload().to_json()
    # which processes retry in doubt: those of worker slots 0..retry_slots-1
    data["retry_slots"] = config.retry_slots()
    # which processes are pinned to their node: those of the last pin_slots worker slots
    data["pin_slots"] = config.pin_slots()
    data["nemesis_schedule_file"] = config.nemesis_schedule
    data["nemesis_schedule"] = schedule
    data["nodes"] = node_names(config.nodes)
    data["python"] = sys.version.split()[0]
    data["started_utc"] = store.utc_stamp()
    data.pop("display", None)
    return data


def check_run(run_dir: Path, budget: float | None = 300.0) -> dict[str, Any]:
    """Run every checker on the stored files (what ``splitbrain check`` does).

    ``checker.runner.run_all`` is the one place that knows every checker.
    """
    from checker.runner import run_all

    return run_all(run_dir, timeout=budget)


def report_and_headline(run_dir: Path, write_report: bool) -> tuple[str | None, str | None]:
    """Write report.html (if asked) and tell a failure in one sentence, as the report's
    first screen does, from one reading of the run: returns (headline, problem).

    A problem here is an error text, not a failed run: the history and the verdict
    are on disk already.
    """
    try:
        from reports.render import failure_headline, write_run_report

        if write_report:
            return write_run_report(run_dir)[1], None
        return failure_headline(run_dir), None
    except Exception as exc:
        return None, f"report failed: {type(exc).__name__}: {exc}"


def run_test(config: RunConfig) -> RunOutcome:
    """Run one test to its verdict. Ctrl-C stops it cleanly (history kept, exit 2)."""
    config.resolved_seed()
    config.resolved_snapshot_threshold()
    nodes = node_names(config.nodes)
    left_out = plan_faults(config, nodes)  # before the run directory: a refusal leaves none
    schedule = build_schedule(config, nodes)
    test = describe_test(config, schedule)
    if left_out:
        test["nemesis_left_out"] = left_out
    try:
        run_dir = store.create_run_dir(Path(config.store), config.name())
        store.write_json(run_dir / files.TEST_JSON, test)
    except OSError as exc:
        raise store.StoreError(
            f"cannot write to the store {config.store}: {exc.strerror or exc}"
        ) from None
    state = RunState(config, RunClock())
    outcome = RunOutcome(run_dir, exits.EXIT_UNKNOWN, nemesis_left_out=left_out)
    began = time.monotonic()
    try:
        facts = trio.run(execute, config, run_dir, state, schedule)
        test.update(facts)
        outcome.unexpected_exits = facts.get("unexpected_node_exits", [])
        outcome.heal_errors = facts.get("heal_errors", [])
        outcome.fault_errors = facts.get("fault_errors", [])
    except BaseException as exc:
        if _contains(exc, KeyboardInterrupt):
            outcome.interrupted = True
            test["interrupted"] = True
        elif _contains(exc, Exception) and not _contains(exc, (SystemExit, GeneratorExit)):
            problem = store.store_problem(exc)
            if problem is not None:
                # The writers stop at the first refused write and leave whole lines.
                outcome.store_failed = True
                outcome.error = (
                    f"the store could not be written ({problem}), so the run stopped "
                    f"after {time.monotonic() - began:.1f} s; what is on disk is whole: "
                    f"check it with `splitbrain check {run_dir}`"
                )
            else:
                outcome.error = "; ".join(_describe(leaf) for leaf in _leaves(exc))
            test["error"] = outcome.error
        else:
            raise
    outcome.timings["run_seconds"] = round(time.monotonic() - began, 3)
    outcome.stats = state.stats.to_json()
    test["finished_utc"] = store.utc_stamp()
    test.setdefault("stats", outcome.stats)
    try:
        store.write_json(run_dir / files.TEST_JSON, test)
    except OSError as exc:
        if store.store_problem(exc) is None:
            raise
        # test.json as written at the start stays: the configuration, for check.
        outcome.store_failed = True
        outcome.error = outcome.error or (
            f"the store could not be written ({exc.strerror}): {files.TEST_JSON} keeps "
            f"what it said at the start"
        )
    if outcome.store_failed:
        return outcome
    outcome.coverage = _write_coverage(run_dir)
    if outcome.interrupted or outcome.error:
        return outcome
    if config.run_checkers:
        checked = time.monotonic()
        try:
            results = check_run(run_dir, config.check_timeout)
        except Exception as exc:  # a checker bug must not cost the run its store
            results = {
                "valid": "unknown",
                "checkers": {},
                "error": f"checkers failed: {type(exc).__name__}: {exc}",
            }
        outcome.timings["check_seconds"] = round(time.monotonic() - checked, 3)
        outcome.results = results
        outcome.exit_code = exits.for_validity(results.get("valid"))
        try:
            store.write_json(run_dir / files.RESULTS, results)
        except OSError as exc:
            if store.store_problem(exc) is None:
                raise
            outcome.error = f"{files.RESULTS} not written: {exc.strerror}"
            return outcome
    if config.render_report or outcome.exit_code == 1:
        outcome.headline, problem = report_and_headline(run_dir, config.render_report)
        if problem is not None:
            outcome.error = problem
    return outcome


def _write_coverage(run_dir: Path) -> dict[str, Any] | None:
    """coverage.json, before the report reads it; a failure costs only the summary."""
    from harness.run.coverage import write_run_coverage

    try:
        return write_run_coverage(run_dir)
    except Exception as exc:
        print(f"splitbrain: coverage not computed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _contains(exc: BaseException, kind: type | tuple[type, ...]) -> bool:
    return any(isinstance(leaf, kind) for leaf in _leaves(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def _terminate_on_sigterm() -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C: orderly cleanup, history kept."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            raise KeyboardInterrupt(f"signal {signum}")


def summary(outcome: RunOutcome) -> str:
    """One paragraph for the terminal."""
    lines = [f"run: {outcome.run_dir}"]
    stats = outcome.stats
    if stats:
        lines.append(
            f"ops: {stats.get('ok', 0)} ok, {stats.get('fail', 0)} fail, "
            f"{stats.get('info', 0)} info"
        )
    if outcome.interrupted:
        lines.append(
            f"interrupted: the history so far is on disk; check it with "
            f"`splitbrain check {outcome.run_dir}`"
        )
    if outcome.results is not None:
        verdict = outcome.results.get("valid")
        lines.append(f"verdict: {json.dumps(verdict)}")
        advisory = set(outcome.results.get("advisory") or ())
        for name, result in (outcome.results.get("checkers") or {}).items():
            line = f"  {name}: {json.dumps(result.get('valid'))}"
            if name in advisory:
                line += " (advisory: this database cannot feed it)"
            if result.get("valid") == "unknown" and result.get("reason"):
                line += f" — {result['reason']}"
            lines.append(line)
        from checker.results import failing_checkers

        failing = failing_checkers(outcome.results)
        if failing:
            lines.append("failing: " + ", ".join(failing))
    if outcome.coverage is not None:
        from harness.run.coverage import describe

        lines += [f"covered: {line}" for line in describe(outcome.coverage)]
    if outcome.headline:
        lines.append(f"evidence: {outcome.headline}")
    report = outcome.run_dir / files.REPORT
    if report.is_file():
        lines.append(f"report: {report}")
    if outcome.unexpected_exits:
        lines.append(
            "warning: nodes exited by themselves (see nodes/*/stderr.log): "
            + ", ".join(outcome.unexpected_exits)
        )
    for problem in outcome.heal_errors:
        lines.append(f"warning: {problem}")
    for name, why in outcome.nemesis_left_out.items():
        lines.append(f"note: --nemesis all left out {name}: {why}")
    if outcome.fault_errors:
        lines.append(f"error: {len(outcome.fault_errors)} fault(s) of the schedule failed, so "
                     f"the run did not test what it planned (exit 2 unless invalid):")
        lines += [f"  {problem}" for problem in outcome.fault_errors]
    if outcome.error:
        lines.append(f"error: {outcome.error}")
    return "\n".join(lines)
