"""Fault vocabulary validation, schedule generation, and schedule files."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemesis import schedule as schedules
from nemesis.faults import ScheduleError, history_f, validate_entry, validate_schedule
from splitbrain_common.errors import UserError

NODES = ["n1", "n2", "n3", "n4", "n5"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"at": 1, "f": "explode"}, "unknown fault 'explode'"),
        ({"at": -1, "f": "heal"}, "at must be >= 0"),
        ({"f": "heal"}, 'needs "at"'),
        ({"at": "soon", "f": "heal"}, "at must be a number"),
        ({"at": 1, "f": "kill", "value": "some"}, "target 'some' is not one of"),
        ({"at": 1, "f": "kill", "value": ["n1", "n9"]}, "unknown node 'n9'"),
        ({"at": 1, "f": "kill", "value": ["n1", "n1"]}, "names a node twice"),
        ({"at": 1, "f": "loss", "value": {"p": 1.5}}, "loss p must be <= 1.0"),
        ({"at": 1, "f": "loss", "value": 0.5}, "loss value must be"),
        ({"at": 1, "f": "loss", "value": {"p": 0.1, "links": [["n1", "n1"]]}}, "to itself"),
        ({"at": 1, "f": "delay", "value": {"mean": 0.1, "jiter": 0.1}}, "unexpected key"),
        ({"at": 1, "f": "partition", "value": {"shape": "donut"}}, "unknown partition shape"),
        ({"at": 1, "f": "partition", "value": {"grudge": {"n1": ["n1"]}}}, "names the node"),
        ({"at": 1, "f": "partition", "value": {"shape": "halves", "node": "n1"}},
         "only goes with"),
        ({"at": 1, "f": "heal", "compose": 3}, "compose must be a scenario name"),
        ({"at": 1, "f": "clock", "value": {"targets": "one"}}, 'needs "offset"'),
        ({"at": 1, "f": "clock", "value": {"targets": "one", "offset": 1, "rate": 0}},
         "rate must be > 0"),
        ({"at": 1, "f": "clock", "value": {"targets": "one", "strobe": {"delta": 1}}},
         "strobe period must be a number"),
        ({"at": 1, "f": "heal", "value": "now"}, "heal takes no value"),
        ({"at": 1, "f": "heal", "seed": 1.5}, "seed must be an integer"),
        ({"at": 1, "f": "heal", "wen": 2}, "unexpected key"),
        ({"at": 1, "f": "heal", "when": 2}, "when must be"),
        ({"at": 1, "f": "heal", "when": "new-term"}, "when event must be one of"),
        ({"at": 1, "f": "kill", "value": "one", "when": {"event": "new-leader", "delay": -1}},
         "when delay must be >= 0"),
        ({"at": 1, "f": "kill", "value": "one", "when": {"event": "new-leader", "every": 1}},
         "unexpected key"),
        ("heal", "must be a map"),
    ],
)
def test_bad_entries_are_refused_with_a_message_naming_them(entry, message):
    with pytest.raises(ScheduleError, match=message) as info:
        validate_entry(entry, 3, NODES)
    assert str(info.value).startswith("schedule entry 3 ")
    assert isinstance(info.value, UserError)  # the CLI prints it, no traceback


def test_entries_are_normalized_and_sorted_stably():
    data = [
        {"at": 2, "f": "heal"},
        {"at": 1, "f": "kill", "value": "n2"},
        {"at": 1, "f": "loss", "value": {"p": 0.2, "links": [["n1", "n2"]]}},
        {"at": 0, "f": "delay", "value": {"mean": 0.05}},
    ]
    entries = validate_schedule(data, NODES)
    assert [e["f"] for e in entries] == ["delay", "kill", "loss", "heal"]
    assert entries[0]["value"] == {"mean": 0.05, "jitter": 0.0, "links": None}
    assert entries[1]["value"] == ["n2"]
    assert entries[3] == {"at": 2.0, "f": "heal", "value": None}
    with pytest.raises(ScheduleError, match="must be a JSON list"):
        validate_schedule({"at": 1}, NODES)


def test_a_when_trigger_is_normalized_with_its_defaults():
    short, full = validate_schedule([
        {"at": 1, "f": "kill", "value": "leader", "when": "new-leader"},
        {"at": 2, "f": "pause", "value": "one",
         "when": {"event": "new-leader", "delay": 0.01, "within": 3}},
    ], NODES)
    assert short["when"] == {"event": "new-leader", "delay": 0.0, "within": 10.0}
    assert full["when"] == {"event": "new-leader", "delay": 0.01, "within": 3.0}


def test_history_names_pair_starts_and_stops():
    def f(entry):
        return history_f(validate_entry(entry, 0, NODES))

    assert f({"at": 0, "f": "partition", "value": {"shape": "halves"}}) == "start-partition"
    assert f({"at": 0, "f": "heal"}) == "stop-partition"
    assert f({"at": 0, "f": "loss", "value": {"p": 0.1}}) == "start-loss"
    assert f({"at": 0, "f": "loss", "value": {"p": 0}}) == "stop-loss"
    assert f({"at": 0, "f": "delay", "value": {"mean": 0, "jitter": 0}}) == "stop-delay"
    assert f({"at": 0, "f": "kill", "value": "leader"}) == "kill"
    assert f({"at": 0, "f": "clock", "value": {"reset": True}}) == "reset-clock"
    assert f({"at": 0, "f": "clock", "value": {"targets": "all", "offset": 1}}) == "bump-clock"


def test_packages_parse_and_reject_unknown_names():
    assert schedules.parse_packages("all") == list(schedules.PACKAGES)
    assert schedules.parse_packages("kill, partition") == ["partition", "kill"]
    assert schedules.parse_packages("") == []
    with pytest.raises(ScheduleError, match=r"unknown nemesis package\(s\) \['explode'\]"):
        schedules.parse_packages("partition,explode")


WHOLE = {("heal", None), ("resume", "all"), ("start", "all"), ("clock", "reset")}
MESSAGE_STOPS = {"loss": ("loss", 0.0), "duplicate": ("duplicate", 0.0),
                 "reorder": ("reorder", 0.0), "delay": ("delay", 0.0)}


def _key(entry):
    value = entry["value"]
    if entry["f"] in ("loss", "duplicate", "reorder"):
        return entry["f"], value["p"]
    if entry["f"] == "delay":
        return "delay", value["mean"]
    if entry["f"] == "clock":
        return "clock", "reset" if value.get("reset") else "skew"
    return entry["f"], value if not isinstance(value, dict) else "shape"


#: The kind of fault an entry starts or stops: what "different kinds" means below.
KIND = {"partition": "partition", "heal": "partition", "kill": "crash",
        "lose-unfsynced": "crash", "start": "crash", "pause": "pause", "resume": "pause",
        "loss": "loss", "delay": "delay", "duplicate": "duplicate", "reorder": "reorder",
        "clock": "clock"}


def _starts(entry) -> bool:
    """True for an entry that starts a fault (False for heal, start, resume, off, reset)."""
    if entry["f"] in ("heal", "start", "resume"):
        return False
    if entry["f"] in ("loss", "duplicate", "reorder"):
        return entry["value"]["p"] > 0
    if entry["f"] == "delay":
        return entry["value"]["mean"] > 0 or entry["value"]["jitter"] > 0
    if entry["f"] == "clock":
        return not entry["value"].get("reset")
    return True


def _slots(schedule, interval, time_limit, chosen):
    """The generated entries per slot, without the final heal. A start belongs to the
    slot its time falls in, a stop to the slot of the start before it (a stop due at
    the very moment the next slot starts was generated, and so sorts, before it)."""
    generated = schedule[: len(schedule) - len(schedules.final_heal(0, list(chosen)))]
    slots: dict[int, list] = {}
    index = 0
    for entry in generated:
        if _starts(entry) or "when" in entry:
            index = int((entry["at"] - interval / 2 + 0.001) // interval)  # at is rounded
        slots.setdefault(index, []).append(entry)
    return slots


def _timeline(entries, election):
    """(time, entry) in the order the executor applies them, with every trigger's
    election ``election`` s after its ``at`` (triggered entries fire delay after it)."""
    timed = []
    for position, entry in enumerate(entries):
        t = entry["at"]
        if "when" in entry:
            t += min(election, entry["when"]["within"]) + entry["when"]["delay"]
        timed.append((t, position, entry))
    return [(t, entry) for t, _, entry in sorted(timed, key=lambda item: item[:2])]


def _replay(entries, election):
    """Replay a slot: (active kinds at the end, most kinds active at once, last time)."""
    active: dict[str, int] = {}
    most = 0
    last = 0.0
    for t, entry in _timeline(entries, election):
        kind = KIND[entry["f"]]
        if _starts(entry):
            active[kind] = active.get(kind, 0) + 1
        else:
            active.pop(kind, None)  # every stop undoes the whole kind ("all", p 0, heal)
        most = max(most, len(active))
        last = max(last, t)
    return set(active), most, last


#: Composites that are a pattern of one kind of fault (cuts that change over time), or
#: time a fault by an event the nodes report rather than by overlap (a crash the moment
#: a leader steps down or a snapshot is installed: the fault that caused the event may
#: be over by then).
ONE_KIND = {"flicker", "one-way", "lagging-electable", "behind-electable",
            "restart-deposed", "snapshot-crash"}
#: Composites that act on the node an event names (target "trigger").
EVENT_TIMED = {"behind-electable": "follower-behind", "restart-deposed": "step-down",
               "snapshot-crash": ("snapshot", "snapshot-installed"),
               "crash-voter": ("vote", "election")}


@settings(max_examples=60, deadline=None)
@given(
    packages=st.lists(st.sampled_from([*schedules.PACKAGES, "all"]), max_size=4),
    n=st.integers(min_value=1, max_value=7),
    time_limit=st.floats(min_value=0.5, max_value=120),
    interval=st.floats(min_value=0.2, max_value=30),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_generated_schedules_are_valid_timed_and_end_whole(packages, n, time_limit,
                                                          interval, seed):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    schedule = schedules.generate(packages, nodes, time_limit, interval, random.Random(seed))
    assert schedule == validate_schedule(schedule, nodes)
    assert schedule == schedules.generate(packages, nodes, time_limit, interval,
                                          random.Random(seed))  # reproducible
    times = [entry["at"] for entry in schedule]
    assert times == sorted(times) and times[-1] <= round(time_limit, 3)
    chosen = set(schedules.parse_packages(packages))
    final = [entry for entry in schedule if entry["at"] == times[-1]]
    stops = {MESSAGE_STOPS[f] for f in chosen if f in MESSAGE_STOPS}
    assert {_key(entry) for entry in final} >= WHOLE | stops
    # Only the chosen packages start faults, and only composites they offer appear.
    assert {entry["f"] for entry in schedule if _starts(entry)} <= chosen
    for entry in schedule:
        if "compose" in entry:
            assert schedules.COMPOSITES[entry["compose"]].offered(list(chosen), n)
    # Each slot undoes what it started before the next slot begins, however soon or
    # late (within its window) the election a trigger waits for comes.
    for index, entries in _slots(schedule, interval, time_limit, chosen).items():
        next_slot = interval / 2 + (index + 1) * interval
        for election in (0.0, math.inf):
            left, _, last = _replay(entries, election)
            assert left == set(), (index, entries)
            assert last <= min(next_slot, round(time_limit, 3)) + 0.002, (index, entries)


def _composites(schedule, interval, time_limit):
    """(name, entries) of every composite slot of a schedule of all packages."""
    for entries in _slots(schedule, interval, time_limit, schedules.PACKAGES).values():
        names = {entry.get("compose") for entry in entries}
        assert len(names) == 1  # a slot holds one scenario
        if None not in names:
            yield names.pop(), entries


def test_every_composition_is_reached_and_overlaps_faults_of_different_kinds():
    """Over 200 one-minute runs of --nemesis all, every composite scenario occurs, and each
    one (but the cut patterns of one kind) has two kinds of fault active at once."""
    seen: dict[str, int] = {}
    for seed in range(200):
        schedule = schedules.generate(["all"], NODES, 60, 5, random.Random(seed))
        for name, entries in _composites(schedule, 5, 60):
            seen[name] = seen.get(name, 0) + 1
            if name in ONE_KIND:
                continue
            for election in (0.0, 1.0):
                assert _replay(entries, election)[1] >= 2, (name, entries)
    assert set(seen) == set(schedules.COMPOSITES)
    assert min(seen.values()) >= 50  # each one about every other run, or more
    composite_slots = sum(seen.values())
    assert composite_slots / (200 * 12) >= 0.6  # most slots compose faults


def test_composites_shape_what_they_promise():
    flickers = one_ways = laggards = restarts = 0
    for seed in range(200):
        schedule = schedules.generate(["all"], NODES, 60, 5, random.Random(seed))
        for name, entries in _composites(schedule, 5, 60):
            if name == "flicker":  # several cuts, each shorter than an election timeout
                flickers += 1
                cuts = [e for e in entries if e["f"] == "partition"]
                heals = [e for e in entries if e["f"] == "heal"]
                assert len(cuts) == len(heals) >= 1
                assert all(heal["at"] - cut["at"] < 0.3
                           for cut, heal in zip(cuts, heals, strict=True))
                assert len({json.dumps(c["value"]) for c in cuts}) == 1
            elif name == "one-way":  # deaf then mute (or back), the same node or leader
                one_ways += 1
                shapes = [e["value"]["shape"] for e in entries if e["f"] == "partition"]
                assert {s.split("-")[0] for s in shapes} == {"deaf", "mute"}
                assert len({s.split("-")[1] for s in shapes}) == 1
            elif name == "lagging-electable":  # cut off long, then with the majority
                laggards += 1
                first, second, heal = entries
                assert first["value"]["shape"] == "isolate-one"
                assert second["value"] == {"shape": "lagging-majority",
                                           "node": first["value"]["node"]}
                assert second["at"] - first["at"] >= 0.4 * (heal["at"] - first["at"]) - 0.002
            elif name == "restart-after-vote":  # crash right after an election, restart
                restarts += 1
                crash, restart = [e for e in entries if "when" in e]
                assert crash["f"] in ("kill", "lose-unfsynced") and restart["f"] == "start"
                assert crash["when"]["delay"] <= 0.05 < restart["when"]["delay"]
            elif name in EVENT_TIMED:  # what the event names is what the fault hits
                triggered = [e for e in entries if "when" in e]
                assert triggered and all(e["when"]["event"] in EVENT_TIMED[name]
                                         for e in triggered)
                assert all("trigger" in json.dumps(e["value"]) for e in triggered)
    assert min(flickers, one_ways, laggards, restarts) >= 50


def test_hung_leaders_hang_for_short_and_long_times():
    """Hangs of every length: short ones wake a leader inside its lease or check-quorum
    interval, long ones after a successor has long been elected."""
    hangs = []
    for seed in range(100):
        schedule = schedules.generate(["all"], NODES, 60, 5, random.Random(seed))
        for name, entries in _composites(schedule, 5, 60):
            if name == "hung-leader":
                pause, resume = (next(e for e in entries if e["f"] == f)
                                 for f in ("pause", "resume"))
                hangs.append(resume["at"] - pause["at"])
    assert min(hangs) > 0 and max(hangs) <= 0.7 * 5 + 0.002
    short = sum(h < schedules.HANG_SHORT[1] for h in hangs)
    assert 0.3 <= short / len(hangs) <= 0.8 and sum(h < 1.0 for h in hangs) >= 10


def test_an_orphaned_winner_is_cut_off_as_it_wins_and_the_others_restart_together():
    seen = 0
    for seed in range(200):
        schedule = schedules.generate(["all"], NODES, 60, 5, random.Random(seed))
        for name, entries in _composites(schedule, 5, 60):
            if name != "orphaned-winner":
                continue
            seen += 1
            cut, crash, restart = [e for e in entries if "when" in e]
            assert cut["value"] == {"shape": "isolate-leader"} and cut["when"]["delay"] == 0
            assert crash["value"] == "all" and restart == {**restart, "f": "start",
                                                           "value": "all"}
            assert {e["when"]["event"] for e in (cut, crash, restart)} == {"new-leader"}
            assert 0 < crash["when"]["delay"] < restart["when"]["delay"] <= 0.4
            # the leader is taken away by a node fault first, so that an election comes
            assert entries[0]["f"] in ("pause", "kill") and entries[0]["value"] == "leader"
    assert seen >= 50


@pytest.mark.parametrize("packages", [["partition"], ["pause", "clock"], ["kill", "loss"],
                                      ["partition", "delay"], ["clock"]])
def test_only_chosen_packages_are_composed(packages):
    schedule = schedules.generate(packages, NODES, 600, 5, random.Random(1))
    assert {entry["f"] for entry in schedule if _starts(entry)} <= set(packages)
    offered = {name for name, composite in schedules.COMPOSITES.items()
               if composite.offered(packages, len(NODES))}
    used = {entry["compose"] for entry in schedule if "compose" in entry}
    assert used == offered


def test_a_minute_of_partitions_and_pauses_hangs_the_leader_often():
    """A leader cut off and paused together is what --nemesis all must reach by itself."""
    def hung(schedule):
        return sum(1 for before, entry in itertools.pairwise(schedule)
                   if before["value"] == {"shape": "isolate-leader"}
                   and entry["f"] == "pause" and entry["value"] == "leader"
                   and round(entry["at"] - before["at"], 3) <= 0.01)

    counts = [hung(schedules.generate(["all"], NODES, 60, 5, random.Random(seed)))
              for seed in range(200)]
    assert sum(counts) / len(counts) >= 1.6
    assert sum(1 for c in counts if c >= 1) / len(counts) >= 0.8
    for packages in (["partition", "kill", "loss"], ["pause", "clock"]):
        assert hung(schedules.generate(packages, NODES, 600, 5, random.Random(1))) == 0


def test_generate_uses_every_package_of_all_over_a_long_run():
    schedule = schedules.generate(["all"], NODES, 600, 5, random.Random(3))
    started = {entry["f"] for entry in schedule if entry["at"] < 600}
    assert set(schedules.PACKAGES) <= started


def test_generate_refuses_bad_parameters():
    with pytest.raises(ScheduleError, match="interval must be > 0"):
        schedules.generate(["kill"], NODES, 10, 0, random.Random(0))
    with pytest.raises(ScheduleError, match="time limit"):
        schedules.generate(["kill"], NODES, 0, 1, random.Random(0))


def test_schedule_files_round_trip(tmp_path):
    path = tmp_path / "schedule.json"
    schedule = schedules.generate(["partition", "clock"], NODES, 30, 5, random.Random(9))
    schedules.save(schedule, path)
    assert schedules.load(path, NODES) == schedule
    assert json.loads(path.read_text()) == schedule


def test_loading_a_bad_file_says_where_the_problem_is(tmp_path):
    with pytest.raises(ScheduleError, match="cannot read nemesis schedule"):
        schedules.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"at": 1, "f": "heal"},\n  {"at": 2 "f": "heal"}\n]\n')
    with pytest.raises(ScheduleError, match=r"not valid JSON: .* line 3 column 12"):
        schedules.load(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"at": 1, "f": "heal"}, {"at": 2, "f": "kill", "value": "n7"}]))
    with pytest.raises(ScheduleError, match=r"wrong\.json: schedule entry 1 .*'n7' is not"):
        schedules.load(wrong, NODES)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_every_generated_partition_shape_fits_the_cluster(n):
    from nemesis.shapes import connectivity_graph

    nodes = [f"n{i}" for i in range(1, n + 1)]
    schedule = schedules.generate(["partition"], nodes, 300, 2, random.Random(n))
    shapes = [entry for entry in schedule if entry["f"] == "partition"]
    assert len(shapes) > 50
    for entry in shapes:
        connectivity_graph(entry["value"]["shape"], nodes, random.Random(entry["seed"]),
                           leader=nodes[0])


def test_without_one_way_cuts_no_entry_cuts_one_way():
    """A network that cannot cut one direction alone (netns under TCP) gets none."""
    from nemesis.faults import one_way

    for seed in range(30):
        without = schedules.generate(["all"], NODES, 60, 5, random.Random(seed), one_way=False)
        assert not any(map(one_way, without))
        assert "one-way" not in {entry.get("compose") for entry in without}
    assert sum(any(map(one_way, schedules.generate(["partition"], NODES, 60, 5,
                                                   random.Random(seed))))
               for seed in range(30)) >= 25
