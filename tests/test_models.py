"""Models: each one's sequential semantics, --init, partitioning, and a user-defined model."""

from __future__ import annotations

from typing import Any

import pytest

from checker.history import Op, history_from_events
from checker.linearizable import check_history
from checker.models import (
    ANY,
    MODELS,
    UNKNOWN,
    Model,
    ModelError,
    freeze,
    get_model,
    register_model,
    thaw,
)


def op(f: str, value: Any = None, output: Any = None, type_: str = "ok", key: Any = None) -> Op:
    return Op(id=0, process=0, f=f, key=key, value=value, type=type_, output=output, call=0,
              complete=None if type_ == "info" else 1)


def run(model: Model, state: Any, *ops: Op) -> list[tuple[bool, Any]]:
    """Step each op from `state` (the state carries over only after legal steps)."""
    out = []
    for o in ops:
        prepared = model.prepare(o)
        assert prepared is not None
        ok, new = model.step(state, *prepared)
        out.append((ok, new))
        if ok:
            state = new
    return out


def test_registry_has_every_model() -> None:
    assert set(MODELS) >= {"register", "cas-register", "multi-register", "mutex", "kv",
                           "etcd", "raft-kv"}
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        get_model("nope")


def test_raft_kv_semantics() -> None:
    m = get_model("raft-kv")
    assert m.init("k1") is None  # never written: reads null
    steps = run(m, m.init("k1"),
                op("read", output=None), op("write", 3), op("read", output=3),
                op("cas", [3, 4]), op("cas", [3, 5]), op("read", output=4))
    assert [ok for ok, _ in steps] == [True, True, True, True, False, True]
    assert m.prepare(op("cas", [1, 2], type_="fail")) is None  # did not happen
    assert m.prepare(op("read", type_="info")) is None  # tells nothing
    assert m.prepare(op("cas", [1, 2], type_="info"))[1] is UNKNOWN
    # append builds a list; reads compare element-wise; appending to a scalar is refused
    steps = run(m, None, op("append", 1), op("append", 2), op("read", output=[1, 2]))
    assert [ok for ok, _ in steps] == [True, True, True]
    assert steps[-1][1] == (1, 2)
    assert m.step(5, *m.prepare(op("append", 1)))[0] is False
    with pytest.raises(ModelError, match="expected, new"):
        m.prepare(op("cas", 3))
    with pytest.raises(ModelError, match="unknown operation"):
        m.prepare(op("increment", 1))


def test_raft_kv_init_per_key_and_partitions() -> None:
    m = get_model("raft-kv", {"k1": 5})
    assert m.init("k1") == 5 and m.init("k2") is None
    parts = m.partition([op("read", key="a"), op("read", key="b"), op("write", 1, key="a")])
    assert sorted(parts) == ["a", "b"] and len(parts["a"]) == 2


def test_knossos_cas_register() -> None:
    m = get_model("cas-register", 0)
    assert m.init() == 0
    steps = run(m, m.init(), op("cas", [0, 1]), op("cas", [0, 2]), op("write", 7),
                op("read", output=7), op("read", output=1))
    assert [ok for ok, _ in steps] == [True, False, True, True, False]
    # Knossos: a nil read is no constraint, a failed cas did not happen
    assert m.prepare(op("read", output=None)) is None
    assert m.prepare(op("cas", [1, 2], type_="fail")) is None


def test_register_reads_and_writes_only() -> None:
    m = get_model("register")
    assert [ok for ok, _ in run(m, None, op("write", 1), op("read", output=1),
                                op("read", output=2))] == [True, True, False]
    with pytest.raises(ModelError):
        m.prepare(op("cas", [1, 2]))


def test_etcd_register_starts_absent() -> None:
    m = get_model("etcd")
    absent = m.init()
    assert m.describe(absent) == "absent"
    read_nil = m.prepare(op("read", output=None))
    assert m.step(absent, *read_nil) == (True, absent)
    # a failed cas is an observation: the compare did not match
    failed = m.prepare(op("cas", [0, 3], type_="fail"))
    assert failed[1] is False and m.read_only(*failed)
    assert m.step(absent, *failed)[0] is True  # absent never matches
    assert m.step(0, *failed)[0] is False
    assert m.step(1, *failed) == (True, 1)
    ok_cas = m.prepare(op("cas", [0, 3]))
    assert m.step(absent, *ok_cas)[0] is False and m.step(0, *ok_cas) == (True, 3)
    unknown = m.prepare(op("cas", [0, 3], type_="info"))
    assert unknown[1] is UNKNOWN and m.step(0, *unknown) == (True, 3)
    write = m.prepare(op("write", 2, type_="info"))
    assert m.step(absent, *write) == (True, 2)
    assert m.step(2, *read_nil)[0] is False  # nil only while nothing was written
    assert m.prepare(op("read", output="timed-out", type_="fail")) is None


