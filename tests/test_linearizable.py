"""The WGL linearizability search: crafted cases, evidence, budget, and a brute-force oracle."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import pytest
from checker_helpers import CORPUS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.history import History, Op, history_from_events, load_history
from checker.linearizable import check_history
from checker.models import get_model
from checker.synth import simulate


def ev(process: Any, type_: str, f: str, value: Any = None, key: Any = "k") -> dict:
    return {"process": process, "type": type_, "f": f, "key": key, "value": value}


def verdict(events: list[dict], model: str = "raft-kv", **kwargs: Any) -> Any:
    return check_history(history_from_events(events), model, **kwargs)["valid"]


def test_empty_history_is_linearizable() -> None:
    result = check_history(History([]), "raft-kv")
    assert result["valid"] is True and result["ops"] == 0 and result["partitions"] == 0


def test_stale_read_after_acknowledged_write_is_caught() -> None:
    events = [ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
              ev(1, "invoke", "read"), ev(1, "ok", "read", None)]
    assert verdict(events) is False
    # the same read, concurrent with the write, may see either value
    concurrent = [ev(0, "invoke", "write", 1), ev(1, "invoke", "read"),
                  ev(1, "ok", "read", None), ev(0, "ok", "write", 1)]
    assert verdict(concurrent) is True


def test_unknown_outcomes_may_happen_late_or_never() -> None:
    write_info = [ev(0, "invoke", "write", 1), ev(0, "info", "write", 1)]
    # never happened
    assert verdict([*write_info, ev(1, "invoke", "read"), ev(1, "ok", "read", None)]) is True
    # happened, even long after the info was recorded
    late = [*write_info, ev(1, "invoke", "read"), ev(1, "ok", "read", None),
            ev(2, "invoke", "read"), ev(2, "ok", "read", 1),
            ev(3, "invoke", "read"), ev(3, "ok", "read", 1)]
    assert verdict(late) is True
    # but it cannot be undone once observed
    flip = [*late, ev(4, "invoke", "read"), ev(4, "ok", "read", None)]
    assert verdict(flip) is False
    # and it cannot take effect before it was invoked
    early = [ev(1, "invoke", "read"), ev(1, "ok", "read", 1), *write_info]
    assert verdict(early) is False


def test_unobserved_unknown_writes_are_left_out_but_observed_ones_kept() -> None:
    events = [ev(0, "invoke", "write", 7), ev(0, "info", "write", 7),      # never seen
              ev(1, "invoke", "write", 8), ev(1, "info", "write", 8),      # seen below
              ev(2, "invoke", "append", 9, "l"), ev(2, "info", "append", 9, "l"),
              ev(3, "invoke", "read"), ev(3, "ok", "read", 8)]
    result = check_history(history_from_events(events), "raft-kv")
    assert result["valid"] is True and result["unobserved_unknown_ops"] == 2
    assert result["ops"] == 2


def test_failed_ops_did_not_happen() -> None:
    events = [ev(0, "invoke", "write", 1), ev(0, "fail", "write", 1),
              ev(1, "invoke", "read"), ev(1, "ok", "read", 1)]
    assert verdict(events) is False
    events[-1]["value"] = None
    assert verdict(events) is True


def test_cas_register_with_init_like_knossos() -> None:
    events = [ev(0, "invoke", "cas", [0, 1]), ev(0, "ok", "cas", [0, 1]),
              ev(1, "invoke", "read"), ev(1, "ok", "read", 1)]
    assert check_history(history_from_events(events), "cas-register", 0)["valid"] is True
    assert check_history(history_from_events(events), "cas-register", 5)["valid"] is False


def test_partitions_are_checked_independently() -> None:
    events = []
    for i in range(5):
        key = f"k{i}"
        events += [ev(i, "invoke", "write", i, key), ev(i, "ok", "write", i, key)]
    events += [ev(9, "invoke", "read", None, "k3"), ev(9, "ok", "read", 4, "k3")]
    result = check_history(history_from_events(events), "raft-kv")
    assert result["valid"] is False and result["partitions"] == 5
    assert result["evidence"]["partition"] == "k3"


def test_evidence_names_op_prefix_states_and_concurrent_ops() -> None:
    events = [
        ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),          # op 0
        ev(1, "invoke", "write", 2),                                   # op 1
        ev(2, "invoke", "read"), ev(2, "ok", "read", 2),               # op 2
        ev(1, "ok", "write", 2),
        ev(3, "invoke", "read"), ev(3, "ok", "read", 1),               # op 3: stale
    ]
    result = check_history(history_from_events(events), "raft-kv")
    assert result["valid"] is False
    evidence = result["evidence"]
    assert evidence["op"]["id"] == 3 and evidence["op"]["output"] == 1
    assert [step["op"]["id"] for step in evidence["prefix"]] == [0, 1, 2]
    assert [step["state"] for step in evidence["prefix"]] == [1, 2, 2]
    assert evidence["state"] == 2
    assert "is not legal in state 2" in evidence["explanation"]
    assert evidence["concurrent"] == []  # nothing overlaps the stale read
    # an overlapping op shows up, with whether it was part of the prefix
    events.insert(6, ev(4, "invoke", "write", 3))
    events.append(ev(4, "ok", "write", 3))
    result = check_history(history_from_events(events), "raft-kv")
    concurrent = result["evidence"]["concurrent"]
    assert [(c["f"], c["value"], c["linearized_in_prefix"], c["legal_after_prefix"])
            for c in concurrent] == [("write", 3, False, True)]


def test_budget_gives_unknown_with_evidence_never_a_wrong_verdict() -> None:
    hard = load_history(CORPUS / "etcd" / "etcd_099.log")  # tens of thousands of steps
    result = check_history(hard, "etcd", timeout=1e-9)
    assert result["valid"] == "unknown"
    assert "budget" in result["reason"]
    assert result["evidence"]["prefix"]  # what was found so far
    assert "ran out of budget" in result["evidence"]["explanation"]
    expected = {"kv/c50-ok.txt": True, "etcd/etcd_099.log": False, "etcd/etcd_002.log": True}
    for timeout in (0.001, 0.05):
        for name, valid in expected.items():
            history = load_history(CORPUS / name)
            got = check_history(history, history.default_model, timeout=timeout)["valid"]
            assert got in ("unknown", valid)


def test_memory_budget_gives_unknown_with_reason() -> None:
    hard = load_history(CORPUS / "etcd" / "etcd_099.log")
    result = check_history(hard, "etcd", memory_mb=-1)  # any growth at all is too much
    assert result["valid"] == "unknown"
    assert "memory budget of -1 MB exceeded" in result["reason"]
    assert check_history(hard, "etcd", memory_mb=None)["valid"] is False


# ---------------------------------------------------------------------------
# The oracle: every order consistent with real time, with an independent
# sequential specification of raft_impl's key/value store.


def _precedes(a: Op, b: Op) -> bool:
    """a must come before b: a completed (known outcome) before b was invoked."""
    return not a.unknown and a.complete is not None and a.complete < b.call


def _kv_apply(state: tuple, op: Op) -> tuple | None:
    """raft_impl's store semantics on a frozen dict; None when the op is impossible here."""
    current = dict(state)
    value = current.get(op.key)
    if op.f == "read":
        return state if op.output == value else None
    if op.f == "write":
        current[op.key] = op.value
    elif op.f == "cas":
        if value != op.value[0]:
            return None
        current[op.key] = op.value[1]
    elif op.f == "append":
        if value is None:
            current[op.key] = [op.value]
        elif isinstance(value, list):
            current[op.key] = [*value, op.value]
        else:
            return None
    return tuple(sorted(current.items(), key=repr))


