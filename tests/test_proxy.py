"""The proxy relay against real Trio TCP endpoints speaking splitbrain frames."""

from __future__ import annotations

import functools
import json
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psutil
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.net.base import NodeAddress
from harness.net.proxy import ProxyNetwork
from splitbrain_common.wire import FrameDecoder, encode_frame

HOST = "127.0.0.1"


@dataclass
class Sink:
    """A peer port that records every message it receives, per connection."""

    port: int = 0
    received: list[dict] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)
    closed: trio.Event = field(default_factory=trio.Event)
    connections: int = 0

    async def serve(self, nursery: trio.Nursery) -> None:
        serve = functools.partial(trio.serve_tcp, self.handle, 0, host=HOST)
        listeners = await nursery.start(serve)
        self.port = listeners[0].socket.getsockname()[1]

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        decoder = FrameDecoder()
        async with stream:
            while data := await stream.receive_some(65536):
                decoder.feed(data)
                for message in decoder.messages():
                    self.received.append(message)
                    self.arrived.set()
                    self.arrived = trio.Event()
        self.closed.set()

    def numbers(self) -> list[int]:
        return [m["n"] for m in self.received if m.get("type") == "append"]

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(5):
            while len(self.received) < count:
                await self.arrived.wait()


@asynccontextmanager
async def relay_pair(**options) -> AsyncIterator[tuple[ProxyNetwork, Sink, trio.Nursery]]:
    """Nodes a and b; b's peer port is a Sink. Yields (proxy, sink, nursery)."""
    sink = Sink()
    async with trio.open_nursery() as nursery:
        await sink.serve(nursery)
        proxy = ProxyNetwork(seed=7, **options)
        nodes = {"a": NodeAddress(HOST, 1, 2), "b": NodeAddress(HOST, sink.port, 3)}
        peers = await proxy.start(nursery, nodes)
        assert set(peers) == {"a", "b"}
        assert peers["a"]["b"] == f"{HOST}:{proxy.relay_port('a', 'b')}"
        try:
            yield proxy, sink, nursery
        finally:
            await proxy.aclose()
            nursery.cancel_scope.cancel()


async def dial(proxy: ProxyNetwork) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(HOST, proxy.relay_port("a", "b"))
    await stream.send_all(encode_frame({"type": "hello", "from": "a", "to": "b"}))
    return stream


def append(n: int, term: int = 1) -> bytes:
    return encode_frame({"type": "append", "from": "a", "to": "b", "term": term, "n": n})


async def wait_counters(proxy: ProxyNetwork, predicate) -> dict[str, int]:
    with trio.fail_after(5):
        return await proxy.wait_counters("a", "b", predicate)


async def test_frames_are_relayed_in_order_with_hello_first() -> None:
    async with relay_pair() as (proxy, sink, _):
        stream = await dial(proxy)
        await stream.send_all(b"".join(append(n) for n in range(200)))
        await sink.wait_for(201)
        assert sink.received[0] == {"type": "hello", "from": "a", "to": "b"}
        assert sink.numbers() == list(range(200))
        counters = proxy.counters()["a->b"]
        assert counters["delivered"] == 200 and counters["dropped"] == 0
        assert counters["connections"] == 1
        await stream.aclose()
        with trio.fail_after(5):
            await sink.closed.wait()  # closing the source closes the relayed connection


async def test_partition_drops_and_heal_restores_on_the_same_connection() -> None:
    async with relay_pair() as (proxy, sink, _):
        stream = await dial(proxy)
        await sink.wait_for(1)
        await proxy.partition({"b": {"a"}})
        await stream.send_all(append(1) + append(2))
        await wait_counters(proxy, lambda c: c["dropped"] == 2)
        await proxy.heal()
        await stream.send_all(append(3))
        await sink.wait_for(2)
        assert sink.numbers() == [3]
        assert sink.connections == 1  # the partition never closed the connection
        # the reverse link b->a was never blocked
        assert not proxy.faults()["b->a"].blocked


async def test_partition_rejects_unknown_nodes() -> None:
    async with relay_pair() as (proxy, _, _):
        with pytest.raises(ValueError, match="unknown link"):
            await proxy.partition({"b": {"zz"}})


