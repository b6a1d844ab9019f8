"""Nemesis schedules: generated from a seed by named packages, or loaded from JSON.

``generate`` lays faults on a timeline of ``interval``-second slots. Each slot
holds one *scenario* lasting 50-100 % of the slot and undone before the next
slot begins, so faults never pile up unboundedly: either a single fault of one
chosen package, or a *composition* (``COMPOSITES``) of overlapping faults of
different chosen packages, timed against each other: a partition while
another node is paused or behind lossy links, a kill during a partition,
flickering cuts shorter than an election timeout, one-way cuts, slow links
across an election, a lagging node made electable, crashes right after an
election, clock skew as the leader goes, a hung leader, a voter crashed the
moment it votes, a winner cut off as it wins while its voters restart. Real systems break
where faults meet: one fault at a time, nodes catch up within milliseconds of
each heal and the interesting states (a stale node standing for election, a
deposed leader still answering, a vote promised and forgotten) never occur.
At ``time_limit`` every schedule makes the cluster whole again: heal
partitions, turn message faults off, resume paused and start killed nodes,
reset clocks. The harness then waits a quiet period and does the final reads.

The schedule is plain data and carries a seed per entry for the choices made
when it fires, so the same seed gives the same JSON; the real world (which node
is leader when the fault fires, thread timing) stays nondeterministic.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemesis.faults import ScheduleError, validate_schedule

PACKAGES = (
    "partition",
    "kill",
    "pause",
    "loss",
    "clock",
    "lose-unfsynced",
    "delay",
    "duplicate",
    "reorder",
)

Entry = dict[str, Any]
#: A scenario fills one slot from ``at`` to ``until``: the entries that start its
#: faults and those that undo them, all within the slot. The last argument is the
#: chosen packages (a composite uses only those).
_Maker = Callable[[random.Random, Sequence[str], float, float, Sequence[str]], list[Entry]]

#: Per-message faults of the network backends.
MESSAGE_PACKAGES = ("loss", "delay", "duplicate", "reorder")
#: Crash packages: the node goes down and comes back with ``start``.
CRASH_PACKAGES = ("kill", "lose-unfsynced")
#: Longest cut of a flicker (s): below raft_impl's default minimum election
#: timeout (0.30 s), so followers often do not even notice the cut, while the
#: messages and answers it swallows still go missing.
FLICKER_CUT = (0.03, 0.25)
FLICKER_GAP = (0.05, 0.4)
#: A short hang of a hung leader (s), drawn log-uniformly: from about one election
#: timeout (the others may just have elected a successor) to a few, within which a
#: lease that outlives leadership, or a check-quorum round not yet due, still holds.
HANG_SHORT = (0.35, 2.0)


def _seed(rng: random.Random) -> int:
    return rng.randrange(2**31)


def _t(x: float) -> float:
    return round(x, 3)


def _point(rng: random.Random, at: float, until: float, low: float, high: float) -> float:
    """A time at a random fraction in [low, high] of the slot."""
    return _t(at + (until - at) * rng.uniform(low, high))


class Chosen(tuple[str, ...]):
    """The chosen packages, and whether the network can cut one direction of a link only
    (``one_way``: not with packet filters under TCP, see ``harness.net``)."""

    one_way: bool = True

    def __new__(cls, packages: Sequence[str], one_way: bool = True) -> Chosen:
        chosen = super().__new__(cls, packages)
        chosen.one_way = one_way
        return chosen


def _partition_shapes(nodes: Sequence[str], chosen: Sequence[str] = ()) -> list[str]:
    shapes = ["halves", "isolate-one", "isolate-leader"]
    if len(nodes) >= 2:
        shapes.append("random")
        if getattr(chosen, "one_way", True):
            shapes += ["deaf-leader", "mute-leader", "deaf-one", "mute-one"]
    if len(nodes) >= 3:
        shapes += ["majorities-ring", "bridge"]
    return shapes


def _partition(rng: random.Random, nodes: Sequence[str], at: float, until: float,
               chosen: Sequence[str]) -> list[Entry]:
    shape = rng.choice(_partition_shapes(nodes, chosen))
    return [{"at": at, "f": "partition", "value": {"shape": shape}, "seed": _seed(rng)},
            {"at": until, "f": "heal", "value": None}]


def _node_fault(f: str, target: str, rng: random.Random, at: float) -> Entry:
    return {"at": at, "f": f, "value": target, "seed": _seed(rng)}


_UNDO = {"kill": "start", "lose-unfsynced": "start", "pause": "resume"}


def _crash(f: str) -> _Maker:
    def make(rng: random.Random, nodes: Sequence[str], at: float, until: float,
             chosen: Sequence[str]) -> list[Entry]:
        target = rng.choice(["one", "leader", "minority", "majority"])
        return [_node_fault(f, target, rng, at), {"at": until, "f": _UNDO[f], "value": "all"}]
    return make


def _links(rng: random.Random, nodes: Sequence[str]) -> list[list[str]] | None:
    """Half the time every link; otherwise the links into and out of one node."""
    if rng.random() < 0.5 or len(nodes) < 2:
        return None
    node = rng.choice(list(nodes))
    return [[node, other] for other in nodes if other != node] + \
        [[other, node] for other in nodes if other != node]


#: Probability ranges of the per-message faults.
_P_RANGE = {"loss": (0.05, 0.3), "duplicate": (0.05, 0.3), "reorder": (0.1, 0.5)}


def _message_on(f: str, rng: random.Random, at: float, links: list[list[str]] | None,
                slow: bool = False) -> Entry:
    """Turn message fault ``f`` on; ``slow`` draws delays that span an election timeout
    (tens to hundreds of ms, against ~1 ms round trips: votes cross, split votes)."""
    if f == "delay":
        mean = round(rng.uniform(0.02, 0.3) if slow else rng.uniform(0.005, 0.1), 4)
        return {"at": at, "f": "delay",
                "value": {"mean": mean, "jitter": round(mean / 2, 4), "links": links}}
    low, high = _P_RANGE[f]
    return {"at": at, "f": f, "value": {"p": round(rng.uniform(low, high), 3), "links": links}}


def _message_off(f: str, at: float) -> Entry:
    if f == "delay":
        return {"at": at, "f": "delay", "value": {"mean": 0.0, "jitter": 0.0, "links": None}}
    return {"at": at, "f": f, "value": {"p": 0.0, "links": None}}


def _message(f: str) -> _Maker:
    def make(rng: random.Random, nodes: Sequence[str], at: float, until: float,
             chosen: Sequence[str]) -> list[Entry]:
        return [_message_on(f, rng, at, _links(rng, nodes)), _message_off(f, until)]
    return make


def _clock_on(rng: random.Random, at: float, until: float, targets: str) -> Entry:
    if rng.random() < 0.5:
        return {"at": at, "f": "clock", "seed": _seed(rng), "value": {
            "targets": targets,
            "offset": round(rng.choice([-1, 1]) * rng.uniform(0.05, 2.0), 3),
            "rate": round(rng.choice([1.0, 1.0, rng.uniform(0.5, 2.0)]), 3),
        }}
    return {"at": at, "f": "clock", "seed": _seed(rng), "value": {
        "targets": targets,
        "strobe": {"delta": round(rng.uniform(0.05, 1.0), 3),
                   "period": round(rng.uniform(0.01, 0.1), 3),
                   "duration": round(max(until - at, 0.001), 3)},
    }}


_CLOCK_RESET: dict[str, Any] = {"reset": True}


def _clock(rng: random.Random, nodes: Sequence[str], at: float, until: float,
           chosen: Sequence[str]) -> list[Entry]:
    targets = rng.choice(["one", "leader", "minority"])
    return [_clock_on(rng, at, until, targets),
            {"at": until, "f": "clock", "value": dict(_CLOCK_RESET)}]


MAKERS: dict[str, _Maker] = {
    "partition": _partition,
    "kill": _crash("kill"),
    "lose-unfsynced": _crash("lose-unfsynced"),
    "pause": _crash("pause"),
    "loss": _message("loss"),
    "duplicate": _message("duplicate"),
    "reorder": _message("reorder"),
    "delay": _message("delay"),
    "clock": _clock,
}


# -- composites: several faults overlapping in one slot ---------------------------------


def _depose(rng: random.Random, chosen: Sequence[str], at: float, until: float,
            avoid: Sequence[str] = ()) -> list[Entry]:
    """Take the leader away (cut off, paused or killed, among the chosen packages, not
    those in ``avoid`` unless nothing else is chosen) at ``at`` and give it back at
    ``until``: the others hold an election in between."""
    ways = [f for f in ("partition", "pause", "kill") if f in chosen]
    way = rng.choice([f for f in ways if f not in avoid] or ways)
    if way == "partition":
        return [{"at": at, "f": "partition", "value": {"shape": "isolate-leader"},
                 "seed": _seed(rng)}, {"at": until, "f": "heal", "value": None}]
    return [_node_fault(way, "leader", rng, at), {"at": until, "f": _UNDO[way], "value": "all"}]


def _hung_leader(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                 chosen: Sequence[str]) -> list[Entry]:
    """Cut the leader off and pause it at once, wake it while still cut off, heal later.

    With check-quorum, a leader cut off alone steps down within an election
    timeout, and a paused one answers nothing. A leader that wakes up cut off,
    after the others elected a successor and committed writes, still believes it
    leads until its next quorum check, and the reads queued at it meanwhile are
    where a leader that skips read confirmation serves an old state.
    """
    span = until - at
    # Pause right after the cut (the partition names the leader): a quorum check
    # in between would clear the leader's record of followers it heard from, and
    # it would step down the moment it wakes instead of one check interval later.
    paused = _t(at + min(0.01, span / 10))
    # Hangs of every length: most reach past an election (the others elect a successor
    # meanwhile), some are short, as a GC or a busy host gives, and wake the leader
    # inside a lease or a check-quorum interval that a longer hang would have outlived.
    longest = span * 0.7
    if rng.random() < 0.5 and longest > HANG_SHORT[1]:
        hang = math.exp(rng.uniform(math.log(HANG_SHORT[0]), math.log(HANG_SHORT[1])))
    else:
        hang = span * rng.uniform(0.55, 0.7)
    resumed = _t(at + max(hang, paused - at + 0.001))
    return [{"at": at, "f": "partition", "value": {"shape": "isolate-leader"},
             "seed": _seed(rng)},
            {"at": paused, "f": "pause", "value": "leader", "seed": _seed(rng)},
            {"at": resumed, "f": "resume", "value": "all"},
            {"at": until, "f": "heal", "value": None}]


def _partition_pause(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                     chosen: Sequence[str]) -> list[Entry]:
    """A partition while another node is paused: the side that should elect has one
    voter fewer than it looks, and the paused node wakes into a changed cluster."""
    cut = _partition(rng, nodes, at, until, chosen)
    paused = _point(rng, at, until, 0.0, 0.4)
    resumed = _point(rng, at, until, 0.5, 0.9)
    target = rng.choice(["one", "minority", "leader"])
    return [*cut[:1], _node_fault("pause", target, rng, paused),
            {"at": resumed, "f": "resume", "value": "all"}, *cut[1:]]


def _partition_lossy(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                     chosen: Sequence[str]) -> list[Entry]:
    """A node behind lossy (slow, duplicating, reordering) links, and a partition
    during that: retransmissions and late messages meet a changing majority."""
    f = rng.choice([f for f in MESSAGE_PACKAGES if f in chosen])
    cut = _partition(rng, nodes, _point(rng, at, until, 0.1, 0.4),
                     _point(rng, at, until, 0.6, 0.9), chosen)
    return [_message_on(f, rng, at, _links(rng, nodes)), *cut, _message_off(f, until)]


def _crash_in_partition(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                        chosen: Sequence[str]) -> list[Entry]:
    """A kill during a partition; the node restarts either still cut off or after the heal
    (then it rejoins a cluster that moved on while it was both down and cut off)."""
    f = rng.choice([f for f in CRASH_PACKAGES if f in chosen])
    cut = _partition(rng, nodes, at, until, chosen)
    crash = _node_fault(f, rng.choice(["one", "leader", "minority"]), rng,
                        _point(rng, at, until, 0.1, 0.5))
    restart_at = _point(rng, at, until, 0.55, 0.85) if rng.random() < 0.5 else until
    return [*cut[:1], crash, *cut[1:], {"at": restart_at, "f": "start", "value": "all"}]


def _flicker(rng: random.Random, nodes: Sequence[str], at: float, until: float,
             chosen: Sequence[str]) -> list[Entry]:
    """The same cut made and healed again and again, each cut shorter than an election
    timeout: acknowledgements and votes go missing while nobody times out."""
    shape = rng.choice([s for s in _partition_shapes(nodes, chosen) if s != "random"])
    seed = _seed(rng)  # the same cut each time (a flaky link, not random noise)
    entries: list[Entry] = []
    t = at
    while True:
        cut_end = _t(min(t + rng.uniform(*FLICKER_CUT), until))
        entries += [{"at": _t(t), "f": "partition", "value": {"shape": shape}, "seed": seed},
                    {"at": cut_end, "f": "heal", "value": None}]
        t = cut_end + rng.uniform(*FLICKER_GAP)
        if t + FLICKER_CUT[0] >= until:
            return entries


def _one_way(rng: random.Random, nodes: Sequence[str], at: float, until: float,
             chosen: Sequence[str]) -> list[Entry]:
    """A one-way cut (A hears B, B does not hear A) that switches direction halfway:
    a leader deaf to its followers, then mute to them (or one node likewise)."""
    who = rng.choice(["leader", "one"])
    first, second = rng.sample(["deaf", "mute"], 2)
    switch = _point(rng, at, until, 0.3, 0.7)
    return [{"at": at, "f": "partition", "value": {"shape": f"{first}-{who}"},
             "seed": _seed(rng)},
            {"at": switch, "f": "partition", "value": {"shape": f"{second}-{who}"},
             "seed": _seed(rng)},
            {"at": until, "f": "heal", "value": None}]


def _slow_election(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                   chosen: Sequence[str]) -> list[Entry]:
    """Slow or lossy links on every link, then the leader goes away: the election runs
    with round trips near the election timeout (split votes, stale vote answers)."""
    f = rng.choice([f for f in MESSAGE_PACKAGES if f in chosen])
    gone = _depose(rng, chosen, _point(rng, at, until, 0.1, 0.3),
                   _point(rng, at, until, 0.6, 0.9))
    return [_message_on(f, rng, at, None, slow=True), *gone, _message_off(f, until)]


def _lagging_electable(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                       chosen: Sequence[str]) -> list[Entry]:
    """Cut one node off long enough to fall behind, then cut again so that it sits with
    a majority and the leader without: the stale node stands in that election."""
    node = rng.choice(list(nodes))
    switch = _point(rng, at, until, 0.4, 0.7)
    return [{"at": at, "f": "partition", "value": {"shape": "isolate-one", "node": node},
             "seed": _seed(rng)},
            {"at": switch, "f": "partition",
             "value": {"shape": "lagging-majority", "node": node}, "seed": _seed(rng)},
            {"at": until, "f": "heal", "value": None}]


def _restart_after_vote(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                        chosen: Sequence[str]) -> list[Entry]:
    """Force an election, then crash nodes the moment a leader is elected (they just voted
    or acknowledged its first entry) and restart them soon after: what they promised must
    have been on disk."""
    f = rng.choice([f for f in CRASH_PACKAGES if f in chosen])
    span = until - at
    crash_delay = round(rng.uniform(0.0, min(0.05, span / 10)), 3)
    restart_delay = round(crash_delay + rng.uniform(min(0.1, span / 10), min(0.6, span / 4)), 3)
    within = max(_t(span - restart_delay - 0.01), 0.001)
    gone = _depose(rng, chosen, at, until, avoid=("kill",))  # a second kind of fault
    crash = {**_node_fault(f, rng.choice(["one", "minority"]), rng, at),
             "when": {"event": "new-leader", "delay": crash_delay, "within": within}}
    restart = {"at": at, "f": "start", "value": "all",
               "when": {"event": "new-leader", "delay": restart_delay, "within": within}}
    return [gone[0], crash, restart, *gone[1:], {"at": until, "f": "start", "value": "all"}]


def _clock_lease(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                 chosen: Sequence[str]) -> list[Entry]:
    """A leader whose clock runs slow (its lease lasts longer in real time) or nodes
    whose clocks run fast (they time out early), and then the leader goes away:
    a lease read served past the lease is a stale read."""
    if rng.random() < 0.5:
        skew: Entry = {"at": at, "f": "clock", "seed": _seed(rng), "value": {
            "targets": "leader", "offset": 0.0, "rate": round(rng.uniform(0.2, 0.7), 3)}}
    else:
        skew = {"at": at, "f": "clock", "seed": _seed(rng), "value": {
            "targets": "minority", "offset": 0.0, "rate": round(rng.uniform(1.5, 3.0), 3)}}
    # Not by a kill: a killed leader comes back with a true clock.
    gone = _depose(rng, chosen, _point(rng, at, until, 0.1, 0.3),
                   _point(rng, at, until, 0.6, 0.9), avoid=("kill",))
    return [skew, *gone, {"at": until, "f": "clock", "value": dict(_CLOCK_RESET)}]


def _crash_and_restart(rng: random.Random, chosen: Sequence[str], at: float, until: float,
                       when: dict[str, Any]) -> list[Entry]:
    """Crash the node a trigger names the moment its event happens, restart it soon after
    (both wait for the same occurrence; the window leaves room for the restart)."""
    f = rng.choice([f for f in CRASH_PACKAGES if f in chosen])
    span = until - at
    crash_delay = round(rng.uniform(0.0, min(0.02, span / 10)), 3)
    restart_delay = round(crash_delay + rng.uniform(min(0.1, span / 10), min(0.5, span / 4)), 3)
    within = max(_t(span - restart_delay - 0.01), 0.001)
    return [{**_node_fault(f, "trigger", rng, at),
             "when": {**when, "delay": crash_delay, "within": within}},
            {"at": at, "f": "start", "value": "trigger",
             "when": {**when, "delay": restart_delay, "within": within}},
            {"at": until, "f": "start", "value": "all"}]


def _restart_deposed(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                     chosen: Sequence[str]) -> list[Entry]:
    """Depose the leader (cut off, it steps down at its next quorum check; paused, it steps
    down when it wakes and hears the higher term) and crash it the moment it steps down:
    what it wrote while it led, and what it learned stepping down, must survive."""
    way = rng.choice([f for f in ("partition", "pause") if f in chosen])
    if way == "partition":
        shape = rng.choice(["isolate-leader", "deaf-leader"] if getattr(chosen, "one_way", True)
                           else ["isolate-leader"])
        depose = [{"at": at, "f": "partition", "value": {"shape": shape}, "seed": _seed(rng)},
                  {"at": until, "f": "heal", "value": None}]
    else:
        depose = [_node_fault("pause", "leader", rng, at),
                  {"at": _point(rng, at, until, 0.2, 0.5), "f": "resume", "value": "all"}]
    return [depose[0], *_crash_and_restart(rng, chosen, at, until, {"event": "step-down"}),
            *depose[1:]]


def _snapshot_crash(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                    chosen: Sequence[str]) -> list[Entry]:
    """Crash a node right after it took or installed a snapshot (the log cut, the state
    machine replaced), restart it soon after. With partitions chosen, a node is cut off
    for a while first so that it may need its leader's snapshot to catch up."""
    entries: list[Entry] = []
    event = "snapshot"
    if "partition" in chosen:
        event = "snapshot-installed"
        entries = [{"at": at, "f": "partition", "value": {"shape": "isolate-one"},
                    "seed": _seed(rng)},
                   {"at": _point(rng, at, until, 0.3, 0.5), "f": "heal", "value": None}]
    return [*entries[:1], *_crash_and_restart(rng, chosen, at, until, {"event": event}),
            *entries[1:]]


