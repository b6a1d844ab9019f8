"""The failure's story: which anomaly real time proves, told in one headline.

Crafted histories for every shape the explainer proves (exact wording: the
words are the contract the terminal's ``evidence:`` line and the report share),
and a property against the checker and a brute-force search: whenever the
explainer claims a proven anomaly, the history is not linearizable.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from checker.history import history_from_events
from checker.linearizable import check_history
from checker.models import get_model
from reports import model
from reports.render import render_history_report

MS = 1_000_000
PARTITION = {"components": [["n1"], ["n2", "n3"]], "shape": "isolate-leader", "leader": "n1"}


def op(process: Any, f: str, value: Any, start: float, end: float | None, result: str = "ok",
       out: Any = None, node: str | None = None, key: str = "k") -> list[dict]:
    """An operation's invocation and completion events (times in ms; end None: never
    returned). A read's ``out`` is what it returned."""
    invoke = {"time": int(start * MS), "process": process, "type": "invoke", "f": f,
              "key": key, "value": value}
    if node is not None:
        invoke["node"] = node
    if end is None:
        return [invoke]
    done = {**invoke, "time": int(end * MS), "type": result,
            "value": out if f == "read" else value}
    return [invoke, done]


def nemesis(at: float, f: str, value: Any = None) -> list[dict]:
    return [{"time": int(at * MS), "process": "nemesis", "type": "info", "f": f,
             "value": value}]


def events_of(*parts: list[dict]) -> list[dict]:
    """All events in time order (ties keep the order given)."""
    events = [e for part in parts for e in part]
    return sorted(events, key=lambda e: e["time"])


def explain(events: list[dict], model_name: str = "raft-kv") -> model.Focus:
    """Check the history with the real checker (it must fail) and explain its evidence."""
    result = check_history(history_from_events(events), model_name)
    assert result["valid"] is False, "a crafted anomaly must not be linearizable"
    history = model.build_history(events)
    evidence = model.lin_evidence(history, result)
    assert evidence is not None
    return model.explain_lin_failure(history, evidence)


# ---------------------------------------------------------------- stale reads


def test_ci_case_in_doubt_write_seen_then_a_read_of_the_older_value() -> None:
    """The run of issue 18: the write of 88 timed out, yet process 7 read 88; then the
    isolated old leader answered process 6 with 86."""
    events = events_of(
        nemesis(15, "start-partition", PARTITION),
        op(1, "write", 86, 0, 10, node="n1", key="k2"),
        op(0, "write", 88, 20, 1000, "info", node="n2", key="k2"),
        op(7, "read", None, 30, 35, out=88, node="n2", key="k2"),
        op(6, "read", None, 50, 55, out=86, node="n1", key="k2"),
        op(7, "read", None, 52, 60, out=88, node="n2", key="k2"),  # legal: a second 88
        op(5, "write", 90, 70, 80, node="n2", key="k2"),
        nemesis(100, "stop-partition"),
    )
    focus = explain(events)
    assert focus.headline == (
        "Stale read: process 6 read k2 → 86 on n1 (0.0500 s–0.0550 s), but process 7 had "
        "already read the newer value 88 on n2 at 0.0350 s, before this read began (88 was "
        "written by process 0, its outcome unknown). While partition n1 | n2 n3 "
        "(isolate-leader, leader was n1) was active.")
    assert focus.kind == "stale-read"
    assert (focus.failed.process, focus.failed.out) == (6, 86)
    assert (focus.missed.process, focus.missed.result) == (0, "info")
    assert (focus.witness.process, focus.witness.out) == (7, 88)
    assert focus.source.value == 86
    assert focus.headline.startswith(model.ANOMALY_PREFIXES)
    assert "every write of 88 that could have produced what process 7 saw began after" \
        in focus.proof


