"""Hypothesis strategies for simulated tests: public API for users' own properties.

A drawn nemesis schedule is a list of *faults*, each one interval: a start
entry at ``at`` and the entry that undoes it ``duration`` later (heal, start,
resume, p = 0, delay 0, clock reset). Shrinking removes whole faults and moves
times and values toward simple ones, so a failing case shrinks to the few
faults that matter. Times are multiples of 50 ms (integers underneath), which
shrink far better than floats. Every entry that makes random choices carries
its own seed, so removing one fault does not change what the others do.

Example, in a user's suite::

    from hypothesis import given, settings
    from harness.sim import simulate
    from harness.sim.strategies import sim_tests

    @settings(max_examples=50, deadline=None)
    @given(sim_tests(bugs=("commit-old-term",)))
    def test_raft_is_linearizable(tmp_path_factory, test):
        assert simulate(test, tmp_path_factory.mktemp("run")).valid is not False
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

from harness.sim.config import READ_MODES, SimClusterConfig, SimTest, SimWorkload
from nemesis.faults import DEFAULT_TRIGGER_WITHIN, SHAPES

T = TypeVar("T")

#: The granularity of drawn times, in seconds.
TICK = 0.05
#: Fault kinds a drawn schedule may use (the nemesis packages of a real run).
PACKAGES = ("partition", "kill", "pause", "loss", "delay", "duplicate", "reorder", "clock",
            "lose-unfsynced")
#: Faults that act on messages, link by link.
MESSAGE_FAULTS = ("loss", "delay", "duplicate", "reorder")
#: Faults that stop a node (undone by start or resume).
NODE_FAULTS = ("kill", "lose-unfsynced", "pause")
#: Entries that undo a fault rather than start one (not counted as faults).
_UNDO = ("heal", "start", "resume")


#: Shapes of schedule (see :func:`schedules`) and how often each is drawn. What
#: exposes one bug or another is not a fault but a situation: faults scattered
#: over the run find most; Figure 8 needs a *chain* of elections whose winners are
#: cut off at the right instants; a forgotten vote needs a *group* of faults on one
#: election (its voter crashed as the winner takes office); lost or stale commits
#: need the network misbehaving everywhere (a *backdrop*) while leaders are cut
#: off at drawn times. One search draws all four, so it needs no hint of the bug.
STYLES: tuple[tuple[str, int], ...] = (("scattered", 4), ("chain", 4), ("group", 2),
                                       ("backdrop", 3))
#: Per style, how often each fault kind is drawn (a kind outside the caller's
#: ``packages`` never is). Chains and groups wait for elections, which only
#: partitions and node faults can; their faults are mostly cuts around a leader
#: (a chain is a sequence of deposed winners). Against a backdrop the message
#: faults are already on: the other faults are mostly leader isolations.
KIND_WEIGHTS: dict[str, dict[str, int]] = {
    "scattered": dict.fromkeys(PACKAGES, 1),
    "chain": {"partition": 10, "kill": 1, "pause": 1, "lose-unfsynced": 1},
    "group": {"partition": 3, "kill": 3, "lose-unfsynced": 2, "pause": 1},
    "backdrop": {"partition": 5, "kill": 1, "pause": 1, "lose-unfsynced": 1, "clock": 1},
}
#: How often each partition shape is drawn: cutting off the leader of the moment
#: (Jepsen's partition-leader) is what most leadership bugs take, so it is drawn as
#: often as all the others together.
SHAPE_WEIGHTS: dict[str, int] = {shape: 1 for shape in SHAPES} | {"isolate-leader": 5}
#: In a chain, whose point is to depose one winner after another, three in four.
CHAIN_SHAPE_WEIGHTS: dict[str, int] = {shape: 1 for shape in SHAPES} | {"isolate-leader": 15}
#: A chain or group longer than this shrinks poorly (removing one link moves every
#: later one to another election), so it is kept short from the start.
MAX_CHAIN = 5


def weighted(choices: Sequence[tuple[T, int]]) -> st.SearchStrategy[T]:
    """One of ``choices`` with probability proportional to its weight (shrinks toward
    the first)."""
    expanded = [value for value, weight in choices for _ in range(weight) if weight > 0]
    if not expanded:
        raise ValueError("weighted() needs at least one positive weight")
    return st.sampled_from(expanded)


def count_faults(schedule: Sequence[dict[str, Any]]) -> int:
    """How many entries of a schedule start a fault (heals and resets are not faults)."""
    count = 0
    for entry in schedule:
        f, value = entry["f"], entry.get("value")
        if f in _UNDO:
            continue
        if f in ("loss", "duplicate", "reorder") and not value.get("p"):
            continue
        if f == "delay" and not (value.get("mean") or value.get("jitter")):
            continue
        if f == "clock" and value.get("reset"):
            continue
        count += 1
    return count


def targets(nodes: Sequence[str]) -> st.SearchStrategy[Any]:
    """A nemesis target: a word, or one named node."""
    return st.one_of(st.sampled_from(["one", "leader", "minority", "majority"]),
                     st.sampled_from(list(nodes)).map(lambda node: [node]))


def _links(nodes: Sequence[str]) -> st.SearchStrategy[list[list[str]] | None]:
    """Every link, or the links into and out of one node."""
    def around(node: str) -> list[list[str]]:
        others = [other for other in nodes if other != node]
        return [[node, o] for o in others] + [[o, node] for o in others]
    return st.one_of(st.none(), st.sampled_from(list(nodes)).map(around))


def _probability(low: float, high: float) -> st.SearchStrategy[float]:
    steps = round((high - low) * 100)
    return st.integers(0, steps).map(lambda k: round(high - k / 100, 2))


def triggers(required: bool | None = None) -> st.SearchStrategy[dict[str, Any] | None]:
    """No trigger (what shrinking prefers), or "the next election won" plus 0-12 ms:
    the few round trips right after an election, while a new leader's first entries
    are in flight (simulated links take 0.5-2 ms each way, an fsync up to 2 ms).
    Half the delays are 0 (the instant of the election, before the winner sends
    anything), the rest 1-12 ms. ``required`` True always draws a trigger, False
    never does."""
    delays = st.one_of(st.just(0), st.integers(1, 12))
    trigger = delays.map(lambda ms: {"event": "new-leader", "delay": ms / 1000,
                                     "within": DEFAULT_TRIGGER_WITHIN})
    if required is None:
        return st.one_of(st.none(), trigger)
    return trigger if required else st.none()


def _timed(entry: dict[str, Any], when: dict[str, Any] | None) -> dict[str, Any]:
    return entry if when is None else {**entry, "when": when}


def _kinds(style: str, packages: Sequence[str]) -> list[tuple[str, int]]:
    """The weighted fault kinds of ``style`` within ``packages`` (the scattered
    weights when the style's own kinds are all excluded)."""
    table = KIND_WEIGHTS[style]
    kinds = [(kind, table[kind]) for kind in packages if table.get(kind)]
    return kinds or [(kind, 1) for kind in packages]


def _shapes(nodes: Sequence[str], shapes: Sequence[str] | None,
            style: str = "scattered") -> list[tuple[str, int]]:
    fitting = [s for s in (shapes or SHAPES)
               if len(nodes) >= 3 or s not in ("majorities-ring", "bridge")]
    weights = CHAIN_SHAPE_WEIGHTS if style == "chain" else SHAPE_WEIGHTS
    return [(shape, weights.get(shape, 1)) for shape in fitting]


@st.composite
def faults(draw: st.DrawFn, nodes: Sequence[str], time_limit: float,
           packages: Sequence[str] = PACKAGES,
           shapes: Sequence[str] | None = None, undo: bool = True,
           triggered: bool | None = None, style: str = "scattered") -> list[dict[str, Any]]:
    """One fault: its start entry and the entry that undoes it (none without ``undo``:
    the final heal does). Partitions and node faults may wait for an election
    (``when``); their undo entries keep their times. Kinds and shapes are drawn
    with the weights of ``style`` (:data:`KIND_WEIGHTS`, :data:`SHAPE_WEIGHTS`)."""
    entries = draw(_fault(nodes, time_limit, packages, shapes, triggered, style))
    return entries if undo else entries[:1]


@st.composite
def _fault(draw: st.DrawFn, nodes: Sequence[str], time_limit: float,
           packages: Sequence[str], shapes: Sequence[str] | None,
           triggered: bool | None, style: str = "scattered") -> list[dict[str, Any]]:
    slots = max(1, round(time_limit / TICK))
    at = draw(st.integers(0, slots - 1)) * TICK
    duration = draw(st.integers(1, slots)) * TICK
    end = round(min(at + duration, time_limit), 3)
    at = round(at, 3)
    if triggered and _can_wait(packages):  # only cuts and node faults wait for elections
        packages = [kind for kind in packages if kind == "partition" or kind in NODE_FAULTS]
    kind = draw(weighted(_kinds(style, packages)))
    seed = draw(st.integers(0, 2**16))
    if kind == "partition":
        shape = draw(weighted(_shapes(nodes, shapes, style)))
        when = draw(triggers(triggered))
        return [_timed({"at": at, "f": "partition", "value": {"shape": shape}, "seed": seed},
                       when),
                {"at": end, "f": "heal", "value": None}]
    if kind in NODE_FAULTS:
        target = draw(targets(nodes))
        when = draw(triggers(triggered))
        undo = {"at": end, "f": "resume" if kind == "pause" else "start", "value": "all"}
        return [_timed({"at": at, "f": kind, "value": target, "seed": seed}, when), undo]
    if kind in ("loss", "duplicate", "reorder"):
        p = draw(_probability(0.05, 0.5))
        return [{"at": at, "f": kind, "value": {"p": p, "links": draw(_links(nodes))}},
                {"at": end, "f": kind, "value": {"p": 0.0, "links": None}}]
    if kind == "delay":
        mean = draw(st.integers(1, 20)) * 0.01
        return [{"at": at, "f": "delay",
                 "value": {"mean": mean, "jitter": round(mean / 2, 3),
                           "links": draw(_links(nodes))}},
                {"at": end, "f": "delay", "value": {"mean": 0.0, "jitter": 0.0, "links": None}}]
    assert kind == "clock"
    target = draw(targets(nodes))
    if draw(st.booleans()):
        value: dict[str, Any] = {"targets": target,
                                 "offset": draw(st.integers(-20, 20)) * 0.1,
                                 "rate": draw(st.sampled_from([1.0, 0.5, 2.0, 1.5, 0.8]))}
    else:
        value = {"targets": target, "strobe": {
            "delta": draw(st.integers(1, 20)) * 0.05,
            "period": draw(st.integers(1, 10)) * 0.01,
            "duration": round(max(end - at, TICK), 3)}}
    return [{"at": at, "f": "clock", "value": value, "seed": seed},
            {"at": end, "f": "clock", "value": {"reset": True}}]


def _can_wait(packages: Sequence[str]) -> bool:
    return any(kind == "partition" or kind in NODE_FAULTS for kind in packages)


@st.composite
def schedules(draw: st.DrawFn, nodes: Sequence[str], time_limit: float,
              packages: Sequence[str] = PACKAGES, max_faults: int = 8,
              shapes: Sequence[str] | None = None, undo: bool | None = None,
              style: str | None = None) -> list[dict[str, Any]]:
    """A schedule of up to ``max_faults`` overlapping faults, sorted by time, in one
    of the :data:`STYLES` (drawn with their weights unless ``style`` names one):

    - ``scattered``: faults at drawn times, some waiting for an election.
    - ``chain``: the first fault is untimed and every other one waits for an
      election: the first deposes a leader, each later one strikes the next
      winner (triggered entries wait in order), a chain of elections.
    - ``group``: the first fault is untimed and every other one is a member of
      one group (see :func:`fault_groups`): all wait for the same election, the
      one after the first fault, and strike its winner and the nodes around it
      at their own delays. Without ``undo`` a group's crashed or paused nodes
      still come back at their drawn times (only partitions and message faults
      stay): what a group sets up usually plays out after a restart.
    - ``backdrop``: the message faults are drawn by :func:`backdrops` (on every
      link for the whole run) and at least one of the other faults is drawn, at
      a drawn time rather than on an election (the backdrop sets up the
      situation; the moment it has built up is a matter of time, not of an
      election).

    ``undo`` False keeps every fault until the final heal (a later partition
    replaces an earlier one), so a sequence of faults is not broken up by heals
    in between; None draws it (mostly True for scattered faults, mostly False
    for the others, which set up one situation step by step). Chains and
    groups hold at most :data:`MAX_CHAIN` faults.

    The final heal is not included: the simulator (like a real run) always
    makes the cluster whole at the time limit.
    """
    styles = [(name, weight) for name, weight in STYLES
              if name in ("scattered", "backdrop") or _can_wait(packages)]
    if style is None:
        style = draw(weighted(styles))
    elif style not in KIND_WEIGHTS:
        raise ValueError(f"style must be one of {', '.join(KIND_WEIGHTS)}, not {style!r}")
    elif style in ("chain", "group") and not _can_wait(packages):
        style = "scattered"  # nothing in ``packages`` can wait for an election
    if undo is None:
        undo = draw(weighted([(True, 3), (False, 1)] if style == "scattered"
                             else [(False, 3), (True, 1)]))
    if style in ("chain", "group"):
        max_faults = min(max_faults, MAX_CHAIN)
    if style == "chain" and max_faults >= 1:
        first = draw(faults(nodes, time_limit, packages, shapes, undo, triggered=False,
                            style=style))
        chained = draw(st.lists(
            faults(nodes, time_limit, packages, shapes, undo, triggered=True, style=style),
            max_size=max_faults - 1))
        drawn = [first, *chained]
    elif style == "group" and max_faults >= 1:
        first = draw(faults(nodes, time_limit, packages, shapes, triggered=False,
                            style=style))
        members = (draw(fault_groups(nodes, time_limit, first[0]["at"], packages, shapes,
                                     max_size=max_faults - 1))
                   if max_faults > 1 else [])
        drawn = [_restarting(fault, undo) for fault in (first, *members)]
    elif style == "backdrop" and max_faults >= 1:
        drawn = draw(backdrops(time_limit, packages, undo))[:max_faults]
        others = [kind for kind in packages if kind not in MESSAGE_FAULTS]
        if others and len(drawn) < max_faults:
            drawn += draw(st.lists(faults(nodes, time_limit, others, shapes, undo,
                                          triggered=False, style=style),
                                   min_size=1, max_size=max_faults - len(drawn)))
    else:
        drawn = draw(st.lists(faults(nodes, time_limit, packages, shapes, undo),
                              max_size=max_faults))
    entries = [entry for pair in drawn for entry in pair]
    return sorted(entries, key=lambda entry: entry["at"])
@st.composite
def backdrops(draw: st.DrawFn, time_limit: float, packages: Sequence[str] = PACKAGES,
              undo: bool = True) -> list[list[dict[str, Any]]]:
    """Message faults as a backdrop: at most one of each kind in ``packages``, each on
    every link from the start to the end of the run.

    Some bugs need the network misbehaving everywhere while something else happens
    at the right moment (truncate-on-append: appends overtaken by newer ones on
    whichever link leads to the next leader, then the leader cut off). Drawn as
    ordinary faults, such a backdrop takes several faults on single links at the
    right times, which the shrinker cannot merge; here each kind is one fault that
    is present (three times in four) or, as shrinking prefers, absent. A delay is
    10-50 ms, well under the election timeout, so leaders still hold office."""
    drawn = []
    for kind in packages:
        if kind not in MESSAGE_FAULTS or draw(st.integers(0, 3)) == 0:
            continue
        if kind == "delay":
            mean = draw(st.integers(1, 5)) * 0.01
            value: dict[str, Any] = {"mean": mean, "jitter": round(mean / 2, 3), "links": None}
            off: dict[str, Any] = {"mean": 0.0, "jitter": 0.0, "links": None}
        else:
            value = {"p": draw(_probability(0.05, 0.5)), "links": None}
            off = {"p": 0.0, "links": None}
        fault = [{"at": 0.0, "f": kind, "value": value},
                 {"at": round(time_limit, 3), "f": kind, "value": off}]
        drawn.append(fault if undo else fault[:1])
    return drawn


@st.composite
def fault_groups(draw: st.DrawFn, nodes: Sequence[str], time_limit: float, after: float,
                 packages: Sequence[str] = PACKAGES, shapes: Sequence[str] | None = None,
                 undo: bool = True, max_size: int = 3) -> list[list[dict[str, Any]]]:
    """One to ``max_size`` faults that all wait for the same election: their start
    entries share one ``at`` (0-10 ticks after ``after``, so the group is armed
    before the election a fault at ``after`` brings about) and each carries its own
    trigger delay; the entries undoing them keep their durations. Some bugs need
    several things done to one election at once (cut its winner off before its
    first append *and* crash its voter); separate triggers would act on successive
    elections instead."""
    last = max(0, round(time_limit / TICK) - 1) * TICK
    at = round(min(after + draw(st.integers(0, 10)) * TICK, last), 3)
    members = draw(st.lists(faults(nodes, time_limit, packages, shapes, undo, triggered=True,
                                   style="group"),
                            min_size=1, max_size=max_size))
    return [_moved(member, at, time_limit) for member in members]


def _restarting(fault: list[dict[str, Any]], undo: bool) -> list[dict[str, Any]]:
    """A fault with its undo entry, or without ``undo`` only a node fault's."""
    return fault if undo or fault[0]["f"] in NODE_FAULTS else fault[:1]


def _moved(fault: list[dict[str, Any]], at: float, time_limit: float) -> list[dict[str, Any]]:
    """A fault's entries moved so that it starts at ``at``, its duration kept."""
    start, *rest = fault
    shift = at - start["at"]
    return [{**start, "at": at},
            *({**entry, "at": round(min(max(entry["at"] + shift, at), time_limit), 3)}
              for entry in rest)]


def cluster_configs(nodes: int | st.SearchStrategy[int] = 3,
                    bugs: Sequence[str] = (),
                    read_modes: Sequence[str] | None = None,
                    max_entries: Sequence[int] | None = None,
                    check_quorum: bool | None = None,
                    ) -> st.SearchStrategy[SimClusterConfig]:
    """Cluster configurations: size, read mode, snapshot threshold (small, to exercise
    InstallSnapshot), pre-vote, check-quorum and append batch size; the given planted
    bugs are always on and change nothing else that is drawn.

    Check-quorum is off in half the draws: it deposes a cut-off leader within an
    election timeout, which hides every bug that needs a deposed leader still
    serving. One entry per append is a third of the draws: an old-term entry then
    travels alone, as Figure 8 has it."""
    sizes = nodes if isinstance(nodes, st.SearchStrategy) else st.just(nodes)
    modes = st.sampled_from(list(read_modes)) if read_modes else st.sampled_from(
        [m for m in READ_MODES if m != "stale"])
    batches = st.sampled_from(list(max_entries) if max_entries else [256, 1, 4])
    return st.builds(
        SimClusterConfig,
        nodes=sizes,
        read_mode=modes,
        bugs=st.just(tuple(bugs)),
        snapshot_threshold=st.sampled_from([10_000, 200, 50]),
        pre_vote=st.booleans().map(lambda b: not b),
        check_quorum=(st.just(check_quorum) if check_quorum is not None
                      else st.booleans().map(lambda b: not b)),
        max_entries_per_append=batches,
    )


def workloads(time_limit: float | st.SearchStrategy[float] | None = None,
              retry_indefinite: bool | None = None,
              name: str = "register") -> st.SearchStrategy[SimWorkload]:
    """Workloads of one kind (``name``, as ``--workload``): keys, mix, rate, concurrency,
    time limit (3 to 8 s by default), and in half the draws clients that retry an
    attempt in doubt with the same session (what a duplicated command needs)."""
    limits = (time_limit if isinstance(time_limit, st.SearchStrategy)
              else st.just(float(time_limit)) if time_limit is not None
              else st.integers(3, 8).map(float))
    retries = st.just(retry_indefinite) if retry_indefinite is not None else st.booleans()
    return st.builds(
        SimWorkload,
        keys=st.integers(1, 4),
        rate=st.sampled_from([40.0, 20.0, 80.0]),
        concurrency=st.integers(2, 5),
        time_limit=limits,
        quiet=st.just(1.5),
        # A shorter timeout retires stuck processes sooner, so clients spread over more
        # nodes during a fault (a deposed leader keeps getting some of them).
        op_timeout=st.sampled_from([1.0, 0.5]),
        retry_indefinite=retries,
        name=st.just(name),
    )


@st.composite
def sim_tests(draw: st.DrawFn, nodes: int | st.SearchStrategy[int] = 3,
              bugs: Sequence[str] = (), read_modes: Sequence[str] | None = None,
              packages: Sequence[str] | None = None, time_limit: float | None = None,
              max_faults: int = 8, name: str = "sim",
              workload: str = "register") -> SimTest:
    """A whole simulated test: cluster, workload, schedule and seed.

    ``bugs`` only switches planted bugs on: what is drawn is the same with or
    without them (one generic search space, so a search that finds a planted bug
    would find an unnamed one alike). ``packages`` restricts the fault kinds,
    ``read_modes`` the read paths. ``workload`` names the kind of workload
    (``register``, ``list-append``, ``rw-register``).
    """
    cluster = draw(cluster_configs(nodes, bugs, read_modes))
    work = draw(workloads(time_limit, None, workload))
    schedule = draw(schedules(cluster.node_ids, work.time_limit,
                              PACKAGES if packages is None else packages, max_faults))
    seed = draw(st.integers(0, 2**32 - 1))
    return SimTest(cluster=cluster, workload=work, schedule=tuple(schedule), seed=seed,
                   name=name)
