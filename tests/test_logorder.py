"""Crafted node logs: every log-order violation is found and named; clean logs pass."""

from __future__ import annotations

import json

import pytest
from logorder_helpers import MS, Hist, Obs, entry, kinds, log_of, sub

from checker.errors import InputError
from checker.logorder import Observations, check_log_order, load_observations

NODES = ("n1", "n2", "n3")


def client_log(count: int, term: int = 1, client: str = "c1") -> list[dict]:
    """A noop at index 1, then ``count`` writes of ``client`` with seq 1.."""
    return [entry(1, term)] + [
        entry(i + 1, term, client=client, seq=i) for i in range(1, count + 1)
    ]


def clean_run(obs: Obs, writes: int = 5) -> list[dict]:
    """Three nodes, one leader, logs growing to ``writes`` + 1 entries, healed, converged."""
    full = client_log(writes)
    obs.role("n1", 1, "candidate")
    obs.role("n1", 1, "leader")
    obs.role("n2", 1, "follower")
    obs.status("n3", "follower", 1, leader="n1")
    obs.log("n1", full[:4], commit=3)
    obs.log("n2", full[:3], commit=2)
    obs.log("n3", full[:2], commit=1)
    obs.status("n1", "leader", 1, leader="n1", commit=3)
    for node in NODES:
        obs.log(node, full, commit=len(full))
    obs.healed()
    for node in NODES:
        obs.digest(node, len(full), "state-abc")
    return full


def acked_history(tmp_path, writes: int = 5, client: str = "c1"):
    """Writes seq 1..writes, each acknowledged, one after another, before any dump."""
    hist = Hist()
    for seq in range(1, writes + 1):
        hist.write_op(0, client, seq, invoked=seq * 10_000, completed=seq * 10_000 + 5_000)
    return hist.load(tmp_path / "history.jsonl")


def test_clean_run_passes_every_checker(tmp_path):
    obs = Obs()
    clean_run(obs)
    result = obs.check(acked_history(tmp_path))
    assert result["valid"] is True, json.dumps(result, indent=1)
    assert set(result["checkers"]) == {
        "log-agreement", "committed-durability", "leader-per-term", "acked-writes", "digests"}
    assert sub(result, "log-agreement")["max_committed_index"] == 6
    assert sub(result, "acked-writes")["acknowledged_writes"] == 5
    assert sub(result, "digests")["converged_at"] == 6


def test_from_file_matches_from_records_and_names_lines(tmp_path):
    obs = Obs()
    clean_run(obs)
    obs.log("n2", log_of([1, 1, 1], variant="x"), commit=3)  # a different committed index 2..3
    path = obs.write(tmp_path / "observations.jsonl")
    from_file = check_log_order(load_observations(path))
    from_records = obs.check()
    assert from_file["valid"] is False
    assert from_file["checkers"]["log-agreement"] == from_records["checkers"]["log-agreement"]
    violation = sub(from_file, "log-agreement")["violations"][0]
    assert violation["second"]["line"] == len(obs.records)


# -- (a) agreement ------------------------------------------------------------------------------

def test_committed_entries_that_differ_between_nodes_are_named():
    obs = Obs()
    obs.log("n1", log_of([1, 1, 1]), commit=3)
    seen = obs.log("n2", [*log_of([1, 1]), entry(3, 1, variant="other")], commit=3)
    obs.log("n3", log_of([1, 1]), commit=2)
    agreement = sub(obs.check(), "log-agreement")
    assert agreement["valid"] is False
    [violation] = agreement["violations"]
    assert violation["kind"] == "committed-entries-differ"
    assert violation["index"] == 3
    assert violation["time"] == seen["time"]  # when the checker could first see it
    assert violation["nodes"] == ["n1", "n2"]
    assert violation["first"]["entry"]["digest"] == "i3t1"
    assert violation["second"]["entry"]["digest"] == "i3t1other"