def test_ci_case_report_cards_show_the_read_the_observation_the_write_and_the_fault(
        tmp_path) -> None:
    events = events_of(
        nemesis(15, "start-partition", PARTITION),
        op(1, "write", 86, 0, 10, node="n1", key="k2"),
        op(0, "write", 88, 20, 1000, "info", node="n2", key="k2"),
        op(7, "read", None, 30, 35, out=88, node="n2", key="k2"),
        op(6, "read", None, 50, 55, out=86, node="n1", key="k2"),
        op(5, "write", 90, 70, 80, node="n2", key="k2"),
        nemesis(100, "stop-partition"),
    )
    result = check_history(history_from_events(events), "raft-kv")
    html = render_history_report(events, {"valid": False, "checkers": {"linearizable": result}},
                                 tmp_path / "r.html").read_text()
    failure = html.split('id="failure"', 1)[1].split('id="verdicts"', 1)[0]
    failed = failure.split('id="card-failed"', 1)[1].split('id="card-missed"', 1)[0]
    assert "The stale read" in failed and "process 6: read k2 → 86" in failed
    missed = failure.split('id="card-missed"', 1)[1].split('id="card-fault"', 1)[0]
    assert "The newer write it missed" in missed and "process 0: write k2 88" in missed
    assert "unknown to its client (info), but it took effect" in missed
    assert "process 7: read k2 → 88" in missed and "already visible" in missed
    assert "written earlier by process 1: write k2 86" in missed
    fault = failure.split('id="card-fault"', 1)[1]
    assert "partition n1 | n2 n3" in fault
    assert "Why: 86 is written only once and had been seen by 0.0100 s" in failure


def test_older_value_in_doubt_too_is_bounded_by_the_first_read_of_it() -> None:
    events = events_of(
        op(1, "write", 86, 0, 1000, "info"),
        op(2, "read", None, 5, 10, out=86),
        op(0, "write", 88, 20, 1000, "info"),
        op(7, "read", None, 30, 35, out=88),
        op(6, "read", None, 50, 55, out=86),
        op(5, "write", 90, 70, 80),
    )
    focus = explain(events)
    assert focus.headline == (
        "Stale read: process 6 read k → 86 (0.0500 s–0.0550 s), but process 7 had already "
        "read the newer value 88 at 0.0350 s, before this read began (88 was written by "
        "process 0, its outcome unknown).")
    assert focus.proof.startswith(
        "86 is written only once and had been seen by 0.0100 s (process 2: read k → 86)")


def test_stale_read_of_an_acknowledged_write() -> None:
    events = events_of(op(0, "write", 1, 0, 10), op(1, "write", 2, 20, 30),
                       op(2, "read", None, 40, 50, out=1, node="n3"), op(3, "write", 3, 60, 70))
    focus = explain(events)
    assert focus.headline == (
        "Stale read: process 2 read k → 1 on n3 (0.0400 s–0.0500 s), but process 1's write "
        "of 2 had been acknowledged at 0.0300 s, before this read began.")
    assert focus.witness is None and focus.missed.value == 2 and focus.source.value == 1


def test_overlapping_writes_prove_nothing() -> None:
    # the write of 1 overlaps the write of 2: 2 may come first, reading 1 is fine
    events = events_of(op(0, "write", 1, 0, 25), op(1, "write", 2, 20, 30),
                       op(2, "read", None, 40, 50, out=1), op(3, "write", 3, 60, 70))
    history = model.build_history(events)
    assert model.find_anomaly(history, "k") is None
    assert check_history(history_from_events(events), "raft-kv")["valid"] is True


def test_the_initial_value_is_older_than_every_write() -> None:
    events = events_of(op(1, "write", 2, 20, 30), op(2, "read", None, 40, 50, out=None),
                       op(3, "write", 3, 60, 70))
    focus = explain(events)
    assert focus.headline == (
        "Stale read: process 2 read k → nil (0.0400 s–0.0500 s), but process 1's write of 2 "
        "had been acknowledged at 0.0300 s, before this read began.")
    assert focus.source is None and focus.proof.startswith("nil is the initial value")


def test_knossos_registers_take_a_nil_read_as_no_constraint() -> None:
    events = events_of(op(1, "write", 2, 20, 30), op(2, "read", None, 40, 50, out=None),
                       op(3, "write", 3, 60, 70))
    history = model.build_history(events)
    assert model.find_anomaly(history, "k", model="raft-kv") is not None
    assert model.find_anomaly(history, "k", model="cas-register") is None
    assert check_history(history_from_events(events), "cas-register")["valid"] is True


