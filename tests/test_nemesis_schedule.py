"""Fault vocabulary validation, schedule generation, and schedule files."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import UserError
from nemesis import schedule as schedules
from nemesis.faults import ScheduleError, history_f, validate_entry, validate_schedule

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


STOPS = {"partition": "heal", "kill": "start", "lose-unfsynced": "start", "pause": "resume"}


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
    # Every fault is stopped before the next one starts: faults do not pile up.
    faults = schedule[: len(schedule) - len(schedules.final_heal(0, list(chosen)))]
    active: list[dict] = []
    for entry in faults:
        if _is_stop(entry, stops):
            assert active and _stops(entry, active[-1]), (entry, active)
            active.pop()
        else:
            assert not active or _hangs_the_leader(active, entry), (entry, active)
            active.append(entry)
    assert active == []
    assert {entry["f"] for entry in faults} <= chosen | set(STOPS.values())


def _is_stop(entry, stops) -> bool:
    return entry["f"] in STOPS.values() or _key(entry) in WHOLE | stops


def _stops(stop, start) -> bool:
    return stop["f"] == STOPS.get(start["f"], start["f"])


def _hangs_the_leader(active, entry) -> bool:
    """The one fault allowed inside another: a pause of the leader cut off alone."""
    return (len(active) == 1 and active[0]["value"] == {"shape": "isolate-leader"}
            and entry["f"] == "pause" and entry["value"] == "leader")


def _hung_leaders(schedule) -> int:
    return sum(1 for before, entry in itertools.pairwise(schedule)
               if _hangs_the_leader([before], entry)
               and round(entry["at"] - before["at"], 3) <= 0.01)


def test_a_minute_of_partitions_and_pauses_hangs_the_leader_several_times():
    """A leader cut off and paused together is what --nemesis all must reach by itself."""
    counts = [_hung_leaders(schedules.generate(["all"], NODES, 60, 5, random.Random(seed)))
              for seed in range(200)]
    assert sum(counts) / len(counts) >= 2.5
    assert sum(1 for c in counts if c >= 1) / len(counts) >= 0.94
    for packages in (["partition", "kill", "loss"], ["pause", "clock"]):
        schedule = schedules.generate(packages, NODES, 600, 5, random.Random(1))
        assert _hung_leaders(schedule) == 0
        assert {entry["f"] for entry in schedule if entry["at"] < 600} <= set(packages) | set(
            STOPS.values()) | {"loss"}


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
