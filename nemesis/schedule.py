"""Nemesis schedules: generated from a seed by named packages, or loaded from JSON.

``generate`` lays faults on a timeline of ``interval``-second slots: each slot
starts one fault from a randomly chosen package, or a composite of chosen
packages such as a cut-off leader that is also paused, and stops it before the next
slot begins, so faults of different packages meet each other over a run but
never pile up unboundedly. At ``time_limit`` every schedule makes the cluster
whole again: heal partitions, turn message faults off, resume paused and start
killed nodes, reset clocks. The harness then waits a quiet period and does the
final reads.

The schedule is plain data and carries a seed per entry for the choices made
when it fires, so the same seed gives the same JSON; the real world (which node
is leader when the fault fires, thread timing) stays nondeterministic.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
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
#: A package draws a fault from `at` until `until`: (start entries, stop entries).
_Maker = Callable[[random.Random, Sequence[str], float, float], tuple[list[Entry], list[Entry]]]


def _seed(rng: random.Random) -> int:
    return rng.randrange(2**31)


def _partition(rng: random.Random, nodes: Sequence[str], at: float, until: float):
    shapes = ["halves", "isolate-one", "isolate-leader"]
    if len(nodes) >= 2:
        shapes.append("random")
    if len(nodes) >= 3:
        shapes += ["majorities-ring", "bridge"]
    shape = rng.choice(shapes)
    return ([{"at": at, "f": "partition", "value": {"shape": shape}, "seed": _seed(rng)}],
            [{"at": until, "f": "heal", "value": None}])


def _crash(f: str) -> _Maker:
    def make(rng: random.Random, nodes: Sequence[str], at: float, until: float):
        target = rng.choice(["one", "leader", "minority", "majority"])
        return ([{"at": at, "f": f, "value": target, "seed": _seed(rng)}],
                [{"at": until, "f": "start", "value": "all"}])
    return make


def _pause(rng: random.Random, nodes: Sequence[str], at: float, until: float):
    target = rng.choice(["one", "leader", "minority", "majority"])
    return ([{"at": at, "f": "pause", "value": target, "seed": _seed(rng)}],
            [{"at": until, "f": "resume", "value": "all"}])


def _links(rng: random.Random, nodes: Sequence[str]) -> list[list[str]] | None:
    """Half the time every link; otherwise the links into and out of one node."""
    if rng.random() < 0.5 or len(nodes) < 2:
        return None
    node = rng.choice(list(nodes))
    return [[node, other] for other in nodes if other != node] + \
        [[other, node] for other in nodes if other != node]


def _probability(f: str, low: float, high: float) -> _Maker:
    def make(rng: random.Random, nodes: Sequence[str], at: float, until: float):
        p = round(rng.uniform(low, high), 3)
        links = _links(rng, nodes)
        return ([{"at": at, "f": f, "value": {"p": p, "links": links}}],
                [{"at": until, "f": f, "value": {"p": 0.0, "links": None}}])
    return make


def _delay(rng: random.Random, nodes: Sequence[str], at: float, until: float):
    mean = round(rng.uniform(0.005, 0.1), 4)
    links = _links(rng, nodes)
    return ([{"at": at, "f": "delay",
              "value": {"mean": mean, "jitter": round(mean / 2, 4), "links": links}}],
            [{"at": until, "f": "delay",
              "value": {"mean": 0.0, "jitter": 0.0, "links": None}}])


def _clock(rng: random.Random, nodes: Sequence[str], at: float, until: float):
    targets = rng.choice(["one", "leader", "minority"])
    if rng.random() < 0.5:
        start: Entry = {"at": at, "f": "clock", "seed": _seed(rng), "value": {
            "targets": targets,
            "offset": round(rng.choice([-1, 1]) * rng.uniform(0.05, 2.0), 3),
            "rate": round(rng.choice([1.0, 1.0, rng.uniform(0.5, 2.0)]), 3),
        }}
    else:
        start = {"at": at, "f": "clock", "seed": _seed(rng), "value": {
            "targets": targets,
            "strobe": {"delta": round(rng.uniform(0.05, 1.0), 3),
                       "period": round(rng.uniform(0.01, 0.1), 3),
                       "duration": round(until - at, 3)},
        }}
    return [start], [{"at": until, "f": "clock", "value": {"reset": True}}]


def _hung_leader(rng: random.Random, nodes: Sequence[str], at: float, until: float):
    """Cut the leader off and pause it at once, wake it while still cut off, heal later.

    With check-quorum, a leader cut off alone steps down within an election
    timeout, and a paused one answers nothing. A leader that wakes up cut off,
    after the others elected a successor and committed writes, still believes it
    leads until its next quorum check, and the reads queued at it meanwhile are
    where a leader that skips read confirmation serves an old state. Neither
    package makes this alone, so a run with both also draws it.
    """
    span = until - at
    # Pause right after the cut (the partition names the leader): a quorum check
    # in between would clear the leader's record of followers it heard from, and
    # it would step down the moment it wakes instead of one check interval later.
    paused = round(at + min(0.01, span / 10), 3)
    resumed = round(at + span * rng.uniform(0.55, 0.7), 3)
    return ([{"at": at, "f": "partition", "value": {"shape": "isolate-leader"},
              "seed": _seed(rng)},
             {"at": paused, "f": "pause", "value": "leader", "seed": _seed(rng)},
             {"at": resumed, "f": "resume", "value": "all"}],
            [{"at": until, "f": "heal", "value": None}])


MAKERS: dict[str, _Maker] = {
    "partition": _partition,
    "kill": _crash("kill"),
    "lose-unfsynced": _crash("lose-unfsynced"),
    "pause": _pause,
    "loss": _probability("loss", 0.05, 0.3),
    "duplicate": _probability("duplicate", 0.05, 0.3),
    "reorder": _probability("reorder", 0.1, 0.5),
    "delay": _delay,
    "clock": _clock,
}

#: Faults composed of several packages, offered when all of them are chosen, with
#: how many packages' worth of draws each gets. One slot holds one fault, so no
#: part reaches a composite by chance. A hung leader gets three: a minute of
#: ``--nemesis all`` at the default 5 s interval then meets it three times on
#: average, and misses it entirely about one run in thirty.
COMPOSITES: dict[str, tuple[tuple[str, ...], _Maker, int]] = {
    "hung-leader": (("partition", "pause"), _hung_leader, 3),
}


def _menu(chosen: Sequence[str]) -> list[_Maker]:
    """The makers one slot draws from, composites repeated by their weight."""
    menu = [MAKERS[name] for name in chosen]
    for parts, make, weight in COMPOSITES.values():
        if set(parts) <= set(chosen):
            menu += [make] * weight
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
             interval: float, rng: random.Random) -> list[Entry]:
    """A schedule of faults from ``packages`` over ``time_limit`` seconds, ending healed.

    Each ``interval`` slot holds one fault lasting 50-100 % of the slot (the
    first slot starts after half an interval so the cluster can elect a leader),
    drawn from the packages and the COMPOSITES they make up. An empty package
    list gives only the final heal.
    """
    if time_limit <= 0:
        raise ScheduleError(f"time limit must be > 0 seconds, got {time_limit}")
    if interval <= 0:
        raise ScheduleError(f"nemesis interval must be > 0 seconds, got {interval}")
    if not nodes:
        raise ScheduleError("a schedule needs at least one node")
    chosen = parse_packages(packages)
    menu = _menu(chosen)
    schedule: list[Entry] = []
    end = round(time_limit, 3)
    slot = interval / 2
    while chosen and slot < time_limit:
        at = round(slot, 3)
        until = min(round(slot + interval * rng.uniform(0.5, 1.0), 3), end)
        slot += interval
        if until - at < 0.001:
            break  # no room left for a fault before the end
        start, stop = rng.choice(menu)(rng, nodes, at, until)
        schedule += start + stop
    schedule += final_heal(end, chosen)
    return validate_schedule(schedule, list(nodes))


def load(path: str | Path, nodes: Sequence[str] | None = None) -> list[Entry]:
    """Read and validate a schedule file; every problem becomes a ScheduleError."""
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
        return validate_schedule(data, nodes)
    except ScheduleError as exc:
        raise ScheduleError(f"{path}: {exc}") from None


def save(schedule: Sequence[Entry], path: str | Path) -> None:
    """Write a schedule as indented JSON, one entry per line for easy hand editing."""
    validate_schedule(list(schedule))
    lines = ",\n".join("  " + json.dumps(entry, sort_keys=True) for entry in schedule)
    Path(path).write_text(f"[\n{lines}\n]\n" if schedule else "[]\n", encoding="utf-8")