def _behind_electable(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                      chosen: Sequence[str]) -> list[Entry]:
    """Cut a node off; the moment it is ``entries`` behind (as the nodes report), cut again
    so that it sits with a majority and the leader without (lagging-electable, timed by
    what the nodes say rather than by the clock)."""
    behind = rng.choice([20, 50, 100, 200, 400])
    span = until - at
    return [{"at": at, "f": "partition", "value": {"shape": "isolate-one"}, "seed": _seed(rng)},
            {"at": at, "f": "partition",
             "value": {"shape": "lagging-majority", "node": "trigger"}, "seed": _seed(rng),
             "when": {"event": "follower-behind", "entries": behind, "delay": 0.0,
                      "within": max(_t(span * 0.8), 0.001)}},
            {"at": until, "f": "heal", "value": None}]


def _crash_voter(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                 chosen: Sequence[str]) -> list[Entry]:
    """Take the leader away (on slow links, when delay is chosen, so that candidates'
    requests cross) and crash a node the moment it grants a vote (or starts its own
    candidacy, voting for itself), restarted soon after: a vote that did not survive
    the restart lets a second candidate win the same term."""
    event = rng.choice(["vote", "vote", "election"])
    gone = _depose(rng, chosen, at, _point(rng, at, until, 0.5, 0.8), avoid=("kill",))
    slow = ([_message_on("delay", rng, at, None, slow=True)], [_message_off("delay", until)]
            ) if "delay" in chosen else ([], [])
    return [*slow[0], gone[0], *_crash_and_restart(rng, chosen, at, until, {"event": event}),
            *gone[1:], *slow[1]]


