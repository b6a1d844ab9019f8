"""The relays with PySyncObj's framing: frames cut at its length prefix, both directions
of its one connection per pair relayed, each through its own link, and the trace
described from pickle opcodes without running the pickle.

The frames here are built the way PySyncObj 0.3.17's ``TcpConnection.send`` builds
them (``struct.pack('i', len) + zlib.compress(pickle.dumps(message, 2), 3)``): the
test impersonates PySyncObj; nothing of splitbrain's own wire is pickled.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.net.base import NodeAddress
from harness.net.framing import PYSYNCOBJ, pysyncobj_describe
from harness.net.proxy import ProxyNetwork
from splitbrain_common.wire import FrameDecoder, FrameError

HOST = "127.0.0.1"


def frame(message: Any) -> bytes:
    """One frame exactly as PySyncObj's TcpConnection.send writes it."""
    data = zlib.compress(pickle.dumps(message, 2), 3)
    return struct.pack("i", len(data)) + data


def unframe(data: bytes) -> Any:
    """What PySyncObj's reader does with a frame (test side only)."""
    (length,) = struct.unpack("i", data[:4])
    assert length == len(data) - 4
    return pickle.loads(zlib.decompress(data[4:]))


def append(prev: int, entries: int = 0, term: int = 2, commit: int = 0) -> dict[str, Any]:
    return {"type": "append_entries", "term": term, "commit_index": commit,
            "entries": [(b"\x00cmd%d" % i, prev + 1 + i, term) for i in range(entries)],
            "prevLogIdx": prev, "prevLogTerm": term}


messages = st.one_of(
    st.builds(append, st.integers(0, 10**6), st.integers(0, 5), st.integers(0, 99),
              st.integers(0, 10**6)),
    st.builds(lambda n, ok: {"type": "next_node_idx", "next_node_idx": n, "reset": False,
                             "success": ok}, st.integers(0, 10**6), st.booleans()),
    st.text(max_size=30).map(lambda s: "127.0.0.1:" + s),  # a dialer's address
    st.binary(max_size=3000),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(messages, max_size=12), st.lists(st.integers(1, 64), min_size=1))
def test_frames_are_cut_whole_however_the_stream_is_split(sent, cuts):
    """Any split of a stream of PySyncObj frames into reads gives back the same frames."""
    stream = b"".join(frame(m) for m in sent)
    decoder = FrameDecoder(header=PYSYNCOBJ.header)
    got: list[bytes] = []
    position, i = 0, 0
    while position < len(stream):
        step = cuts[i % len(cuts)]
        decoder.feed(stream[position:position + step])
        got.extend(decoder.frames_raw())
        position, i = position + step, i + 1
    assert got == [frame(m) for m in sent]
    assert [unframe(f) for f in got] == sent
    assert not decoder.partial


def test_a_negative_or_huge_length_is_a_broken_stream():
    for length in (-1, 2**31 - 1):
        decoder = FrameDecoder(max_frame=1 << 20, header=PYSYNCOBJ.header)
        decoder.feed(struct.pack("i", length) + b"xx")
        with pytest.raises(FrameError):
            list(decoder.frames_raw())


def test_trace_fields_come_from_the_pickle_opcodes():
    assert pysyncobj_describe(frame(append(223, entries=0, term=3, commit=220))) == {
        "type": "append_entries", "term": 3, "prev_index": 223, "prev_term": 3,
        "commit": 220, "entries": 0, "last_index": 223}
    described = pysyncobj_describe(frame(append(7, entries=3, commit=5)))
    assert (described["prev_index"], described["entries"], described["last_index"]) == (7, 3, 10)
    assert pysyncobj_describe(frame("127.0.0.1:7001")) == {"type": "hello", "term": None}
    assert pysyncobj_describe(frame({"type": "next_node_idx", "next_node_idx": 9,
                                     "reset": True, "success": False})) == {
        "type": "next_node_idx", "term": None, "next_index": 9, "success": False}
    for junk in (b"\x00\x00\x00\x00", struct.pack("i", 3) + b"abc",
                 struct.pack("i", 5) + zlib.compress(b"not a pickle")):
        assert pysyncobj_describe(junk) == {"type": "opaque", "term": None}


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("import builtins; builtins.SPLITBRAIN_PWNED = True",))


def test_describing_a_hostile_pickle_runs_nothing():
    """A frame whose pickle would call exec() on load is described, never loaded."""
    import builtins

    hostile = frame({"type": "append_entries", "term": 1, "x": _Boom()})
    assert pysyncobj_describe(hostile)["type"] == "append_entries"
    assert not hasattr(builtins, "SPLITBRAIN_PWNED")


@dataclass
class Peer:
    """The dialed (lower-address) PySyncObj node: records what it receives, answers
    on the same connection when asked to."""

    port: int = 0
    received: list[Any] = field(default_factory=list)
    streams: list[trio.SocketStream] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)

    async def serve(self, nursery: trio.Nursery) -> None:
        serve = functools.partial(trio.serve_tcp, self.handle, 0, host=HOST)
        listeners = await nursery.start(serve)
        self.port = listeners[0].socket.getsockname()[1]

    async def handle(self, stream: trio.SocketStream) -> None:
        self.streams.append(stream)
        decoder = FrameDecoder(header=PYSYNCOBJ.header)
        async with stream:
            with contextlib.suppress(trio.ClosedResourceError):  # the test closed it
                while data := await stream.receive_some(65536):
                    decoder.feed(data)
                    for raw in decoder.frames_raw():
                        self.received.append(unframe(raw))
                        self.arrived.set()
                        self.arrived = trio.Event()

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(5):
            while len(self.received) < count:
                await self.arrived.wait()