def test_agreement_is_checked_across_time_not_only_at_one_moment():
    obs = Obs()
    obs.log("n1", log_of([1, 1, 2]), commit=3)
    # Much later, n3 (which never overlapped n1's dump) commits index 3 differently.
    obs.log("n3", log_of([1, 1]), commit=2)
    obs.log("n3", log_of([1, 1, 3]), commit=3, time=10_000 * MS)
    violation = sub(obs.check(), "log-agreement")["violations"][0]
    assert (violation["index"], violation["nodes"]) == (3, ["n1", "n3"])
    assert violation["first"]["entry"]["term"] == 2 and violation["second"]["entry"]["term"] == 3


def test_divergent_uncommitted_tails_are_not_violations():
    obs = Obs()
    obs.log("n1", log_of([1, 1, 1, 1]), commit=2)  # old leader with an uncommitted tail
    obs.log("n2", log_of([1, 1, 2, 2]), commit=4)  # new leader overwrote 3..4
    obs.log("n3", log_of([1, 1, 2]), commit=3)
    obs.log("n1", log_of([1, 1, 2, 2]), commit=4)  # n1's tail was overwritten
    result = obs.check()
    assert sub(result, "log-agreement")["valid"] is True
    assert sub(result, "committed-durability")["valid"] is True


def test_snapshot_term_must_match_the_committed_entry():
    obs = Obs()
    obs.log("n1", log_of([1, 1, 2, 2]), commit=4)
    obs.log("n2", log_of([2], start=4), commit=4, snapshot_index=3, snapshot_term=1)
    for node in NODES:
        obs.log(node, log_of([1, 1, 2, 2]), commit=4)
    agreement = sub(obs.check(), "log-agreement")
    assert kinds(agreement) == ["snapshot-term-mismatch"]
    violation = agreement["violations"][0]
    assert (violation["node"], violation["index"]) == ("n2", 3)
    assert violation["committed"]["entry"]["term"] == 2


def test_one_dump_listing_an_index_twice_differently():
    obs = Obs()
    obs.log("n1", [*log_of([1, 1]), entry(2, 1, variant="again")], commit=1)
    agreement = sub(obs.check(), "log-agreement")
    assert kinds(agreement) == ["index-listed-twice"]
    assert agreement["violations"][0]["index"] == 2


# -- (b) durability -----------------------------------------------------------------------------

def test_committed_entry_changed_on_the_same_node_after_restart():
    obs = Obs()
    obs.log("n1", log_of([1, 1, 1, 1]), commit=4)
    obs.status("n1", "leader", 1, commit=4)  # applied 4: durable on n1
    obs.mark("n1", "crash")
    obs.mark("n1", "restart")
    # Restarted with a lower commit index and a different entry at 4: not excused.
    obs.log("n1", [*log_of([1, 1, 1]), entry(4, 2)], commit=2)
    durability = sub(obs.check(), "committed-durability")
    assert durability["valid"] is False
    violation = durability["violations"][0]
    assert violation["kind"] == "committed-entry-changed"
    assert (violation["node"], violation["index"]) == ("n1", 4)
    assert violation["before"]["entry"]["term"] == 1
    assert violation["after"]["entry"]["term"] == 2


def test_unwritten_committed_entry_may_come_back_different_after_a_crash():
    # n1 had seen index 4 committed but not applied (maybe not written). After a crash it
    # may even hold a stale leader's entry there, uncommitted: no alarm on n1.
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1, 1, 1, 1]), commit=4)
    obs.digest("n1", 3, "state-3")
    obs.mark("n1", "crash")
    obs.mark("n1", "restart")
    obs.log("n1", [*log_of([1, 1, 1]), entry(4, 2)], commit=3)
    assert sub(obs.check(), "committed-durability")["valid"] is True
    # ... but were it ever committed there, the cluster-wide agreement catches it.
    obs.log("n1", [*log_of([1, 1, 1]), entry(4, 2)], commit=4)
    assert sub(obs.check(), "log-agreement")["valid"] is False


def test_lower_commit_after_restart_with_the_same_entries_is_fine():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1, 1, 1, 1]), commit=4)
    obs.mark("n1", "crash")
    obs.mark("n1", "restart")
    obs.log("n1", log_of([1, 1, 1, 1]), commit=1)
    obs.log("n1", log_of([1, 1, 1, 1, 2]), commit=5)
    result = obs.check()
    assert sub(result, "committed-durability")["valid"] is True, result
    assert sub(result, "log-agreement")["valid"] is True


