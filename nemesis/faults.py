"""The fault vocabulary of splitbrain, as data, and its validation (docs/DESIGN.md, section 5).

A schedule is a JSON list of entries ``{"at": seconds, "f": name, "value": ...,
"seed": int?}``. ``at`` counts from the moment the executor starts; ``seed``
makes the entry's random choices (which node is "one", which half is which)
reproducible. The faults and their values:

=================  ==============================================================
f                  value
=================  ==============================================================
partition          ``{"shape": S}`` with S in ALL_SHAPES (``"node": n`` optional for
                   NODE_SHAPES), or ``{"grudge": {node: [nodes it must not
                   receive from]}}``
heal               ``null`` — remove every partition
kill / start       a target (see below); start restarts killed nodes from disk
pause / resume     a target; SIGSTOP / SIGCONT
lose-unfsynced     a target; crash dropping what was written after the last fsync
loss / duplicate   ``{"p": 0..1, "links": [[src, dst], ...] | null}``; p 0 = off
reorder            same as loss
delay              ``{"mean": s, "jitter": s, "links": ...}``; mean and jitter 0 = off
clock              ``{"targets": T, "offset": s, "rate": r}`` (bump),
                   ``{"targets": T, "strobe": {"delta": s, "period": s,
                   "duration": s}}``, or ``{"reset": true}``
=================  ==============================================================

A target is ``"one"``, ``"leader"``, ``"minority"``, ``"majority"``, ``"all"`` or
a list of node names. Targets are resolved when the fault fires (the leader
changes over a run), never when the schedule is written.

Timing windows: many Raft bugs only show in the instant after an election (a
new leader's first entry not yet replicated). An entry may therefore carry
``"when": {"event": "new-leader", "delay": s, "within": s}`` (or just
``"when": "new-leader"``): once ``at`` has passed, the entry waits for the next
election won (a node taking office, in any term after ``at``) and fires
``delay`` seconds after it (default 0: before the new leader's first message
leaves, in the simulator). With no election within ``within`` seconds (default
10) it is skipped and recorded as skipped. Triggered entries wait in order:
those with the same ``at`` wait for the same election (each with its own
``delay``); those with a later ``at`` are armed once the earlier ones saw theirs
(or were skipped), so a chain of them acts on successive elections (Figure 8
takes three). Entries without a trigger keep their own times, and triggers
still waiting when the schedule ends are dropped (recorded as skipped).

Other events the nodes report may trigger an entry the same way (TRIGGERS):
``step-down`` (a leader leaves office), ``snapshot`` (a node compacted its log
into a snapshot), ``snapshot-installed`` (a follower installed its leader's
snapshot) and ``follower-behind`` (a node's applied index falls ``entries``
behind the highest commit index any node reports, default 100:
``{"event": "follower-behind", "entries": 200}``), ``election`` (a node became a
candidate: it starts an election in a new term, having voted for itself) and
``vote`` (a node granted its vote in a term, its own as a candidate included:
the moment its promise must be on disk). Entries that share an
``at`` and an event wait for the same occurrence. The node the event names
(the winner, the deposed leader, the node that snapshotted, the lagging
follower) is the target ``"trigger"`` of the entries it fires, and may be the
``"node"`` of a partition shape: ``{"shape": "lagging-majority", "node":
"trigger"}`` puts the follower that fell behind with a majority. A cluster
that cannot report an event skips the entries waiting for it, saying so.

An entry may carry ``"compose": name``: the generated scenario it belongs to
(``nemesis.schedule.COMPOSITES``), when several faults overlap on purpose. It
only labels the entry (history events and reports can say which composition
ran); applying the entry does not depend on it.

Validation errors name the entry (its position and content) and say what was
expected, because schedules are often written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from splitbrain_common.errors import UserError

FAULTS = (
    "partition",
    "heal",
    "kill",
    "start",
    "pause",
    "resume",
    "lose-unfsynced",
    "loss",
    "delay",
    "duplicate",
    "reorder",
    "clock",
)
#: Events an entry may wait for (``"when"``).
TRIGGERS = ("new-leader", "step-down", "snapshot", "snapshot-installed", "follower-behind",
            "election", "vote")
#: Default ``entries`` of a follower-behind trigger.
DEFAULT_BEHIND = 100
#: Default ``within`` of a ``when`` trigger, in seconds.
DEFAULT_TRIGGER_WITHIN = 10.0
#: Cuts of links both ways (the simulator's fuzzer draws from these; its tuned seeds
#: depend on this tuple, so new shapes go in ALL_SHAPES).
SHAPES = ("halves", "isolate-one", "isolate-leader", "majorities-ring", "bridge", "random")
#: Shapes that may name their node (``"node": n``); a random one when they do not.
NODE_SHAPES = ("isolate-one", "deaf-one", "mute-one", "lagging-majority")
#: Shapes cut around the leader of the moment: nothing is cut when there is none.
LEADER_SHAPES = ("isolate-leader", "deaf-leader", "mute-leader")
#: Shapes that cut one direction of some links only (A hears B, B does not hear A).
ONE_WAY_SHAPES = ("deaf-one", "deaf-leader", "mute-one", "mute-leader")
#: Every shape a partition may name.
ALL_SHAPES = (*SHAPES, *ONE_WAY_SHAPES, "lagging-majority")
TARGET_WORDS = ("one", "leader", "minority", "majority", "all", "trigger")
#: The target (and partition node) that means the node a ``when`` trigger named.
TRIGGER_NODE = "trigger"
#: Faults whose value is a target.
NODE_FAULTS = ("kill", "start", "pause", "resume", "lose-unfsynced")
#: Faults that act on links between nodes (each needs a network backend in between).
LINK_FAULTS = ("partition", "loss", "delay", "duplicate", "reorder")
#: Per-message network faults whose value is {"p": ..., "links": ...}.
PROBABILITY_FAULTS = ("loss", "duplicate", "reorder")


class ScheduleError(UserError, ValueError):
    """A schedule (file or entry) is malformed; the message names the bad entry."""


def _describe(entry: object) -> str:
    text = repr(entry)
    return text if len(text) <= 120 else text[:117] + "..."


def _number(value: object, what: str, *, minimum: float | None = None,
            maximum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if positive and number <= 0:
        raise ValueError(f"{what} must be > 0, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{what} must be <= {maximum}, got {value!r}")
    return number


def _node(name: object, nodes: Sequence[str] | None, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a node name (string), got {name!r}")
    if nodes is not None and name not in nodes:
        raise ValueError(f"{what}: unknown node {name!r}; the cluster has {list(nodes)}")
    return name


def _only_keys(value: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    extra = sorted(set(value) - set(allowed))
    if extra:
        raise ValueError(f"{what}: unexpected key(s) {extra}; allowed: {sorted(allowed)}")


def validate_target(value: object, nodes: Sequence[str] | None = None) -> str | list[str]:
    """A target word, or a non-empty list of distinct node names."""
    if isinstance(value, str):
        if value in TARGET_WORDS:
            return value
        if nodes is not None and value in nodes:
            return [value]
        raise ValueError(
            f"target {value!r} is not one of {list(TARGET_WORDS)} or a list of node names"
        )
    if isinstance(value, list) and value:
        names = [_node(name, nodes, "target") for name in value]
        if len(set(names)) != len(names):
            raise ValueError(f"target {value!r} names a node twice")
        return names
    raise ValueError(
        f"target must be one of {list(TARGET_WORDS)} or a non-empty list of node names, "
        f"got {value!r}"
    )


def validate_links(value: object, nodes: Sequence[str] | None = None) -> list[list[str]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ValueError(f"links must be null (every link) or a list of [src, dst], got {value!r}")
    links = []
    for link in value:
        if not (isinstance(link, list | tuple) and len(link) == 2):
            raise ValueError(f"link {link!r} must be a pair [src, dst]")
        src, dst = _node(link[0], nodes, "link source"), _node(link[1], nodes, "link dest")
        if src == dst:
            raise ValueError(f"link {link!r} goes from a node to itself")
        links.append([src, dst])
    return links


def validate_grudge(value: object, nodes: Sequence[str] | None = None) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError(f"grudge must be a map node -> [nodes it must not receive from], "
                         f"got {value!r}")
    grudge = {}
    for dst, srcs in value.items():
        dst = _node(dst, nodes, "grudge key")
        if not isinstance(srcs, list | tuple | set | frozenset):
            raise ValueError(f"grudge[{dst!r}] must be a list of node names, got {srcs!r}")
        names = sorted({_node(src, nodes, f"grudge[{dst!r}]") for src in srcs})
        if dst in names:
            raise ValueError(f"grudge[{dst!r}] names the node itself")
        grudge[dst] = names
    return grudge


def _validate_partition(value: object, nodes: Sequence[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f'partition value must be {{"shape": ...}} or {{"grudge": ...}}, '
                         f"got {value!r}")
    if "grudge" in value:
        _only_keys(value, ("grudge",), "partition")
        return {"grudge": validate_grudge(value["grudge"], nodes)}
    shape = value.get("shape")
    if shape not in ALL_SHAPES:
        raise ValueError(f"unknown partition shape {shape!r}; expected one of "
                         f"{list(ALL_SHAPES)}")
    _only_keys(value, ("shape", "node"), "partition")
    result: dict[str, Any] = {"shape": shape}
    if "node" in value:
        if shape not in NODE_SHAPES:
            raise ValueError(f'"node" only goes with shapes {list(NODE_SHAPES)}, not {shape!r}')
        result["node"] = (TRIGGER_NODE if value["node"] == TRIGGER_NODE
                          else _node(value["node"], nodes, "partition node"))
    return result


def _validate_probability(f: str, value: object, nodes: Sequence[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict) or "p" not in value:
        raise ValueError(f'{f} value must be {{"p": 0..1, "links": null | [[src, dst], ...]}}, '
                         f"got {value!r}")
    _only_keys(value, ("p", "links"), f)
    return {"p": _number(value["p"], f"{f} p", minimum=0.0, maximum=1.0),
            "links": validate_links(value.get("links"), nodes)}


def _validate_delay(value: object, nodes: Sequence[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict) or "mean" not in value:
        raise ValueError(f'delay value must be {{"mean": s, "jitter": s, "links": ...}}, '
                         f"got {value!r}")
    _only_keys(value, ("mean", "jitter", "links"), "delay")
    return {"mean": _number(value["mean"], "delay mean", minimum=0.0, maximum=60.0),
            "jitter": _number(value.get("jitter", 0.0), "delay jitter", minimum=0.0,
                              maximum=60.0),
            "links": validate_links(value.get("links"), nodes)}


def _validate_clock(value: object, nodes: Sequence[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"clock value must be a map, got {value!r}")
    if value.get("reset") is True:
        _only_keys(value, ("reset",), "clock reset")
        return {"reset": True}
    if "targets" not in value:
        raise ValueError('clock value needs "targets" (or {"reset": true})')
    targets = validate_target(value["targets"], nodes)
    if "strobe" in value:
        _only_keys(value, ("targets", "strobe"), "clock strobe")
        strobe = value["strobe"]
        if not isinstance(strobe, dict):
            raise ValueError(f'clock strobe must be {{"delta", "period", "duration"}}, '
                             f"got {strobe!r}")
        _only_keys(strobe, ("delta", "period", "duration"), "clock strobe")
        return {"targets": targets, "strobe": {
            "delta": _number(strobe.get("delta"), "strobe delta"),
            "period": _number(strobe.get("period"), "strobe period", positive=True,
                              minimum=0.001),
            "duration": _number(strobe.get("duration"), "strobe duration", positive=True),
        }}
    if "offset" not in value:
        raise ValueError('clock value needs "offset", "strobe" or "reset"')
    _only_keys(value, ("targets", "offset", "rate"), "clock")
    return {"targets": targets,
            "offset": _number(value["offset"], "clock offset"),
            "rate": _number(value.get("rate", 1.0), "clock rate", positive=True)}


def validate_when(value: object) -> dict[str, Any]:
    """A trigger: ``"new-leader"`` or ``{"event": ..., "delay": s, "within": s}``, normalized."""
    if isinstance(value, str):
        value = {"event": value}
    if not isinstance(value, dict):
        raise ValueError(f'when must be "new-leader" or {{"event": ..., "delay": s, '
                         f'"within": s}}, got {value!r}')
    _only_keys(value, ("event", "delay", "within", "entries"), "when")
    event = value.get("event")
    if event not in TRIGGERS:
        raise ValueError(f"when event must be one of {list(TRIGGERS)}, got {event!r}")
    when = {"event": event,
            "delay": _number(value.get("delay", 0.0), "when delay", minimum=0.0),
            "within": _number(value.get("within", DEFAULT_TRIGGER_WITHIN), "when within",
                              positive=True)}
    if event == "follower-behind":
        entries = value.get("entries", DEFAULT_BEHIND)
        if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
            raise ValueError(f"when entries must be a whole number >= 1, got {entries!r}")
        when["entries"] = entries
    elif "entries" in value:
        raise ValueError(f'when "entries" only goes with follower-behind, not {event!r}')
    return when


def trigger_key(when: Mapping[str, Any]) -> tuple[str, int]:
    """Entries with the same ``at`` and this key wait for one occurrence of the event."""
    return when["event"], int(when.get("entries", 0))


def trigger_missed(when: Mapping[str, Any]) -> str:
    """Why an entry was skipped when its event did not come within its window."""
    within = when["within"]
    return {
        "new-leader": f"no new leader within {within} s",
        "step-down": f"no leader stepped down within {within} s",
        "snapshot": f"no node took or installed a snapshot within {within} s",
        "snapshot-installed": f"no node installed a snapshot within {within} s",
        "follower-behind": (f"no node fell {when.get('entries', DEFAULT_BEHIND)} entries "
                            f"behind within {within} s"),
        "election": f"no node started an election within {within} s",
        "vote": f"no node granted a vote within {within} s",
    }[when["event"]]


def names_trigger(entry: Mapping[str, Any]) -> bool:
    """Whether the entry acts on the node its trigger names (``"trigger"``)."""
    value = entry.get("value")
    if value == TRIGGER_NODE:
        return True
    return isinstance(value, dict) and TRIGGER_NODE in (value.get("node"),
                                                        value.get("targets"))


def _validate_value(f: str, value: object, nodes: Sequence[str] | None) -> Any:
    if f == "partition":
        return _validate_partition(value, nodes)
    if f == "heal":
        if value not in (None, {}):
            raise ValueError(f"heal takes no value (null), got {value!r}")
        return None
    if f in NODE_FAULTS:
        return validate_target(value, nodes)
    if f in PROBABILITY_FAULTS:
        return _validate_probability(f, value, nodes)
    if f == "delay":
        return _validate_delay(value, nodes)
    assert f == "clock"
    return _validate_clock(value, nodes)


def validate_entry(entry: object, position: int = 0,
                   nodes: Sequence[str] | None = None) -> dict[str, Any]:
    """Check one schedule entry and return it normalized (floats, lists, defaults filled)."""
    where = f"schedule entry {position} {_describe(entry)}"
    if not isinstance(entry, dict):
        raise ScheduleError(f"{where}: must be a map with keys at, f, value")
    try:
        extra = sorted(set(entry) - {"at", "f", "value", "seed", "when", "compose"})
        if extra:
            raise ValueError(f"unexpected key(s) {extra}; allowed: at, f, value, seed, when, "
                             f"compose")
        if "at" not in entry or "f" not in entry:
            raise ValueError('needs "at" (seconds) and "f" (fault name)')
        at = _number(entry["at"], "at", minimum=0.0)
        f = entry["f"]
        if f not in FAULTS:
            raise ValueError(f"unknown fault {f!r}; expected one of {list(FAULTS)}")
        normalized: dict[str, Any] = {"at": at, "f": f,
                                      "value": _validate_value(f, entry.get("value"), nodes)}
        if "seed" in entry:
            seed = entry["seed"]
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"seed must be an integer, got {seed!r}")
            normalized["seed"] = seed
        if "when" in entry:
            normalized["when"] = validate_when(entry["when"])
        elif names_trigger(normalized):
            raise ValueError(f'target "{TRIGGER_NODE}" needs a "when" trigger to name a node')
        if "compose" in entry:
            compose = entry["compose"]
            if not isinstance(compose, str) or not compose:
                raise ValueError(f"compose must be a scenario name (string), got {compose!r}")
            normalized["compose"] = compose
    except ValueError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    return normalized


def validate_schedule(data: object, nodes: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Validate a whole schedule; entries come back normalized and stably sorted by ``at``."""
    if not isinstance(data, list):
        raise ScheduleError(f"a schedule must be a JSON list of entries, got {type(data).__name__}")
    entries = [validate_entry(entry, position, nodes) for position, entry in enumerate(data)]
    return sorted(entries, key=lambda entry: entry["at"])