def test_porcupine_kv() -> None:
    m = get_model("kv")
    assert m.init("any") == ""
    steps = run(m, "", op("append", "x 1 y"), op("get", output="x 1 y"), op("put", "a"),
                op("append", "b"), op("get", output="ab"), op("get", output="a"))
    assert [ok for ok, _ in steps] == [True, True, True, True, True, False]


def test_multi_register_transactions() -> None:
    m = get_model("multi-register", {"x": 0, "y": 0})
    start = m.init()
    assert m.describe(start) == {"x": 0, "y": 0}
    txn = op("txn", [["read", "x", None], ["write", "y", 2]],
             output=[["read", "x", 0], ["write", "y", 2]])
    ok, after = m.step(start, *m.prepare(txn))
    assert ok and m.describe(after) == {"x": 0, "y": 2}
    bad = op("txn", [["read", "y", None]], output=[["read", "y", 5]])
    assert m.step(after, *m.prepare(bad))[0] is False
    assert m.read_only(*m.prepare(bad))
    single = op("write", 9, key="x")
    assert m.describe(m.step(after, *m.prepare(single))[1])["x"] == 9
    with pytest.raises(ModelError, match="JSON object"):
        get_model("multi-register", 3).init()
    with pytest.raises(ModelError, match="micro-op"):
        m.prepare(op("txn", [["inc", "x", 1]]))


def test_mutex() -> None:
    m = get_model("mutex")
    steps = run(m, m.init(), op("acquire"), op("acquire"), op("release"), op("release"))
    assert [ok for ok, _ in steps] == [True, False, True, False]
    assert m.describe(True) == "held"


def test_freeze_and_thaw() -> None:
    value = {"a": [1, {"b": [2, 3]}], "c": None}
    frozen = freeze(value)
    hash(frozen)
    assert thaw(frozen) == value


def test_reachability_prunes_only_impossible_targets() -> None:
    m = get_model("raft-kv")
    inputs = [m.prepare(o)[0] for o in (op("write", 1), op("append", 7), op("cas", [1, 2]))]
    outputs = [None, None, True]
    reach = m.reachability(inputs, outputs)
    assert reach(None, 1, 0) and reach(None, 2, 0)
    assert not reach(None, 2, 0b100)  # the only op setting 2 is already linearized
    assert not reach(None, 9, 0)  # nothing ever writes 9
    assert reach((7,), (7, 7), 0) and not reach((7,), (8, 7), 0)
    kv = get_model("kv")
    kv_inputs = [kv.prepare(o)[0] for o in (op("append", "b"), op("put", "a"))]
    kv_reach = kv.reachability(kv_inputs, [None, None])
    assert kv_reach("x", "xb", 0) and kv_reach("x", "ab", 0)
    assert not kv_reach("x", "ab", 0b10)  # the put is used up


class Counter(Model):
    """A user-defined model, as the docs describe: increments and exact reads."""

    name = "counter"

    def init(self, key: Any = None) -> int:
        return self.initial or 0

    def prepare(self, o: Op) -> tuple[Any, Any] | None:
        if o.type == "fail" or (o.f == "read" and o.unknown):
            return None
        return (o.f,), (o.output if o.f == "read" else None)

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        if input[0] == "read":
            return output == state, state
        return True, state + 1

    def read_only(self, input: Any, output: Any) -> bool:
        return input[0] == "read"

    def expects(self, input: Any, output: Any) -> Any:
        return ANY


def test_user_defined_model_plugs_in() -> None:
    register_model("counter", Counter)
    try:
        events = [
            {"process": 0, "type": "invoke", "f": "incr"},
            {"process": 1, "type": "invoke", "f": "incr"},
            {"process": 0, "type": "ok", "f": "incr"},
            {"process": 2, "type": "invoke", "f": "read"},
            {"process": 2, "type": "ok", "f": "read", "value": 1},
            {"process": 1, "type": "ok", "f": "incr"},
        ]
        assert check_history(history_from_events(events), "counter")["valid"] is True
        events[4]["value"] = 3
        result = check_history(history_from_events(events), "counter")
        assert result["valid"] is False and result["model"] == "counter"
    finally:
        del MODELS["counter"]