def test_applied_entries_vanishing_across_a_plain_crash():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 5), commit=5)
    obs.status("n2", "follower", 1, commit=5)  # applied 5: entries 1..5 were durable on n2
    obs.mark("n2", "crash")
    obs.mark("n2", "restart")
    obs.log("n2", log_of([1] * 3), commit=3)
    durability = sub(obs.check(), "committed-durability")
    assert kinds(durability) == ["committed-entries-lost"]
    violation = durability["violations"][0]
    assert violation["node"] == "n2"
    assert violation["indexes"] == [4, 5]
    assert violation["crash_between"] is True and violation["applied_before"] == 5
    assert violation["first_lost"]["entry"]["digest"] == "i4t1"


def test_unapplied_committed_entries_may_vanish_across_a_crash():
    # A follower learns the commit index before it has written the entries; a crash in
    # that moment loses them on that node only. Nothing it had applied may go.
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 5), commit=5)
    obs.digest("n2", 3, "state-3")
    obs.mark("n2", "crash")
    obs.mark("n2", "restart")
    obs.log("n2", log_of([1] * 3), commit=3)
    obs.log("n2", log_of([1] * 6), commit=6)
    for node in ("n1", "n3"):
        obs.log(node, log_of([1] * 6), commit=6)
    assert sub(obs.check(), "committed-durability")["valid"] is True


def test_lose_unfsynced_may_not_lose_applied_entries():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 6), commit=6)
    obs.digest("n1", 6, "state-6")  # n1 applied 6, so it had fsynced 1..6
    obs.mark("n1", "lose-unfsynced")
    obs.mark("n1", "restart")
    obs.log("n1", log_of([1] * 4), commit=4)
    durability = sub(obs.check(), "committed-durability")
    [violation] = durability["violations"]
    assert violation["kind"] == "committed-entries-lost"
    assert (violation["node"], violation["indexes"]) == ("n1", [5, 6])
    assert violation["lose_unfsynced_between"] is True


def test_committed_entries_vanishing_while_running():
    obs = Obs()
    obs.log("n3", log_of([1] * 6), commit=6)
    obs.log("n3", log_of([1] * 4), commit=4)
    violation = sub(obs.check(), "committed-durability")["violations"][0]
    assert violation["kind"] == "committed-entries-lost"
    assert (violation["node"], violation["indexes"], violation["crash_between"]) == (
        "n3", [5, 6], False)


def test_lose_unfsynced_excuses_one_nodes_shorter_log():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 5), commit=5)
    obs.mark("n2", "lose-unfsynced")
    obs.mark("n2", "restart")
    obs.log("n2", log_of([1] * 3), commit=2)
    obs.log("n2", log_of([1] * 5 + [2]), commit=6)
    for node in ("n1", "n3"):
        obs.log(node, log_of([1] * 5 + [2]), commit=6)
    result = obs.check()
    assert sub(result, "committed-durability")["valid"] is True, result
    assert sub(result, "log-agreement")["valid"] is True


def test_lose_unfsynced_does_not_excuse_a_committed_entry_replaced_cluster_wide():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 5), commit=5)
    for node in ("n1", "n2"):
        obs.mark(node, "lose-unfsynced")
        obs.mark(node, "restart")
        obs.log(node, log_of([1] * 3), commit=3)
    # The majority that lost 4..5 elects a leader that commits new entries there.
    for node in ("n1", "n2"):
        obs.log(node, log_of([1] * 3 + [2, 2]), commit=5)
    result = obs.check()
    agreement = sub(result, "log-agreement")
    assert agreement["valid"] is False
    assert {v["index"] for v in agreement["violations"]} == {4, 5}
    assert all(v["kind"] == "committed-entries-differ" for v in agreement["violations"])


def test_committed_entries_lost_cluster_wide():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 5), commit=5)
    for node in NODES:
        obs.mark(node, "lose-unfsynced")
        obs.mark(node, "restart")
    for node in NODES:
        obs.log(node, log_of([1] * 3), commit=3)
    durability = sub(obs.check(), "committed-durability")
    assert durability["valid"] is False
    [violation] = durability["violations"]
    assert violation["kind"] == "committed-entries-lost-cluster-wide"
    assert violation["indexes"] == [4, 5]
    assert set(violation["final_dumps"]) == set(NODES)


