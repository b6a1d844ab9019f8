"""The key/value state machine: operations, sessions, digest, snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft_impl.kv import Command, CommandError, KVStateMachine, Result
from raft_impl.types import Entry, EntryKind


def cmd(op, key="k", value=None, expected=None, client=None, seq=None) -> Command:
    return Command(op, key, value, expected, client, seq)


def test_never_written_key_reads_null_with_a_value_field() -> None:
    kv = KVStateMachine()
    result = kv.apply(cmd("read", "nope"))
    assert result == Result(True, None, has_value=True)
    assert result.reply_fields() == {"ok": True, "value": None, "definite": True}


def test_write_read_cas_append() -> None:
    kv = KVStateMachine()
    assert kv.apply(cmd("write", value=5)).reply_fields() == {"ok": True, "definite": True}
    assert kv.apply(cmd("read")).value == 5
    mismatch = kv.apply(cmd("cas", expected=4, value=6))
    assert mismatch.reply_fields() == {"ok": False, "error": "cas-mismatch", "definite": True}
    assert kv.apply(cmd("cas", expected=5, value=6)).ok
    assert kv.read("k") == 6
    assert kv.apply(cmd("append", "l", 1)).ok
    assert kv.apply(cmd("append", "l", 2)).ok
    assert kv.read("l") == [1, 2]
    assert kv.apply(cmd("append", "k", 3)).error == "not-a-list"


def test_cached_read_result_is_not_changed_by_later_appends() -> None:
    kv = KVStateMachine()
    kv.apply(cmd("append", "l", 1, client="c", seq=1))
    read = kv.apply(cmd("read", "l", client="c", seq=2))
    kv.apply(cmd("append", "l", 2, client="d", seq=1))
    assert read.value == [1]
    assert kv.apply(cmd("read", "l", client="c", seq=2)).value == [1]


def test_retry_applies_once_and_returns_the_cached_result() -> None:
    kv = KVStateMachine()
    first = kv.apply(cmd("append", "l", "x", client="c1", seq=1))
    retry = kv.apply(cmd("append", "l", "x", client="c1", seq=1))
    assert first == retry
    assert kv.read("l") == ["x"]
    # A retried cas that succeeded the first time still answers ok, not cas-mismatch.
    kv.apply(cmd("write", "r", 1, client="c2", seq=1))
    assert kv.apply(cmd("cas", "r", 2, expected=1, client="c2", seq=2)).ok
    assert kv.apply(cmd("cas", "r", 2, expected=1, client="c2", seq=2)).ok
    assert kv.read("r") == 2


def test_delayed_duplicate_of_an_older_seq_is_refused_as_unknown() -> None:
    kv = KVStateMachine()
    kv.apply(cmd("append", "l", 1, client="c", seq=1))
    kv.apply(cmd("append", "l", 2, client="c", seq=2))
    stale = kv.apply(cmd("append", "l", 1, client="c", seq=1))
    assert not stale.ok and not stale.definite and stale.error == "stale-seq"
    assert kv.read("l") == [1, 2]


def test_no_dedup_bug_applies_retries_twice() -> None:
    kv = KVStateMachine(dedup=False)
    kv.apply(cmd("append", "l", "x", client="c1", seq=1))
    kv.apply(cmd("append", "l", "x", client="c1", seq=1))
    assert kv.read("l") == ["x", "x"]


def test_session_eviction_is_oldest_used_first() -> None:
    kv = KVStateMachine(max_sessions=2)
    kv.apply(cmd("write", value=1, client="a", seq=1))
    kv.apply(cmd("write", value=2, client="b", seq=1))
    kv.apply(cmd("write", value=3, client="a", seq=2))  # a is now most recent
    kv.apply(cmd("write", value=4, client="c", seq=1))  # evicts b
    assert list(kv.sessions) == ["a", "c"]


def test_apply_entry_skips_noops_and_tracks_applied() -> None:
    kv = KVStateMachine()
    assert kv.apply_entry(Entry(1, 1, EntryKind.NOOP, b"")) == (None, None)
    command, result = kv.apply_entry(Entry(2, 1, EntryKind.COMMAND, cmd("write", value=7).encode()))
    assert command.op == "write" and result.ok and kv.applied == 2 and kv.read("k") == 7


def test_digest_ignores_insertion_order_and_sees_values() -> None:
    a, b = KVStateMachine(), KVStateMachine()
    a.apply(cmd("write", "x", {"m": 1, "n": [1, 2]}))
    a.apply(cmd("write", 3, "int key"))
    b.apply(cmd("write", 3, "int key"))
    b.apply(cmd("write", "x", {"n": [1, 2], "m": 1}))
    assert a.digest() == b.digest()
    b.apply(cmd("write", 3, "other"))
    assert a.digest() != b.digest()


def test_snapshot_round_trip_keeps_sessions() -> None:
    kv = KVStateMachine()
    first = cmd("append", "l", 1, client="c", seq=1)
    kv.apply_entry(Entry(1, 1, EntryKind.COMMAND, first.encode()))
    kv.apply_entry(Entry(2, 1, EntryKind.COMMAND, cmd("write", 9, "nine").encode()))
    restored = KVStateMachine()
    restored.restore(kv.snapshot())
    assert restored.applied == 2 and restored.digest() == kv.digest()
    assert restored.read(9) == "nine"
    retry = restored.apply(cmd("append", "l", 1, client="c", seq=1))
    assert retry.ok and restored.read("l") == [1]


@pytest.mark.parametrize(
    "request_,message",
    [
        ({"op": "frobnicate", "key": "k"}, "unknown op"),
        ({"op": "read"}, "needs a key"),
        ({"op": "write", "key": "k"}, "needs a value"),
        ({"op": "cas", "key": "k", "value": 1}, "expected"),
        ({"op": "read", "key": [1]}, "string or an integer"),
        ({"op": "read", "key": "k", "seq": "one"}, "seq"),
    ],
)
def test_malformed_requests_are_refused(request_, message) -> None:
    with pytest.raises(CommandError, match=message):
        Command.from_request(request_)


def test_command_round_trips_through_an_entry() -> None:
    request = {"op": "cas", "key": "k1", "expected": 5, "value": 6, "client": "c7", "seq": 2}
    command = Command.from_request(request)
    assert Command.decode(command.encode()) == command


ops = st.sampled_from(["read", "write", "cas", "append"])
keys = st.sampled_from(["a", "b", 1])
values = st.integers(min_value=0, max_value=3)


@settings(max_examples=80)
@given(st.lists(st.tuples(ops, keys, values, values, st.sampled_from(["c1", "c2"])), max_size=40))
def test_replicas_applying_the_same_log_agree(steps) -> None:
    """Determinism: same log -> same digest, also via snapshot + suffix replay."""
    log = []
    seqs: dict[str, int] = {}
    for op, key, value, expected, client in steps:
        seqs[client] = seqs.get(client, 0) + 1
        log.append(Command(op, key, value, expected, client, seqs[client]))
    a, b = KVStateMachine(), KVStateMachine()
    for c in log:
        a.apply(c)
    half = len(log) // 2
    for c in log[:half]:
        b.apply(c)
    c2 = KVStateMachine()
    c2.restore(b.snapshot())
    for c in log[half:]:
        c2.apply(c)
    # Replaying everything again (a new leader re-proposing) changes nothing.
    for c in log:
        a.apply(c)
    assert a.digest() == c2.digest()
    assert list(a.sessions.items()) == list(c2.sessions.items())
