"""One fault vocabulary (nemesis.faults): what the executor records is what coverage and
the report's fault bands read."""

from __future__ import annotations

from typing import Any

import pytest

from harness.run.coverage import fault_coverage
from nemesis.faults import (
    FAULTS,
    FOREIGN_F,
    STARTED_BY,
    STOPPED_BY,
    history_f,
    started_kind,
    stopped_kinds,
    validate_entry,
)
from reports import model

#: One entry per way a schedule entry is recorded (history_f's branches).
ENTRIES: list[dict[str, Any]] = [
    {"at": 0, "f": "partition", "value": {"shape": "halves"}},
    {"at": 0, "f": "partition", "value": {"grudge": {"n1": ["n2"]}}},
    {"at": 0, "f": "heal", "value": None},
    *({"at": 0, "f": f, "value": "one"}
      for f in ("kill", "start", "pause", "resume", "lose-unfsynced")),
    *({"at": 0, "f": f, "value": {"p": p, "links": None}}
      for f in ("loss", "duplicate", "reorder") for p in (0.0, 0.5)),
    {"at": 0, "f": "delay", "value": {"mean": 0.1, "jitter": 0.0, "links": None}},
    {"at": 0, "f": "delay", "value": {"mean": 0.0, "jitter": 0.0, "links": None}},
    {"at": 0, "f": "clock", "value": {"targets": "one", "offset": 1.0, "rate": 1.0}},
    {"at": 0, "f": "clock", "value": {"targets": "one", "strobe": {
        "delta": 1.0, "period": 0.1, "duration": 1.0}}},
    {"at": 0, "f": "clock", "value": {"reset": True}},
]
#: What the executor records besides history_f (a strobe that ran out, the final heal).
EXECUTOR_ONLY = ("stop-clock-strobe", "heal-all")


def test_every_schedule_fault_is_exercised_here() -> None:
    assert {entry["f"] for entry in ENTRIES} == set(FAULTS)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e['f']}-{e['value']}")
def test_every_recorded_f_starts_or_stops_a_kind(entry: dict[str, Any]) -> None:
    f = history_f(validate_entry(entry, nodes=["n1", "n2", "n3"]))
    assert (f in STARTED_BY) != (f in STOPPED_BY), f


def test_every_kind_that_starts_can_stop_and_heal_all_stops_them_all() -> None:
    kinds = set(STARTED_BY.values())
    stoppable = {kind for f, ks in STOPPED_BY.items() if f != "heal-all" for kind in ks}
    assert kinds <= stoppable
    assert set(STOPPED_BY["heal-all"]) == kinds
    assert all(f in STOPPED_BY for f in EXECUTOR_ONLY)


def test_foreign_names_map_onto_ours() -> None:
    for foreign, ours in FOREIGN_F.items():
        assert ours in STARTED_BY or ours in STOPPED_BY, foreign
        assert started_kind(foreign) == STARTED_BY.get(ours)
        assert stopped_kinds(foreign) == STOPPED_BY.get(ours, ())


def _nemesis(f: str, value: Any, time: int) -> dict[str, Any]:
    return {"process": "nemesis", "type": "info", "f": f, "value": value, "time": time}


def test_a_strobe_that_ran_out_ends_in_coverage_and_in_the_report() -> None:
    """stop-clock-strobe (the executor's own event when a strobe's duration elapses) was
    in neither coverage's nor the report's table: the strobe stayed open for ever, so a
    later partition counted as clock+partition and the report drew the clock band to the
    end of the run."""
    history = [
        _nemesis("start-clock-strobe", {"targets": "one", "nodes": ["n1"]}, 10),
        _nemesis("stop-clock-strobe", {"nodes": ["n1"], "reason": "duration elapsed"}, 20),
        _nemesis("start-partition", {"shape": "halves"}, 30),
    ]
    coverage = fault_coverage(history)
    assert coverage["faults"] == {"clock": 1, "partition": 1}
    assert coverage["compositions"] == {}
    bands = {fault.kind: fault for fault in model.fault_intervals(history, end=100)}
    assert bands["clock"].end == 20 and bands["partition"].end is None