def test_cluster_wide_loss_is_unknown_when_too_few_nodes_were_dumped_after():
    obs = Obs()
    obs.log("n1", log_of([1] * 3), commit=3)
    obs.log("n2", log_of([1] * 3), commit=1)
    obs.log("n3", log_of([1] * 5), commit=5)  # the only dump that shows 4..5 committed
    obs.mark("n3", "lose-unfsynced")
    obs.mark("n3", "restart")
    obs.log("n3", log_of([1] * 3), commit=3)
    durability = sub(obs.check(), "committed-durability")
    assert durability["valid"] == "unknown"
    assert durability["undecided_indexes"] == [[4, 5]]


def test_commit_index_beyond_the_log_and_holes():
    obs = Obs()
    obs.log("n1", log_of([1] * 4), commit=6)
    obs.log("n2", [entry(1, 1), entry(2, 1), entry(4, 1)], commit=4)
    durability = sub(obs.check(), "committed-durability")
    missing = {(v["node"], tuple(v["indexes"])) for v in durability["violations"]
               if v["kind"] == "committed-index-missing"}
    assert missing == {("n1", (5, 6)), ("n2", (3, 3))}


# -- snapshots, compaction and incremental dumps -------------------------------------------------

def test_compaction_and_incremental_dumps_are_not_violations(tmp_path):
    obs = Obs()
    full = client_log(8)
    for node in NODES:
        obs.log(node, full[:5], commit=5)
    # Compacted up to 4: entries 1..4 are no longer shown.
    obs.log("n1", full[4:], commit=9, snapshot_index=4, snapshot_term=1)
    obs.log("n2", full[6:], commit=9, from_index=7)  # incremental dump from index 7
    obs.log("n3", full, commit=9)
    obs.log("n2", full, commit=9)
    obs.role("n1", 1, "leader")
    result = obs.check(acked_history(tmp_path, writes=8))
    for name in ("log-agreement", "committed-durability", "acked-writes"):
        assert sub(result, name)["valid"] is True, (name, result)


def test_acked_write_found_in_an_earlier_dump_before_compaction(tmp_path):
    obs = Obs()
    full = client_log(5)
    for node in NODES:
        obs.log(node, full, commit=6)
    for node in NODES:
        obs.log(node, [], commit=6, snapshot_index=6, snapshot_term=1)
    acked = sub(obs.check(acked_history(tmp_path)), "acked-writes")
    assert acked["valid"] is True, acked


def test_acked_write_hidden_under_a_snapshot_nobody_showed_is_unknown(tmp_path):
    obs = Obs()
    for node in NODES:  # every dump already compacted: indexes 1..6 were never seen
        obs.log(node, [entry(7, 1, client="c9", seq=1)], commit=7, snapshot_index=6,
                snapshot_term=1)
    acked = sub(obs.check(acked_history(tmp_path)), "acked-writes")
    assert acked["valid"] == "unknown"
    assert acked["undecided_total"] == 5
    assert acked["undecided"][0]["unobserved_indexes"] == [[1, 6]]


# -- (c) leaders --------------------------------------------------------------------------------

def test_two_leaders_in_one_term_are_named():
    obs = Obs()
    obs.role("n1", 3, "leader")
    obs.role("n2", 3, "follower")
    obs.status("n2", "leader", 3, leader="n2")
    obs.role("n3", 4, "leader")
    leaders = sub(obs.check(), "leader-per-term")
    assert leaders["valid"] is False
    [violation] = leaders["violations"]
    assert violation["kind"] == "two-leaders" and violation["term"] == 3
    assert violation["time"] == violation["leaders"][1]["time"]
    assert [(c["node"], c["source"]) for c in violation["leaders"]] == [
        ("n1", "role"), ("n2", "status")]


def test_followers_beliefs_about_the_leader_are_not_leadership_claims():
    obs = Obs()
    obs.role("n1", 3, "leader")
    obs.status("n2", "follower", 3, leader="n3")  # stale belief: not evidence
    assert sub(obs.check(), "leader-per-term")["valid"] is True


