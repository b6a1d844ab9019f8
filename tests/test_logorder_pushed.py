"""Crafted pushed observations (committed entries, snapshots, complaints): judged entry by
entry however often the nodes compact, and never a false alarm from how pushes and polls
interleave in the file."""

from __future__ import annotations

import pytest
from logorder_helpers import Hist, Obs, entry, kinds, sub

from checker.errors import InputError
from checker.logorder import Observations
from checker.logorder.complaints import ComplaintTracker

NODES = ("n1", "n2", "n3")


def writes_log(count: int, term: int = 1) -> list[dict]:
    """A noop at index 1, then writes of client c1 with seq 1..count."""
    return [entry(1, term)] + [entry(i + 1, term, client="c1", seq=i, duplicate=False)
                               for i in range(1, count + 1)]


def acked(tmp_path, seqs) -> object:
    hist = Hist()
    for seq in seqs:
        hist.write_op(0, "c1", seq, invoked=seq * 10_000, completed=seq * 10_000 + 5_000)
    return hist.load(tmp_path / "history.jsonl")


def compacted_run(obs: Obs, pushed: bool, count: int = 5) -> list[dict]:
    """Every node applies 1..count+1 and compacts all of it before any poll sees it;
    with ``pushed`` the nodes pushed each entry as they applied it."""
    log = writes_log(count)
    obs.role("n1", 1, "leader")
    for node in NODES:
        if pushed:
            obs.committed(node, log[:3])
            obs.committed(node, log[3:])
            obs.snapshot(node, len(log), 1, digest="state-x")
        # The polls only ever see what came after: one more client's write.
        last = entry(len(log) + 1, 1, client="c9", seq=1)
        obs.log(node, [last], commit=len(log) + 1, snapshot_index=len(log), snapshot_term=1)
    obs.healed()
    for node in NODES:
        obs.digest(node, len(log), "state-x")
    return log


def test_compaction_between_polls_is_unknown_without_pushes_and_judged_with_them(tmp_path):
    obs = Obs()
    compacted_run(obs, pushed=False)
    polled = sub(obs.check(acked(tmp_path, range(1, 6))), "acked-writes")
    assert polled["valid"] == "unknown" and "under a snapshot" in polled["reason"]

    obs = Obs()
    compacted_run(obs, pushed=True)
    result = obs.check(acked(tmp_path, range(1, 6)))
    assert result["valid"] is True, result
    assert result["observations"]["pushed"]["committed_entries"] == 18
    assert result["observations"]["pushed"]["snapshots_taken"] == 3


def test_with_pushes_an_acked_write_in_no_entry_is_lost_not_unknown(tmp_path):
    obs = Obs()
    compacted_run(obs, pushed=True)  # c1 seq 1..5 applied; seq 6 acked but nowhere
    result = sub(obs.check(acked(tmp_path, range(1, 7))), "acked-writes")
    assert kinds(result) == ["acknowledged-write-lost"]
    assert result["violations"][0]["op"]["seq"] == 6


def test_pushed_entries_that_differ_between_nodes_are_named():
    obs = Obs()
    obs.committed("n1", [entry(1, 1), entry(2, 1)])
    obs.committed("n2", [entry(1, 1), entry(2, 2)])
    agreement = sub(obs.check(), "log-agreement")
    assert kinds(agreement) == ["committed-entries-differ"]
    violation = agreement["violations"][0]
    assert violation["index"] == 2 and violation["nodes"] == ["n1", "n2"]
    assert violation["second"]["line"] == 2


def test_a_pushed_entry_that_differs_from_a_dumped_committed_one_is_named():
    obs = Obs()
    obs.log("n1", [entry(1, 1), entry(2, 1)], commit=2)
    obs.committed("n2", [entry(1, 1), entry(2, 1, variant="other")])
    assert kinds(sub(obs.check(), "log-agreement")) == ["committed-entries-differ"]


def test_a_node_applying_a_different_entry_at_an_index_it_applied_is_named():
    obs = Obs()
    obs.committed("n1", [entry(1, 1), entry(2, 1)])
    obs.mark("n1", "crash")
    obs.mark("n1", "restart")
    obs.committed("n1", [entry(2, 1)])  # re-applied after the restart: the same, fine
    assert sub(obs.check(), "committed-durability")["valid"] != False  # noqa: E712
    obs.committed("n1", [entry(2, 3)])
    durability = sub(obs.check(), "committed-durability")
    assert kinds(durability) == ["committed-entry-changed"]
    assert durability["violations"][0]["index"] == 2