def one_way(entry: Mapping[str, Any]) -> bool:
    """Whether a partition entry cuts some link in one direction only (a one-way shape,
    or a grudge where a node blocks a peer that does not block it)."""
    if entry["f"] != "partition":
        return False
    value = entry["value"]
    if "grudge" not in value:
        return value["shape"] in ONE_WAY_SHAPES
    grudge = value["grudge"]
    return any(dst not in grudge.get(src, ()) for dst, srcs in grudge.items() for src in srcs)


def history_f(entry: Mapping[str, Any]) -> str:
    """The ``f`` a fault is recorded under in the history (Jepsen-like start/stop names)."""
    f, value = entry["f"], entry["value"]
    if f == "partition":
        return "start-partition"
    if f == "heal":
        return "stop-partition"
    if f in NODE_FAULTS:
        return f
    if f in PROBABILITY_FAULTS:
        return f"start-{f}" if value["p"] > 0 else f"stop-{f}"
    if f == "delay":
        return "start-delay" if value["mean"] > 0 or value["jitter"] > 0 else "stop-delay"
    if value.get("reset"):
        return "reset-clock"
    return "start-clock-strobe" if "strobe" in value else "bump-clock"


# -- the history vocabulary ---------------------------------------------------------
# One place for the nemesis ``f`` names of a history (docs/DESIGN.md §4.2): the
# executor records them (through history_f, plus the stop-clock-strobe and heal-all
# it emits itself), and whoever reads a history (coverage, the report's fault bands)
# takes the fault kinds they start and stop from here.