def test_values_written_twice_need_every_write_acknowledged() -> None:
    # a second write of 1 still in doubt may take effect after the write of 2
    in_doubt = events_of(op(0, "write", 1, 0, 10), op(1, "write", 2, 20, 30),
                         op(4, "write", 1, 25, 1000, "info"),
                         op(2, "read", None, 40, 50, out=1), op(3, "write", 3, 60, 70))
    assert model.find_anomaly(model.build_history(in_doubt), "k") is None
    assert check_history(history_from_events(in_doubt), "raft-kv")["valid"] is True
    # a read of 1 does not bound the writes of 1 when there are two of them
    seen_only = events_of(op(0, "write", 1, 0, 1000, "info"), op(4, "write", 1, 1, 1000, "info"),
                          op(5, "read", None, 5, 10, out=1), op(1, "write", 2, 20, 30),
                          op(2, "read", None, 40, 50, out=1), op(3, "write", 3, 60, 70))
    assert model.find_anomaly(model.build_history(seen_only), "k") is None
    assert check_history(history_from_events(seen_only), "raft-kv")["valid"] is True
    # both writes of 1 acknowledged before the write of 2 began: proven
    acked = events_of(op(0, "write", 1, 0, 10), op(4, "write", 1, 12, 15),
                      op(1, "write", 2, 20, 30), op(2, "read", None, 40, 50, out=1),
                      op(3, "write", 3, 60, 70))
    focus = explain(acked)
    assert focus.kind == "stale-read" and focus.missed.value == 2
    assert focus.proof.startswith(
        "every write of 1 that could be it had been acknowledged by 0.0150 s")


def test_a_cas_from_a_seen_value_orders_overlapping_writes() -> None:
    """A cas 1→2 that succeeded came right after the write of 1, so a write of 3 begun
    after 1 was seen follows it: the read of 2 is the stale one, not the later read
    of 3 (both alternate, and real time alone orders neither write first)."""
    events = events_of(op(0, "write", 1, 0, 10), op(1, "cas", [1, 2], 15, 40),
                       op(2, "write", 3, 20, 45), op(3, "read", None, 60, 70, out=2),
                       op(4, "read", None, 80, 90, out=3), op(5, "write", 9, 100, 110))
    focus = explain(events)
    assert focus.headline == (
        "Stale read: process 3 read k → 2 (0.0600 s–0.0700 s), but process 2's write of 3 "
        "had been acknowledged at 0.0450 s, before this read began.")
    assert focus.proof.startswith(
        "2 is written only once, by process 1's cas from 1, so right after 1, which had "
        "been seen by 0.0100 s (process 0: write k 1)")


def test_a_value_that_comes_back_blames_the_later_read_and_says_why() -> None:
    # the writes of 1 and 2 overlap; 1 was seen, then 2, then 1 again
    events = events_of(op(0, "write", 1, 0, 50), op(1, "write", 2, 10, 60),
                       op(3, "read", None, 62, 65, out=2), op(4, "read", None, 70, 75, out=1),
                       op(5, "write", 9, 100, 110))
    focus = explain(events)
    assert focus.headline == (
        "Stale read: process 4 read k → 1 (0.0700 s–0.0750 s), but process 3 had already "
        "read the newer value 2 at 0.0650 s, before this read began (2 was written by "
        "process 1, acknowledged at 0.0600 s).")
    assert "Real time alone does not order the writes of 1 and 2" in focus.proof


# ---------------------------------------------------------------- other shapes


def test_stale_cas_against_an_overwritten_value() -> None:
    events = events_of(op(0, "write", 1, 0, 10), op(1, "write", 2, 20, 30),
                       op(2, "cas", [1, 3], 40, 50, node="n1"), op(3, "read", None, 60, 70, out=3))
    focus = explain(events)
    assert focus.headline == (
        "Stale cas: process 2's cas k 1→3 succeeded on n1 (0.0400 s–0.0500 s), but 1 had "
        "already been overwritten: process 1's write of 2 had been acknowledged at "
        "0.0300 s, before the cas began.")
    assert focus.kind == "stale-cas" and focus.failed.f == "cas"


