"""No silent faults: what a run cannot inject is refused before it starts, and a fault
that fails mid-run costs the run its valid verdict (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness.db.base
import harness.net.netns as netns
from harness.db.base import DB
from harness.net import unsupported_faults
from harness.run.run import RunConfig, plan_faults, run_test, summary
from nemesis.schedule import PACKAGES
from splitbrain_common.errors import UserError
from splitbrain_common.exits import EXIT_UNKNOWN

NODES = ["n1", "n2", "n3"]


class ClocklessDB(DB):
    """A database adapter that implements neither clock control nor lose-unfsynced."""

    name = "clockless"


@pytest.fixture
def no_netem(monkeypatch):
    monkeypatch.setattr(netns, "netem_available", lambda: False)
    monkeypatch.setitem(harness.db.base._REGISTRY, "clockless", lambda options: ClocklessDB())


def test_backends_declare_what_they_cannot_do(no_netem):
    assert unsupported_faults("proxy") == {}
    assert set(unsupported_faults("netns")) == {"delay", "duplicate", "reorder", "one-way"}
    assert "--net proxy" in unsupported_faults("netns")["delay"]
    assert "TCP" in unsupported_faults("netns")["one-way"]
    assert set(unsupported_faults("none")) == {"partition", "loss", "delay", "duplicate",
                                               "reorder", "one-way"}


def test_a_named_fault_the_backend_cannot_make_is_refused_saying_what_works(no_netem):
    config = RunConfig(net="netns", nemesis=["partition", "delay"])
    with pytest.raises(UserError, match=r"cannot inject delay .*tc netem.*--net proxy"):
        plan_faults(config, NODES)
    assert plan_faults(RunConfig(net="netns", nemesis=["partition", "loss"]), NODES) == {}
    assert plan_faults(RunConfig(net="proxy", nemesis=list(PACKAGES)), NODES) == {}


def test_all_means_every_package_the_run_can_make(no_netem):
    config = RunConfig(db="clockless", net="netns", nemesis=list(PACKAGES))
    left_out = plan_faults(config, NODES)
    assert set(left_out) == {"delay", "duplicate", "reorder", "clock", "lose-unfsynced"}
    assert "no clock control" in left_out["clock"]
    assert config.nemesis == ["partition", "kill", "pause", "loss"]
    with pytest.raises(UserError, match="cannot inject clock"):
        plan_faults(RunConfig(db="clockless", nemesis=["clock"]), NODES)


def test_a_schedule_file_is_refused_for_faults_it_turns_on_not_for_stops(no_netem,
                                                                       tmp_path: Path):
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps([{"at": 1, "f": "delay", "value": {"mean": 0.0}},
                                {"at": 2, "f": "loss", "value": {"p": 0.2}}]))
    assert plan_faults(RunConfig(net="netns", nemesis_schedule=str(path)), NODES) == {}
    path.write_text(json.dumps([{"at": 1, "f": "reorder", "value": {"p": 0.2}}]))
    with pytest.raises(UserError, match="cannot inject reorder"):
        plan_faults(RunConfig(net="netns", nemesis_schedule=str(path)), NODES)
    for cut in ({"shape": "mute-leader"}, {"grudge": {"n1": ["n2"]}}):
        path.write_text(json.dumps([{"at": 1, "f": "partition", "value": cut}]))
        with pytest.raises(UserError, match=r"cannot inject one-way cuts .*TCP"):
            plan_faults(RunConfig(net="netns", nemesis_schedule=str(path)), NODES)
        assert plan_faults(RunConfig(net="proxy", nemesis_schedule=str(path)), NODES) == {}
    path.write_text(json.dumps([{"at": 1, "f": "partition",
                                 "value": {"grudge": {"n1": ["n2"], "n2": ["n1"]}}}]))
    assert plan_faults(RunConfig(net="netns", nemesis_schedule=str(path)), NODES) == {}


def test_a_generated_schedule_cuts_one_way_only_where_the_network_can(no_netem):
    from harness.run.run import build_schedule
    from nemesis.faults import one_way

    def one_way_cuts(net: str) -> int:
        config = RunConfig(net=net, nemesis=["partition", "kill"], time_limit=300, seed=4)
        schedule = build_schedule(config, ["n1", "n2", "n3", "n4", "n5"])
        return sum(map(one_way, schedule))

    assert one_way_cuts("proxy") > 10
    assert one_way_cuts("netns") == 0


def test_a_fault_that_fails_mid_run_makes_an_otherwise_valid_run_exit_2(monkeypatch,
                                                                        tmp_path: Path):
    """--net none cannot partition; with the refusal bypassed, the partition fails when
    it fires. Before, that was an info event and the run exited 0."""
    monkeypatch.setattr("harness.run.run.unsupported_faults", lambda config: {})
    schedule = tmp_path / "cut.json"
    schedule.write_text(json.dumps([{"at": 0.5, "f": "partition",
                                     "value": {"shape": "halves"}},
                                    {"at": 1.5, "f": "heal", "value": None}]))
    config = RunConfig(nodes=3, time_limit=2, rate=40, concurrency=2, keys=2, net="none",
                       nemesis_schedule=str(schedule), store=str(tmp_path / "store"),
                       quiet_period=0.5, render_report=False)
    outcome = run_test(config)
    assert outcome.fault_errors and "partition" in outcome.fault_errors[0]
    assert "--net none has no link faults" in outcome.fault_errors[0]
    assert outcome.exit_code == EXIT_UNKNOWN
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert results["valid"] == "unknown" and results["fault_errors"] == outcome.fault_errors
    assert "1 fault(s) of the schedule failed" in summary(outcome)
