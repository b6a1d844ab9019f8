"""Group commit and durability ordering of the node, with fsyncs held back on purpose."""

from __future__ import annotations

import threading
from pathlib import Path

import trio
from node_helpers import InProcessCluster, wait_until

from raft_impl.client import open_client
from raft_impl.node import Node


class GatedWrites:
    """Makes a node's WAL writer thread wait at a gate before each write + fsync."""

    def __init__(self, node: Node) -> None:
        self.open = threading.Event()
        self.batches = 0
        self.waiting = 0
        original = node.storage.write_batch

        def gated(batch):
            self.waiting += 1
            self.open.wait(timeout=30)
            self.waiting -= 1
            original(batch)
            self.batches += 1

        node.storage.write_batch = gated  # type: ignore[method-assign]


async def test_many_readies_share_one_fsync_and_nothing_is_acked_before_it(
    nursery, tmp_path: Path
) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1)
    await cluster.start_all()
    await cluster.wait_leader()
    first = {"client": "warm", "seq": 1, "op": "write", "key": "w", "value": 0}
    assert (await cluster.request("n1", first))["ok"]  # the election is durable by now
    node = cluster.nodes["n1"]
    gate = GatedWrites(node)
    answers: list[dict] = []
    fsyncs_before = node.storage.syncs

    async def client(i: int) -> None:
        async with open_client("127.0.0.1", cluster.client_ports["n1"]) as c:
            answers.append(await c.request(
                {"client": f"c{i}", "seq": 1, "op": "write", "key": f"k{i}", "value": i},
                within=10))

    async with trio.open_nursery() as clients:
        clients.start_soon(client, 0)
        await wait_until(lambda: gate.waiting == 1)  # first batch is "in the fsync"
        for i in range(1, 20):
            clients.start_soon(client, i)
        # All 19 proposals are staged while that fsync is in flight ...
        await wait_until(lambda: node.core.last_index >= 22)
        assert answers == []  # ... and nothing is acknowledged before its fsync.
        gate.open.set()
    assert len(answers) == 20 and all(a["ok"] for a in answers)
    # One fsync for the first write, one for the 19 that arrived during it.
    assert node.storage.syncs - fsyncs_before == 2


async def test_followers_ack_only_after_their_fsync(nursery, tmp_path: Path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    followers = [cluster.nodes[n] for n in cluster.ids if n != leader]
    gates = [GatedWrites(f) for f in followers]
    answers: list[dict] = []

    async def client() -> None:
        answers.append(await cluster.request(
            leader, {"client": "c", "seq": 1, "op": "write", "key": "k", "value": 1}, within=10))

    async with trio.open_nursery() as clients:
        clients.start_soon(client)
        # The followers hold the entry (the leader sent it) but have not fsynced it ...
        await wait_until(lambda: all(g.waiting for g in gates))
        await wait_until(lambda: all(f.core.last_index == cluster.nodes[leader].core.last_index
                                     for f in followers))
        await trio.sleep(0.2)
        # ... so they have not acked it and the leader cannot commit or answer.
        assert answers == []
        assert cluster.nodes[leader].kv.applied < cluster.nodes[leader].core.last_index
        gates[0].open.set()
    assert answers[0]["ok"]
    gates[1].open.set()


async def test_the_leader_counts_its_own_copy_only_after_its_fsync(
    nursery, tmp_path: Path
) -> None:
    """The core's self-acknowledgement: with the leader's fsync and one follower's held
    back, the entry is durable on one node only (the other follower) and must not
    commit anywhere, though two of three nodes hold it."""
    cluster = InProcessCluster(nursery, tmp_path, 3)
    await cluster.start_all()
    leader_id = await cluster.wait_leader()
    leader = cluster.nodes[leader_id]
    fast, slow = [cluster.nodes[n] for n in cluster.ids if n != leader_id]
    await wait_until(lambda: fast.core.commit_index == slow.core.commit_index
                     == leader.core.commit_index)
    gate, slow_gate = GatedWrites(leader), GatedWrites(slow)
    async with trio.open_nursery() as clients:
        clients.start_soon(cluster.request, leader_id,
                           {"client": "c", "seq": 1, "op": "write", "key": "k", "value": 1}, 10)
        await wait_until(lambda: gate.waiting == 1)
        new_index = leader.core.last_index
        # The fast follower fsynced and acked it (a follower acks only after its fsync).
        await wait_until(lambda: leader.core.progress(fast.id).match >= new_index)
        await trio.sleep(0.2)  # heartbeats and appends go out meanwhile
        assert leader.core.commit_index < new_index, "counted its own unsynced copy"
        assert all(n.kv.applied < new_index for n in (leader, fast, slow))
        gate.open.set()  # the leader's copy is durable: with the fast follower, a quorum
        await wait_until(lambda: leader.core.commit_index >= new_index)
        await wait_until(lambda: fast.kv.applied >= new_index)
        assert slow.kv.applied < new_index  # not durable there yet: not applied there
        slow_gate.open.set()
    await wait_until(lambda: slow.kv.applied >= new_index)