async def test_loss_probability_is_roughly_honoured() -> None:
    async with relay_pair() as (proxy, sink, _):
        stream = await dial(proxy)
        await proxy.set_loss(0.3)
        total = 2000
        await stream.send_all(b"".join(append(n) for n in range(total)))
        await wait_counters(proxy, lambda c: c["frames"] == total)
        counters = proxy.counters()["a->b"]
        await sink.wait_for(1 + counters["delivered"])
        assert counters["delivered"] + counters["dropped"] == total
        assert 0.25 < counters["dropped"] / total < 0.35
        assert len(sink.numbers()) == counters["delivered"]
        assert sink.numbers() == sorted(sink.numbers())  # loss alone never reorders


async def test_loss_draws_are_reproducible_from_the_seed() -> None:
    survivors = []
    for _ in range(2):
        async with relay_pair() as (proxy, sink, _):
            stream = await dial(proxy)
            await proxy.set_loss(0.5, links=[("a", "b")])
            await stream.send_all(b"".join(append(n) for n in range(100)))
            await wait_counters(proxy, lambda c: c["frames"] == 100)
            await sink.wait_for(1 + proxy.counters()["a->b"]["delivered"])
            survivors.append(sink.numbers())
    assert survivors[0] == survivors[1]


async def test_delay_holds_frames_and_lets_later_ones_overtake() -> None:
    async with relay_pair() as (proxy, sink, _):
        stream = await dial(proxy)
        await sink.wait_for(1)
        await proxy.set_delay(0.05, 0.04)
        sent_at = trio.current_time()
        await stream.send_all(b"".join(append(n) for n in range(60)))
        await sink.wait_for(2)
        assert trio.current_time() - sent_at >= 0.01  # the shortest possible draw
        await sink.wait_for(61)
        assert sorted(sink.numbers()) == list(range(60))
        assert sink.numbers() != list(range(60))  # independent draws reorder
        assert proxy.counters()["a->b"]["delayed"] == 60


async def test_duplicate_delivers_twice() -> None:
    async with relay_pair() as (proxy, sink, _):
        stream = await dial(proxy)
        await proxy.set_duplicate(1.0)
        await stream.send_all(b"".join(append(n) for n in range(5)))
        await sink.wait_for(11)
        assert sink.numbers() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        assert proxy.counters()["a->b"]["duplicated"] == 5


async def test_reorder_releases_a_held_frame_after_the_next_one() -> None:
    async with relay_pair(reorder_hold=5.0) as (proxy, sink, _):
        stream = await dial(proxy)
        await proxy.set_reorder(1.0)
        await stream.send_all(b"".join(append(n) for n in range(4)))
        await sink.wait_for(5)
        assert sink.numbers() == [1, 0, 3, 2]


async def test_a_held_frame_is_released_when_no_next_frame_comes() -> None:
    async with relay_pair(reorder_hold=0.02) as (proxy, sink, _):
        stream = await dial(proxy)
        await proxy.set_reorder(1.0)
        await stream.send_all(append(0))
        await sink.wait_for(2)
        assert sink.numbers() == [0]


async def test_reset_faults_keeps_the_partition() -> None:
    async with relay_pair() as (proxy, _, _):
        await proxy.partition({"b": ["a"]})
        await proxy.set_loss(0.5)
        await proxy.set_delay(0.1, 0.0, links=[("b", "a")])
        await proxy.reset_faults()
        faults = proxy.faults()
        assert faults["a->b"].blocked and faults["a->b"].loss == 0
        assert faults["b->a"].clean


async def test_trace_records_each_message_decision(tmp_path) -> None:
    trace = tmp_path / "run" / "messages.jsonl"
    async with relay_pair(trace_path=trace) as (proxy, sink, _):
        stream = await dial(proxy)
        await stream.send_all(append(0, term=3))
        await sink.wait_for(2)
        await proxy.partition({"b": {"a"}})
        await stream.send_all(append(1, term=4))
        await wait_counters(proxy, lambda c: c["dropped"] == 1)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [(r["type"], r["term"], r["action"]) for r in records] == [
        ("hello", None, "deliver"), ("append", 3, "deliver"), ("append", 4, "drop")]
    assert all(r["from"] == "a" and r["to"] == "b" for r in records)
    times = [r["time"] for r in records]
    assert times == sorted(times) and all(isinstance(t, int) and t >= 0 for t in times)