def _orphaned_winner(rng: random.Random, nodes: Sequence[str], at: float, until: float,
                     chosen: Sequence[str]) -> list[Entry]:
    """Force an election; the moment a node wins, cut it off (its first messages, which
    would tell the others its term, are lost), crash every other node a moment later
    and start them together: what they promised in that election (term, vote, acks)
    is all that keeps a second leader out of the winner's term."""
    f = rng.choice([f for f in CRASH_PACKAGES if f in chosen])
    span = until - at
    crash_delay = round(rng.uniform(0.01, min(0.08, span / 10)), 3)
    restart_delay = round(crash_delay + rng.uniform(min(0.05, span / 10), min(0.3, span / 4)), 3)
    elected = {"event": "new-leader",
               "within": max(_t(min(span * 0.5, span - restart_delay - 0.01)), 0.001)}
    gone = _depose(rng, chosen, at, _point(rng, at, until, 0.05, 0.15), avoid=("partition",))
    if gone[0]["f"] == "partition":
        gone = gone[:1]  # the winner's cut replaces it; healing it could heal that too
    return [*gone,
            {"at": at, "f": "partition", "value": {"shape": "isolate-leader"},
             "seed": _seed(rng), "when": {**elected, "delay": 0.0}},
            {**_node_fault(f, "all", rng, at), "when": {**elected, "delay": crash_delay}},
            {"at": at, "f": "start", "value": "all",
             "when": {**elected, "delay": restart_delay}},
            {"at": _point(rng, at, until, 0.7, 0.9), "f": "heal", "value": None},
            {"at": until, "f": "start", "value": "all"},
            {"at": until, "f": "heal", "value": None}]


