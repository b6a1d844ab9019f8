"""The ``maelstrom`` adapter: any executable that speaks Maelstrom's node protocol.

    splitbrain run --db maelstrom --bin "python3 examples/maelstrom/lin_kv.py" \\
        --nodes 3 --nemesis partition,loss,reorder

Each node is the ``--bin`` command, started once per node. It reads messages
``{"src", "dest", "body"}`` as JSON lines on stdin, writes its messages the same
way on stdout and logs on stderr (kept in ``RUN_DIR/nodes/<id>/stderr.log``).
The harness sends it ``init`` (``node_id``, ``node_ids``) from ``c0`` on every
start and waits for ``init_ok``; a restarted node starts from nothing, as a
Maelstrom node does (it keeps no disk state unless it writes its own).

The harness owns the network: every message a node addresses to another node
goes through :class:`harness.net.router.MessageRouter`, so partition, loss,
delay, duplicate and reorder apply per message and every message can be traced
(``messages.jsonl``). Clients are harness-side Maelstrom clients ``c1``, ``c2``
… that talk to one node each, directly (faults cut links between nodes, as
Maelstrom's do). Messages to ``lin-kv``, ``seq-kv`` and ``lww-kv`` are answered
by one linearizable key-value store in the harness (linearizable is a correct,
stronger, implementation of the other two).

Workload ``lin-kv``: the register workload's ``read``, ``write`` and ``cas``
are Maelstrom's ``read`` (``key``), ``write`` (``key``, ``value``) and ``cas``
(``key``, ``from``, ``to``), with integer keys and values as in Maelstrom's own
lin-kv (the workload's key ``k3`` is sent as ``3``). Error bodies map to completions by Maelstrom's
error codes: the definite ones (:data:`DEFINITE_ERRORS`) are ``fail``, the
others (0 timeout, 13 crash, custom codes) ``info``; error 20 (key does not
exist) answers a read with nil, and fails a cas. Workloads ``list-append`` and
``rw-register`` are Maelstrom's txn-list-append and txn-rw-register: ``txn``
requests of ``[f, key, value]`` micro-ops, answered by ``txn_ok``.

Not available: leader queries (:meth:`MaelstromDB.leader` names a running
node, so the harness can start and do its final reads), log dumps (the
log-order checkers say unknown), clock control, unfsynced-write loss.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shlex
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from harness.db.base import Client, Completion, DBError, DBOptions, NodeEventSink, register_db
from harness.db.process import NodeSlot, ProcessDB
from harness.net.base import NodeAddress
from harness.net.router import MessageRouter

#: Maelstrom error codes that say the operation certainly did not happen.
DEFINITE_ERRORS = frozenset({1, 10, 11, 12, 14, 20, 21, 22, 30})
KEY_DOES_NOT_EXIST = 20
PRECONDITION_FAILED = 22
#: Services a node may call; one linearizable store serves all three.
SERVICES = ("lin-kv", "seq-kv", "lww-kv")
#: Longest message line a node may print; a longer one is dropped (memory stays bounded).
MAX_LINE = 1 << 20
#: Bytes of messages waiting for a node's stdin (a paused node reads none): beyond them
#: new messages are dropped and counted (``overflowed``), so memory stays bounded.
MAX_QUEUED_BYTES = 32 << 20
#: The client id the harness sends ``init`` from.
INIT_CLIENT = "c0"


class _Outbox:
    """Lines waiting for one incarnation of a node's stdin; bounded, never blocks a sender."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.size = 0
        self.wake = trio.Event()
        self.closed = False
        self.overflowed = 0

    def put(self, line: bytes) -> None:
        if self.closed:
            return
        if self.size + len(line) > MAX_QUEUED_BYTES:
            self.overflowed += 1
            return
        self.size += len(line) + 1
        self.lines.append(line)
        self.wake.set()


