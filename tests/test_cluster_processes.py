"""Real ``python -m raft_impl`` processes on loopback: the contract outside tools rely on."""

from __future__ import annotations

import signal
import struct
from pathlib import Path

import psutil
import pytest
import trio

from raft_impl.client import open_client
from raft_impl.localcluster import LocalCluster, local_cluster
from raft_impl.storage import iter_records
from splitbrain_common.wire import FrameDecoder, encode_frame


async def exchange_raw(cluster: LocalCluster, node_id: str, message: dict) -> bytes:
    """Send one frame, return the raw bytes of the one answer frame."""
    node = cluster.nodes[node_id]
    decoder = FrameDecoder()
    with trio.fail_after(3):
        async with await trio.open_tcp_stream(node.host, node.client_port) as stream:
            await stream.send_all(encode_frame(message))
            while True:
                decoder.feed(await stream.receive_some(65536))
                for raw in decoder.frames_raw():
                    return raw


async def wait_converged(cluster: LocalCluster, within: float = 5.0) -> dict[str, dict]:
    """Poll until every running node has applied the same index; return their statuses."""
    with trio.fail_after(within):
        while True:
            statuses = {n: await cluster.status(n) for n in cluster.nodes}
            applied = {s["applied"] for s in statuses.values() if s}
            if None not in statuses.values() and len(applied) == 1:
                return statuses
            await trio.sleep(0.05)


async def test_wire_protocol_matches_design_byte_for_byte(tmp_path: Path) -> None:
    async with local_cluster(3, tmp_path) as cluster:
        leader = await cluster.wait_leader(within=5.0)
        follower = next(n for n in cluster.nodes if n != leader)

        raw = await exchange_raw(cluster, leader, {
            "id": 1, "client": "c7", "seq": 1, "op": "write", "key": "k1", "value": 5})
        assert raw == encode_frame({"id": 1, "ok": True, "definite": True})

        raw = await exchange_raw(cluster, leader, {
            "id": 2, "client": "c7", "seq": 2, "op": "cas", "key": "k1", "expected": 4,
            "value": 6})
        assert raw == encode_frame({"id": 2, "ok": False, "error": "cas-mismatch",
                                    "definite": True})

        # Followers learn the leader from its appends; the write above was replicated.
        await wait_converged(cluster)
        raw = await exchange_raw(cluster, follower, {
            "id": 3, "client": "c7", "seq": 3, "op": "read", "key": "k1"})
        assert raw == encode_frame({"id": 3, "ok": False, "error": "not-leader",
                                    "leader": leader, "definite": True})

        raw = await exchange_raw(cluster, follower, {"id": 4, "op": "status"})
        status = decode_frame(raw)["value"]
        assert raw == encode_frame({"id": 4, "ok": True, "value": {
            "id": follower, "role": "follower", "term": status["term"], "leader": leader,
            "commit": status["commit"], "applied": status["applied"],
            "last_index": status["last_index"]}})
        assert status["commit"] == 3 and status["last_index"] == 3  # no-op, write, cas

        raw = await exchange_raw(cluster, leader, {"id": 5, "op": "log"})
        value = decode_frame(raw)["value"]
        term = status["term"]
        entries = value["entries"]
        assert raw == encode_frame({"id": 5, "ok": True, "value": {
            "commit": 3, "snapshot_index": 0, "snapshot_term": 0, "entries": [
                {"index": 1, "term": term, "client": None, "seq": None,
                 "digest": entries[0]["digest"], "op": "noop", "key": None},
                {"index": 2, "term": term, "client": "c7", "seq": 1,
                 "digest": entries[1]["digest"], "op": "write", "key": "k1"},
                {"index": 3, "term": term, "client": "c7", "seq": 2,
                 "digest": entries[2]["digest"], "op": "cas", "key": "k1"},
            ]}})
        raw = await exchange_raw(cluster, leader, {"id": 6, "client": "c7", "seq": 4,
                                                   "op": "read", "key": "never-written"})
        assert raw == encode_frame({"id": 6, "ok": True, "value": None, "definite": True})


def decode_frame(raw: bytes) -> dict:
    decoder = FrameDecoder()
    decoder.feed(raw)
    return next(decoder.messages())


async def test_leader_kill_failover_and_full_restart_keep_the_data(tmp_path: Path) -> None:
    async with local_cluster(3, tmp_path) as cluster:
        leader = await cluster.wait_leader(within=5.0)
        node = cluster.nodes[leader]
        async with open_client(node.host, node.client_port) as client:
            for i in range(30):
                answer = await client.request(
                    {"client": "w", "seq": i + 1, "op": "write", "key": f"k{i}", "value": i},
                    within=3.0)
                assert answer["ok"], answer
        await cluster.kill(leader)  # SIGKILL
        start = trio.current_time()
        new_leader = await cluster.wait_leader(within=3.0, exclude=[leader])
        assert trio.current_time() - start < 3.0
        node = cluster.nodes[new_leader]
        async with open_client(node.host, node.client_port) as client:
            for i in range(30):
                answer = await client.request({"op": "read", "key": f"k{i}"}, within=3.0)
                assert answer == {"id": answer["id"], "ok": True, "value": i, "definite": True}
            for i in range(30, 40):
                answer = await client.request(
                    {"client": "w2", "seq": i, "op": "write", "key": f"k{i}", "value": i},
                    within=3.0)
                assert answer["ok"], answer
        # The killed node comes back from its WAL and catches up.
        await cluster.start(leader)
        await wait_converged(cluster)
        # Everyone stops cleanly (SIGTERM -> exit 0) and restarts from disk.
        for node_id in cluster.nodes:
            assert await cluster.kill(node_id, signal.SIGTERM) == 0
        for node_id in cluster.nodes:
            await cluster.start(node_id)
        leader = await cluster.wait_leader(within=5.0)
        node = cluster.nodes[leader]
        async with open_client(node.host, node.client_port) as client:
            for i in range(40):
                answer = await client.request({"op": "read", "key": f"k{i}"}, within=3.0)
                assert answer["value"] == i
        await wait_converged(cluster)
        logs = {n: (await cluster.request(n, {"op": "log"}))["value"] for n in cluster.nodes}
        commit = min(log["commit"] for log in logs.values())
        assert commit >= 41  # no-ops of three terms + 40 writes at least

        def committed(log: dict) -> list[tuple]:
            return [(e["index"], e["term"], e["digest"]) for e in log["entries"]
                    if e["index"] <= commit]

        first = committed(next(iter(logs.values())))
        assert all(committed(log) == first for log in logs.values())
        digests = {(await cluster.request(n, {"op": "state-digest"}))["value"]["digest"]
                   for n in cluster.nodes}
        assert len(digests) == 1


