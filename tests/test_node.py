"""The node process logic, run in-process: client API, read modes, admin, bugs, recovery."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import trio
from node_helpers import InProcessCluster, frame, raw_exchange, wait_until

from raft_impl.storage import drop_unsynced, recover
from splitbrain_common.wire import MAX_FRAME


def write(key, value, client="c1", seq=1, **extra):
    return {"client": client, "seq": seq, "op": "write", "key": key, "value": value, **extra}


async def test_single_node_serves_every_operation(nursery, tmp_path: Path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1)
    await cluster.start_all()
    await cluster.wait_leader()
    req = cluster.request
    assert await req("n1", {"id": 1, **write("k1", 5)}) == {"id": 1, "ok": True, "definite": True}
    assert await req("n1", {"id": 2, "client": "c1", "seq": 2, "op": "cas", "key": "k1",
                            "expected": 4, "value": 6}) == {
        "id": 2, "ok": False, "error": "cas-mismatch", "definite": True}
    assert (await req("n1", {"id": 3, "client": "c1", "seq": 3, "op": "cas", "key": "k1",
                             "expected": 5, "value": 6}))["ok"]
    assert await req("n1", {"id": 4, "client": "c1", "seq": 4, "op": "read", "key": "k1"}) == {
        "id": 4, "ok": True, "value": 6, "definite": True}
    assert await req("n1", {"id": 5, "op": "read", "key": "never"}) == {
        "id": 5, "ok": True, "value": None, "definite": True}
    for seq, item in enumerate(["a", "b"], start=5):
        assert (await req("n1", {"client": "c1", "seq": seq, "op": "append", "key": "l",
                                 "value": item}))["ok"]
    assert (await req("n1", {"op": "read", "key": "l"}))["value"] == ["a", "b"]

    status = (await req("n1", {"op": "status"}))["value"]
    assert list(status) == ["id", "role", "term", "leader", "commit", "applied", "last_index"]
    assert status["role"] == "leader" and status["leader"] == "n1"
    assert status["commit"] == status["applied"] == status["last_index"] == 6  # no-op + 5

    log = (await req("n1", {"op": "log"}))["value"]
    assert [e["op"] for e in log["entries"]] == ["noop", "write", "cas", "cas", "append", "append"]
    assert log["entries"][1] == {
        "index": 2, "term": status["term"], "client": "c1", "seq": 1,
        "digest": log["entries"][1]["digest"], "op": "write", "key": "k1",
    }
    tail = (await req("n1", {"op": "log", "from": 5}))["value"]["entries"]
    assert [e["index"] for e in tail] == [5, 6]
    digest = (await req("n1", {"op": "state-digest"}))["value"]
    assert digest["applied"] == 6 and len(digest["digest"]) == 32


async def test_bad_requests_are_answered_and_the_connection_stays(nursery, tmp_path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1)
    await cluster.start_all()
    await cluster.wait_leader()
    payload = (
        frame({"id": 1, "op": "frobnicate"})
        + frame({"id": 2, "op": "write", "key": "k"})
        + frame({"id": 3, "op": "log", "from": "x"})
        + frame({"id": 4, "op": "status"})
    )
    answers = []
    async with await trio.open_tcp_stream("127.0.0.1", cluster.client_ports["n1"]) as stream:
        await stream.send_all(payload)
        from splitbrain_common.wire import FrameDecoder

        decoder = FrameDecoder()
        with trio.fail_after(2):
            while len(answers) < 4:
                decoder.feed(await stream.receive_some(65536))
                answers.extend(decoder.messages())
    assert [(a["id"], a["ok"], a.get("error")) for a in answers] == [
        (1, False, "bad-request"), (2, False, "bad-request"), (3, False, "bad-request"),
        (4, True, None),
    ]


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1",  # not msgpack
        struct.pack(">I", 4) + b"\x93\x01\x02\x03",  # a msgpack list, not a map
        struct.pack(">I", MAX_FRAME + 1) + b"x" * 64,  # oversized
    ],
    ids=["garbage", "not-a-map", "oversized"],
)
async def test_malformed_client_frame_closes_only_that_connection(
    nursery, tmp_path, payload, capsys
) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1)
    await cluster.start_all()
    await cluster.wait_leader()
    answers = await raw_exchange(cluster.client_ports["n1"], payload)
    assert answers == []  # closed without an answer
    # The node keeps serving other connections.
    assert (await cluster.request("n1", write("k", 1)))["ok"]


async def test_peer_connection_without_hello_is_closed(nursery, tmp_path, caplog) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.ids if n != leader)
    bogus = frame({"type": "append", "from": leader, "to": follower, "term": 99})
    assert await raw_exchange(cluster.peer_ports[follower], bogus) == []
    garbage = frame({"type": "hello", "from": leader, "to": follower}) + b"\x00\x00\x00\x02\xc1\xc1"
    assert await raw_exchange(cluster.peer_ports[follower], garbage) == []
    assert any("expected a hello" in r.getMessage() for r in caplog.records)
    assert any("closing peer connection" in r.getMessage() for r in caplog.records)
    # The bogus term-99 append was never stepped: the cluster still commits in its term.
    assert (await cluster.request(leader, write("k", 2)))["ok"]
    assert cluster.nodes[follower].core.term < 99


async def test_followers_answer_not_leader_with_the_leader_hint(nursery, tmp_path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    # Followers learn the leader with its first append; wait for that, not a sleep.
    await wait_until(lambda: all(n.core.leader_id == leader for n in cluster.nodes.values()))
    for node_id in cluster.ids:
        if node_id == leader:
            continue
        answer = await cluster.request(node_id, {"id": 9, **write("k", 1)})
        assert answer == {"id": 9, "ok": False, "error": "not-leader", "leader": leader,
                          "definite": True}


@pytest.mark.parametrize("mode", ["read-index", "lease", "log", "stale"])
async def test_read_modes(nursery, tmp_path, mode) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3, read_mode=mode)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    assert (await cluster.request(leader, write("k", 42)))["ok"]
    read = {"client": "r", "seq": 1, "op": "read", "key": "k"}
    assert await cluster.request(leader, {"id": 1, **read}) == {
        "id": 1, "ok": True, "value": 42, "definite": True}
    follower = next(n for n in cluster.ids if n != leader)
    answer = await cluster.request(follower, {"id": 2, **read, "seq": 2})
    if mode == "stale":
        # Served from local state, which may lag: a value the key had, or null.
        assert answer["ok"] and answer["value"] in (None, 42)
    else:
        assert answer["error"] == "not-leader"
    log_ops = [e["op"] for e in (await cluster.request(leader, {"op": "log"}))["value"]["entries"]]
    assert ("read" in log_ops) == (mode == "log")


async def test_a_read_may_ask_for_its_path(nursery, tmp_path) -> None:
    """One lease-configured cluster serves each read the way the request asks: through
    the log, by read-index or lease at the leader, stale at a follower."""
    cluster = InProcessCluster(nursery, tmp_path, 3, read_mode="lease")
    await cluster.start_all()
    leader = await cluster.wait_leader()
    assert (await cluster.request(leader, write("k", 7)))["ok"]
    follower = next(n for n in cluster.ids if n != leader)
    for seq, path in enumerate(["read-index", "lease", "log"], start=1):
        read = {"id": seq, "client": "r", "seq": seq, "op": "read", "key": "k", "read": path}
        assert await cluster.request(leader, read) == {
            "id": seq, "ok": True, "value": 7, "definite": True}
        assert (await cluster.request(follower, read))["error"] == "not-leader"
    stale = {"client": "r", "seq": 9, "op": "read", "key": "k", "read": "stale"}
    assert (await cluster.request(follower, stale))["ok"]
    log_ops = [e["op"] for e in (await cluster.request(leader, {"op": "log"}))["value"]["entries"]]
    assert log_ops.count("read") == 1, "only the read that asked for the log went through it"


async def test_pending_write_is_unknown_when_leadership_is_lost(nursery, tmp_path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    for node_id in cluster.ids:
        if node_id != leader:
            await cluster.stop(node_id)
    # Cut off from both followers, the leader cannot commit; check-quorum steps it down
    # and the waiting client must hear "unknown", never a definite answer.
    answer = await cluster.request(leader, {"id": 7, **write("k", 1)}, within=5.0)
    assert answer == {"id": 7, "ok": False, "error": "leadership-lost", "definite": False}


async def test_retried_command_applies_once(nursery, tmp_path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1)
    await cluster.start_all()
    await cluster.wait_leader()
    append = {"client": "c", "seq": 1, "op": "append", "key": "l", "value": "x"}
    assert (await cluster.request("n1", append))["ok"]
    assert (await cluster.request("n1", append))["ok"]  # the client's retry
    assert (await cluster.request("n1", {"op": "read", "key": "l"}))["value"] == ["x"]


async def test_no_dedup_bug_applies_the_retry_twice(nursery, tmp_path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1, bugs=frozenset({"no-dedup"}))
    await cluster.start_all()
    await cluster.wait_leader()
    append = {"client": "c", "seq": 1, "op": "append", "key": "l", "value": "x"}
    await cluster.request("n1", append)
    await cluster.request("n1", append)
    assert (await cluster.request("n1", {"op": "read", "key": "l"}))["value"] == ["x", "x"]


async def test_clock_admin_sets_offset_and_rate(nursery, tmp_path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1)
    await cluster.start_all()
    before = (await cluster.request("n1", {"op": "clock"}))["value"]
    assert before["offset"] == 0 and before["rate"] == 1
    answer = await cluster.request("n1", {"op": "clock", "offset": 100.0, "rate": 2.0})
    assert answer["value"]["offset"] == 100.0 and answer["value"]["rate"] == 2.0
    assert answer["value"]["clock"] >= before["clock"] + 99
    bad = await cluster.request("n1", {"op": "clock", "offset": 0, "rate": -1})
    assert bad["error"] == "bad-request"
    # Reset to normal: the node clock follows real time again.
    await cluster.request("n1", {"op": "clock", "offset": 0, "rate": 1})
    clock = cluster.nodes["n1"].clock
    before_real = trio.current_time()
    node_clock = clock.now()
    assert before_real <= node_clock <= trio.current_time()


@pytest.mark.parametrize("bug", [False, True])
async def test_ack_before_fsync_acked_write_lost_with_unfsynced_data(nursery, tmp_path, bug):
    bugs = frozenset({"ack-before-fsync"}) if bug else frozenset()
    cluster = InProcessCluster(nursery, tmp_path, 1, bugs=bugs)
    await cluster.start_all()
    await cluster.wait_leader()
    assert (await cluster.request("n1", write("k", "acked")))["ok"]
    await cluster.stop("n1")
    drop_unsynced(tmp_path / "n1")
    await cluster.start("n1")
    await cluster.wait_leader()
    value = (await cluster.request("n1", {"op": "read", "key": "k"}))["value"]
    assert value == (None if bug else "acked")


@pytest.mark.parametrize("bug", [False, True])
async def test_forget_vote_bug_loses_the_vote_on_restart(nursery, tmp_path, bug) -> None:
    bugs = frozenset({"forget-vote"}) if bug else frozenset()
    cluster = InProcessCluster(nursery, tmp_path, 1, bugs=bugs)
    await cluster.start_all()
    await cluster.wait_leader()
    assert (await cluster.request("n1", write("k", 1)))["ok"]  # the election is durable now
    term = cluster.nodes["n1"].core.term
    await cluster.stop("n1")
    hs = recover(tmp_path / "n1", repair=False).hard_state
    assert hs.term == term
    assert hs.vote == (None if bug else "n1")


async def test_restart_recovers_state_and_snapshots_bound_the_log(nursery, tmp_path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3, snapshot_threshold=20)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    lagging = next(n for n in cluster.ids if n != leader)
    await cluster.stop(lagging)
    for i in range(60):
        assert (await cluster.request(leader, write(f"k{i % 7}", i, seq=i + 1)))["ok"]
    assert cluster.nodes[leader].core.snapshot_index >= 40
    # The lagging node needs compacted entries: it catches up through InstallSnapshot.
    await cluster.start(lagging)
    await wait_until(
        lambda: cluster.nodes[lagging].kv.applied >= cluster.nodes[leader].kv.applied
    )
    digests = {(await cluster.request(n, {"op": "state-digest"}))["value"]["digest"]
               for n in cluster.ids}
    assert len(digests) == 1
    # Everyone restarts from disk (snapshot + WAL suffix) and keeps the data.
    for node_id in list(cluster.nodes):
        await cluster.stop(node_id)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    for i in range(53, 60):
        answer = await cluster.request(leader, {"op": "read", "key": f"k{i % 7}"})
        assert answer["value"] == i


def test_a_proposal_whose_entry_was_replaced_is_answered_unknown() -> None:
    """The entry applied at the proposal's index has another term: never a definite answer."""
    import random

    from raft_impl.core import RaftConfig
    from raft_impl.host import HostSettings, NodeHost, _Pending
    from raft_impl.kv import Command
    from raft_impl.types import Entry, EntryKind

    host = NodeHost("n1", ["n1"], HostSettings(RaftConfig()), random.Random(1),
                    None, None, _NoEvents(), None)  # type: ignore[arg-type]
    answers: list[dict] = []
    host._pending[5] = _Pending(term=3, reply=answers.append, request_id=9)
    host._pending[6] = _Pending(term=4, reply=answers.append, request_id=10)
    other = Command("write", "k", 1, client="someone-else", seq=1).encode()
    ours = Command("write", "k", 2, client="c", seq=1).encode()
    host.kv.applied = 4
    host.apply([Entry(5, 4, EntryKind.COMMAND, other), Entry(6, 4, EntryKind.COMMAND, ours)])
    assert answers == [
        {"id": 9, "ok": False, "error": "entry-overwritten", "definite": False},
        {"id": 10, "ok": True, "definite": True},
    ]


class _NoEvents:
    def emit(self, event: dict, droppable: tuple[int, int] | None = None) -> None:
        pass
