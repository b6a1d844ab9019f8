"""One node of http_kv: a primary-backup key-value store over HTTP (standard library only).

    python -m http_kv.server --id n2 --listen 127.0.0.1:8002 --data DIR \\
        --primary http://127.0.0.1:8001

``POST /kv`` with ``{"op": "read"|"write"|"cas", "key", "value", "expected"}``
answers ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": ..., "definite": bool}``.
The primary (the node started without ``--primary``) holds the data; it
writes every change to ``DIR/state.json`` (fsync, then rename) before it
answers, so a killed primary restarts with every acknowledged write. Other
nodes forward requests to the primary. Once listening, a node prints
``{"event": "ready"}`` on stdout: that is how the adapter knows it serves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Store:
    """The primary's data, saved durably before each answer."""

    def __init__(self, data_dir: Path, volatile: bool = False) -> None:
        self.path = data_dir / "state.json"
        self.volatile = volatile
        self.lock = threading.Lock()
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def _save(self) -> None:
        if self.volatile:
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        op, key = request.get("op"), str(request.get("key"))
        with self.lock:
            if op == "read":
                return {"ok": True, "value": self.data.get(key)}
            if op == "write":
                self.data[key] = request.get("value")
                self._save()
                return {"ok": True}
            if op == "cas":
                if self.data.get(key) != request.get("expected"):
                    return {"ok": False, "error": "cas-mismatch", "definite": True}
                self.data[key] = request.get("value")
                self._save()
                return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}", "definite": True}


def forward(primary: str, request: dict[str, Any]) -> dict[str, Any]:
    """Ask the primary; an unanswered forward may still have been applied (not definite)."""
    data = json.dumps(request).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(
                f"{primary}/kv", data=data, headers={"Content-Type": "application/json"}),
                timeout=2) as answer:
            return json.loads(answer.read())
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return {"ok": False, "error": f"primary unreachable: {exc}", "definite": False}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--listen", required=True, help="host:port")
    parser.add_argument("--data", required=True)
    parser.add_argument("--primary", default=None, help="the primary's URL (absent: I am it)")
    parser.add_argument("--volatile", action="store_true",
                        help="a planted bug: keep data in memory only (a killed primary "
                             "forgets acknowledged writes)")
    args = parser.parse_args()
    store = Store(Path(args.data), args.volatile) if args.primary is None else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the adapter reuses its connection

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            answer = store.apply(request) if store is not None else forward(args.primary,
                                                                            request)
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *values: Any) -> None:
            print(f"{args.id}: {format % values}", file=sys.stderr)

    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(json.dumps({"event": "ready", "node": args.id}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