async def test_malformed_frames_close_the_connection_and_the_node_keeps_serving(
    tmp_path: Path,
) -> None:
    async with local_cluster(1, tmp_path) as cluster:
        await cluster.wait_leader(within=5.0)
        node = cluster.nodes["n1"]
        for port, payload in [
            (node.client_port, struct.pack(">I", 3) + b"\xc1\xc1\xc1"),
            (node.client_port, struct.pack(">I", 0xFFFFFFFF)),
            (node.peer_port, encode_frame({"type": "vote", "from": "x", "to": "n1", "term": 1})),
        ]:
            with trio.fail_after(3):
                async with await trio.open_tcp_stream(node.host, port) as stream:
                    await stream.send_all(payload)
                    assert await stream.receive_some(100) == b""  # closed by the node
        answer = await cluster.request("n1", {"client": "c", "seq": 1, "op": "write",
                                              "key": "k", "value": 1})
        assert answer["ok"]
        stderr = node.stderr_path.read_text()
        assert stderr.count("closing client connection") == 2
        assert "closing peer connection" in stderr


async def test_wal_damage_torn_tail_starts_corruption_stops(tmp_path: Path) -> None:
    async with local_cluster(1, tmp_path) as cluster:
        await cluster.wait_leader(within=5.0)
        for i in range(5):
            answer = await cluster.request("n1", {"client": "c", "seq": i + 1, "op": "write",
                                                  "key": f"k{i}", "value": i})
            assert answer["ok"]
        assert await cluster.kill("n1", signal.SIGTERM) == 0
        segment = sorted((tmp_path / "n1" / "wal").glob("*.wal"))[-1]

        # A torn tail (half a record after the last fsync) is cut; the node starts.
        segment.write_bytes(segment.read_bytes() + b"\x00\x00\x01\x00\x12\x34")
        await cluster.start("n1")
        await cluster.wait_leader(within=5.0)
        assert (await cluster.request("n1", {"op": "read", "key": "k4"}))["value"] == 4
        assert "torn tail" in cluster.nodes["n1"].stderr_path.read_text()
        assert await cluster.kill("n1", signal.SIGTERM) == 0

        # A damaged record with records after it is corruption: exit 1, error event.
        segment = sorted((tmp_path / "n1" / "wal").glob("*.wal"))[0]
        records = list(iter_records(segment))
        offset = records[len(records) // 2][0]
        raw = bytearray(segment.read_bytes())
        raw[offset + 10] ^= 0xFF
        segment.write_bytes(bytes(raw))
        node = cluster.nodes["n1"]
        try:
            await cluster.start("n1")
        except RuntimeError:
            pass
        else:
            raise AssertionError("node started on a corrupt WAL")
        with trio.fail_after(5):
            await node.exited.wait()
        errors = [e for e in node.events if e.get("event") == "error"]
        assert errors and str(segment) in errors[-1]["message"]
        assert f"offset {offset}" in errors[-1]["message"]
        assert node.process is None or node.process.returncode == 1


@pytest.mark.slow
async def test_memory_and_disk_stay_bounded_under_many_writes(tmp_path: Path) -> None:
    """Compaction keeps RSS and the WAL flat (the benchmark measures 1,000,000 writes)."""
    async with local_cluster(3, tmp_path, ["--snapshot-threshold", "2000"]) as cluster:
        leader = await cluster.wait_leader(within=5.0)
        node = cluster.nodes[leader]
        total = 0

        async def writer(i: int) -> None:
            nonlocal total
            async with open_client(node.host, node.client_port) as client:
                for seq in range(1, 2501):
                    answer = await client.request(
                        {"client": f"w{i}", "seq": seq, "op": "write", "key": f"k{seq % 100}",
                         "value": seq}, within=10.0)
                    assert answer["ok"], answer
                    total += 1

        async with trio.open_nursery() as writers:
            for i in range(16):
                writers.start_soon(writer, i)
        assert total == 40_000
        for other in cluster.nodes.values():
            assert other.process is not None
            rss_mb = psutil.Process(other.process.pid).memory_info().rss / 2**20
            assert rss_mb < 150, f"{other.id} RSS {rss_mb:.0f} MB"
            assert len(list((other.data_dir / "wal").glob("*.wal"))) <= 2
            assert len(list(other.data_dir.glob("*.snap"))) <= 2  # one, or one being replaced
        log = (await cluster.request(leader, {"op": "log"}))["value"]
        assert log["snapshot_index"] >= 38_000 and len(log["entries"]) <= 4_000