@dataclass(frozen=True)
class Composite:
    """A scenario of overlapping faults: offered when every group of ``needs`` has a
    chosen package, drawn ``weight`` times as often as one package's single fault."""

    needs: tuple[tuple[str, ...], ...]
    make: _Maker
    weight: int
    min_nodes: int = 1
    #: Needs links cut in one direction only (``Chosen.one_way``).
    one_way: bool = False

    def offered(self, chosen: Sequence[str], nodes: int) -> bool:
        return (nodes >= self.min_nodes
                and all(set(group) & set(chosen) for group in self.needs)
                and (not self.one_way or getattr(chosen, "one_way", True)))


#: The compositions ``generate`` draws. A hung leader weighs most: a minute of
#: ``--nemesis all`` at the default 5 s interval meets it about 1.7 times on average
#: (tests/test_nemesis_schedule.py holds it above 1.6).
COMPOSITES: dict[str, Composite] = {
    "hung-leader": Composite((("partition",), ("pause",)), _hung_leader, 6),
    "partition-pause": Composite((("partition",), ("pause",)), _partition_pause, 2, 3),
    "partition-lossy": Composite((("partition",), MESSAGE_PACKAGES), _partition_lossy, 2, 3),
    "crash-in-partition": Composite((("partition",), CRASH_PACKAGES), _crash_in_partition,
                                    2, 3),
    "flicker": Composite((("partition",),), _flicker, 2, 2),
    "one-way": Composite((("partition",),), _one_way, 2, 2, one_way=True),
    "slow-election": Composite((MESSAGE_PACKAGES, ("partition", "pause", "kill")),
                               _slow_election, 2, 3),
    "lagging-electable": Composite((("partition",),), _lagging_electable, 2, 3),
    "restart-after-vote": Composite((CRASH_PACKAGES, ("partition", "pause", "kill")),
                                    _restart_after_vote, 2, 3),
    "clock-lease": Composite((("clock",), ("partition", "pause")), _clock_lease, 2, 3),
    # Timed by events the nodes report (``when``), the node the event names as target.
    "restart-deposed": Composite((CRASH_PACKAGES, ("partition", "pause")), _restart_deposed,
                                 2, 3),
    "snapshot-crash": Composite((CRASH_PACKAGES,), _snapshot_crash, 1, 3),
    "behind-electable": Composite((("partition",),), _behind_electable, 2, 3),
    "crash-voter": Composite((CRASH_PACKAGES, ("partition", "pause", "kill")), _crash_voter,
                             2, 3),
    "orphaned-winner": Composite((("partition",), CRASH_PACKAGES), _orphaned_winner, 2, 3),
}