def test_stale_cas_against_a_value_another_read_had_seen_replaced() -> None:
    events = events_of(op(0, "write", 1, 0, 10), op(1, "write", 2, 20, 1000, "info"),
                       op(4, "read", None, 25, 30, out=2),
                       op(2, "cas", [1, 3], 40, 50), op(3, "read", None, 60, 70, out=3))
    focus = explain(events)
    assert focus.headline == (
        "Stale cas: process 2's cas k 1→3 succeeded (0.0400 s–0.0500 s), but 1 had already "
        "been overwritten: process 4 had already read the newer value 2 at 0.0300 s, "
        "before the cas began (2 was written by process 1, its outcome unknown).")


def test_read_of_a_value_never_written() -> None:
    events = events_of(op(0, "write", 1, 0, 10), op(1, "read", None, 20, 30, out=7, node="n2"),
                       op(2, "write", 7, 40, 50), op(3, "write", 7, 12, 18, "fail"))
    focus = explain(events)
    assert focus.headline == (
        "Value never written: process 1 read k → 7 on n2 (0.0200 s–0.0300 s), but no write "
        "of 7 to k had begun before the read ended.")
    assert focus.kind == "never-written" and focus.missed is None
    assert focus.proof == (
        "No write of 7 to k had begun before this operation returned (the first write of "
        "it began at 0.0400 s, after this operation had returned; 1 write of it failed, "
        "which means it did not happen).")


def test_cas_from_a_value_never_written() -> None:
    events = events_of(op(0, "write", 1, 0, 10), op(1, "cas", [7, 8], 20, 30),
                       op(2, "read", None, 40, 50, out=8))
    focus = explain(events)
    assert focus.headline == (
        "Value never written: process 1's cas k 7→8 succeeded (0.0200 s–0.0300 s), but no "
        "write of 7 to k had begun before it ended.")


def test_lost_write_seen_in_the_final_read() -> None:
    """The harness ends a run with one read of every key, begun after every write
    had completed: a value older than an acknowledged write there is a lost write."""
    events = events_of(op(0, "write", 1, 0, 10), op(1, "write", 2, 20, 30, node="n2"),
                       op(2, "read", None, 40, 50, out=2),
                       op(10_000_000, "read", None, 100, 110, out=1, node="n3"))
    focus = explain(events)
    assert focus.headline == (
        "Lost write: process 1's write of 2 was acknowledged at 0.0300 s, but the final "
        "read of k (process 10000000 on n3, 0.1000 s–0.1100 s) returned the older value 1.")
    assert focus.kind == "lost-write"


def test_without_a_final_read_the_loss_is_a_stale_read() -> None:
    # a write still open at the end: the last read is not a read of the final state
    events = events_of(op(0, "write", 1, 0, 10), op(1, "write", 2, 20, 30),
                       op(2, "read", None, 40, 50, out=2), op(4, "write", 5, 90, None),
                       op(3, "read", None, 100, 110, out=1))
    focus = explain(events)
    assert focus.kind == "stale-read" and focus.headline.startswith(
        "Stale read: process 3 read k → 1 (0.1000 s–0.1100 s), but process 1's write of 2")


def test_unexplained_failure_names_where_the_search_stopped() -> None:
    # appends are outside what the proofs know (a register): no proof, the culprit
    events = events_of(op(0, "append", 1, 0, 10), op(1, "read", None, 20, 30, out=None))
    focus = explain(events)
    assert focus.kind is None and focus.missed is None
    assert focus.headline == (
        "Not linearizable: the checker's search stopped at process 1: read k → nil "
        "(0.0200 s), which no order of the operations on k explains; that is where the "
        "search stopped, not necessarily the faulty operation.")


# ---------------------------------------------------------------- never a false accusation


def _oracle(events: list[dict], model_name: str) -> bool:
    """Brute force: some order consistent with real time satisfies the model, where
    ops of unknown outcome may also never happen."""
    checked = history_from_events(events)
    spec = get_model(model_name, None)
    kept = [(o, p) for o in checked.ops if (p := spec.prepare(o)) is not None]
    unknown = [o.unknown or o.complete is None for o, _ in kept]
    required = frozenset(i for i, u in enumerate(unknown) if not u)
    before = [frozenset(j for j, (p, _) in enumerate(kept)
                        if not unknown[j] and p.complete < o.call) for o, _ in kept]

    @cache
    def search(done: frozenset, state: Any) -> bool:
        if required <= done:
            return True
        for i, (_, prepared) in enumerate(kept):
            if i not in done and before[i] <= done:
                legal, new_state = spec.step(state, *prepared)
                if legal and search(done | {i}, new_state):
                    return True
        return False

    return search(frozenset(), spec.init("k"))


