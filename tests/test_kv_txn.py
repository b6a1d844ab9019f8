"""Transactions in raft_impl: the ``txn`` command, its atomicity, the read path, the bug."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from node_helpers import InProcessCluster

from raft_impl.kv import MAX_TXN_OPS, Command, CommandError, KVStateMachine, Result


def txn(*mops: list[Any], client: str | None = None, seq: int | None = None) -> Command:
    request: dict[str, Any] = {"op": "txn", "value": [list(m) for m in mops]}
    if client is not None:
        request.update(client=client, seq=seq)
    return Command.from_request(request)


def test_micro_ops_see_earlier_ones_and_reads_are_filled_in() -> None:
    kv = KVStateMachine()
    result = kv.apply(txn(["r", "x", None], ["append", "x", 1], ["append", "x", 2],
                          ["r", "x", None], ["w", "y", 7], ["r", "y", None]))
    assert result == Result(True, [["r", "x", None], ["append", "x", 1], ["append", "x", 2],
                                   ["r", "x", [1, 2]], ["w", "y", 7], ["r", "y", 7]],
                            has_value=True)
    assert result.reply_fields()["value"][3] == ["r", "x", [1, 2]]
    assert kv.data == {"x": [1, 2], "y": 7}


def test_a_failing_micro_op_leaves_nothing_behind() -> None:
    kv = KVStateMachine()
    kv.apply(txn(["w", "reg", 5]))
    before = kv.digest()
    result = kv.apply(txn(["append", "x", 1], ["w", "y", 2], ["append", "reg", 3]))
    assert (result.ok, result.error, result.definite) == (False, "not-a-list", True)
    assert kv.digest() == before and kv.data == {"reg": 5}


def test_a_retried_txn_applies_once_and_answers_its_first_reads() -> None:
    kv = KVStateMachine()
    first = kv.apply(txn(["append", "x", 1], ["r", "x", None], client="c", seq=1))
    again = kv.apply(txn(["append", "x", 1], ["r", "x", None], client="c", seq=1))
    assert again == first and kv.skipped
    assert kv.data == {"x": [1]}


def test_an_answer_given_is_not_changed_by_later_appends() -> None:
    kv = KVStateMachine()
    kv.apply(txn(["append", "x", 1]))
    answer = kv.apply(txn(["r", "x", None])).value
    kv.apply(txn(["append", "x", 2]))
    assert answer == [["r", "x", [1]]]
    assert kv.read_txn([["r", "x", None]]).value == [["r", "x", [1, 2]]]


def test_read_only_is_a_property_of_the_micro_ops() -> None:
    assert txn(["r", "x", None], ["r", 3, None]).read_only
    assert not txn(["r", "x", None], ["w", "x", 1]).read_only
    assert not Command("read", "x").read_only


def test_txn_survives_the_log_encoding_and_a_snapshot() -> None:
    command = txn(["append", "x", 1], ["r", "x", None], client="c", seq=4)
    assert Command.decode(command.encode()) == command
    kv = KVStateMachine()
    kv.apply(command)
    restored = KVStateMachine()
    restored.restore(kv.snapshot())
    assert restored.digest() == kv.digest()
    assert restored.apply(command) == kv.sessions["c"][1]  # the cached answer, with its reads


@pytest.mark.parametrize("value, message", [
    (None, "non-empty list"),
    ([], "non-empty list"),
    ("rx", "non-empty list"),
    ([["r", "x"]], "must be a list [f, key, value]"),
    (["r", "x", None], "must be a list [f, key, value]"),
    ([["read", "x", None]], "unknown f 'read'"),
    ([["r", "x", 1]], "a read's value must be null"),
    ([["w", "x", None]], "non-null scalar"),
    ([["append", "x", [1]]], "non-null scalar"),
    ([["append", True, 1]], "key must be a string or an integer"),
    ([["r", None, None]], "key must be a string or an integer"),
    ([["r", "x", None]] * (MAX_TXN_OPS + 1), f"at most {MAX_TXN_OPS}"),
])
def test_malformed_txns_are_refused(value: Any, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("[", r"\[")):
        Command.from_request({"op": "txn", "value": value})


keys = st.sampled_from(["a", "b", "c"])
mop = st.one_of(
    st.tuples(st.just("r"), keys, st.none()),
    st.tuples(st.just("append"), keys, st.integers(0, 5)),
    st.tuples(st.just("w"), keys, st.integers(0, 5)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(mop, min_size=1, max_size=5), max_size=8))
def test_every_txn_is_applied_whole_or_not_at_all(txns: list[list[Any]]) -> None:
    """Atomicity against an oracle: each txn's effect is that of its micro-ops run one by
    one on a copy of the state, kept only if none failed; its reads see that copy."""
    kv = KVStateMachine()
    model: dict[str, Any] = {}
    for mops in txns:
        result = kv.apply(txn(*mops))
        state = {k: list(v) if isinstance(v, list) else v for k, v in model.items()}
        reads: list[Any] = []
        failed = False
        for f, key, value in mops:
            if f == "r":
                reads.append(state.get(key))
            elif f == "w":
                state[key] = value
            elif state.get(key) is None or isinstance(state[key], list):
                state[key] = [*(state.get(key) or []), value]
            else:
                failed = True
                break
        assert result.ok is not failed
        if failed:
            assert kv.data == model
            continue
        model = state
        assert kv.data == model
        assert [v for f, _, v in result.value if f == "r"] == reads


def request_txn(seq: int, *mops: list[Any], **extra: Any) -> dict[str, Any]:
    return {"id": seq, "client": "t", "seq": seq, "op": "txn", "value": list(mops), **extra}


async def test_a_cluster_serves_txns_and_read_only_ones_by_the_read_path(
        nursery, tmp_path: Path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3, read_mode="lease")
    await cluster.start_all()
    leader = await cluster.wait_leader()
    assert await cluster.request(leader, request_txn(1, ["append", "x", 1], ["r", "x", None])) \
        == {"id": 1, "ok": True, "value": [["append", "x", 1], ["r", "x", [1]]],
            "definite": True}
    for seq, path in enumerate(["read-index", "lease", "log"], start=2):
        answer = await cluster.request(leader, request_txn(seq, ["r", "x", None],
                                                           ["r", "y", None], read=path))
        assert answer == {"id": seq, "ok": True, "value": [["r", "x", [1]], ["r", "y", None]],
                          "definite": True}
    follower = next(n for n in cluster.ids if n != leader)
    refused = await cluster.request(follower, request_txn(9, ["r", "x", None]))
    assert refused["error"] == "not-leader"
    bad = await cluster.request(leader, request_txn(10, ["r", "x", 5]))
    assert (bad["error"], bad["definite"]) == ("bad-request", True)
    log = (await cluster.request(leader, {"op": "log"}))["value"]["entries"]
    assert [e["op"] for e in log].count("txn") == 2, "the write txn and the one read by log"


async def test_txn_local_read_bug_lets_a_follower_answer_from_its_own_state(
        nursery, tmp_path: Path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3, bugs=frozenset({"txn-local-read"}))
    await cluster.start_all()
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.ids if n != leader)
    assert (await cluster.request(leader, request_txn(1, ["append", "x", 1])))["ok"]
    answer = await cluster.request(follower, request_txn(2, ["r", "x", None]))
    assert answer["ok"], "with the bug a follower answers instead of naming the leader"
    # Whatever it has applied so far: the append (once the commit reached it) or not
    # yet. How the checker catches the stale case: tests/test_txn_workload.py.
    assert answer["value"] in ([["r", "x", [1]]], [["r", "x", None]])
    refused = await cluster.request(follower, request_txn(3, ["append", "x", 2]))
    assert refused["error"] == "not-leader", "only read-only txns are served locally"
