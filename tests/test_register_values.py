"""Register linearizability from values (checker/elle/registers.py) against oracles.

The inference may only ever decide what the WGL search and a brute-force
search over every order would decide; where it cannot prove either verdict it
must leave the key to the search. Histories here write unique values, the
case it is for, and are small enough for the brute force.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any

from checker_helpers import CORPUS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.elle.registers import decide
from checker.history import History, Op, history_from_events, load_history
from checker.linearizable import check_history
from checker.models import get_model
from checker.synth import simulate

MODELS = ("raft-kv", "cas-register", "register")


def _precedes(a: Op, b: Op) -> bool:
    return a.type != "info" and a.complete is not None and a.complete < b.call


def brute_force(history: History, model_name: str) -> bool:
    """Is there an order of the operations, respecting real time, the model accepts?

    Key by key (linearizability is compositional: a history is linearizable
    exactly when each key's is)."""
    model = get_model(model_name)
    return all(_brute_force_key(model, ops, key)
               for key, ops in model.partition(history.ops).items())


def _brute_force_key(model: Any, ops: list[Op], key: Any) -> bool:
    kept = [(op, p) for op in ops if (p := model.prepare(op)) is not None]
    required = frozenset(i for i, (op, _) in enumerate(kept) if not op.unknown)
    before = [frozenset(j for j, (o, _) in enumerate(kept) if _precedes(o, op))
              for op, _ in kept]

    @cache
    def search(done: frozenset[int], state: Any) -> bool:
        if required <= done:
            return True
        for i, (_, prepared) in enumerate(kept):
            if i in done or not before[i] <= done:
                continue
            ok, new = model.step(state, *prepared)
            if ok and search(done | {i}, new):
                return True
        return False

    return search(frozenset(), model.init(key))


@st.composite
def unique_histories(draw: st.DrawFn, cas: bool = True, max_ops: int = 7,
                     keys: tuple[str, ...] = ("k",)) -> History:
    """Up to ``max_ops`` ops on ``keys``, processes reused when free: unique writes per
    key, reads (and cas expectations) of any value written anywhere, so some name a
    value never written to their key."""
    count = draw(st.integers(1, max_ops))
    written = list(range(1, count + 1))
    specs = []
    for value in written:
        kind = draw(st.sampled_from(["read", "read", "write", "cas"] if cas else
                                    ["read", "write"]))
        status = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail", None]))
        key = draw(st.sampled_from(keys))
        if kind == "read":
            out = draw(st.sampled_from([None, *written]))
            specs.append(("read", None, out, status, key))
        elif kind == "write":
            specs.append(("write", value, None, status, key))
        else:
            expected = draw(st.sampled_from([None, *written]))
            specs.append(("cas", [expected, value], None, status, key))
    slots = draw(st.permutations([(i, phase) for i in range(len(specs)) for phase in (0, 1)]))
    busy: dict[int, int] = {}
    events: list[dict[str, Any]] = []
    started: set[int] = set()
    pending = list(slots)
    process_of: dict[int, int] = {}
    next_process = 0
    while pending:
        i, phase = next(p for p in pending if p[1] == 0 or p[0] in started)
        pending.remove((i, phase))
        f, value, out, status, key = specs[i]
        if phase == 0:
            process = next((p for p in range(next_process) if p not in busy), next_process)
            next_process = max(next_process, process + 1)
            busy[process] = i
            process_of[i] = process
            started.add(i)
            events.append({"process": process, "type": "invoke", "f": f, "key": key,
                           "value": value})
        elif status is not None:
            process = process_of[i]
            events.append({"process": process, "type": status, "f": f, "key": key,
                           "value": out if f == "read" else value})
            if status != "info":
                del busy[process]
        # status None: never completes; the process stays busy
    return history_from_events(events)


_SETTINGS = settings(max_examples=200, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def values_agree(history: History, model: str) -> None:
    """From values, by the WGL search alone, and by brute force: one verdict."""
    with_values = check_history(history, model)
    search_only = check_history(history, model, from_values=False)
    assert with_values["valid"] is search_only["valid"] is brute_force(history, model)


@_SETTINGS
@given(st.sampled_from(MODELS), st.data())
def test_values_agree_with_the_search_and_brute_force(model: str, data: st.DataObject) -> None:
    keys = data.draw(st.sampled_from([("k",), ("k", "j")]))
    values_agree(data.draw(unique_histories(cas=model != "register", keys=keys)), model)


def _decisions(history: History, model_name: str) -> list[Any]:
    model = get_model(model_name)
    out = []
    for key, ops in model.partition(history.ops).items():
        kept = [(op, p) for op in ops if (p := model.prepare(op)) is not None]
        out.append(decide(model, [o for o, _ in kept], [p for _, p in kept], model.init(key)))
    return out


@_SETTINGS
@given(unique_histories())
def test_values_decide_directly(history: History) -> None:
    """Whatever it decides, it decides right; and it decides almost everything."""
    for decision in _decisions(history, "raft-kv"):
        if decision is not None:
            assert decision.valid is brute_force(history, "raft-kv")
            if not decision.valid:
                assert decision.explanation and decision.ops


def test_it_decides_most_random_histories() -> None:
    rng = random.Random(7)
    decided = total = 0
    for seed in range(200):
        events = simulate(random.Random(seed), 40, keys=1, clients=4, info_rate=0.2,
                          functions=("read", "write", "cas"))
        if rng.random() < 0.5:  # break about half of them: a read returns another value
            reads = [e for e in events if e["type"] == "ok" and e["f"] == "read"]
            if reads:
                rng.choice(reads)["value"] = rng.choice([None, *range(1, 30)])
        history = history_from_events(events)
        for decision in _decisions(history, "raft-kv"):
            total += 1
            decided += decision is not None
    assert decided >= 0.9 * total, (decided, total)


def test_stale_read_witness() -> None:
    events = [
        {"process": 0, "type": "invoke", "f": "write", "key": "k", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "key": "k", "value": 1},
        {"process": 0, "type": "invoke", "f": "write", "key": "k", "value": 2},
        {"process": 0, "type": "ok", "f": "write", "key": "k", "value": 2},
        {"process": 1, "type": "invoke", "f": "read", "key": "k", "value": None},
        {"process": 1, "type": "ok", "f": "read", "key": "k", "value": 1},
    ]
    result = check_history(history_from_events(events), "raft-kv")
    assert result["valid"] is False
    evidence = result["evidence"]
    assert evidence["decided_from_values"] is True
    assert {op["id"] for op in evidence["witness"]} >= {1, 2}
    assert "came first" in evidence["value_explanation"]
    assert result["decided_from_values"] == 1


def test_a_long_saturated_history_is_decided_without_search() -> None:
    events = simulate(random.Random(3), 5000, keys=1, clients=32, info_rate=0.2,
                      functions=("read", "write", "cas"))
    result = check_history(history_from_events(events), "raft-kv", timeout=60)
    assert result["valid"] is True
    assert result["decided_from_values"] == result["partitions"] == 1
    assert result["search_steps"] == 0


def test_corpus_files_are_left_to_the_search() -> None:
    """No Porcupine corpus file writes unique values (etcd's registers take 0-4, and a
    failed cas there is an observation; kv appends strings): the inference must decline
    every key of every file, and the corpus verdicts stay the search's (test_corpus.py)."""
    lines = (CORPUS / "expected.tsv").read_text(encoding="utf-8").splitlines()[1:]
    for line in lines:
        path, model = line.split("\t")[:2]
        decisions = _decisions(load_history(CORPUS / path), model)
        assert decisions and all(d is None for d in decisions), path
