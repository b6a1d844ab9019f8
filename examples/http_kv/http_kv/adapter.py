"""The splitbrain adapter for http_kv: a DB (how to run nodes) and a Client (how to ask them).

Registered through the ``splitbrain.dbs`` entry point of this package's
pyproject.toml, so after ``pip install examples/http_kv`` the harness runs it:

    splitbrain run --db http_kv --nodes 3 --nemesis kill,pause --net none

Everything process-related (start, readiness, SIGKILL, SIGSTOP/SIGCONT,
logs, cleanup) comes from ``ProcessDB``; this file only says how to launch a
node, what it prints when ready, and how an operation becomes a request.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from harness.db.base import Client, Completion, DBOptions
from harness.db.http import HttpConnection, HttpError
from harness.db.process import ProcessDB
from harness.db.wire_client import ConnectionLost


class HttpKvDB(ProcessDB):
    name = "http_kv"
    pipes_stdout = True  # the node prints {"event": "ready"} on stdout
    ready_event = "ready"

    def __init__(self, options: DBOptions | None = None) -> None:
        super().__init__()
        self.options = options or DBOptions()

    def command(self, node_id: str) -> list[str]:
        slot = self.nodes[node_id]
        primary = next(iter(self.nodes))  # the first node is the primary
        argv = [sys.executable, "-m", "http_kv.server", "--id", node_id,
                "--listen", f"{slot.address.host}:{slot.address.client_port}",
                "--data", str(slot.data_dir)]
        if os.environ.get("HTTP_KV_VOLATILE"):  # the planted bug, for the guide's demo
            argv.append("--volatile")
        if node_id != primary:
            address = self.nodes[primary].address
            argv += ["--primary", f"http://{address.host}:{address.client_port}"]
        return argv

    def client(self, node_id: str) -> Client:
        return HttpKvClient(self, node_id)

    async def leader(self) -> str | None:
        """The primary, while it runs (the harness asks it first for its final reads)."""
        primary = next(iter(self.nodes))
        return primary if self.is_running(primary) else None


class HttpKvClient(Client):
    """One connection to one node; every outcome is a Completion, never an exception."""

    def __init__(self, db: HttpKvDB, node: str) -> None:
        self.db, self.node = db, node
        address = db.nodes[node].address
        self.connection = HttpConnection(address.host, address.client_port)

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        request: dict[str, Any] = {"op": op["f"], "key": op["key"]}
        if op["f"] == "write":
            request["value"] = op["value"]
        elif op["f"] == "cas":
            request["expected"], request["value"] = op["value"]
        try:
            status, answer = await self.connection.post("/kv", request)
        except ConnectionLost as exc:
            # Not sent: certainly did not happen. Sent: it may have (a read never has effects).
            certain = not exc.sent or op["f"] == "read"
            return Completion("fail" if certain else "info", error=str(exc), node=self.node)
        except HttpError as exc:
            return Completion("info", error=str(exc), node=self.node)
        if status == 200 and answer.get("ok"):
            return Completion("ok", value=answer.get("value"), node=self.node)
        definite = answer.get("definite", False) or op["f"] == "read"
        return Completion("fail" if definite else "info", error=str(answer.get("error")),
                          node=self.node)

    async def close(self) -> None:
        await self.connection.aclose()