class MaelstromDB(ProcessDB):
    name = "maelstrom"
    pipes_stdout = True
    pipes_stdin = True
    ready_event = "init_ok"  # awaited through node.ready, set when init_ok comes back
    ready_timeout = 10.0

    def __init__(self, options: DBOptions | None = None) -> None:
        super().__init__()
        self.options = options or DBOptions()
        self.bin: str | None = self.options.extra.get("bin")
        self.router: MessageRouter | None = None
        self._outboxes: dict[str, _Outbox] = {}
        self._clients: dict[str, MaelstromClient] = {}
        self._client_ids = itertools.count(1)
        self._init_ids: dict[str, int] = {}
        self._services: dict[str, dict[str, Any]] = {name: {} for name in SERVICES}
        self._service_ids = itertools.count(1)
        #: Lines nodes printed that are no Maelstrom message (counted, not routed).
        self.garbage = 0
        #: The node that last answered a client's request with success: the one to
        #: ask first (many nodes answer only on their leader, error 11 elsewhere).
        self.last_ok_node: str | None = None

    def command(self, node_id: str) -> list[str]:
        if not self.bin:
            raise DBError("--db maelstrom needs --bin CMD (the node executable)")
        return shlex.split(self.bin)

    def make_network(self, seed: int, trace_path: Path | None,
                     clock: Callable[[], int]) -> MessageRouter:
        """The router every message between this DB's nodes goes through."""
        self.router = MessageRouter(self._deliver, rng=random.Random(seed ^ 0xBEEF),
                                    trace_path=trace_path, clock=clock)
        return self.router

    async def setup(
        self,
        nursery: trio.Nursery,
        peer_addresses: Mapping[str, Mapping[str, str]],
        on_event: NodeEventSink | None = None,
        listen: Mapping[str, NodeAddress] | None = None,
        wrap_command: Callable[[str, list[str]], list[str]] | None = None,
    ) -> None:
        self.command("n")  # no --bin: refuse before any node starts
        await super().setup(nursery, peer_addresses, on_event, listen, wrap_command)

    def check_peer_addresses(self) -> None:
        """Nodes name peers by id; whatever the network says, messages go by id."""

    # -- the node's stdin and stdout ------------------------------------------------------------

    async def _pump_stdout(self, node: NodeSlot, process: trio.Process) -> None:
        """Route the node's messages (no copy to disk: the trace records them) and
        feed its stdin from a fresh outbox, starting with ``init``."""
        assert process.stdout is not None and process.stdin is not None
        outbox = _Outbox()
        self._outboxes[node.id] = outbox
        msg_id = next(self._service_ids)
        self._init_ids[node.id] = msg_id
        outbox.put(json.dumps({"src": INIT_CLIENT, "dest": node.id, "body": {
            "type": "init", "msg_id": msg_id, "node_id": node.id,
            "node_ids": list(self.nodes)}}).encode())
        try:
            async with trio.open_nursery() as pumps:
                pumps.start_soon(self._write_stdin, process.stdin, outbox,
                                 pumps.cancel_scope)
                await self._read_stdout(node, process.stdout)
                pumps.cancel_scope.cancel()
        finally:
            outbox.closed = True
            node.pump_done.set()

    async def _read_stdout(self, node: NodeSlot, stdout: trio.abc.ReceiveStream) -> None:
        buffer = b""
        skipping = False
        while True:
            try:
                chunk = await stdout.receive_some(65536)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            if not chunk:
                return
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                if skipping:  # the rest of an overlong line
                    skipping = False
                    continue
                self.on_stdout_line(node, line)
            if len(buffer) > MAX_LINE:
                if not skipping:  # one count per overlong line, however long
                    self.garbage += 1
                buffer, skipping = b"", True

    @staticmethod
    async def _write_stdin(stdin: trio.abc.SendStream, outbox: _Outbox,
                           done: trio.CancelScope) -> None:
        try:
            while True:
                await outbox.wake.wait()
                outbox.wake = trio.Event()
                lines, outbox.lines, outbox.size = outbox.lines, [], 0
                await stdin.send_all(b"".join(line + b"\n" for line in lines))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            outbox.closed = True  # the node is gone: what was queued for it is lost
        finally:
            with trio.CancelScope(shield=True):
                await stdin.aclose()

    def _deliver(self, src: str, dst: str, line: bytes) -> None:
        outbox = self._outboxes.get(dst)
        if outbox is not None:
            outbox.put(line)

    def send(self, src: str, dst: str, body: dict[str, Any]) -> bool:
        """Queue a message from a client or service to node ``dst``; False if it is down."""
        slot = self.nodes.get(dst)
        outbox = self._outboxes.get(dst)
        if slot is None or not slot.running or outbox is None or outbox.closed:
            return False
        outbox.put(json.dumps({"src": src, "dest": dst, "body": body}).encode())
        return True

    def on_stdout_line(self, node: NodeSlot, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested beyond reason
            self.garbage += 1
            return
        if not isinstance(message, dict):
            self.garbage += 1
            return
        dest, body = message.get("dest"), message.get("body")
        if not isinstance(dest, str) or not isinstance(body, dict):
            self.garbage += 1
            return
        if dest in self.nodes:
            if dest == node.id:
                self._deliver(node.id, dest, line)  # to itself: no link to cut
            elif self.router is not None:
                self.router.route(node.id, dest, line, body.get("type"))
            else:
                self._deliver(node.id, dest, line)
        elif dest in self._clients:
            self._clients[dest].answer(body)
        elif dest == INIT_CLIENT:
            if (body.get("type") == "init_ok"
                    and body.get("in_reply_to") == self._init_ids.get(node.id)):
                node.ready.set()
        elif dest in SERVICES:
            self._serve(node.id, dest, body)
        # Anything else (an old client, an unknown name) is lost, as on a network.

    # -- lin-kv / seq-kv / lww-kv -----------------------------------------------------------------

    def _serve(self, node: str, service: str, body: dict[str, Any]) -> None:
        """Answer a node's request to a key-value service at once (one atomic store)."""
        store = self._services[service]
        kind = body.get("type")
        key = json.dumps(body.get("key"), sort_keys=True)
        reply: dict[str, Any]
        if kind == "read":
            if key in store:
                reply = {"type": "read_ok", "value": store[key]}
            else:
                reply = {"type": "error", "code": KEY_DOES_NOT_EXIST, "text": "key does not exist"}
        elif kind == "write":
            store[key] = body.get("value")
            reply = {"type": "write_ok"}
        elif kind == "cas":
            if key not in store and not body.get("create_if_not_exists"):
                reply = {"type": "error", "code": KEY_DOES_NOT_EXIST, "text": "key does not exist"}
            elif store.get(key) != body.get("from"):
                reply = {"type": "error", "code": PRECONDITION_FAILED,
                         "text": f"expected {body.get('from')!r}, had {store.get(key)!r}"}
            else:
                store[key] = body.get("to")
                reply = {"type": "cas_ok"}
        else:
            reply = {"type": "error", "code": 10, "text": f"{service} does not do {kind!r}"}
        if "msg_id" in body:
            reply["in_reply_to"] = body["msg_id"]
        reply["msg_id"] = next(self._service_ids)
        outbox = self._outboxes.get(node)
        if outbox is not None:
            outbox.put(json.dumps({"src": service, "dest": node, "body": reply}).encode())

    # -- clients --------------------------------------------------------------------------------

    def client(self, node_id: str) -> Client:
        return MaelstromClient(self, node_id)

    def new_client_id(self, client: MaelstromClient) -> str:
        client_id = f"c{next(self._client_ids)}"
        self._clients[client_id] = client
        return client_id

    def forget_client(self, client_id: str) -> None:
        self._clients.pop(client_id, None)

    async def leader(self) -> str | None:
        """The node that last answered a client with success if it still serves, else
        the first running, unpaused one: Maelstrom has no leader query, and a node
        that is no leader forwards requests or answers them with an error."""
        candidates = [self.last_ok_node] if self.last_ok_node else []
        for node_id in [*candidates, *self.nodes]:
            slot = self.nodes[node_id]
            if slot.running and not slot.paused and slot.ready.is_set():
                return node_id
        return None


class MaelstromClient(Client):
    """One harness-side Maelstrom client (``cN``), talking to one node."""

    def __init__(self, db: MaelstromDB, node: str) -> None:
        self.db, self.node = db, node
        self.id: str | None = None
        self._msg_ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}

    async def open(self) -> None:
        if self.id is None:
            self.id = self.db.new_client_id(self)

    def answer(self, body: dict[str, Any]) -> None:
        msg_id = body.get("in_reply_to")
        if not isinstance(msg_id, int) or isinstance(msg_id, bool):
            return  # no answer to anything we asked (a node may print anything)
        waiting = self._waiting.get(msg_id)
        if waiting is not None and not waiting[1]:
            waiting[1].append(body)
            waiting[0].set()

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        await self.open()
        assert self.id is not None
        msg_id = next(self._msg_ids)
        f = op["f"]
        keys: dict[Any, Any] = {}
        body: dict[str, Any] = {"type": f, "msg_id": msg_id}
        if f == "txn":
            # Maelstrom's txn-list-append / txn-rw-register: [[f, key, value], ...].
            body["txn"] = [[mop[0], wire_key(mop[1]), mop[2]] for mop in op["value"]]
            keys = {wire_key(mop[1]): mop[1] for mop in op["value"]}
        else:
            body["key"] = wire_key(op["key"])
        if f == "write":
            body["value"] = op["value"]
        elif f == "cas":
            body["from"], body["to"] = op["value"]
        event, reply = trio.Event(), []
        self._waiting[msg_id] = (event, reply)
        try:
            if not self.db.send(self.id, self.node, body):
                return Completion("fail", error="node down", node=self.node)
            await event.wait()  # the caller's timeout makes an unanswered op info
        finally:
            del self._waiting[msg_id]
        done = completion(f, reply[0], self.node)
        if done.type == "ok" and f == "txn":
            done.value = txn_result(reply[0].get("txn"), op["value"], keys)
            if done.value is None:
                done = Completion("info", error="txn_ok without the transaction's micro-ops",
                                  node=self.node)
        if done.type == "ok":
            self.db.last_ok_node = self.node
        return done

    async def close(self) -> None:
        if self.id is not None:
            self.db.forget_client(self.id)