def _menu(chosen: Sequence[str], nodes: Sequence[str]) -> list[tuple[str | None, _Maker]]:
    """What one slot draws from: each package's single fault once, composites by weight."""
    menu: list[tuple[str | None, _Maker]] = [(None, MAKERS[name]) for name in chosen]
    for name, composite in COMPOSITES.items():
        if composite.offered(chosen, len(nodes)):
            menu += [(name, composite.make)] * composite.weight
    return menu


def parse_packages(text: str | Sequence[str]) -> list[str]:
    """``"partition,kill"`` or ``["all"]`` -> known package names, in PACKAGES order."""
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    if "all" in names:
        return list(PACKAGES)
    unknown = sorted(set(names) - set(PACKAGES))
    if unknown:
        raise ScheduleError(
            f"unknown nemesis package(s) {unknown}; expected {', '.join(PACKAGES)} or all"
        )
    return [name for name in PACKAGES if name in names]


def final_heal(at: float, packages: Sequence[str] = PACKAGES) -> list[Entry]:
    """The entries that make the cluster whole: every schedule ends with these.

    Heal, resume, start and the clock reset are always there; the message-fault
    stops only for the packages in use, so the history does not show stops of
    faults that never started.
    """
    entries: list[Entry] = [{"at": at, "f": "heal", "value": None}]
    for f in ("loss", "duplicate", "reorder"):
        if f in packages:
            entries.append({"at": at, "f": f, "value": {"p": 0.0, "links": None}})
    if "delay" in packages:
        entries.append({"at": at, "f": "delay",
                        "value": {"mean": 0.0, "jitter": 0.0, "links": None}})
    return [
        *entries,
        {"at": at, "f": "resume", "value": "all"},
        {"at": at, "f": "start", "value": "all"},
        {"at": at, "f": "clock", "value": {"reset": True}},
    ]


