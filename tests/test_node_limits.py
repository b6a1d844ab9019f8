"""What one process buffers for its connections is bounded (issue 16 item 4).

Fifty connections each sending the start of a 16 MB frame and then hanging took
a node from 29 MB to 440 MB. Now partial frames share a budget per process
(``splitbrain_common.wire.BufferBudget``: the connection that would exceed it is
closed), and a partial frame that gets no byte within the stall timeout closes
its connection. The node (client and peer ports, with and without the epoll
poller) and the proxy's relays are checked here by behaviour: which connections
close, what the budget holds, that the node still serves; the RSS of a real
node process under the attack is checked at the end (``benchmarks/
half_frame_attack.py`` prints the full attack's figures).
"""

from __future__ import annotations

import struct
import types
from pathlib import Path

import psutil
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from node_helpers import InProcessCluster, frame, wait_until

import raft_impl.node
from splitbrain_common.wire import MAX_FRAME, BufferBudget, FrameDecoder, FrameError, encode_frame

HOST = "127.0.0.1"


# -- the decoder and its budget, sans IO -----------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(1, 400),
    steps=st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=120), st.booleans()),
                   max_size=40),
)
def test_decoders_never_hold_more_than_their_shared_budget(limit, steps):
    """Whatever is fed to several decoders sharing a budget: the budget counts exactly
    what the open decoders hold, never more than its limit; a feed that would pass
    the limit raises (and buffers nothing), and closing gives everything back."""
    budget = BufferBudget(limit)
    decoders = [FrameDecoder(MAX_FRAME, budget) for _ in range(4)]
    for which, data, take in steps:
        decoder = decoders[which]
        before = budget.used
        try:
            decoder.feed(data)
        except FrameError:
            assert before + len(data) > limit
            assert budget.used == before
        if take:
            try:
                list(decoder.frames_raw())
            except FrameError:  # a random length prefix beyond MAX_FRAME
                decoder.close()
        assert budget.used == sum(d.pending_bytes for d in decoders) <= limit
    for decoder in decoders:
        decoder.close()
    assert budget.used == 0


@given(messages=st.lists(st.dictionaries(st.text(max_size=5), st.integers(-2**63, 2**63 - 1)),
                         max_size=8),
       cuts=st.lists(st.integers(1, 50), max_size=20))
def test_a_budget_changes_nothing_about_what_is_decoded(messages, cuts):
    stream = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder(MAX_FRAME, BufferBudget(len(stream) + 1))
    decoded = []
    position = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[position:position + cut])
        position += cut
        decoded.extend(decoder.messages())
    assert decoded == messages


# -- a node in this process ------------------------------------------------------------------


def request_frame(request_id: int, pad: int) -> bytes:
    """A status request padded to about ``pad`` bytes (a real, answerable frame)."""
    return frame({"id": request_id, "op": "status", "pad": b"x" * pad})


async def connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream(HOST, port)


async def closed_by_node(stream: trio.SocketStream, within: float = 20.0) -> bool:
    """True once the node closed (or reset) the connection; False if it answers first.

    ``within`` only guards against a hang: the close is awaited, not timed."""
    with trio.fail_after(within):
        try:
            return await stream.receive_some(65536) == b""
        except trio.BrokenResourceError:
            return True


async def send_and_see(stream: trio.SocketStream, data: bytes) -> bool:
    """Send ``data``; False if the node had closed the connection meanwhile."""
    try:
        await stream.send_all(data)
        return True
    except trio.BrokenResourceError:
        return False


@pytest.fixture(params=["epoll", "task per connection"])
def client_reader(request, monkeypatch):
    """Both ways a node reads its clients: the shared epoll poller and one task each."""
    if request.param != "epoll":  # the node's view of select, not Trio's
        monkeypatch.setattr(raft_impl.node, "select", types.SimpleNamespace())
    return request.param