def wire_key(key: Any) -> Any:
    """The workload's key ``"k12"`` as Maelstrom's lin-kv sends keys: the integer 12.

    Maelstrom's own lin-kv workload uses integer keys and values, and nodes
    written against it often decode them as numbers; the history keeps ``k12``.
    """
    if isinstance(key, str) and key[:1] == "k" and key[1:].isascii() and key[1:].isdigit():
        return int(key[1:])
    return key


def txn_result(answer: Any, asked: list[Any], keys: dict[Any, Any]) -> list[Any] | None:
    """The micro-ops of a ``txn_ok`` with the workload's own keys, or None when the
    answer does not match what was asked (same length, same functions and keys)."""
    if not isinstance(answer, list) or len(answer) != len(asked):
        return None
    result = []
    for got, mop in zip(answer, asked, strict=True):
        if not (isinstance(got, list) and len(got) == 3 and got[0] == mop[0]):
            return None
        try:
            key = keys.get(got[1], got[1])
        except TypeError:  # an unhashable key: not one we sent
            return None
        if key != mop[1]:
            return None
        result.append([mop[0], mop[1], got[2] if mop[0] in ("r", "read") else mop[2]])
    return result


def completion(f: str, body: dict[str, Any], node: str) -> Completion:
    """The completion a Maelstrom reply ``body`` means for an operation ``f``."""
    kind = body.get("type")
    if kind == f"{f}_ok":
        return Completion("ok", value=body.get("value") if f == "read" else None, node=node)
    if kind == "error":
        code = body.get("code")
        error = f"error {code}: {body.get('text', '')}".strip()
        if f == "read" and code == KEY_DOES_NOT_EXIST:
            return Completion("ok", value=None, node=node)
        if isinstance(code, int) and not isinstance(code, bool) and code in DEFINITE_ERRORS:
            return Completion("fail", error=error, node=node)
        return Completion("info", error=error, node=node)
    return Completion("info", error=f"unexpected reply type {kind!r}", node=node)


def check_bin(command: str) -> str | None:
    """Why ``--bin command`` cannot run (None when its program is found)."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return f"--bin {command!r}: {exc}"
    if not words:
        return "--bin is empty"
    program = words[0]
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            return f"--bin: {program} is not an executable file"
    elif shutil.which(program) is None:
        return f"--bin: {program} not found on PATH"
    return None


register_db("maelstrom", MaelstromDB)
