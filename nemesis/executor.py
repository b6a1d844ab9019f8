"""Run a nemesis schedule against a cluster, recording every fault in the history.

The events' ``f`` names and values per fault: docs/DESIGN.md, "Nemesis events".

``run_schedule`` sleeps until each entry's ``at`` (seconds since it was
called), resolves the entry's targets at that moment (the leader is asked from
``control.leader()`` then, not when the schedule was written), applies it, and
records a nemesis event::

    {"time": ns, "process": "nemesis", "type": "info", "f": "start-partition",
     "value": {"shape": "halves", "grudge": {...}, "components": [[...], [...]]}}

``f`` names come from ``nemesis.faults.history_f`` (start-/stop- pairs, kill /
start, pause / resume, bump-clock, ...). The event is recorded *after* the
fault took effect, so every operation after it in the history ran under the
fault. A failing step (a node that will not start) is recorded with an
``"error"`` and the schedule goes on: one stuck node must not freeze the rest
of the run; it is also listed in ``NemesisState.errors``, and the harness
then refuses to call the run valid (it did not test what its schedule says).
An entry of a composite scenario carries its ``"compose"`` name into the event.

An entry with a ``when`` trigger is armed at its ``at`` (in a background
task; the entries after it keep their own times): it waits for the next
election won (``nemesis.api.next_election``: the cluster's role events, or
polling ``leader()`` for a control without them), or the other event it names
(``nemesis.api.next_event``), and is applied ``delay`` s after it, with the
node the event named as its target ``"trigger"``. Triggered entries wait in
order, as in the simulator: those with the same ``at`` (and event) share one
election; a later group starts waiting only once the
group before it saw its election (or gave up), so a chain of groups acts on
successive elections. With no election within ``within`` s (the group's first
entry's) an entry is recorded as skipped::

    {..., "f": "start-partition",
     "value": {"requested": {...}, "skipped": "no new leader within 10.0 s"}}

The schedule ends with its last entry: triggers still waiting then (for the
election or out their delay) are cancelled and recorded as skipped, before
the final heal; one already applying finishes first. So a schedule should
end with a timed entry (the generated ones end with a heal at the time limit).

Whatever happens — the schedule ends, an error escapes, the run is cancelled
(Ctrl-C, SIGTERM, time-out) — ``heal_all`` runs last in a shielded cancel scope
with its own deadline, so the cluster is whole again before the harness does
its final reads. A cancelled schedule means the run is shutting down: then the
heal only undoes what is quick and local (the network, paused nodes) and does
*not* start killed nodes or reset clocks. A node started then could not even
announce that it is ready (the tasks reading its output are being cancelled
too), so the harness would wait out a start timeout per node only to kill it a
moment later, and write spurious heal errors into the history; the
``heal-all`` event says what it left (``"shutdown": true, "left_down": [...]``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from nemesis.api import ClusterControl, StartInterrupted, TriggerUnsupported, next_event
from nemesis.faults import (
    LEADER_SHAPES,
    NODE_FAULTS,
    PROBABILITY_FAULTS,
    TRIGGER_NODE,
    history_f,
    trigger_key,
    trigger_missed,
    validate_schedule,
)
from nemesis.shapes import components, connectivity_graph, grudge_from_graph

Record = Callable[[dict[str, Any]], object]

#: Seconds the heal of a cancelled schedule may take (network and resumes only):
#: the harness promises to exit within a few seconds of Ctrl-C or SIGTERM.
SHUTDOWN_HEAL_TIMEOUT = 2.0
Clock = Callable[[], int]


class HealError(RuntimeError):
    """heal_all could not make the cluster whole; the message lists what failed."""


@dataclass
class NemesisState:
    """What the nemesis has done and not yet undone (so heal_all undoes exactly that)."""

    killed: set[str] = field(default_factory=set)
    #: Killed nodes a start is bringing back (until it is ready): a kill may still
    #: land on them (a crash during recovery), a second start of one is a no-op.
    starting: set[str] = field(default_factory=set)
    #: Kills (and lose-unfsynced) per node so far: a start that finishes after a kill
    #: that began later must not count the node as up.
    kills: dict[str, int] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    skewed: set[str] = field(default_factory=set)
    partitioned: bool = False
    message_faults: set[str] = field(default_factory=set)
    strobes: list[tuple[trio.CancelScope, list[str]]] = field(default_factory=list)
    #: Faults that could not be applied, one line each ("at 12.5 s kill: ..."): the run
    #: did not test what its schedule says, so the harness must not call it valid.
    errors: list[str] = field(default_factory=list)


def _event(clock: Clock, f: str, value: Any, compose: str | None = None) -> dict[str, Any]:
    event = {"time": clock(), "process": "nemesis", "type": "info", "f": f, "value": value}
    if compose is not None:
        event["compose"] = compose  # the composite scenario the entry belongs to
    return event


async def resolve_target(target: str | list[str], candidates: Sequence[str],
                         control: ClusterControl, rng: random.Random,
                         trigger: str | None = None) -> list[str]:
    """The nodes a target means right now, among ``candidates`` (e.g. live nodes for kill);
    ``trigger`` is the node the entry's trigger named (target ``"trigger"``)."""
    eligible = sorted(candidates)
    if isinstance(target, list):
        return [node for node in target if node in eligible]
    if target == TRIGGER_NODE:
        return [trigger] if trigger in eligible else []
    if target == "all":
        return eligible
    if target == "leader":
        leader = await control.leader()
        return [leader] if leader in eligible else []
    if not eligible:
        return []
    if target == "one":
        return [rng.choice(eligible)]
    size = len(control.nodes)
    wanted = (size - 1) // 2 if target == "minority" else size // 2 + 1
    return sorted(rng.sample(eligible, min(wanted, len(eligible))))