async def test_client_connections_beyond_the_budget_are_closed_the_rest_served(
        nursery, tmp_path: Path, client_reader) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1, buffer_budget=1_000_000,
                               stall_timeout=600.0)
    node = await cluster.start("n1")
    await cluster.wait_leader()
    port = cluster.client_ports["n1"]
    whole = request_frame(1, 300_000)
    streams = [await connect(port) for _ in range(6)]
    for i, stream in enumerate(streams):  # 260 kB of a 300 kB frame each, one at a time
        await send_and_see(stream, whole[:260_000])
        if i < 3:
            await wait_until(lambda i=i: node.buffers.used == 260_000 * (i + 1))
        else:
            assert await closed_by_node(stream), "past the budget"
            assert node.buffers.used == 780_000
    # The three within the budget are intact: they finish their frame and get answers.
    for stream in streams[:3]:
        await stream.send_all(whole[260_000:])
        assert not await closed_by_node(stream)
    await wait_until(lambda: node.buffers.used == 0)
    assert (await cluster.request("n1", {"id": 9, "op": "status"}))["ok"]
    for stream in streams:
        await stream.aclose()


async def test_a_client_partial_frame_without_progress_is_closed_an_idle_one_is_not(
        nursery, tmp_path: Path, client_reader) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 1, stall_timeout=0.3)
    node = await cluster.start("n1")
    await cluster.wait_leader()
    port = cluster.client_ports["n1"]
    idle = await connect(port)
    await idle.send_all(request_frame(1, 10))
    assert not await closed_by_node(idle)  # answered; now it holds no partial frame
    stalled = await connect(port)
    await stalled.send_all(request_frame(2, 100_000)[:50_000])
    await wait_until(lambda: node.buffers.used == 50_000)
    assert await closed_by_node(stalled)
    assert node.buffers.used == 0
    # The idle connection waited as long, holding no partial frame: still served.
    await idle.send_all(request_frame(3, 10))
    assert not await closed_by_node(idle)
    await idle.aclose()
    await stalled.aclose()


async def test_peer_connections_are_bounded_and_must_say_hello_in_few_bytes(
        nursery, tmp_path: Path) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3, buffer_budget=1_000_000,
                               stall_timeout=0.3)
    node = await cluster.start("n1")  # n2 and n3 stay down: nothing else talks to n1
    port = cluster.peer_ports["n1"]
    hello = frame({"type": "hello", "from": "n2", "to": "n1"})
    # No hello, the start of a large frame: refused before it buffers much.
    anonymous = await connect(port)
    await send_and_see(anonymous, struct.pack(">I", MAX_FRAME - 1) + b"\0" * 100_000)
    assert await closed_by_node(anonymous)
    # After a hello, partial frames count against the budget like a client's.
    partial = struct.pack(">I", 400_000) + b"\0" * 300_000
    streams = [await connect(port) for _ in range(4)]
    for stream in streams:
        await send_and_see(stream, hello + partial)
    assert await closed_by_node(streams[3], within=20)
    assert node.buffers.used <= 1_000_000 and node.buffers.refusals >= 1
    # ... and one that stops sending mid-frame is closed after the stall timeout.
    assert [await closed_by_node(stream) for stream in streams[:3]] == [True] * 3
    assert node.buffers.used == 0
    for stream in [anonymous, *streams]:
        await stream.aclose()


# -- the proxy's relays ------------------------------------------------------------------------


async def test_relays_bound_partial_frames_too(nursery) -> None:
    from test_proxy import Sink

    from harness.net.base import NodeAddress
    from harness.net.proxy import ProxyNetwork

    sink = Sink()
    await sink.serve(nursery)
    proxy = ProxyNetwork(buffer_budget=1_000_000, stall_timeout=0.3)
    peers = await proxy.start(nursery, {"a": NodeAddress(HOST, 1, 1),
                                        "b": NodeAddress(HOST, sink.port, sink.port)})
    port = int(peers["a"]["b"].rsplit(":", 1)[1])
    partial = struct.pack(">I", 400_000) + b"\0" * 300_000
    streams = [await connect(port) for _ in range(4)]
    for stream in streams:
        await send_and_see(stream, frame({"type": "hello"}) + partial)
    closed = [await closed_by_node(stream) for stream in streams]
    assert closed == [True] * 4
    counters = proxy.counters()["a->b"]
    assert counters["over_budget"] >= 1 and counters["stalled"] >= 1
    assert counters["over_budget"] + counters["stalled"] == 4
    assert proxy.buffers.used == 0
    for stream in streams:
        await stream.aclose()
    await proxy.aclose()


