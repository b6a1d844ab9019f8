"""``python -m raft_impl`` command line and the small wire client."""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest
import trio

from raft_impl.__main__ import build_parser, main
from raft_impl.bugs import BUGS
from raft_impl.client import ConnectionLost, RequestTimeout, open_client, parse_address
from splitbrain_common.wire import FrameDecoder, encode_frame

LOOPBACK_SERVER = functools.partial(trio.serve_tcp, host="127.0.0.1")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raft_impl", *args], capture_output=True, text=True, timeout=30
    )


def test_list_bugs_prints_every_bug_with_one_line() -> None:
    result = run_cli("--list-bugs")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(BUGS)
    for line, (name, text) in zip(lines, BUGS.items(), strict=True):
        assert line.startswith(name) and line.rstrip().endswith(text)
    for bug in ("ack-before-fsync", "forget-vote", "no-dedup"):
        assert bug in BUGS
    missing = run_cli("--id", "n1")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        ((), "missing --id"),
        (("--id", "n1", "--data-dir", "d", "--peer-listen", "nope", "--client-listen",
          "127.0.0.1:1"), "expected HOST:PORT"),
        (("--id", "n1", "--data-dir", "d", "--peer-listen", "127.0.0.1:1", "--client-listen",
          "127.0.0.1:2", "--bug", "made-up"), "invalid choice"),
        (("--id", "n1", "--data-dir", "d", "--peer-listen", "127.0.0.1:1", "--client-listen",
          "127.0.0.1:2", "--election-timeout", "0.5,0.2"), "MIN < MAX"),
        (("--id", "n1", "--data-dir", "d", "--peer-listen", "127.0.0.1:1", "--client-listen",
          "127.0.0.1:2", "--peer", "n1=127.0.0.1:3"), "differ from --id"),
    ],
)
def test_bad_command_lines_exit_2_with_a_message(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_parser_accepts_the_design_command_line() -> None:
    args = build_parser().parse_args([
        "--id", "n1", "--data-dir", "DIR", "--peer-listen", "127.0.0.1:7001",
        "--client-listen", "127.0.0.1:8001", "--peer", "n2=127.0.0.1:7102",
        "--peer", "n3=127.0.0.1:7103", "--read-mode", "lease", "--bug", "no-dedup",
        "--bug", "forget-vote", "--election-timeout", "0.2,0.4",
    ])
    assert args.peer == [("n2", ("127.0.0.1", 7102)), ("n3", ("127.0.0.1", 7103))]
    assert args.bug == ["no-dedup", "forget-vote"]
    assert args.election_timeout == (0.2, 0.4) and args.read_mode == "lease"


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:8001") == ("127.0.0.1", 8001)
    for bad in ("127.0.0.1", ":80", "host:0", "host:x", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_client_matches_pipelined_answers_and_reports_timeouts() -> None:
    """Against a fake node that answers in reverse order and ignores one request."""

    async def fake_node(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        seen = []
        while len(seen) < 3:
            data = await stream.receive_some(65536)
            if not data:
                return
            decoder.feed(data)
            seen.extend(decoder.messages())
        for request in reversed(seen):
            if request["op"] != "ignored":
                await stream.send_all(encode_frame({"id": request["id"], "ok": True,
                                                    "value": request["op"]}))
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(LOOPBACK_SERVER, fake_node, 0)
        port = listeners[0].socket.getsockname()[1]
        async with open_client("127.0.0.1", port) as client:
            results: dict[str, object] = {}

            async def ask(op: str) -> None:
                try:
                    results[op] = (await client.request({"op": op}, within=0.5))["value"]
                except RequestTimeout:
                    results[op] = "timeout"

            async with trio.open_nursery() as asks:
                for op in ("a", "ignored", "b"):
                    asks.start_soon(ask, op)
            assert results == {"a": "a", "b": "b", "ignored": "timeout"}
        nursery.cancel_scope.cancel()


async def test_client_reports_a_closed_connection() -> None:
    async def closing_node(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(LOOPBACK_SERVER, closing_node, 0)
        port = listeners[0].socket.getsockname()[1]
        async with open_client("127.0.0.1", port) as client:
            with pytest.raises(ConnectionLost):
                await client.request({"op": "status"}, within=2.0)
            assert client.closed
        nursery.cancel_scope.cancel()
