"""`splitbrain campaign`: the rotation, the loop's stops and exit codes, campaign.json."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import campaign as campaign_cli
from harness.cli.main import build_parser
from harness.cli.main import main as cli_main
from harness.cli.run import config_from_args
from harness.run import campaign as cmp
from harness.run.run import RunOutcome


def plans(seed: int, n: int = 40, **kwargs: Any) -> list[cmp.RunPlan]:
    return list(itertools.islice(cmp.rotation(seed, **kwargs), n))


#: Runs within which every value of every axis comes, whatever the seed (the longest
#: deck, the fault mixes, has 12 cards).
COVERED_WITHIN = 12


@given(st.integers(0, 2**40))
@settings(max_examples=50, deadline=None)
def test_every_value_of_every_axis_comes_within_a_dozen_runs(seed: int) -> None:
    runs = plans(seed)
    assert runs == plans(seed), "a campaign's plans are determined by its seed"
    assert [p.index for p in runs] == list(range(40))
    assert len({p.seed for p in runs}) == 40, "each run has a seed of its own"
    first = runs[:COVERED_WITHIN]
    assert {p.nodes for p in first} == cmp.values(cmp.NODE_COUNTS) == {3, 5, 7}
    assert {p.read_mode for p in first} == cmp.values(cmp.READ_MODES)
    assert {p.snapshot_threshold for p in first} == cmp.values(cmp.SNAPSHOT_THRESHOLDS)
    assert {p.retry_share for p in first} == cmp.values(cmp.RETRY_SHARES)
    assert {p.nemesis for p in first} == cmp.values(cmp.FAULT_MIXES)
    assert {p.nemesis_interval for p in first} == cmp.values(cmp.NEMESIS_INTERVALS)
    assert {p.time_limit for p in first} == cmp.values(cmp.RUN_SECONDS)
    assert {p.election_timeout for p in first} == cmp.values(cmp.ELECTION_TIMEOUTS)
    assert {p.pin_share for p in first} == cmp.values(cmp.PIN_SHARES)
    assert {p.concurrency for p in first} == cmp.values(cmp.CONCURRENCIES)
    # and again in any later dozen: a value never waits longer than two decks
    later = runs[COVERED_WITHIN * 2:]
    assert {p.nemesis for p in later} == cmp.values(cmp.FAULT_MIXES)
    assert {p.read_mode for p in later} == cmp.values(cmp.READ_MODES)


def _lease_with_hangs(plan: cmp.RunPlan) -> bool:
    return plan.read_mode in ("mixed", "lease") and (
        plan.nemesis == "all" or "pause" in plan.nemesis.split(","))


def test_revealing_combinations_are_common_and_axes_do_not_move_in_lockstep() -> None:
    """Over many seeds, lease reads meet hung leaders in about 4/5 x 7/12 of the runs
    (the product of the marginals: the axes are independent), and in a campaign's
    first four runs for nearly every seed; the co-prime cycles never paired them in
    the first runs of seeds 1 and 2."""
    seeds = range(200)
    runs = [p for seed in seeds for p in plans(seed, 12)]
    share = sum(map(_lease_with_hangs, runs)) / len(runs)
    assert abs(share - 4 / 5 * 7 / 12) < 0.05, share
    early = sum(any(map(_lease_with_hangs, plans(seed, 4))) for seed in seeds)
    assert early >= 0.9 * len(seeds), early
    assert all(any(map(_lease_with_hangs, plans(seed, 4))) for seed in (1, 2, 3))
    # independence: the read mode does not determine the fault mix (all pairs meet)
    pairs = {(p.read_mode, p.nemesis) for p in runs}
    assert len(pairs) == len(cmp.values(cmp.READ_MODES)) * len(cmp.values(cmp.FAULT_MIXES))
    mixed = [p for p in runs if p.read_mode == "mixed"]
    assert abs(sum(p.nemesis == "all" for p in mixed) / len(mixed) - 3 / 12) < 0.05


def test_other_seeds_other_plans_and_fixed_choices_stay_fixed() -> None:
    assert plans(1, 5) != plans(2, 5)
    assert {p.nodes for p in plans(1, nodes=3)} == {3}
    # fixing one axis leaves the others' draws of a seed as they were
    assert [p.nemesis for p in plans(1, nodes=3)] == [p.nemesis for p in plans(1)]
    etcd = plans(1, db="etcd")
    assert {p.read_mode for p in etcd} == {"mixed"}
    assert {p.snapshot_threshold for p in etcd} == {None}
    assert {p.election_timeout for p in etcd} == {None}
    assert {p.nemesis for p in etcd} == cmp.values(cmp.NODE_FAULT_MIXES)


def test_a_plan_is_an_ordinary_run_command(tmp_path: Path) -> None:
    """The printed `splitbrain run` line parses into exactly the planned configuration."""
    plan = next(p for p in plans(5) if p.snapshot_threshold is not None
                and p.election_timeout is not None)
    words = plan.run_args(db="raft_impl", bugs=["no-dedup"], store_dir=str(tmp_path))
    args = build_parser().parse_args([*words, "--no-display"])
    args.argv = words
    config = config_from_args(args)
    assert (config.nodes, config.read_mode, config.retry_share, config.seed) == (
        plan.nodes, plan.read_mode, plan.retry_share, plan.seed)
    assert (config.pin_share, config.concurrency) == (plan.pin_share, plan.concurrency)
    assert config.nemesis_interval == plan.nemesis_interval
    assert config.time_limit == plan.time_limit and config.bugs == ["no-dedup"]
    assert config.node_args == [f"--snapshot-threshold={plan.snapshot_threshold}",
                                f"--election-timeout={plan.election_timeout}"]
    assert cmp.reproduce_line(words).startswith("splitbrain run --db raft_impl --nodes ")


def test_fitting_runs_into_the_remaining_minutes() -> None:
    assert cmp.fit_time_limit(60, 600, None) == 60
    assert cmp.fit_time_limit(60, 600, 10) == 10
    assert cmp.fit_time_limit(60, 40, None) == 40 - cmp.RUN_OVERHEAD
    assert cmp.fit_time_limit(60, cmp.RUN_OVERHEAD + 4, None) is None


STATUSES = ("valid", "invalid", "unknown", "error", "interrupted")


@given(st.lists(st.sampled_from(STATUSES), max_size=8), st.booleans())
def test_exit_code_aggregation(statuses: list[str], interrupted: bool) -> None:
    code = cmp.campaign_exit_code(statuses, interrupted=interrupted)
    if "invalid" in statuses:
        assert code == 1
    elif statuses and not interrupted and set(statuses) == {"valid"}:
        assert code == 0
    else:
        assert code == 2


class FakeRuns:
    """Executes run commands instantly with scripted verdicts, on a fake clock."""

    def __init__(self, tmp_path: Path, script: list[str], seconds: float = 60.0) -> None:
        self.tmp_path, self.script, self.seconds = tmp_path, list(script), seconds
        self.now = 0.0
        self.commands: list[list[str]] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, command: list[str]) -> RunOutcome:
        self.commands.append(command)
        self.now += self.seconds
        status = self.script.pop(0) if self.script else "valid"
        if status == "interrupt":
            raise KeyboardInterrupt
        if status == "crash":
            raise ImportError("cannot import name 'X'")
        run_dir = self.tmp_path / "store" / "t" / f"run{len(self.commands)}"
        run_dir.mkdir(parents=True)
        code = {"valid": 0, "invalid": 1}.get(status, 2)
        outcome = RunOutcome(run_dir, code, interrupted=status == "interrupted")
        if status in ("valid", "invalid", "unknown"):
            outcome.results = {"valid": {"valid": True, "invalid": False}.get(status, "unknown"),
                               "checkers": {"linearizable": {
                                   "valid": {"valid": True, "invalid": False}.get(
                                       status, "unknown")}}}
            outcome.coverage = {"faults": {"kill": 1}, "compositions": {"kill+partition": 1},
                                "elections": 2, "max_follower_lag": len(self.commands)}
        if status == "invalid":
            outcome.headline = "Stale read: process 3 read k1 = 4 ..."
            (run_dir / "report.html").write_text("<html></html>")
        if status == "error":
            outcome.error = "RuntimeError: no leader"
        return outcome


def campaign_with(tmp_path: Path, script: list[str], **config: Any) -> tuple[cmp.Campaign,
                                                                             FakeRuns]:
    runs = FakeRuns(tmp_path, script)
    settings = {"minutes": 10.0, "seed": 3, "store": str(tmp_path / "store"), **config}
    result = cmp.run_campaign(cmp.CampaignConfig(**settings), execute=runs, clock=runs.clock)
    return result, runs


def test_all_valid_runs_until_the_minutes_are_used(tmp_path: Path) -> None:
    campaign, runs = campaign_with(tmp_path, [])
    # 60 s per fake run: runs start while a worthwhile one still fits in 10 minutes
    assert len(campaign.runs) == 10 and campaign.exit_code == 0
    assert campaign.stopped_because == "time is up"
    assert [c[c.index("--seed") + 1] for c in runs.commands] == [
        str(p.seed) for p in plans(3, 10)]
    data = json.loads((campaign.directory / cmp.files.CAMPAIGN_JSON).read_text())
    assert data["status"] == "valid" and data["exit_code"] == 0
    assert data["counts"] == {"valid": 10} and data["first_invalid"] is None
    assert data["campaign"]["seed"] == 3 and len(data["runs"]) == 10
    run = data["runs"][0]
    assert set(run) >= {"index", "seed", "config", "command", "status", "run_dir", "coverage"}
    assert run["run_dir"] == "t/run1" and run["config"]["nodes"] in (3, 5, 7)
    assert data["coverage"]["runs"] == 10 and data["coverage"]["faults"] == {"kill": 10}
    assert data["coverage"]["max_follower_lag"] == 10
    index = (tmp_path / "store" / "index.html").read_text()
    assert campaign.directory.name in index and "campaign.json" in index


def test_the_first_invalid_run_stops_the_campaign_with_its_evidence(tmp_path: Path) -> None:
    campaign, runs = campaign_with(tmp_path, ["valid", "unknown", "invalid", "valid"])
    assert len(runs.commands) == 3 and campaign.exit_code == 1
    lines = cmp.summary_lines(campaign)
    assert "evidence: Stale read: process 3 read k1 = 4 ..." in lines
    assert any(line.startswith("report: ") and line.endswith("report.html") for line in lines)
    repeat = next(line for line in lines if line.startswith("repeat: "))
    assert repeat == "repeat: " + cmp.reproduce_line(runs.commands[2])
    assert "invalid: run 3 after 3.0 min, failing linearizable" in lines
    assert lines[-1] == "verdict: invalid"
    data = json.loads((campaign.directory / cmp.files.CAMPAIGN_JSON).read_text())
    assert data["first_invalid"]["index"] == 2 and data["first_invalid"]["minutes"] == 3.0
    assert data["counts"] == {"invalid": 1, "unknown": 1, "valid": 1}


def test_keep_going_runs_on_and_still_exits_1(tmp_path: Path) -> None:
    campaign, runs = campaign_with(tmp_path, ["invalid", "valid"], minutes=3, keep_going=True)
    assert len(runs.commands) == 3 and campaign.exit_code == 1


def test_unknown_verdicts_do_not_stop_but_exit_2(tmp_path: Path) -> None:
    campaign, runs = campaign_with(tmp_path, ["unknown"], minutes=3)
    assert len(runs.commands) == 3 and campaign.exit_code == 2
    assert "unknown: run 1 (t/run1): the checkers could not decide" in cmp.summary_lines(
        campaign)


def test_an_unknown_verdict_says_why() -> None:
    outcome = RunOutcome(Path("r"), 2, results={
        "valid": "unknown", "fault_errors": ["start (schedule at 15 s): DBError: n1 exited"],
        "checkers": {"linearizable": {"valid": True}, "log-order": {
            "valid": "unknown", "checkers": {"digests": {
                "valid": "unknown", "reason": "no state digest after healing from n1"}}}}},
        unexpected_exits=["n1"])
    assert cmp.unknown_reason(outcome) == (
        "log-order.digests: no state digest after healing from n1; fault failed: start "
        "(schedule at 15 s): DBError: n1 exited; nodes exited by themselves: n1")


def test_a_run_that_could_not_complete_stops_with_2(tmp_path: Path) -> None:
    campaign, runs = campaign_with(tmp_path, ["valid", "error", "valid"])
    assert len(runs.commands) == 2 and campaign.exit_code == 2
    assert campaign.stopped_because == "a run could not complete"
    assert any("RuntimeError: no leader" in line for line in cmp.summary_lines(campaign))


def test_an_internal_error_in_a_run_stops_with_2_not_1(tmp_path: Path) -> None:
    campaign, runs = campaign_with(tmp_path, ["valid", "crash", "valid"])
    assert len(runs.commands) == 2 and campaign.exit_code == 2
    assert campaign.runs[1].status == "error"
    assert campaign.runs[1].error == "ImportError: cannot import name 'X'"
    assert "error: run 2: ImportError: cannot import name 'X'" in cmp.summary_lines(campaign)
    data = json.loads((campaign.directory / cmp.files.CAMPAIGN_JSON).read_text())
    assert data["runs"][1]["status"] == "error" and data["exit_code"] == 2


@pytest.mark.parametrize("how", ["interrupted", "interrupt"])
def test_ctrl_c_stops_cleanly_with_the_summary_so_far(tmp_path: Path, how: str) -> None:
    campaign, runs = campaign_with(tmp_path, ["valid", how, "valid"])
    assert len(runs.commands) == 2 and campaign.exit_code == 2 and campaign.interrupted
    assert [r.status for r in campaign.runs] == ["valid", "interrupted"]
    data = json.loads((campaign.directory / cmp.files.CAMPAIGN_JSON).read_text())
    assert data["status"] == "interrupted" and data["finished_utc"]


def test_a_campaign_always_makes_one_run(tmp_path: Path) -> None:
    campaign, runs = campaign_with(tmp_path, [], minutes=0.1)
    assert len(runs.commands) == 1 and campaign.exit_code == 0
    words = runs.commands[0]
    assert words[words.index("--time-limit") + 1] == f"{cmp.MIN_RUN_SECONDS:g}"


def test_the_cli_refuses_bad_arguments_in_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for words in (["--minutes", "0"], ["--minutes", "1", "--nodes", "4"],
                  ["--minutes", "1", "--bug", "nonsense"],
                  ["--minutes", "1", "--max-run-seconds", "1"],
                  ["--minutes", "1", "--db", "maelstrom"]):  # no --bin: every run failed
        assert cli_main(["campaign", *words, "--store", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("splitbrain: error: ") and err.count("\n") == 1


def test_a_short_real_campaign_is_valid_and_says_what_it_covered(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One real 5 s run (the campaign always makes one) on the correct implementation."""
    store = tmp_path / "store"
    code = cli_main(["campaign", "--minutes", "0.2", "--nodes", "3", "--max-run-seconds", "5",
                     "--seed", "2", "--store", str(store)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: valid" in out and "covered: reads ok/invoked: " in out
    data = json.loads(next(store.glob("campaigns/*/campaign.json")).read_text())
    assert data["status"] == "valid" and data["counts"] == {"valid": 1}
    run = data["runs"][0]
    assert (store / run["run_dir"] / "coverage.json").is_file()
    assert run["coverage"]["ops"]["ok"] > 0 and data["coverage"]["runs"] == 1


def test_sigterm_stops_the_campaign_like_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal

    runs = FakeRuns(tmp_path, ["valid"])

    def execute(command: list[str]) -> RunOutcome:
        if runs.commands:  # the second run: a CI job's timeout sends SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)
        return runs(command)

    monkeypatch.setattr(campaign_cli, "execute_run", execute)
    before = signal.getsignal(signal.SIGTERM)
    code = cli_main(["campaign", "--minutes", "5", "--seed", "1",
                     "--store", str(tmp_path / "store")])
    out = capsys.readouterr().out
    assert code == 2 and signal.getsignal(signal.SIGTERM) == before
    assert "run 1: valid in 0 s (t/run1)" in out  # the real clock: fake runs are instant
    assert "runs: 1 interrupted, 1 valid (stopped: interrupted)" in out
    assert out.rstrip().endswith("verdict: unknown")
    assert "run 2 at 0.0 min: " in out