def _candidates(f: str, control: ClusterControl, state: NemesisState) -> list[str]:
    nodes = list(control.nodes)
    if f in ("kill", "lose-unfsynced"):
        down = state.killed - state.starting
        return [node for node in nodes if node not in down]
    if f == "start":
        return [node for node in nodes if node in state.killed]
    if f == "pause":
        return [node for node in nodes if node not in state.killed | state.paused]
    if f == "resume":
        return [node for node in nodes if node in state.paused]
    # clock: only nodes that can answer an admin request
    return [node for node in nodes if node not in state.killed | state.paused]


def _links(value: dict[str, Any]) -> list[tuple[str, str]] | None:
    links = value.get("links")
    return None if links is None else [(src, dst) for src, dst in links]


@dataclass
class _TriggerGroup:
    """Triggered entries due at one ``at``: they share one election."""

    at: float
    when: dict[str, Any]
    previous: _TriggerGroup | None
    decided: trio.Event = field(default_factory=trio.Event)
    skipped: str = ""
    #: The node the event named (the new leader, the deposed one, ...), once decided.
    node: str | None = None
    #: Cancelled when the schedule ends (an entry already applying is not).
    watch: trio.CancelScope = field(default_factory=trio.CancelScope)


class _Executor:
    def __init__(self, control: ClusterControl, record: Record, clock: Clock,
                 rng: random.Random, nursery: trio.Nursery, state: NemesisState) -> None:
        self.control, self.record, self.clock = control, record, clock
        self.rng, self.nursery, self.state = rng, nursery, state

    async def apply(self, entry: dict[str, Any], trigger: str | None = None) -> None:
        rng = random.Random(entry["seed"]) if "seed" in entry else self.rng
        f = entry["f"]
        try:
            value = await self._apply(f, entry["value"], rng, trigger)
        except Exception as exc:  # recorded, and the schedule goes on (see module doc)
            error = f"{type(exc).__name__}: {exc}"
            value = {"requested": entry["value"], "error": error}
            self.state.errors.append(f"{history_f(entry)} (schedule at {entry['at']:g} s): "
                                     f"{error}")
        self.record(_event(self.clock, history_f(entry), value, entry.get("compose")))

    async def arm(self, entry: dict[str, Any], group: _TriggerGroup,
                  pending: set[trio.CancelScope],
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wait for ``group``'s election, then apply ``entry`` its ``delay`` later.

        Cancelling its scope (in ``pending`` until the entry applies) skips the entry.
        """
        skipped = "the schedule ended first"
        with trio.CancelScope() as scope:
            pending.add(scope)
            try:
                task_status.started()
                await group.decided.wait()
                if group.skipped:
                    skipped = group.skipped
                else:
                    await trio.sleep(entry["when"]["delay"])
                    pending.discard(scope)
                    skipped = ""
            finally:
                pending.discard(scope)
                if skipped:  # also when the run itself is cancelled
                    self.record(_event(self.clock, history_f(entry),
                                       {"requested": entry["value"], "skipped": skipped},
                                       entry.get("compose")))
        if not skipped:
            await self.apply(entry, group.node)

    async def await_trigger(self, group: _TriggerGroup,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                            ) -> None:
        """The group's event: the next one after the group before it saw its own.

        Started with ``nursery.start``: once started it is already waiting (or
        queued), so an election right after the group's ``at`` is not missed.
        """
        when = group.when
        with group.watch:
            task_status.started()
            if group.previous is not None:
                await group.previous.decided.wait()
            with trio.move_on_after(when["within"]) as window:
                try:
                    group.node = await next_event(self.control, when)
                except TriggerUnsupported as exc:
                    group.skipped = str(exc)
            if window.cancelled_caught:
                group.skipped = trigger_missed(when)
            group.decided.set()

    async def _apply(self, f: str, value: Any, rng: random.Random,
                     trigger: str | None = None) -> Any:
        """Apply one fault; ``trigger`` is the node the entry's trigger named, if any."""
        state, network = self.state, self.control.network
        if f == "partition":
            return await self._partition(value, rng, trigger)
        if f == "heal":
            await network.heal()
            state.partitioned = False
            return None
        if f in NODE_FAULTS:
            return await self._node_fault(f, value, rng, trigger)
        if f in PROBABILITY_FAULTS:
            setter = {"loss": network.set_loss, "duplicate": network.set_duplicate,
                      "reorder": network.set_reorder}[f]
            await setter(value["p"], _links(value))
            (state.message_faults.add if value["p"] > 0 else state.message_faults.discard)(f)
            return value
        if f == "delay":
            await network.set_delay(value["mean"], value["jitter"], _links(value))
            on = value["mean"] > 0 or value["jitter"] > 0
            (state.message_faults.add if on else state.message_faults.discard)(f)
            return value
        assert f == "clock"
        return await self._clock(value, rng, trigger)

    async def _partition(self, value: dict[str, Any], rng: random.Random,
                         trigger: str | None) -> dict[str, Any]:
        nodes = list(self.control.nodes)
        if "grudge" in value:
            grudge = {dst: set(srcs) for dst, srcs in value["grudge"].items()}
            description: dict[str, Any] = {"grudge": value["grudge"]}
        else:
            shape = value["shape"]
            wants_leader = shape in LEADER_SHAPES or shape == "lagging-majority"
            leader = await self.control.leader() if wants_leader else None
            if shape in LEADER_SHAPES and leader is None:
                return {"shape": shape, "note": "no leader right now: nothing cut"}
            node = value.get("node")
            if node == TRIGGER_NODE:
                if trigger not in nodes:
                    return {**value, "note": "the trigger named no node: nothing cut"}
                node = trigger
            graph = connectivity_graph(shape, nodes, rng, leader=leader, node=node)
            grudge = grudge_from_graph(graph)
            description = {"shape": shape, "components": components(graph),
                           "grudge": {dst: sorted(srcs) for dst, srcs in grudge.items() if srcs}}
            if leader is not None:
                description["leader"] = leader
            if node is not None:
                description["node"] = node
        await self.control.network.partition(grudge)
        self.state.partitioned = True
        return description

    async def _node_fault(self, f: str, target: Any, rng: random.Random,
                          trigger: str | None) -> dict[str, Any]:
        control, state = self.control, self.state
        nodes = await resolve_target(target, _candidates(f, control, state), control, rng,
                                     trigger)
        action = {"kill": control.kill, "start": control.start, "pause": control.pause,
                  "resume": control.resume, "lose-unfsynced": control.lose_unfsynced}[f]
        if f == "start":
            return await self._start(target, nodes)
        done = []
        for node in nodes:
            if f in ("kill", "lose-unfsynced"):
                # Counted before it lands: a start waiting for readiness meanwhile
                # must see that it was killed.
                state.kills[node] = state.kills.get(node, 0) + 1
            await action(node)
            done.append(node)
            if f in ("kill", "lose-unfsynced"):
                state.killed.add(node)
                state.paused.discard(node)
                state.skewed.discard(node)  # a restarted node comes back with a true clock
            elif f == "pause":
                state.paused.add(node)
            else:
                state.paused.discard(node)
        return {"target": target, "nodes": done}

    async def _start(self, target: Any, nodes: list[str]) -> dict[str, Any]:
        """Start the nodes all at once (see :func:`start_node` for the outcomes).

        At once, as after a power failure: one after the other, each waiting to be
        ready (a second or more on a loaded machine), the first ones back would hold
        elections among themselves long before the last is up, and a schedule that
        restarts every voter of an election together would not test what it says.
        A start that raised is raised again once every other start has finished.
        A control whose starts are instantaneous (the simulator's; it has no
        ``concurrent_starts``) starts them in order, which keeps its runs as they were.
        """
        if not getattr(self.control, "concurrent_starts", False):
            value: dict[str, Any] = {"target": target, "nodes": []}
            for node in nodes:
                outcome = await start_node(self.control, self.state, node)
                if outcome is None:
                    value["nodes"].append(node)
                else:
                    value.setdefault("not_started", {})[node] = outcome
            return value
        outcomes: dict[str, str | None] = {}
        failures: list[Exception] = []

        async def start(node: str) -> None:
            try:
                outcomes[node] = await start_node(self.control, self.state, node)
            except Exception as exc:  # raised below, after the others finished
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(start, node)
        if failures:
            raise failures[0]
        value = {"target": target, "nodes": []}
        for node in nodes:
            if outcomes[node] is None:
                value["nodes"].append(node)
            else:
                value.setdefault("not_started", {})[node] = outcomes[node]
        return value


    async def _clock(self, value: dict[str, Any], rng: random.Random,
                     trigger: str | None) -> dict[str, Any]:
        control, state = self.control, self.state
        if value.get("reset"):
            for scope, strobed in state.strobes:
                scope.cancel()
                self.record(_event(self.clock, "stop-clock-strobe",
                                   {"nodes": strobed, "reason": "reset"}))
            state.strobes.clear()
            reset = sorted(state.skewed & set(_candidates("clock", control, state)))
            for node in reset:
                await control.set_clock(node, 0.0, 1.0)
                state.skewed.discard(node)
            return {"nodes": reset}
        nodes = await resolve_target(value["targets"], _candidates("clock", control, state),
                                     control, rng, trigger)
        if "strobe" in value:
            strobe = value["strobe"]
            scope = await self.nursery.start(self._strobe, nodes, strobe)
            state.strobes.append((scope, nodes))
            return {"targets": value["targets"], "nodes": nodes, **strobe}
        for node in nodes:
            await control.set_clock(node, value["offset"], value["rate"])
            state.skewed.add(node)
        return {"targets": value["targets"], "nodes": nodes,
                "offset": value["offset"], "rate": value["rate"]}

    async def _strobe(self, nodes: list[str], strobe: dict[str, float],
                      task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
                      ) -> None:
        """Flip the nodes' clocks between true time and +delta every period, for duration."""
        control, state = self.control, self.state
        with trio.CancelScope() as scope:
            task_status.started(scope)
            state.skewed.update(nodes)
            deadline = trio.current_time() + strobe["duration"]
            ahead = False
            while trio.current_time() < deadline:
                ahead = not ahead
                for node in nodes:
                    if node in state.killed or node in state.paused:
                        continue
                    try:
                        await control.set_clock(node, strobe["delta"] if ahead else 0.0, 1.0)
                    except Exception:  # a node dying mid-strobe is the other faults' business
                        continue
                await trio.sleep(strobe["period"])
        if scope.cancelled_caught:
            return  # stopped by a clock reset (recorded there) or by the run ending
        state.strobes = [(s, n) for s, n in state.strobes if s is not scope]
        for node in nodes:
            if node not in state.killed and node not in state.paused:
                try:
                    await control.set_clock(node, 0.0, 1.0)
                    state.skewed.discard(node)
                except Exception:
                    continue
        self.record(_event(self.clock, "stop-clock-strobe",
                           {"nodes": nodes, "reason": "duration elapsed"}))


async def start_node(control: ClusterControl, state: NemesisState, node: str) -> str | None:
    """Start one node the nemesis killed: None once it is up, else why it is not a start.

    A start of a node another start is already bringing back is a no-op
    (``"already starting"``, recorded as such): two spawns of one node fight
    over its ports. A kill that lands before the node is ready is a fault of
    the schedule like any other (a crash during recovery), not a failure of
    the start: ``"killed while starting"``, the node stays down, and no fault
    error is recorded. Other failures raise.
    """
    if node in state.starting:
        return "already starting"
    kills = state.kills.get(node, 0)
    state.starting.add(node)
    try:
        noop = await control.start(node)
    except StartInterrupted:
        return "killed while starting"
    finally:
        state.starting.discard(node)
    if state.kills.get(node, 0) != kills:
        return "killed while starting"  # the kill landed just as it became ready
    state.killed.discard(node)
    return noop


async def heal_all(control: ClusterControl, state: NemesisState | None = None,
                   record: Record | None = None, clock: Clock | None = None,
                   *, shutdown: bool = False) -> list[str]:
    """Make the cluster whole: heal, message faults off, resume, start, clocks true.

    With a ``state`` only what the nemesis did is undone; without one every
    node is resumed and started (ClusterControl makes both no-ops when there is
    nothing to do). Every step is tried even if an earlier one fails; the
    failures are returned (and recorded) as strings. With ``shutdown`` (the run
    is ending and its nodes are about to be killed) killed nodes stay down and
    clocks stay skewed: starting a node or asking one to reset its clock is
    slow, and nothing would use the result (see the module docstring).
    """
    errors: list[str] = []
    done: dict[str, Any] = {}

    async def step(name: str, action: Callable[[], Any]) -> None:
        try:
            await action()
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    if state is not None:
        for scope, _ in state.strobes:
            scope.cancel()
        state.strobes.clear()
    network = control.network
    await step("heal network", network.heal)
    await step("reset message faults", network.reset_faults)
    to_resume = sorted(state.paused) if state is not None else list(control.nodes)
    to_start = sorted(state.killed) if state is not None else list(control.nodes)
    to_reset = sorted(state.skewed) if state is not None else list(control.nodes)
    if shutdown:
        if state is not None:
            done.update(shutdown=True, left_down=to_start, left_skewed=to_reset)
        else:
            done.update(shutdown=True)
        to_start, to_reset = [], []
    for node in to_resume:
        await step(f"resume {node}", lambda node=node: control.resume(node))
    not_started: dict[str, str] = {}

    async def start(node: str) -> None:
        if state is None:
            await control.start(node)
            return
        outcome = await start_node(control, state, node)
        if outcome is not None:
            not_started[node] = outcome

    for node in to_start:
        await step(f"start {node}", lambda node=node: start(node))
    for node in to_reset:
        await step(f"reset clock of {node}", lambda node=node: control.set_clock(node, 0.0, 1.0))
    failed = {error.split(":")[0] for error in errors}
    if state is not None:
        state.partitioned = False
        state.message_faults.clear()
        state.paused -= {node for node in to_resume if f"resume {node}" not in failed}
        state.killed -= {node for node in to_start
                         if f"start {node}" not in failed and node not in not_started}
        state.skewed -= {node for node in to_reset if f"reset clock of {node}" not in failed}
    done.update(resumed=to_resume, started=to_start, clocks_reset=to_reset)
    if not_started:
        done["not_started"] = not_started
    if errors:
        done["errors"] = errors
    if record is not None and clock is not None:
        record(_event(clock, "heal-all", done))
    return errors


async def run_schedule(schedule: Sequence[dict[str, Any]], control: ClusterControl,
                       record: Record, clock: Clock, *, rng: random.Random | None = None,
                       heal_timeout: float = 60.0,
                       state: NemesisState | None = None) -> NemesisState:
    """Apply the schedule in time, then heal everything (also on error or cancellation).

    ``record(event)`` receives each nemesis event (without "index": the history
    writer numbers events); ``clock()`` gives the history time in ns since the
    run began. Raises HealError if the final heal could not make the cluster
    whole (not when the run was cancelled: the cancellation wins). Pass ``state`` to
    read what was done (``state.errors``: faults that failed) even when it raises.
    """
    entries = validate_schedule(list(schedule), list(control.nodes))
    state = state if state is not None else NemesisState()
    rng = rng if rng is not None else random.Random(0)
    errors: list[str] = []
    start = trio.current_time()
    cancelled = False
    try:
        async with trio.open_nursery() as nursery:  # holds clock strobes
            executor = _Executor(control, record, clock, rng, nursery, state)
            pending: set[trio.CancelScope] = set()  # triggers not yet applying
            group: _TriggerGroup | None = None
            groups: list[_TriggerGroup] = []
            async with trio.open_nursery() as triggers:
                for entry in entries:
                    await trio.sleep_until(start + entry["at"])
                    if "when" not in entry:
                        await executor.apply(entry)
                        continue
                    if (group is None or group.at != entry["at"]
                            or trigger_key(group.when) != trigger_key(entry["when"])):
                        group = _TriggerGroup(entry["at"], entry["when"], group)
                        groups.append(group)
                        await triggers.start(executor.await_trigger, group)
                    await triggers.start(executor.arm, entry, group, pending)
                for scope in list(pending):  # still waiting when the schedule ends
                    scope.cancel()
                for waiting in groups:  # elections no entry waits for any more
                    waiting.watch.cancel()
            nursery.cancel_scope.cancel()  # strobes still running end with the schedule
    except BaseException as exc:
        cancelled = _is_cancellation(exc)
        raise
    finally:
        # Cancelled from outside (the scope around us is cancelled, or Ctrl-C landed
        # here): the run is shutting down.
        shutdown = cancelled or trio.current_effective_deadline() == -math.inf
        if shutdown:
            heal_timeout = min(heal_timeout, SHUTDOWN_HEAL_TIMEOUT)
        with trio.CancelScope(shield=True, deadline=trio.current_time() + heal_timeout) as heal:
            errors = await heal_all(control, state, record, clock, shutdown=shutdown)
        if heal.cancelled_caught:
            errors.append(f"heal did not finish within {heal_timeout} s")
    if errors:
        raise HealError("the cluster could not be made whole: " + "; ".join(errors))
    return state


def _is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` (or a leaf of its group) is a cancellation or a Ctrl-C."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_cancellation(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.Cancelled | KeyboardInterrupt)
