"""The ``pysyncobj`` adapter: PySyncObj 0.3.17 nodes (``harness.db.pysyncobj_node``).

    splitbrain run --db pysyncobj --nodes 3 --nemesis partition,kill

Each node is ``python -m harness.db.pysyncobj_node`` with PySyncObj's
journal and snapshot under ``RUN_DIR/nodes/<id>/data`` (a restart after a
kill recovers from them). The node speaks raft_impl's client protocol, so
the client here is raft_impl's minus leader hints: PySyncObj forwards
commands from followers to its leader itself.

Network: ``--net proxy`` (the default) puts the harness's relays between the
nodes. PySyncObj names a peer by the ``host:port`` it binds, so each node is
told every peer's own address (``--peer-identity``) and the relay to dial it
at (``--peer``); the relays cut PySyncObj's frames at its length prefixes
(``harness.net.framing.PYSYNCOBJ``) and apply partition, loss, delay,
duplicate and reorder to whole messages, both directions of its one
connection per pair each as its own link. ``--net netns`` (root: iptables in
network namespaces) still works for partitions and loss.

The node dumps PySyncObj's (private) Raft log with each command's session and
a digest of its applied state, both taken on PySyncObj's own thread, so the
log-order checks run as for raft_impl.
Not available: clock control and unfsynced-write loss (PySyncObj's journal
is an mmap it does not sync per entry; a process kill keeps it in the page
cache, and the harness cannot drop pages).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from harness.db.base import Client, ComplaintPattern, Completion, DBError, DBOptions, register_db
from harness.db.options import check_options
from harness.db.process import NodeSlot
from harness.db.wire import WireNodeClient, WireNodeDB, kv_request

#: What PySyncObj 0.3.17 logs (to stderr, through Python's last-resort log handler) when
#: it notices it is breaking Raft (syncobj.py: its append-entries and dump-loading paths).
COMPLAINTS = (
    ComplaintPattern(
        "truncated-applied-entries",
        r"truncating already-applied log entries(?: from index (?P<index>\d+))?",
        "violation",
        "PySyncObj truncated log entries it had already applied: its state machine may "
        "have diverged from the other members",
        # It truncates after an append's prevLogIdx: the append whose prev_index is I - 1.
        culprit={"type": "append_entries", "field": "prev_index", "group": "index",
                 "offset": -1},
    ),
    ComplaintPattern(
        "commit-beyond-journal",
        r"raftCommitIndex \(\d+\) exceeds journal end",
        "warning",
        "after a restart PySyncObj's commit index was beyond its journal (unsynced entries "
        "lost in a crash); it clamped the commit index",
    ),
)


class PySyncObjDB(WireNodeDB):
    name = "pysyncobj"
    complaint_patterns = COMPLAINTS
    #: How the relays cut its peer streams (harness.net.framing.FRAMINGS).
    peer_framing = "pysyncobj"

    def __init__(self, options: DBOptions | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options)
        # Looked up, not imported: importing PySyncObj breaks socket.inet_ntop in the
        # importing process (see pysyncobj_node), and only the nodes need it.
        if importlib.util.find_spec("pysyncobj") is None:
            raise DBError("PySyncObj is not installed: .venv/bin/pip install -e '.[adapters]'")
        #: node -> the incarnation whose ``ready`` event was seen.
        self._ready: dict[str, int] = {}

    def command(self, node_id: str) -> list[str]:
        words = [sys.executable, "-m", "harness.db.pysyncobj_node", *self.node_args(node_id)]
        if self.options.extra.get("low_latency"):  # benchmarks/throughput.py's second figure
            words.append("--low-latency")
        return words

    def node_args(self, node_id: str) -> list[str]:
        """raft_impl's node words, plus each peer's own address when it is dialed at
        another (a relay): PySyncObj knows a peer by the address it binds."""
        args = super().node_args(node_id)
        for peer, address in sorted(self.peer_addresses.get(node_id, {}).items()):
            identity = self.nodes[peer].address.peer
            if peer != node_id and address != identity:
                args += ["--peer-identity", f"{peer}={identity}"]
        return args

    def check_peer_addresses(self) -> None:
        """Any mapping works: peers are named by ``--peer-identity``, dialed at ``--peer``."""

    def environment(self, node_id: str) -> dict[str, str]:
        env = super().environment(node_id)
        # The node imports harness.* and splitbrain_common.*: make the checkout importable
        # even when splitbrain is not installed (e.g. under `ip netns exec`).
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def on_stdout_line(self, node: NodeSlot, line: bytes) -> None:
        if b'"ready"' in line:
            self._ready[node.id] = node.incarnation
        super().on_stdout_line(node, line)

    async def probe_ready(self, node_id: str) -> bool:
        return self._ready.get(node_id) == self.nodes[node_id].incarnation

    def client(self, node_id: str) -> Client:
        return PySyncObjClient(self, node_id)


class PySyncObjClient(WireNodeClient[PySyncObjDB]):
    """Requests to the process's node; a refused connection moves on to the next node.

    No leader following: a PySyncObj follower forwards commands to its
    leader itself, so any live node will do.
    """

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        request = kv_request(op, client_id=client_id, seq=seq)
        # A read in log mode is a command like any other: once sent it may still
        # be committed and applied later, and the log-order checker places it in
        # real time by its log entry, so an unanswered one is info, not fail.
        # Only stale reads (local, never logged) can safely be called failed.
        may_take_effect = not (op["f"] == "read" and self.db.options.read_mode == "stale")
        sent = await self._send_to_a_live_node(
            lambda connection: connection.request(request), may_take_effect
        )
        if isinstance(sent, Completion):
            return sent
        node, answer = sent
        if answer.get("ok"):
            return self._done(Completion("ok", value=answer.get("value"), node=node))
        error = answer.get("error") or "unknown-error"
        definite = not may_take_effect or answer.get("definite", True)
        return self._done(Completion("fail" if definite else "info", error=error, node=node))


register_db("pysyncobj", PySyncObjDB)