def test_a_push_written_before_an_older_dump_is_no_loss():
    """The node pushed 1..10, but a dump it answered earlier (commit 5, log up to 7, with
    another uncommitted entry at 7) reaches the file after the push: nothing was lost."""
    obs = Obs()
    obs.role("n1", 2, "leader")
    obs.committed("n1", [entry(i, 1) for i in range(1, 11)])
    obs.log("n1", [entry(i, 1) for i in range(1, 7)] + [entry(7, 1, variant="old")],
            commit=5)
    obs.log("n1", [entry(i, 1) for i in range(1, 11)], commit=10)
    result = obs.check()
    assert sub(result, "committed-durability")["valid"] is True, result
    assert sub(result, "log-agreement")["valid"] is True


def test_snapshot_terms_are_checked_whichever_comes_first():
    for claim_first in (True, False):
        obs = Obs()
        if claim_first:
            obs.snapshot("n2", 2, 5)
        obs.committed("n1", [entry(1, 1), entry(2, 1)])
        if not claim_first:
            obs.snapshot("n2", 2, 5)
        agreement = sub(obs.check(), "log-agreement")
        assert kinds(agreement) == ["snapshot-term-mismatch"], claim_first
        assert agreement["violations"][0]["node"] == "n2"


def test_snapshot_digests_are_compared_like_state_digests():
    obs = Obs()
    obs.snapshot("n1", 200, 1, digest="aaa")
    obs.snapshot("n2", 200, 1, digest="aaa", source="installed")
    obs.digest("n3", 200, "bbb")
    digests = sub(obs.check(), "digests")
    assert kinds(digests) == ["state-digests-differ"]
    assert digests["violations"][0]["applied"] == 200


def test_pushed_retry_flags_decide_exactly_once(tmp_path):
    for second, expected in ((True, True), (False, False)):
        obs = Obs()
        obs.committed("n1", [entry(1, 1), entry(2, 1, client="c1", seq=1, duplicate=False),
                             entry(3, 2, client="c1", seq=1, duplicate=second)])
        for node in NODES:
            obs.log(node, [], commit=3, snapshot_index=3, snapshot_term=2)
        result = sub(obs.check(acked(tmp_path, [1])), "acked-writes")
        assert result["valid"] is expected, result
        if not expected:
            assert kinds(result) == ["applied-twice"]


def test_node_complaints_fail_the_run_with_node_time_and_line():
    obs = Obs()
    obs.committed("n1", [entry(1, 1)])
    obs.complaint("n2", "commit-beyond-log", details={"commit": 9, "last_index": 7},
                  source="event")
    obs.complaint("n3", "truncated-applied-entries", source="output",
                  file="nodes/n3/stderr.log", file_line=12, text="truncating already-applied")
    obs.complaint("n3", "commit-beyond-journal", severity="warning", source="output")
    observations = obs.observations()
    result = observations.complaints.result(observations.pushing)
    assert result["valid"] is False
    first, second = result["violations"]
    assert (first["node"], first["complaint"], first["line"]) == ("n2", "commit-beyond-log", 2)
    assert first["time"] == obs.records[1]["time"]
    assert (second["file"], second["file_line"]) == ("nodes/n3/stderr.log", 12)
    assert "truncating already-applied" in second["message"]
    assert [w["complaint"] for w in result["warnings"]] == ["commit-beyond-journal"]


def test_warnings_alone_pass_and_nothing_watched_is_unknown():
    obs = Obs()
    obs.complaint("n1", "commit-beyond-journal", severity="warning")
    observations = obs.observations()
    tracker = observations.complaints
    assert tracker.result(set(), {"patterns": ["commit-beyond-journal"]})["valid"] is True
    unknown = ComplaintTracker().result(set(), None)
    assert unknown["valid"] == "unknown" and "nothing could complain" in unknown["reason"]
    assert ComplaintTracker().result({"n1"})["valid"] is True


@pytest.mark.parametrize("record, message", [
    ({"kind": "snapshot", "node": "n1", "source": "stolen", "index": 3, "term": 1},
     "'source'"),
    ({"kind": "snapshot", "node": "n1", "source": "taken", "index": 0, "term": 1}, "'index'"),
    ({"kind": "complaint", "node": "n1", "complaint": "x", "severity": "meh"}, "'severity'"),
    ({"kind": "complaint", "node": "n1"}, "'complaint'"),
    ({"kind": "committed", "node": "n1", "entries": [{"index": 1}]}, "entries[0]"),
    ({"kind": "events-dropped", "node": "n1", "first": 3}, "'last'"),
])
def test_malformed_pushed_records_name_the_field(record, message):
    with pytest.raises(InputError) as error:
        Observations.from_records([{"time": 1, **record}])
    assert message in str(error.value) and error.value.line == 1