def generate(packages: Sequence[str], nodes: Sequence[str], time_limit: float,
             interval: float, rng: random.Random, *, one_way: bool = True) -> list[Entry]:
    """A schedule of faults from ``packages`` over ``time_limit`` seconds, ending healed.

    Each ``interval`` slot holds one scenario lasting 50-100 % of the slot (the
    first slot starts after half an interval so the cluster can elect a leader):
    a single fault of one package, or a composite (COMPOSITES) of overlapping
    faults of the chosen packages. Every fault a slot starts is undone within
    the slot, so scenarios do not pile up; the entries of a composite carry
    ``"compose": name``. An empty package list gives only the final heal.
    ``one_way=False`` leaves out one-way cuts (a network that cannot make them).
    """
    if time_limit <= 0:
        raise ScheduleError(f"time limit must be > 0 seconds, got {time_limit}")
    if interval <= 0:
        raise ScheduleError(f"nemesis interval must be > 0 seconds, got {interval}")
    if not nodes:
        raise ScheduleError("a schedule needs at least one node")
    chosen = Chosen(parse_packages(packages), one_way)
    menu = _menu(chosen, nodes)
    schedule: list[Entry] = []
    end = round(time_limit, 3)
    slot = interval / 2
    while chosen and slot < time_limit:
        at = round(slot, 3)
        until = min(round(slot + interval * rng.uniform(0.5, 1.0), 3), end)
        slot += interval
        if until - at < 0.001:
            break  # no room left for a fault before the end
        name, make = rng.choice(menu)
        entries = make(rng, nodes, at, until, chosen)
        if name is not None:
            entries = [{**entry, "compose": name} for entry in entries]
        schedule += entries
    schedule += final_heal(end, chosen)
    return validate_schedule(schedule, list(nodes))