_values = st.sampled_from([1, 2])  # few values: writes of one value repeat
_specs = st.one_of(
    st.tuples(st.just("read"), st.none(), st.sampled_from([None, 1, 2]),
              st.sampled_from(["ok", "ok", "ok", "info", "fail"])),
    st.tuples(st.just("write"), _values, st.none(), st.sampled_from(["ok", "ok", "info", "fail",
                                                                      None])),
    st.tuples(st.just("cas"), st.lists(_values, min_size=2, max_size=2), st.none(),
              st.sampled_from(["ok", "ok", "info", "fail"])),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), model_name=st.sampled_from(["raft-kv", "cas-register"]),
       unique=st.booleans())
def test_a_claimed_anomaly_is_never_linearizable(data: st.DataObject, model_name: str,
                                                 unique: bool) -> None:
    n = data.draw(st.integers(2, 7))
    specs = [data.draw(_specs) for _ in range(n)]
    if unique:  # the workload's way: each write (and cas) writes a fresh value
        fresh = iter(range(10, 100))
        specs = [(f, next(fresh) if f == "write" else [v[0], next(fresh)] if f == "cas"
                  else v, out, result) for f, v, out, result in specs]
        written = [v if f == "write" else v[1] for f, v, _, _ in specs if f != "read"]
        pool = [None, *written]
        specs = [(f, [data.draw(st.sampled_from(pool)), v[1]] if f == "cas" else v,
                  data.draw(st.sampled_from(pool)) if f == "read" else out, result)
                 for f, v, out, result in specs]
    # timed ops, mostly one after another (what makes proofs possible); an op of
    # unknown outcome answers late or never, like a client timing out
    timed: list[tuple[int, int, dict]] = []
    for i, (f, value, out, result) in enumerate(specs):
        start = data.draw(st.integers(0, 40))
        end = start + data.draw(st.integers(1, 12)) if result in ("ok", "fail") else 100 + i
        timed.append((start, 0, {"process": i, "type": "invoke", "f": f, "key": "k",
                                 "value": value}))
        if result is not None:
            timed.append((end, 1, {"process": i, "type": result, "f": f, "key": "k",
                                   "value": out if f == "read" else value}))
    timed.sort(key=lambda t: (t[0], t[1]))
    events = [{"time": t * MS, **e} for t, _, e in timed]
    history = model.build_history(events)
    proofs = model._KeyProofs(history, "k", None, model_name)
    claims = [a for o in history.ops for strong in (True, False)
              if (a := proofs.prove(o, strong)) is not None]
    event(f"claims: {'some' if claims else 'none'}")
    if claims:
        assert check_history(history_from_events(events), model_name)["valid"] is False, claims
        assert _oracle(events, model_name) is False, claims


def test_report_cards_of_a_value_never_written_and_of_an_unexplained_failure(tmp_path) -> None:
    def failure_of(events: list[dict]) -> str:
        result = check_history(history_from_events(events), "raft-kv")
        html = render_history_report(events, {"valid": False,
                                              "checkers": {"linearizable": result}},
                                     tmp_path / "r.html").read_text()
        return html.split('id="failure"', 1)[1].split('id="verdicts"', 1)[0]

    never = failure_of(events_of(op(0, "write", 1, 0, 10),
                                 op(1, "read", None, 20, 30, out=7)))
    assert "The operation that saw a value never written" in never
    assert 'id="card-unwritten"' in never and 'id="card-missed"' not in never
    assert "No write of 7 to k had begun before this operation returned." in never
    unexplained = failure_of(events_of(op(0, "append", 1, 0, 10),
                                       op(1, "read", None, 20, 30, out=None)))
    assert "Where the checker&#39;s search stopped" in unexplained
    assert 'id="card-missed"' not in unexplained and "Why:" not in unexplained
