"""raft_impl.client.NodeClient against a scripted server: pipelining, big frames, timeouts,
a lost connection."""

from __future__ import annotations

import pytest
import trio

from raft_impl.client import ConnectionLost, RequestTimeout, open_client
from splitbrain_common.wire import FrameDecoder, encode_frame


async def _server(stream: trio.SocketStream) -> None:
    """Echoes ``v``; ``slow`` is never answered, ``close`` drops the connection,
    ``big`` answers with a 5 MB value."""
    decoder = FrameDecoder()
    async with stream:
        while data := await stream.receive_some(65536):
            decoder.feed(data)
            for m in decoder.messages():
                if m["op"] == "slow":
                    continue
                if m["op"] == "close":
                    return
                value = b"x" * 5_000_000 if m["op"] == "big" else m.get("v")
                await stream.send_all(encode_frame({"id": m["id"], "v": value}))


@pytest.fixture
async def port(nursery: trio.Nursery) -> int:
    listeners = await nursery.start(trio.serve_tcp, _server, 0)
    return listeners[0].socket.getsockname()[1]


async def test_pipelined_requests_get_their_own_answers(port: int) -> None:
    async with open_client("127.0.0.1", port) as client:
        got: dict[int, object] = {}

        async def one(i: int, value: object) -> None:
            got[i] = (await client.request({"op": "echo", "v": value}, within=5))["v"]

        async with trio.open_nursery() as requests:
            # A request too big for one socket write shares the connection with small ones.
            requests.start_soon(one, -1, b"y" * 8_000_000)
            for i in range(100):
                requests.start_soon(one, i, i)
        assert got.pop(-1) == b"y" * 8_000_000
        assert got == {i: i for i in range(100)}
        assert (await client.request({"op": "big"}, within=5))["v"] == b"x" * 5_000_000


async def test_timeout_then_the_connection_still_works(port: int) -> None:
    async with open_client("127.0.0.1", port) as client:
        with pytest.raises(RequestTimeout):
            await client.request({"op": "slow"}, within=0.05)
        assert (await client.request({"op": "echo", "v": 7}, within=5))["v"] == 7


async def test_lost_connection_fails_waiting_and_later_requests(port: int) -> None:
    async with open_client("127.0.0.1", port) as client:
        with pytest.raises(ConnectionLost):
            await client.request({"op": "close"}, within=5)
        assert client.closed
        with pytest.raises(ConnectionLost):
            await client.request({"op": "echo", "v": 1}, within=5)