def test_term_going_backwards_without_a_restart():
    obs = Obs()
    obs.role("n1", 5, "leader")
    obs.role("n1", 4, "follower")
    obs.role("n2", 5, "follower")
    obs.mark("n2", "restart")
    obs.role("n2", 4, "follower")  # after a restart the role events start over
    leaders = sub(obs.check(), "leader-per-term")
    assert kinds(leaders) == ["term-decreased"]
    assert leaders["violations"][0]["node"] == "n1"


def test_no_leader_ever_is_unknown():
    obs = Obs()
    obs.role("n1", 1, "follower")
    leaders = sub(obs.check(), "leader-per-term")
    assert leaders["valid"] == "unknown" and "leader" in leaders["reason"]


# -- (d) acknowledged writes --------------------------------------------------------------------

def test_acked_write_missing_from_every_log(tmp_path):
    obs = Obs()
    clean_run(obs, writes=4)  # the log holds seq 1..4
    hist = Hist()
    for seq in range(1, 6):  # ... but seq 5 was acknowledged too
        hist.write_op(0, "c1", seq, invoked=seq * 10_000, completed=seq * 10_000 + 5_000)
    acked = sub(obs.check(hist.load(tmp_path / "h.jsonl")), "acked-writes")
    assert acked["valid"] is False
    [violation] = acked["violations"]
    assert violation["kind"] == "acknowledged-write-lost"
    assert (violation["op"]["client"], violation["op"]["seq"]) == ("c1", 5)
    assert violation["nodes_dumped_after"] == list(NODES)


def test_acked_write_seen_only_uncommitted_is_unknown(tmp_path):
    obs = Obs()
    full = client_log(5)
    for node in NODES:
        obs.log(node, full, commit=5)  # seq 5 at index 6 is not committed
    acked = sub(obs.check(acked_history(tmp_path)), "acked-writes")
    assert acked["valid"] == "unknown"
    assert acked["undecided"][0]["entry"]["seq"] == 5


def test_a_command_applied_twice_is_reported(tmp_path):
    obs = Obs()
    log = [entry(1, 1), entry(2, 1, client="c1", seq=1, duplicate=False),
           entry(3, 2, client="c1", seq=1, duplicate=False)]
    for node in NODES:
        obs.log(node, log, commit=3)
    acked = sub(obs.check(acked_history(tmp_path, writes=1)), "acked-writes")
    assert kinds(acked) == ["applied-twice"]
    assert acked["violations"][0]["indexes"] == [2, 3]


def test_a_retry_the_state_machine_skipped_is_fine(tmp_path):
    obs = Obs()
    log = [entry(1, 1), entry(2, 1, client="c1", seq=1, duplicate=False),
           entry(3, 2, client="c1", seq=1, duplicate=True)]
    for node in NODES:
        obs.log(node, log, commit=3)
    acked = sub(obs.check(acked_history(tmp_path, writes=1)), "acked-writes")
    assert acked["valid"] is True, acked
    assert "unmarked_retries" not in acked


def test_unmarked_retries_are_listed_not_hidden(tmp_path):
    obs = Obs()
    log = [entry(1, 1), entry(2, 1, client="c1", seq=1), entry(3, 2, client="c1", seq=1)]
    for node in NODES:
        obs.log(node, log, commit=3)
    acked = sub(obs.check(acked_history(tmp_path, writes=1)), "acked-writes")
    assert acked["valid"] is True
    assert acked["unmarked_retries"] == 1
    assert [e["index"] for e in acked["unmarked_retry_examples"][0]["entries"]] == [2, 3]


def test_log_order_must_respect_real_time(tmp_path):
    obs = Obs()
    # seq 2 completed before seq 3 was invoked, yet seq 3 sits at the lower index.
    log = [entry(1, 1), entry(2, 1, client="c1", seq=1), entry(3, 1, client="c2", seq=1),
           entry(4, 1, client="c1", seq=2)]
    for node in NODES:
        obs.log(node, log, commit=4)
    hist = Hist()
    hist.write_op(0, "c1", 1, invoked=1_000, completed=2_000)
    hist.write_op(0, "c1", 2, invoked=3_000, completed=4_000)
    hist.write_op(1, "c2", 1, invoked=5_000, completed=6_000)
    acked = sub(obs.check(hist.load(tmp_path / "h.jsonl")), "acked-writes")
    assert kinds(acked) == ["real-time-order"]
    violation = acked["violations"][0]
    assert (violation["earlier"]["client"], violation["earlier"]["log_index"]) == ("c1", 4)
    assert (violation["later"]["client"], violation["later"]["log_index"]) == ("c2", 3)