async def receive(stream: trio.SocketStream, count: int) -> list[Any]:
    decoder = FrameDecoder(header=PYSYNCOBJ.header)
    got: list[Any] = []
    with trio.fail_after(5):
        while len(got) < count:
            decoder.feed(await stream.receive_some(65536))
            got.extend(unframe(raw) for raw in decoder.frames_raw())
    return got


@asynccontextmanager
async def pysyncobj_pair(**options: Any) -> AsyncIterator[tuple[ProxyNetwork, Peer,
                                                                trio.SocketStream]]:
    """``hi`` dials ``lo`` through the relay of hi -> lo and says its address first."""
    peer = Peer()
    async with trio.open_nursery() as nursery:
        await peer.serve(nursery)
        proxy = ProxyNetwork(seed=3, framing=PYSYNCOBJ, **options)
        await proxy.start(nursery, {"hi": NodeAddress(HOST, 1, 2),
                                    "lo": NodeAddress(HOST, peer.port, 3)})
        stream = await trio.open_tcp_stream(HOST, proxy.relay_port("hi", "lo"))
        await stream.send_all(frame("127.0.0.1:9999"))
        await peer.wait_for(1)
        try:
            yield proxy, peer, stream
        finally:
            await stream.aclose()
            await proxy.aclose()
            nursery.cancel_scope.cancel()


async def test_both_directions_are_relayed_each_through_its_own_link() -> None:
    async with pysyncobj_pair() as (proxy, peer, stream):
        await stream.send_all(frame(append(1)) + frame(append(2)))
        await peer.wait_for(3)
        assert [m["prevLogIdx"] for m in peer.received[1:]] == [1, 2]
        answers = [{"type": "next_node_idx", "next_node_idx": n, "reset": False,
                    "success": True} for n in (2, 3)]
        await peer.streams[0].send_all(b"".join(frame(a) for a in answers))
        assert await receive(stream, 2) == answers
        counters = proxy.counters()
        assert counters["hi->lo"]["delivered"] == 2  # the hello is not counted as a message
        assert counters["lo->hi"]["delivered"] == 2
        assert counters["lo->hi"]["connections"] == counters["hi->lo"]["connections"] == 1
        assert counters["hi->lo"]["reverse_bytes"] == 0  # nothing discarded


async def test_a_heartbeat_reordered_after_the_next_append_arrives_stale() -> None:
    """What triggers PySyncObj's truncation: an older append overtaken by a newer one."""
    async with pysyncobj_pair(reorder_hold=5.0) as (proxy, peer, stream):
        await proxy.set_reorder(1.0, [("hi", "lo")])
        await stream.send_all(frame(append(10)) + frame(append(10, entries=3)))
        await peer.wait_for(3)
        assert [(m["prevLogIdx"], len(m["entries"])) for m in peer.received[1:]] == [
            (10, 3), (10, 0)]


async def test_faults_on_one_direction_leave_the_other_alone() -> None:
    async with pysyncobj_pair() as (proxy, peer, stream):
        await proxy.partition({"hi": {"lo"}})  # lo -> hi cut; hi -> lo still flows
        await peer.streams[0].send_all(frame({"type": "next_node_idx", "next_node_idx": 5,
                                              "reset": False, "success": True}))
        with trio.fail_after(5):
            await proxy.wait_counters("lo", "hi", lambda c: c["dropped"] == 1)
        await stream.send_all(frame(append(4)))
        await peer.wait_for(2)
        await proxy.set_duplicate(1.0, [("lo", "hi")])
        await proxy.heal()
        await peer.streams[0].send_all(frame({"type": "response_vote", "term": 3}))
        assert await receive(stream, 2) == [{"type": "response_vote", "term": 3}] * 2


async def test_either_side_closing_ends_the_relayed_connection() -> None:
    async with pysyncobj_pair() as (_, peer, stream):
        await peer.streams[0].aclose()
        with trio.fail_after(5):
            assert await stream.receive_some(10) == b""


async def test_the_trace_names_both_directions(tmp_path) -> None:
    import json

    path = tmp_path / "messages.jsonl"
    async with pysyncobj_pair(trace_path=path, reorder_hold=5.0) as (proxy, peer, stream):
        await proxy.set_reorder(1.0, [("hi", "lo")])
        await stream.send_all(frame(append(10)) + frame(append(10, entries=3)))
        await peer.wait_for(3)
        await peer.streams[0].send_all(frame({"type": "next_node_idx", "next_node_idx": 14,
                                              "reset": False, "success": True}))
        await receive(stream, 1)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["from"], line["type"], line.get("prev_index"), line["action"])
            for line in lines] == [
        ("hi", "hello", None, "deliver"),
        ("hi", "append_entries", 10, "reorder"),
        ("hi", "append_entries", 10, "deliver"),
        ("lo", "next_node_idx", None, "deliver"),
    ]
    assert lines[1]["entries"] == 0 and lines[2]["entries"] == 3