def brute_force(ops: list[Op], apply: Any, initial: Any) -> bool:
    """Try every order consistent with real time; unknown outcomes may also never happen."""
    candidates = [o for o in ops if o.type != "fail" and not (o.unknown and o.f == "read")]
    required = frozenset(i for i, o in enumerate(candidates) if not o.unknown)
    before = [frozenset(j for j, p in enumerate(candidates) if _precedes(p, o))
              for o in candidates]

    @cache
    def search(done: frozenset, state: Any) -> bool:
        if required <= done:
            return True
        for i, o in enumerate(candidates):
            if i in done or not before[i] <= done:
                continue
            new_state = apply(state, o)
            if new_state is not None and search(done | {i}, _hashable(new_state)):
                return True
        return False

    return search(frozenset(), _hashable(initial))


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_hashable(v) for v in value)
    return value


def _kv_apply_hashable(state: tuple, op: Op) -> Any:
    thawed = tuple((k, list(v) if isinstance(v, tuple) else v) for k, v in state)
    return _kv_apply(thawed, op)


def _perturb(events: list[dict], data: st.DataObject) -> list[dict]:
    events = [dict(e) for e in events]
    kind = data.draw(st.sampled_from(
        ["none", "value", "value", "value", "move", "move", "unknown"]))
    completions = [i for i, e in enumerate(events) if e["type"] in ("ok", "fail")]
    if kind == "none" or not completions:
        return events
    reads = [i for i in completions if events[i]["f"] == "read" and events[i]["type"] == "ok"]
    if kind == "value" and reads:
        completions = reads  # a changed read is the likeliest way to break linearizability
    target = data.draw(st.sampled_from(completions))
    process = events[target]["process"]
    invoke = max(i for i in range(target) if events[i]["process"] == process
                 and events[i]["type"] == "invoke")
    if kind == "value":
        seen = [e["value"] for e in events if e["type"] == "ok" and e["f"] == "read"]
        written = [e["value"] for e in events if e["f"] in ("write", "append")]
        replacement = data.draw(st.one_of(
            st.none(), st.sampled_from([*seen, *written, 0]),
            st.lists(st.sampled_from([*written, 0]), max_size=3)))
        events[target]["value"] = replacement
        if events[target]["f"] == "cas":
            events[target]["type"] = data.draw(st.sampled_from(["ok", "fail"]))
            events[target]["value"] = events[invoke]["value"]
    elif kind == "unknown":
        events[target]["type"] = "info"
    else:  # move the whole operation elsewhere in time, as a fresh process
        pair = [events[invoke], events[target]]
        rest = [e for i, e in enumerate(events) if i not in (invoke, target)]
        at = data.draw(st.integers(0, len(rest)))
        until = data.draw(st.integers(at, len(rest)))
        fresh = "moved"
        rest.insert(until, {**pair[1], "process": fresh})
        rest.insert(at, {**pair[0], "process": fresh})
        events = rest
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 7), keys=st.integers(1, 2),
       clients=st.integers(1, 4), info=st.sampled_from([0.0, 0.2, 0.5]),
       values=st.sampled_from([2, 3, None]), data=st.data())