def test_concurrent_ops_may_commit_in_either_order(tmp_path):
    obs = Obs()
    log = [entry(1, 1), entry(2, 1, client="c2", seq=1), entry(3, 1, client="c1", seq=1)]
    for node in NODES:
        obs.log(node, log, commit=3)
    hist = Hist()
    hist.write_op(0, "c1", 1, invoked=1_000, completed=4_000)
    hist.write_op(1, "c2", 1, invoked=2_000, completed=3_000)
    assert sub(obs.check(hist.load(tmp_path / "h.jsonl")), "acked-writes")["valid"] is True


def test_acked_writes_without_history_is_unknown():
    obs = Obs()
    clean_run(obs)
    acked = sub(obs.check(), "acked-writes")
    assert acked["valid"] == "unknown" and "history" in acked["reason"]


# -- (e) digests --------------------------------------------------------------------------------

def test_state_digests_that_differ_at_the_same_applied_index():
    obs = Obs()
    obs.healed()
    obs.digest("n1", 10, "aaa")
    obs.digest("n2", 10, "aaa")
    obs.digest("n3", 10, "bbb")
    digests = sub(obs.check(), "digests")
    [violation] = digests["violations"]
    assert violation["applied"] == 10 and violation["nodes"] == ["n1", "n3"]
    assert violation["after_healed"] is True


def test_digests_need_a_healed_mark_and_every_node_at_a_common_index():
    obs = Obs()
    obs.digest("n1", 10, "aaa")
    assert "healed" in sub(obs.check(), "digests")["reason"]
    obs.healed()
    obs.digest("n1", 11, "x")
    obs.digest("n2", 12, "y")
    obs.digest("n3", 12, "y")
    digests = sub(obs.check(), "digests")
    assert digests["valid"] == "unknown" and "common" in digests["reason"]
    obs.digest("n1", 12, "y")
    assert sub(obs.check(), "digests")["valid"] is True


def test_digests_unknown_when_a_node_never_answered_after_healing():
    obs = Obs()
    obs.role("n3", 1, "follower")
    obs.healed()
    obs.digest("n1", 4, "a")
    obs.digest("n2", 4, "a")
    digests = sub(obs.check(), "digests")
    assert digests["valid"] == "unknown" and digests["nodes_without_digest"] == ["n3"]


# -- unknown when inputs are missing -------------------------------------------------------------

def test_no_observations_at_all_is_unknown_everywhere(tmp_path):
    empty = tmp_path / "observations.jsonl"
    empty.write_text("", encoding="utf-8")
    result = check_log_order(load_observations(empty))
    assert result["valid"] == "unknown"
    assert all(r["valid"] == "unknown" and r["reason"] for r in result["checkers"].values())
    assert check_log_order(None)["valid"] == "unknown"


def test_a_node_that_never_dumped_its_log_makes_agreement_unknown():
    obs = Obs()
    obs.log("n1", log_of([1, 1]), commit=2)
    obs.log("n2", log_of([1, 1]), commit=2)
    obs.status("n3", "follower", 1)
    agreement = sub(obs.check(), "log-agreement")
    assert agreement["valid"] == "unknown" and agreement["never_dumped"] == ["n3"]


def test_nothing_committed_is_unknown():
    obs = Obs()
    obs.log("n1", log_of([1]), commit=0)
    assert sub(obs.check(), "log-agreement")["valid"] == "unknown"


def test_unknown_never_hides_a_violation():
    obs = Obs()
    obs.log("n1", log_of([1, 1]), commit=2)
    obs.log("n2", log_of([1, 2]), commit=2)
    obs.status("n3", "follower", 1)  # never dumped, but the violation still shows
    assert sub(obs.check(), "log-agreement")["valid"] is False