async def test_destination_down_closes_the_source_connection() -> None:
    async with relay_pair() as (_, _, nursery):
        proxy2 = ProxyNetwork()
        # b's peer port: bind and close a socket so nothing listens there
        probe = trio.socket.socket()
        await probe.bind((HOST, 0))
        dead_port = probe.getsockname()[1]
        probe.close()
        peers = await proxy2.start(nursery, {"a": NodeAddress(HOST, 1, 2),
                                             "b": NodeAddress(HOST, dead_port, 3)})
        host, port = peers["a"]["b"].split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        with trio.fail_after(5):
            assert await stream.receive_some(10) == b""
        assert proxy2.counters()["a->b"]["refused"] == 1
        await proxy2.aclose()


async def test_undecodable_stream_is_cut() -> None:
    async with relay_pair() as (proxy, sink, _):
        stream = await dial(proxy)
        await sink.wait_for(1)
        await stream.send_all(b"\xff\xff\xff\xff garbage")
        with trio.fail_after(5):
            await sink.closed.wait()
        assert proxy.counters()["a->b"]["bad_frames"] == 1


def listening_ports() -> set[int]:
    return {c.laddr.port for c in psutil.Process(os.getpid()).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}


async def test_cancellation_closes_every_relay_and_connection() -> None:
    sink = Sink()
    async with trio.open_nursery() as outer:
        await sink.serve(outer)
        with trio.CancelScope() as run:
            async with trio.open_nursery() as nursery:
                proxy = ProxyNetwork()
                nodes = {name: NodeAddress(HOST, sink.port, 0) for name in ("a", "b", "c")}
                await proxy.start(nursery, nodes)
                ports = {proxy.relay_port(s, d) for s in nodes for d in nodes if s != d}
                assert len(ports) == 6 and ports <= listening_ports()
                stream = await dial(proxy)
                await sink.wait_for(1)
                run.cancel()
        assert not ports & listening_ports()
        with trio.fail_after(5):
            await sink.closed.wait()  # the relayed connection was closed too
            assert await stream.receive_some(10) == b""
        for port in ports:
            with pytest.raises(OSError):
                await trio.open_tcp_stream(HOST, port)
        outer.cancel_scope.cancel()


async def test_the_nemesis_executor_drives_the_relays() -> None:
    """Schedule -> executor -> proxy: the right directed links get the faults, then heal."""
    from nemesis.executor import run_schedule

    class Control:
        def __init__(self, network: ProxyNetwork) -> None:
            self.nodes = ["a", "b", "c"]
            self.network = network

        async def leader(self) -> str | None:
            return "c"

        async def start(self, node: str) -> None:
            pass

        resume = start

    snapshots: dict[str, dict] = {}

    def record(event: dict) -> None:
        snapshots[event["f"]] = {name: (f.blocked, f.loss) for name, f in proxy.faults().items()}

    async with trio.open_nursery() as nursery:
        proxy = ProxyNetwork()
        await proxy.start(nursery, {n: NodeAddress(HOST, 1, 2) for n in ("a", "b", "c")})
        schedule = [{"at": 0, "f": "partition", "value": {"shape": "isolate-leader"}},
                    {"at": 0, "f": "loss", "value": {"p": 0.5, "links": [["a", "b"]]}}]
        await run_schedule(schedule, Control(proxy), record, lambda: 0)
        after = {name: (f.blocked, f.loss) for name, f in proxy.faults().items()}
        nursery.cancel_scope.cancel()
    assert snapshots["start-partition"] == {
        "a->b": (False, 0), "a->c": (True, 0), "b->a": (False, 0), "b->c": (True, 0),
        "c->a": (True, 0), "c->b": (True, 0)}
    assert snapshots["start-loss"]["a->b"] == (False, 0.5)
    assert snapshots["start-loss"]["b->a"] == (False, 0)
    assert all(value == (False, 0) for value in after.values())