def test_agrees_with_brute_force_on_real_and_perturbed_executions(
        seed: int, size: int, keys: int, clients: int, info: float, values: int | None,
        data: st.DataObject) -> None:
    # values=None writes distinct values: unobserved unknown writes then get dropped
    events = simulate(random.Random(seed), size, keys=keys, clients=clients, info_rate=info,
                      values=values)
    for e in events:
        e.pop("index")
    real = history_from_events(events)
    assert check_history(real, "raft-kv")["valid"] is True  # real executions are linearizable
    assert brute_force(real.ops, _kv_apply_hashable, ()) is True
    perturbed = history_from_events(_perturb(events, data))
    expected = brute_force(perturbed.ops, _kv_apply_hashable, ())
    assert check_history(perturbed, "raft-kv")["valid"] is expected


# ---------------------------------------------------------------------------
# Random (mostly non-linearizable) histories for the other models, checked
# against the same brute-force search driven by the model's own step function
# (this exercises the search and its pruning hooks, not the model's semantics).


def _random_history(data: st.DataObject, op_strategy: st.SearchStrategy) -> History:
    n = data.draw(st.integers(1, 6))
    order = data.draw(st.permutations([i for i in range(n) for _ in range(2)]))
    specs = [data.draw(op_strategy) for _ in range(n)]
    seen: set[int] = set()
    events = []
    for i in order:
        f, value, output, type_ = specs[i]
        if i not in seen:
            seen.add(i)
            events.append({"process": i, "type": "invoke", "f": f, "value": value})
        elif type_ is not None:
            events.append({"process": i, "type": type_, "f": f, "value": output})
    return history_from_events(events)


_small = st.integers(0, 2)
_etcd_ops = st.one_of(
    st.tuples(st.just("read"), st.none(), st.one_of(st.none(), _small),
              st.sampled_from(["ok", "ok", "fail", None])),
    st.tuples(st.just("write"), _small, st.none(), st.sampled_from(["ok", "info", None])),
    st.lists(_small, min_size=2, max_size=2).flatmap(lambda v: st.tuples(
        st.just("cas"), st.just(v), st.just(v), st.sampled_from(["ok", "fail", "info"]))),
)
_mutex_ops = st.tuples(st.sampled_from(["acquire", "release"]), st.none(), st.none(),
                       st.sampled_from(["ok", "ok", "fail", "info", None]))
_kv_ops = st.one_of(
    st.tuples(st.just("get"), st.none(), st.sampled_from(["", "a", "b", "ab", "ba"]),
              st.sampled_from(["ok", "info"])),
    st.tuples(st.sampled_from(["put", "append"]), st.sampled_from(["a", "b"]), st.none(),
              st.sampled_from(["ok", "ok", "info", None])),
)


def _model_oracle(history: History, model_name: str, initial: Any = None) -> bool:
    model = get_model(model_name, initial)
    prepared = {}
    kept = []
    for o in history.ops:
        p = model.prepare(o)
        if p is not None:
            prepared[o.id] = p
            kept.append(o)

    def apply(state: Any, o: Op) -> Any:
        ok, new = model.step(state, *prepared[o.id])
        return new if ok else _ILLEGAL

    required = frozenset(i for i, o in enumerate(kept) if not o.unknown)
    before = [frozenset(j for j, p in enumerate(kept) if _precedes(p, o)) for o in kept]

    @cache
    def search(done: frozenset, state: Any) -> bool:
        if required <= done:
            return True
        for i, o in enumerate(kept):
            if i in done or not before[i] <= done:
                continue
            new = apply(state, o)
            if new is not _ILLEGAL and search(done | {i}, new):
                return True
        return False

    return search(frozenset(), model.init(None))


_ILLEGAL = object()


@pytest.mark.parametrize(("model_name", "ops"), [
    ("etcd", _etcd_ops), ("cas-register", _etcd_ops), ("mutex", _mutex_ops), ("kv", _kv_ops),
])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_search_agrees_with_brute_force_for_each_model(
        model_name: str, ops: st.SearchStrategy, data: st.DataObject) -> None:
    history = _random_history(data, ops)
    expected = _model_oracle(history, model_name)
    assert check_history(history, model_name)["valid"] is expected
