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


async def test_followers_learn_commit_only_up_to_the_leaders_durable_index(
    nursery, tmp_path: Path
) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3)
    await cluster.start_all()
    leader_id = await cluster.wait_leader()
    leader = cluster.nodes[leader_id]
    followers = [cluster.nodes[n] for n in cluster.ids if n != leader_id]
    await wait_until(lambda: all(f.core.commit_index == leader.core.commit_index
                                 for f in followers))
    gate = GatedWrites(leader)
    async with trio.open_nursery() as clients:
        clients.start_soon(cluster.request, leader_id,
                           {"client": "c", "seq": 1, "op": "write", "key": "k", "value": 1}, 10)
        await wait_until(lambda: gate.waiting == 1)
        new_index = leader.core.last_index
        # Followers fsync and ack; the core counts the leader's unsynced copy and commits.
        await wait_until(lambda: leader.core.commit_index >= new_index)
        await trio.sleep(0.2)  # heartbeats and commit-only appends go out meanwhile
        # But no follower may apply an entry that is durable on one node only.
        assert all(f.core.commit_index < new_index for f in followers)
        assert leader.kv.applied < new_index
        gate.open.set()
    await wait_until(lambda: all(f.kv.applied >= new_index for f in followers))