def refuse_after(schedule: Sequence[Entry], time_limit: float,
                 limit_name: str = "--time-limit") -> None:
    """Refuse entries after the time limit: the run ends (and heals) before them.

    Left in, ``"at": 100`` with a 3 s limit idles a run until 100 s, and
    ``"at": 1e308`` never ends.
    """
    late = [entry for entry in schedule if entry["at"] > time_limit]
    if late:
        first = min(late, key=lambda entry: entry["at"])
        raise ScheduleError(
            f"{len(late)} schedule entr{'y' if len(late) == 1 else 'ies'} after "
            f"{limit_name} ({time_limit:g} s), the first {first['f']!r} at {first['at']:g} s; "
            f"the run heals and stops at {time_limit:g} s")


def load(path: str | Path, nodes: Sequence[str] | None = None,
         time_limit: float | None = None) -> list[Entry]:
    """Read and validate a schedule file; every problem becomes a ScheduleError.

    With ``time_limit``, entries after it are refused (:func:`refuse_after`).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleError(f"cannot read nemesis schedule {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScheduleError(f"nemesis schedule {path} is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleError(
            f"nemesis schedule {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from None
    try:
        entries = validate_schedule(data, nodes)
        if time_limit is not None:
            refuse_after(entries, time_limit)
    except ScheduleError as exc:
        raise ScheduleError(f"{path}: {exc}") from None
    return entries


def save(schedule: Sequence[Entry], path: str | Path) -> None:
    """Write a schedule as indented JSON, one entry per line for easy hand editing."""
    validate_schedule(list(schedule))
    lines = ",\n".join("  " + json.dumps(entry, sort_keys=True) for entry in schedule)
    Path(path).write_text(f"[\n{lines}\n]\n" if schedule else "[]\n", encoding="utf-8")
