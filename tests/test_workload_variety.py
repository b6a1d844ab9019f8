"""Workload variety by default: mixed read paths and in-doubt retries in some sessions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.db.base import DB, Client, Completion
from harness.db.wire import kv_request
from harness.run.clients import HistoryRecorder, ProcessPool
from harness.run.cluster import RunClock
from harness.run.run import RunConfig
from harness.run.workload import MIXED, RegisterWorkload, read_plan
from raft_impl.host import read_path as _read_path


@given(seed=st.integers(0, 2**31), keys=st.integers(1, 6))
@settings(max_examples=40, deadline=None)
def test_read_paths_do_not_change_the_operations_of_a_seed(seed: int, keys: int) -> None:
    plain = RegisterWorkload(keys=keys).operations(seed)
    mixed = RegisterWorkload(keys=keys, read_paths=("read-index", "lease")).operations(seed)
    for _ in range(300):
        a, b = next(plain), next(mixed)
        path = b.pop("read", None)
        assert a == b
        assert (path in ("read-index", "lease")) == (a["f"] == "read")


def test_mixed_reads_take_every_path_and_repeat_with_the_seed() -> None:
    workload = RegisterWorkload(read_paths=("read-index", "lease"))

    def paths(seed: int) -> list[str]:
        ops = workload.operations(seed)
        return [op["read"] for op in (next(ops) for _ in range(400)) if op["f"] == "read"]

    counts = Counter(paths(3))
    assert set(counts) == {"read-index", "lease"} and min(counts.values()) > 50
    assert paths(3) == paths(3) and paths(3) != paths(4)


def test_read_plan_offers_linearizable_paths_and_stale_only_when_asked() -> None:
    assert read_plan("raft_impl", MIXED) == ("lease", ("read-index", "lease"))
    assert read_plan("etcd", MIXED) == ("read-index", ("read-index",))
    assert read_plan("pysyncobj", MIXED) == ("log", ("log",))
    assert read_plan("raft_impl", "stale") == ("stale", ("stale",))
    assert RunConfig().read_mode == MIXED
    assert RunConfig().workload().read_paths == ("read-index", "lease")
    assert RunConfig(read_mode="read-index").workload().read_paths == ("read-index",)


def test_the_request_asks_for_the_path_and_a_node_grants_leases_only_if_configured() -> None:
    request = kv_request({"f": "read", "key": "k1", "value": None, "read": "lease"},
                         client_id="c1", seq=3)
    assert request["read"] == "lease"
    assert "read" not in kv_request({"f": "write", "key": "k1", "value": 2, "read": "lease"},
                                    client_id="c1", seq=4)
    assert _read_path("lease", "read-index") == "read-index"
    assert _read_path("lease", "lease") == "lease"
    assert _read_path("read-index", "lease") == "read-index", "no lease without the embargo"
    assert _read_path("read-index", "stale") == "stale"
    assert _read_path("lease", None) == "lease"
    assert _read_path("lease", "nonsense") == "lease"


def test_retry_slots_follow_the_share() -> None:
    assert RunConfig(concurrency=5).retry_slots() == 2
    assert RunConfig(concurrency=5, retry_share=0).retry_slots() == 0
    assert RunConfig(concurrency=1, retry_share=0.1).retry_slots() == 1
    assert RunConfig(concurrency=5, retry_share=0, retry_indefinite=True).retry_slots() == 5


def test_pin_slots_follow_the_share() -> None:
    assert RunConfig(concurrency=5).pin_slots() == 2
    assert RunConfig(concurrency=5, pin_share=0).pin_slots() == 0
    assert RunConfig(concurrency=1, pin_share=0.1).pin_slots() == 1
    assert RunConfig(concurrency=10, pin_share=1).pin_slots() == 10


class FollowingClient(Client):
    """Remembers the leader it was sent to, as NodeClient does (``target``)."""

    def __init__(self, db: FollowDB, node: str) -> None:
        self.db, self.target = db, node
        self.in_doubt = False

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        self.db.asked.append((client_id, self.target))
        self.target = "n1"  # not-leader: follow the hint to n1, and stay there
        return Completion("info" if op["f"] == "write" else "ok", node="n1")


class FollowDB(DB):
    name = "follow-fake"

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def client(self, node: str) -> Client:
        return FollowingClient(self, node)


async def test_pinned_processes_ask_their_own_node_first_every_time(tmp_path: Path) -> None:
    """A pinned process goes back to its node for every operation, and its successor after
    an in-doubt operation keeps the node; the others stay with the leader they found.
    Without pinning nobody asks a deposed leader anything (issue 12's diagnosis)."""
    db = FollowDB()
    recorder = HistoryRecorder(tmp_path / "history.jsonl", RunClock())
    pool = ProcessPool(db, ["n1", "n2", "n3"], recorder, concurrency=4, op_timeout=1.0,
                       pin_slots=2)
    free, pinned = await pool.new_process(1), await pool.new_process(2)
    assert (free.pinned, pinned.pinned) == (False, True) and pinned.node == "n3"
    read = {"f": "read", "key": "k1", "value": None}
    for _ in range(2):
        await pool.run_op(free, read)
        await pool.run_op(pinned, read)
    assert db.asked == [("c1", "n2"), ("c2", "n3"), ("c1", "n1"), ("c2", "n3")]
    done = await pool.run_op(pinned, {"f": "write", "key": "k1", "value": 1})
    assert done["type"] == "info"
    successor = await pool.retire(pinned, 2)
    assert successor.pinned and successor.node == "n3" and successor.number == 6
    final = await pool.new_process(10_000_000, "n1", retry=False, pinned=False)
    assert not final.pinned
    recorder.close()


class RetryingClient(Client):
    """Answers after ``retries`` re-sent attempts when it retries, else in doubt."""

    can_retry_in_doubt = True

    def __init__(self, db: RetryDB) -> None:
        self.db = db
        self.in_doubt = False

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        self.db.calls.append((client_id, seq, self.retry_indefinite))
        if not self.retry_indefinite:
            return Completion("info", error="connection lost", node="n1")
        return Completion("ok", value=7 if op["f"] == "read" else None, node="n1", retries=2)


class RetryDB(DB):
    name = "retry-fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []

    def client(self, node: str) -> Client:
        return RetryingClient(self)


async def test_retrying_processes_keep_one_operation_with_its_retries(tmp_path: Path) -> None:
    db = RetryDB()
    recorder = HistoryRecorder(tmp_path / "history.jsonl", RunClock())
    pool = ProcessPool(db, ["n1", "n2"], recorder, concurrency=3, op_timeout=1.0,
                       retry_slots=1)
    retrying, plain = await pool.new_process(0), await pool.new_process(1)
    successor = await pool.retire(retrying, 0)
    assert successor.client.retry_indefinite, "a slot keeps its retry habit across processes"
    final = await pool.new_process(10_000_000, retry=False)
    assert not plain.client.retry_indefinite and not final.client.retry_indefinite
    done = await pool.run_op(successor, {"f": "read", "key": "k1", "value": None,
                                         "read": "lease"})
    assert done["type"] == "ok" and done["retries"] == 2 and done["value"] == 7
    done = await pool.run_op(plain, {"f": "write", "key": "k1", "value": 1})
    assert done["type"] == "info" and "retries" not in done
    recorder.close()
    events = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [(e["type"], e["process"]) for e in events] == [
        ("invoke", 3), ("ok", 3), ("invoke", 1), ("info", 1)
    ]
    assert events[0]["read"] == "lease" and "read" not in events[2]


async def test_a_client_that_cannot_retry_is_never_asked_to() -> None:
    class Plain(Client):
        pass

    class PlainDB(DB):
        def client(self, node: str) -> Client:
            return Plain()

    with trio.fail_after(5):
        pool = ProcessPool(PlainDB(), ["n1"], None, concurrency=2,  # type: ignore[arg-type]
                           op_timeout=1.0, retry_slots=2)
        process = await pool.new_process(0)
    assert process.client.retry_indefinite is False