#: History ``f`` -> the fault kind it starts.
STARTED_BY: dict[str, str] = {
    "start-partition": "partition",
    "kill": "kill",
    "lose-unfsynced": "lose-unfsynced",
    "pause": "pause",
    **{f"start-{f}": f for f in ("loss", "delay", "duplicate", "reorder")},
    "bump-clock": "clock",
    "start-clock-strobe": "clock",
}
#: History ``f`` -> the fault kinds it ends. ``start`` and ``resume`` end the node
#: faults of the nodes their value names only; ``heal-all`` ends everything.
STOPPED_BY: dict[str, tuple[str, ...]] = {
    "stop-partition": ("partition",),
    **{f"stop-{f}": (f,) for f in ("loss", "delay", "duplicate", "reorder")},
    "reset-clock": ("clock",),
    "stop-clock-strobe": ("clock",),
    "start": ("kill", "lose-unfsynced"),
    "resume": ("pause",),
    "heal-all": tuple(dict.fromkeys(STARTED_BY.values())),
}
#: What other harnesses (Jepsen and its descendants) record for the same events, as
#: our history ``f``: ``splitbrain check --report`` draws their histories' faults too.
FOREIGN_F: dict[str, str] = {
    "partition": "start-partition",
    "heal": "stop-partition",
    "heal-partition": "stop-partition",
    "crash": "kill",
    "restart": "start",
    "start-pause": "pause",
    "stop-pause": "resume",
    "clock": "bump-clock",
    "start-clock": "bump-clock",
    "strobe-clock": "start-clock-strobe",
    "stop-clock": "reset-clock",
    "clock-reset": "reset-clock",
}
#: Foreign ``f`` names that end several kinds at once (Jepsen's combined nemeses).
FOREIGN_STOPS: dict[str, tuple[str, ...]] = {
    "reset": ("partition", "loss", "delay", "duplicate", "reorder", "clock"),
    "reset-faults": ("loss", "delay", "duplicate", "reorder"),
}


def started_kind(f: str) -> str | None:
    """The fault kind a history ``f`` starts (ours or a foreign name for it), if any."""
    return STARTED_BY.get(FOREIGN_F.get(f, f))


def stopped_kinds(f: str) -> tuple[str, ...]:
    """The fault kinds a history ``f`` ends (ours or a foreign name for it)."""
    if f in FOREIGN_STOPS:
        return FOREIGN_STOPS[f]
    return STOPPED_BY.get(FOREIGN_F.get(f, f), ())