# -- a real node process under the attack ------------------------------------------------------


async def test_a_node_process_stays_small_under_many_hanging_half_frames(tmp_path: Path):
    """20 connections x 8 MB of a 16 MB frame: 160 MB that the node used to keep.
    Its RSS may grow by its budget (64 MB) and some slack, not by the attack."""
    from raft_impl.localcluster import local_cluster
    from splitbrain_common.wire import BUFFER_BUDGET

    body = b"\0" * (8 << 20)
    async with local_cluster(1, tmp_path) as cluster:
        await cluster.wait_leader(within=20)
        node = cluster.nodes["n1"]
        assert node.process is not None
        process = psutil.Process(node.process.pid)
        before = process.memory_info().rss
        peak = before
        streams = []
        for _ in range(20):
            stream = await connect(node.client_port)
            streams.append(stream)
            await send_and_see(stream, struct.pack(">I", MAX_FRAME - 1) + body)
            peak = max(peak, process.memory_info().rss)
        assert node.stderr_path is not None

        def refused() -> int:
            return node.stderr_path.read_text().count("buffer budget")

        kept = BUFFER_BUDGET // len(body)
        with trio.fail_after(30):  # a hang guard: the refusals are awaited
            while refused() < len(streams) - kept:
                peak = max(peak, process.memory_info().rss)
                await trio.sleep(0.05)
        answer = await cluster.request("n1", {"op": "status"}, within=30)  # a hang guard
        assert answer["ok"], "still serving"
        peak = max(peak, process.memory_info().rss)
        for stream in streams:
            await stream.aclose()
    growth_mb = (peak - before) / 2**20
    assert growth_mb < BUFFER_BUDGET / 2**20 + 40, f"RSS grew by {growth_mb:.0f} MB"


async def test_a_client_that_never_reads_its_answers_is_closed_at_the_budget(
        nursery, tmp_path: Path) -> None:
    """Answers the socket does not take wait in a backlog; it counts against the same
    budget, so requests piped in without reading the answers cannot grow the node."""
    cluster = InProcessCluster(nursery, tmp_path, 1, buffer_budget=1_000_000,
                               read_mode="stale")
    node = await cluster.start("n1")
    await cluster.wait_leader()
    big = "v" * 200_000
    assert (await cluster.request("n1", {"client": "c", "seq": 1, "op": "write",
                                         "key": "k", "value": big}))["ok"]
    greedy = await connect(cluster.client_ports["n1"])
    reads = b"".join(frame({"id": i, "op": "read", "key": "k"}) for i in range(300))
    await send_and_see(greedy, reads)  # 60 MB of answers, none of them read
    await wait_until(lambda: node.buffers.refusals >= 1, within=30)
    assert node.buffers.used <= 1_000_000
    await drain_until_closed(greedy)  # the node closed it: end of stream or a reset
    await wait_until(lambda: node.buffers.used == 0)
    assert (await cluster.request("n1", {"op": "status"}))["ok"], "others are still served"
    await greedy.aclose()


async def drain_until_closed(stream: trio.SocketStream) -> None:
    """Read what was sent until the node's close shows (EOF or a reset); a connection
    the node kept open would hang here until the guard fails the test."""
    with trio.fail_after(30):
        try:
            while await stream.receive_some(1 << 20):
                pass
        except trio.BrokenResourceError:
            pass