async def test_a_real_cluster_through_the_relays_replaces_an_isolated_leader(tmp_path) -> None:
    """Real raft_impl nodes whose every peer link runs through the proxy."""
    from nemesis.shapes import shape_grudge
    from raft_impl.localcluster import local_cluster

    trace = tmp_path / "messages.jsonl"
    async with trio.open_nursery() as nursery, \
            local_cluster(3, tmp_path / "nodes", start=False) as cluster:
        proxy = ProxyNetwork(seed=3, trace_path=trace)
        peers = await proxy.start(nursery, {
            node.id: NodeAddress(node.host, node.peer_port, node.client_port)
            for node in cluster.nodes.values()})
        direct_command = cluster.command

        def command(node) -> list[str]:
            argv = direct_command(node)
            for i, arg in enumerate(argv[:-1]):
                if arg == "--peer":
                    peer = argv[i + 1].split("=", 1)[0]
                    argv[i + 1] = f"{peer}={peers[node.id][peer]}"
            return argv

        cluster.command = command
        async with trio.open_nursery() as starters:
            for node_id in cluster.nodes:
                starters.start_soon(cluster.start, node_id)
        leader = await cluster.wait_leader(within=10.0)
        nodes = sorted(cluster.nodes)
        await proxy.partition(shape_grudge("isolate-leader", nodes, random.Random(0),
                                           leader=leader))
        successor = await cluster.wait_leader(within=10.0, exclude=[leader])
        assert successor != leader
        await proxy.heal()
        await cluster.wait_leader(within=10.0)  # one leader of the top term again
        counters = proxy.counters()
        assert all(counters[f"{leader}->{other}"]["dropped"] > 0
                   for other in nodes if other != leader)
        nursery.cancel_scope.cancel()
    types = {json.loads(line)["type"] for line in trace.read_text().splitlines()}
    assert {"hello", "append"} <= types and types & {"vote", "pre-vote"}


class ListStream:
    """Stands in for the destination socket: keeps what the relay sends, frame by frame."""

    def __init__(self) -> None:
        self.frames: list[int] = []

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        decoder = FrameDecoder()
        decoder.feed(data)
        self.frames += [message["n"] for message in decoder.messages()]


fault_settings = st.fixed_dictionaries({
    "loss": st.sampled_from([0.0, 0.2, 1.0]),
    "duplicate": st.sampled_from([0.0, 0.3, 1.0]),
    "reorder": st.sampled_from([0.0, 0.5, 1.0]),
    "delay_mean": st.sampled_from([0.0, 0.01]),
    "delay_jitter": st.sampled_from([0.0, 0.005]),
    "blocked": st.booleans(),
})


@settings(max_examples=60, deadline=None)
@given(fault_settings, st.integers(min_value=1, max_value=40), st.integers(0, 2**32))
def test_every_frame_is_delivered_once_twice_or_dropped_and_counted(faults, count, seed):
    """Whatever the faults, the relay never invents or corrupts a frame, never delivers
    one more than twice, and its counters add up."""
    from harness.net.proxy import LinkFaults, _Connection, _Link

    async def relay() -> tuple[list[int], dict[str, int]]:
        proxy = ProxyNetwork(reorder_hold=0.05)
        link = _Link("a", "b", NodeAddress(HOST, 1, 2), random.Random(seed),
                     faults=LinkFaults(**faults))
        destination = ListStream()
        with trio.CancelScope() as done:
            async with trio.open_nursery() as timers:
                connection = _Connection(proxy, link, destination, done, timers)
                for n in range(count):
                    await connection.frame(append(n))
            await connection.flush()
        return destination.frames, link.counters

    delivered, counters = trio.run(relay, clock=trio.testing.MockClock(autojump_threshold=0))
    assert counters["frames"] == count
    assert counters["delivered"] == len(delivered)
    assert counters["delivered"] + counters["dropped"] == count + counters["duplicated"]
    assert set(delivered) <= set(range(count))
    assert all(delivered.count(n) <= 2 for n in delivered)
    if faults["blocked"] or faults["loss"] == 1.0:
        assert delivered == []
    if not any(faults.values()):
        assert delivered == list(range(count))
    if not (faults["delay_mean"] or faults["delay_jitter"] or faults["reorder"]):
        assert delivered == sorted(delivered)  # only delay and reorder change the order


@pytest.mark.parametrize("entries", [0, 1, 200])
def test_trace_headers_of_small_and_large_frames(entries):
    from harness.net.proxy import HEADER_PEEK_FROM, message_header

    frame = encode_frame({"from": "n1", "entries": [[i, 2, "command", b"x" * 50]
                                                    for i in range(entries)],
                          "term": 7, "to": "n2", "type": "append"})
    assert (len(frame) >= HEADER_PEEK_FROM) == (entries == 200)
    assert message_header(frame) == ("append", 7)


def test_trace_headers_of_broken_frames():
    import msgpack

    from harness.net.proxy import message_header

    for body in (msgpack.packb([1] * 600), msgpack.packb([1])):  # large and small, not maps
        assert message_header(len(body).to_bytes(4, "big") + body) == ("undecodable", None)
    truncated = encode_frame({"type": "append", "entries": ["y" * 1000], "term": 1})[:-400]
    assert message_header(truncated) == ("undecodable", None)
    assert message_header(encode_frame({"type": "hello"})) == ("hello", None)