# -- malformed input ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"time": 1, "node": "n1"}', "'kind'"),
        ('{"time": 1, "node": "n1", "kind": "gossip"}', "'kind'"),
        ('{"node": "n1", "kind": "crash"}', "'time'"),
        ('{"time": -5, "node": "n1", "kind": "crash"}', "'time'"),
        ('{"time": 1, "kind": "crash"}', "'node'"),
        ('{"time": 1, "node": "n1", "kind": "log", "entries": []}', "'commit'"),
        ('{"time": 1, "node": "n1", "kind": "log", "commit": 1}', "'entries'"),
        ('{"time": 1, "node": "n1", "kind": "log", "commit": 1, "entries": [{"index": 1}]}',
         "entries[0]"),
        ('{"time": 1, "node": "n1", "kind": "log", "commit": 1, '
         '"entries": [{"index": 0, "term": 1, "digest": "d"}]}', "entries[0]"),
        ('{"time": 1, "node": "n1", "kind": "log", "commit": 1, '
         '"entries": [{"index": 1, "term": 1, "digest": 7}]}', "'digest'"),
        ('{"time": 1, "node": "n1", "kind": "status", "role": "leader", "term": "2"}', "'term'"),
        ('{"time": 1, "node": "n1", "kind": "digest", "applied": "3", "digest": "x"}',
         "'applied'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "observations.jsonl"
    good = json.dumps({"time": 1, "node": "n1", "kind": "crash"})
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_observations(path)
    error = caught.value
    assert (error.path, error.line) == (str(path), 3)
    assert message in error.message
    assert str(error).startswith(f"{path}:3: ")


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(InputError, match="cannot read observations"):
        load_observations(tmp_path / "nope.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"time": 1, "kind": "healed"}\n\xff\xfe\x00\n')
    with pytest.raises(InputError) as caught:
        load_observations(binary)
    assert caught.value.line == 2 and "UTF-8" in caught.value.message


def test_from_records_reports_the_record_number():
    with pytest.raises(InputError) as caught:
        Observations.from_records([{"time": 1, "kind": "healed"}, {"time": 2, "kind": "x"}])
    assert caught.value.line == 2


def test_after_lose_unfsynced_an_applied_entry_may_not_come_back_different():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 5), commit=5)
    obs.status("n3", "follower", 1, commit=4)  # applied 4: 1..4 were fsynced on n3
    obs.mark("n3", "lose-unfsynced")
    obs.mark("n3", "restart")
    obs.log("n3", [*log_of([1] * 3), entry(4, 7)], commit=3)  # 5 lost (fine), 4 changed
    durability = sub(obs.check(), "committed-durability")
    assert kinds(durability) == ["committed-entry-changed"]
    assert (durability["violations"][0]["node"], durability["violations"][0]["index"]) == (
        "n3", 4)


def test_logs_without_client_sessions_cannot_judge_acked_writes(tmp_path):
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1, 1, 1]), commit=3)  # entries carry no client/seq
    acked = sub(obs.check(acked_history(tmp_path, writes=2)), "acked-writes")
    assert acked["valid"] == "unknown" and "client session" in acked["reason"]


def test_a_size_capped_dump_that_says_its_last_index_is_not_a_loss():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 6), commit=6)
    capped = obs.log("n1", log_of([1] * 4), commit=6)
    capped["last_index"] = 6  # the answer showed 1..4 of a log that ends at 6
    result = obs.check()
    assert sub(result, "committed-durability")["valid"] is True, result
    del capped["last_index"]  # the same dump without saying so: 5..6 look missing
    durability = sub(obs.check(), "committed-durability")
    assert [v["indexes"] for v in durability["violations"]] == [[5, 6]]


def test_entries_recommitted_after_a_crash_bind_the_node_again():
    obs = Obs()
    for node in NODES:
        obs.log(node, log_of([1] * 5), commit=5)
    obs.mark("n1", "crash")  # nothing applied: n1 forgets what it had committed
    obs.mark("n1", "restart")
    obs.log("n1", log_of([1] * 5), commit=5)  # ... and commits it all again
    obs.log("n1", [*log_of([1] * 4), entry(5, 3)], commit=4)  # then, running, 5 changes
    durability = sub(obs.check(), "committed-durability")
    assert "committed-entry-changed" in kinds(durability)
    assert any(v.get("index") == 5 and v.get("node") == "n1" for v in durability["violations"])
