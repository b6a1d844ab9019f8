"""``splitbrain serve``: the Trio/h11 server of the store, spoken to over a real socket."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio
from report_fixtures import make_run

from harness.cli.main import main
from reports.server import serve

RUN_PATH: dict[Path, str] = {}  # store -> its run, relative (found before the event loop)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    RUN_PATH[root] = make_run(root, "valid", duration_s=2.0).relative_to(root).as_posix()
    (root / "secret-outside").mkdir()
    return root


async def _request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request; read the answer until the server closes or the body is in."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        data = b""
        with trio.fail_after(10):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                if _ and b"content-length" in head.lower():
                    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                      if line.lower().startswith(b"content-length")))
                    if len(body) >= length or raw.startswith(b"HEAD"):
                        break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


async def test_serves_index_reports_and_nothing_outside(store: Path) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve, store, 0))
        status, headers, body = await _request(port, _get("/"))
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"raft-kv-valid" in body and b"history (no report yet)" in body
        run = RUN_PATH[store]
        status, headers, body = await _request(port, _get(f"/{run}/history.jsonl"))
        assert status == 200 and int(headers["content-length"]) == len(body) > 0
        status, headers, body = await _request(port, _get(f"/{run}/test.json", "HEAD"))
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        for escape in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/nope.html"):
            status, _, _ = await _request(port, _get(escape))
            assert status == 404, escape
        status, headers, _ = await _request(port, _get("/", "POST"))
        assert status == 405 and headers["allow"] == "GET, HEAD"
        status, _, _ = await _request(port, b"garbage\r\n\r\n")  # bad HTTP: an answer...
        assert status == 400
        status, _, body = await _request(port, _get("/"))  # ...and still serving
        assert status == 200
        nursery.cancel_scope.cancel()


def test_serve_refuses_a_missing_store(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--store", str(tmp_path / "nope"), "--port", "0"]) == 2
    assert "no such store directory" in capsys.readouterr().err
