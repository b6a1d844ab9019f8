"""A PySyncObj node: a replicated key/value map behind splitbrain's client wire protocol.

    python -m harness.db.pysyncobj_node --id n1 --data-dir DIR \\
        --peer-listen 127.0.0.1:7001 --client-listen 127.0.0.1:8001 \\
        --peer n2=127.0.0.1:7002 --peer n3=127.0.0.1:7003 [--read-mode log|stale]

The command line, the client requests (``{id, client, seq, op, key, value?,
expected?}`` → ``{id, ok, value?, error?, definite}`` in length-prefixed
msgpack frames) and the stdout events (``ready``, ``role``) are those of
``raft_impl`` (docs/DESIGN.md), so the harness drives both alike.

Two worlds meet here. PySyncObj (the system under test) runs Raft on its own
ticker thread, with its own TCP transport, journal and snapshots (its choice
of pickle for its own peers and files is part of what is tested). The client
API is Trio in the main thread. A replicated call is queued with a callback;
PySyncObj calls it on its thread once the command is applied (or failed),
and the callback hands the result to Trio through the run's token. Nothing
else crosses the boundary.

Reads: ``log`` (default; ``read-index`` means the same here, since PySyncObj
has no read index) replicates the read as a command, which is linearizable
if PySyncObj is; ``stale`` answers from the node's local copy.

Failure reasons (``FAIL_REASON``) become answers: queue full, no leader,
not leader and request denied happen before the command enters any log,
and ``discarded`` means the log slot it got holds another command, so those
are definite failures; ``leader changed`` (a forwarded command whose answer
got lost), ``unknown outcome`` and no answer within the node's own deadline
are indefinite (``definite: false``).
"""

from __future__ import annotations

import _socket
import argparse
import collections
import contextlib
import hashlib
import json
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar

import trio
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj import pickle as pysyncobj_pickle
from pysyncobj.node import TCPNode

from splitbrain_common.wire import FrameDecoder, FrameError, encode_frame

# PySyncObj 0.3.17 (pysyncobj/win_inet_pton.py, imported by its TCP transport)
# replaces socket.inet_ntop with a Windows-only version on every OS, which then
# raises TypeError for anyone in the process (psutil, for one). Put back the
# real one, which the C module still has.
socket.inet_ntop = _socket.inet_ntop

#: Seconds a command may wait for PySyncObj before the node answers "unknown".
COMMAND_DEADLINE = 10.0
#: Seconds an admin view may wait for PySyncObj's thread to take it.
ADMIN_DEADLINE = 2.0
#: First byte of PySyncObj log entries: a replicated method call, or a leader's no-op.
REGULAR_COMMAND, NO_OP_COMMAND = b"\x00", b"\x01"
ROLES = {0: "follower", 1: "candidate", 2: "leader"}
DEFINITE_FAILURES = {
    FAIL_REASON.QUEUE_FULL: "queue-full",
    FAIL_REASON.MISSING_LEADER: "no-leader",
    FAIL_REASON.NOT_LEADER: "not-leader",
    FAIL_REASON.REQUEST_DENIED: "request-denied",
    FAIL_REASON.DISCARDED: "discarded",
}
INDEFINITE_FAILURES = {
    FAIL_REASON.LEADER_CHANGED: "leader-changed",
    FAIL_REASON.UNKNOWN_OUTCOME: "unknown-outcome",
}


class RelayedNode(TCPNode):
    """A peer known by its own address but dialed at another (the harness's relay).

    PySyncObj names a node by the address it binds (the id the dialer sends as
    its first message, and what decides which of two nodes dials), and dials
    ``node.ip:node.port``. Splitting the two lets the harness put a relay on
    the path without PySyncObj's Raft seeing anything but its peer's address.
    """

    def __init__(self, address: str, dial: str) -> None:
        super().__init__(address)
        self._dial_host, self._dial_port = parse_address(dial)

    @property
    def ip(self) -> str:
        return self._dial_host

    @property
    def port(self) -> int:
        return self._dial_port


class ReplicatedKV(SyncObj):
    """The state machine: a dict of registers, changed only through the log."""

    def __init__(self, self_address: str, partners: list[TCPNode], conf: SyncObjConf) -> None:
        self.data: dict[str, Any] = {}
        super().__init__(self_address, partners, conf)

    # Every command carries the client session (client, seq): it is not used to
    # dedupe (PySyncObj has no sessions), only shown in log dumps so the
    # log-order checker can find each acknowledged write in the log.

    @replicated
    def write(self, key: str, value: Any, client: str | None, seq: int | None) -> None:
        self.data[key] = value

    @replicated
    def cas(self, key: str, expected: Any, value: Any, client: str | None,
            seq: int | None) -> bool:
        if key in self.data and self.data[key] == expected:
            self.data[key] = value
            return True
        return False

    @replicated
    def read(self, key: str, client: str | None, seq: int | None) -> Any:
        return self.data.get(key)

    def local_read(self, key: str) -> Any:
        return self.data.get(key)


def describe_entry(command: bytes, index: int, term: int, applied: int,
                   method_names: dict[int, str]) -> dict[str, Any]:
    """One log entry as the log-order checker reads it (checker/README.md).

    Regular commands are PySyncObj's pickles of ``(method id, args)`` — its
    own format, read back here on the node that wrote it; the session is the
    last two arguments. ``duplicate`` is false for applied entries: this state
    machine applies every command (it has no session table to skip retries).
    """
    entry: dict[str, Any] = {
        "index": index,
        "term": term,
        "digest": hashlib.blake2b(command, digest_size=16).hexdigest(),
        "client": None,
        "seq": None,
    }
    if command[:1] == REGULAR_COMMAND:
        method, args = pysyncobj_pickle.loads(command[1:])[:2]
        name = str(method_names.get(method, method))
        entry["op"] = name.rsplit("_v", 1)[0]
        if len(args) >= 3:
            entry["key"] = args[0]
            entry["client"], entry["seq"] = args[-2], args[-1]
    else:
        entry["op"] = "no-op" if command[:1] == NO_OP_COMMAND else "internal"
    if index <= applied:
        entry["duplicate"] = False
    return entry


class DropWatch:
    """Notices the follower losing entries of its current term, which Raft never does.

    Only the leader of term T creates term-T entries, and it never removes one
    from its own log, so a follower in term T never has a term-T entry that
    conflicts with its leader: a correct follower drops entries of its current
    term only when a later term begins. PySyncObj 0.3.17 drops them whenever an
    older append arrives after a newer one, and it logs that only for entries it
    had applied; entries it had merely acknowledged go silently, and those are
    the ones a new leader then lacks (README: the lost-commit schedule).

    Checked once per PySyncObj tick from its log's ends (O(1)), so a drop that
    the next message in the same batch repairs is not seen; only drops that last
    into a tick are. The watch is the harness's, read-only: PySyncObj is not
    changed. A snapshot installed (the log's base moves) resets it.
    """

    #: At most this many complaints per process, like raft_impl's SafetyWatch.
    LIMIT = 10

    def __init__(self) -> None:
        self.term: int | None = None
        self.base: int | None = None
        #: The last index of the log while its last entry was of the current term.
        self.high = 0
        self.said = 0

    def observe(self, term: int, base: int, last_index: int, last_term: int
                ) -> dict[str, Any] | None:
        """The complaint event to print, if the log lost entries of ``term`` since
        the last observation."""
        event = None
        if (term == self.term and base == self.base and last_index < self.high
                and self.said < self.LIMIT):
            self.said += 1
            event = {
                "event": "complaint", "complaint": "dropped-current-term-entries",
                "severity": "violation",
                "message": f"PySyncObj dropped entries {last_index + 1}..{self.high} of its "
                           f"current term {term}, which it had acknowledged to its leader "
                           f"(a Raft follower never drops its current leader's entries)",
                "term": term, "first": last_index + 1, "last": self.high,
                # the append that did it left the log ending there (checker/culprits.py)
                "culprit": {"type": "append_entries", "last_index": last_index},
            }
        self.term, self.base = term, base
        self.high = last_index if last_term == term else 0
        return event


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


class Node:
    """The Trio side: the client listener, and the bridge from PySyncObj's thread."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.id = args.id
        self.read_mode = "stale" if args.read_mode == "stale" else "log"
        self.peer_address = args.peer_listen
        self.names = {address: name for name, address in args.identities.items()}
        self.names[self.peer_address] = self.id
        self.token = trio.lowlevel.current_trio_token()
        data_dir = Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        low, high = args.election_timeout
        conf = SyncObjConf(
            journalFile=str(data_dir / "journal"),
            fullDumpFile=str(data_dir / "dump"),
            raftMinTimeout=low,
            raftMaxTimeout=high,
            onStateChanged=self._on_state_changed,
            # SyncObjConf's documented trade-off: batching (the default) favours
            # requests per second, no batching the latency of each request.
            appendEntriesUseBatch=not args.low_latency,
        )
        self._raft_calls: collections.deque[Any] = collections.deque()
        self._drops = DropWatch()
        partners: list[TCPNode] = [
            TCPNode(identity) if args.peers[name] == identity
            else RelayedNode(identity, args.peers[name])
            for name, identity in sorted(args.identities.items())
        ]
        self.kv = ReplicatedKV(self.peer_address, partners, conf)
        self.method_names = {number: name for name, number in self.kv._methodToID.items()}
        self.kv.addOnTickCallback(self._tick)

    # -- PySyncObj's thread -> Trio ---------------------------------------------------

    def _on_state_changed(self, old: int, new: int) -> None:
        """Called on PySyncObj's thread, where its state may be read safely.

        The event is built here and printed by Trio (one writer of stdout).
        It may fire while ``SyncObj.__init__`` still runs (its thread starts
        there), before ``self.kv`` exists: then the term is not known yet.
        """
        kv = getattr(self, "kv", None)
        event: dict[str, Any] = {"event": "role", "role": ROLES.get(new)}
        if kv is not None:
            event["term"] = kv.raftCurrentTerm
            if new == 2:  # a follower's leader is still the old one at this instant
                event["leader"] = self.id
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(emit, event)

    async def replicate(self, method: Any, *args: Any) -> tuple[Any, int | None]:
        """Run a replicated command; (result, FAIL_REASON) or (None, None) on timeout."""
        done = trio.Event()
        outcome: list[tuple[Any, int]] = []

        def deliver(result: Any, error: int) -> None:
            outcome.append((result, error))
            done.set()

        def callback(result: Any, error: int) -> None:  # PySyncObj's thread
            with contextlib.suppress(trio.RunFinishedError):
                self.token.run_sync_soon(deliver, result, error)

        method(*args, callback=callback)
        with trio.move_on_after(COMMAND_DEADLINE):
            await done.wait()
        return outcome[0] if outcome else (None, None)

    # -- consistent views, taken on PySyncObj's thread ---------------------------------

    def _tick(self) -> None:
        """PySyncObj's per-tick hook (its thread): run the queued admin views.

        The log, commit index and state change on that thread only, so a view
        taken here is consistent (a log copy never races an append, a digest
        always matches the applied index it names). The drop watch looks here too.
        """
        journal = self.kv._SyncObj__raftLog  # private: PySyncObj has no log API
        _, last_index, last_term = journal[-1]
        complaint = self._drops.observe(self.kv.raftCurrentTerm, journal[0][1], last_index,
                                        last_term)
        if complaint is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self.token.run_sync_soon(emit, complaint)
        while self._raft_calls:
            view, request, deliver = self._raft_calls.popleft()
            try:
                outcome: tuple[Any, BaseException | None] = (view(self, request), None)
            except Exception as exc:  # handed to the Trio side, which re-raises it
                outcome = (None, exc)
            with contextlib.suppress(trio.RunFinishedError):
                self.token.run_sync_soon(deliver, *outcome)

    async def on_raft_thread(self, view: Any, request: dict[str, Any]) -> Any:
        done = trio.Event()
        box: list[tuple[Any, BaseException | None]] = []

        def deliver(result: Any, error: BaseException | None) -> None:
            box.append((result, error))
            done.set()

        self._raft_calls.append((view, request, deliver))  # deque.append is thread-safe
        with trio.fail_after(ADMIN_DEADLINE):
            await done.wait()
        result, error = box[0]
        if error is not None:
            raise error
        return result

    def log_view(self, request: dict[str, Any]) -> dict[str, Any]:
        """The retained log; its first entry is the base PySyncObj keeps after compaction."""
        journal = self.kv._SyncObj__raftLog  # private: PySyncObj has no log API
        first = request.get("from")
        entries = [journal[i] for i in range(len(journal))]
        _, base_index, base_term = entries[0]
        applied = self.kv.raftLastApplied
        shown = [
            describe_entry(command, index, term, applied, self.method_names)
            for command, index, term in entries[1:]
            if not isinstance(first, int) or index >= first
        ]
        return {
            "commit": self.kv.raftCommitIndex,
            "applied": applied,
            "snapshot_index": base_index,
            "snapshot_term": base_term,
            "last_index": entries[-1][1],
            "entries": shown,
        }

    def digest_view(self, request: dict[str, Any]) -> dict[str, Any]:
        state = json.dumps(self.kv.data, sort_keys=True, default=repr).encode()
        return {"applied": self.kv.raftLastApplied,
                "digest": hashlib.blake2b(state, digest_size=16).hexdigest()}

    def status_view(self, request: dict[str, Any]) -> dict[str, Any]:
        status = self.status()
        status["last_index"] = self.kv._SyncObj__raftLog[-1][1]
        return status

    ADMIN: ClassVar[dict[str, Any]] = {
        "log": log_view, "state-digest": digest_view, "status": status_view,
    }

    # -- client API ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        status = self.kv.getStatus()
        leader = status.get("leader")
        return {
            "id": self.id,
            "role": ROLES.get(status.get("state"), "unknown"),
            "term": status.get("raft_term"),
            "leader": self.names.get(str(leader)) if leader is not None else None,
            "commit": status.get("commit_idx"),
            "applied": status.get("last_applied"),
            "last_index": None,  # PySyncObj reports its log length, not its last index
            "has_quorum": status.get("has_quorum"),
        }

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        key = request.get("key")
        if op in ("status", "log", "state-digest"):
            try:
                value = await self.on_raft_thread(self.ADMIN[op], request)
            except trio.TooSlowError:
                return {"ok": False, "error": "timeout", "definite": True}
            return {"ok": True, "value": value, "definite": True}
        if op == "clock":
            return {"ok": False, "error": "unsupported", "definite": True}
        if op not in ("read", "write", "cas") or not isinstance(key, str):
            return {"ok": False, "error": "bad-request", "definite": True}
        if op == "read" and self.read_mode == "stale":
            return {"ok": True, "value": self.kv.local_read(key), "definite": True}
        session = (request.get("client"), request.get("seq"))
        if op == "read":
            result, error = await self.replicate(self.kv.read, key, *session)
        elif op == "write":
            result, error = await self.replicate(self.kv.write, key, request.get("value"),
                                                 *session)
        else:
            result, error = await self.replicate(
                self.kv.cas, key, request.get("expected"), request.get("value"), *session
            )
        if error is None:
            return {"ok": False, "error": "timeout", "definite": False}
        if error == FAIL_REASON.SUCCESS:
            if op == "cas" and not result:
                return {"ok": False, "error": "cas-mismatch", "definite": True}
            return {"ok": True, "value": result if op == "read" else None, "definite": True}
        if error in DEFINITE_FAILURES:
            return {"ok": False, "error": DEFINITE_FAILURES[error], "definite": True}
        reason = INDEFINITE_FAILURES.get(error, f"fail-reason-{error}")
        return {"ok": False, "error": reason, "definite": False}

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        send_lock = trio.Lock()

        async def handle(request: dict[str, Any]) -> None:
            reply = await self.answer(request)
            reply["id"] = request.get("id")
            async with send_lock:
                await stream.send_all(encode_frame(reply))

        async with stream, trio.open_nursery() as nursery:
            try:
                while data := await stream.receive_some(65536):
                    decoder.feed(data)
                    for request in decoder.messages():
                        nursery.start_soon(handle, request)
            except (FrameError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                print(f"{self.id}: client connection closed: {exc}", file=sys.stderr)
            nursery.cancel_scope.cancel()

    async def serve(self, client_listen: str) -> None:
        host, port = parse_address(client_listen)
        listeners = await trio.open_tcp_listeners(port, host=host)
        emit({"event": "ready", "id": self.id, "peer": self.peer_address,
              "client": client_listen})
        await trio.serve_listeners(self._serve_safely, listeners)

    async def _serve_safely(self, stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.serve_connection(stream)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pysyncobj_node", description=__doc__.split("\n")[0])
    parser.add_argument("--id", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--peer-listen", required=True, help="HOST:PORT PySyncObj binds")
    parser.add_argument("--client-listen", required=True, help="HOST:PORT of the client API")
    parser.add_argument("--peer", action="append", default=[], metavar="ID=HOST:PORT",
                        help="another node and where to dial it (the harness's relay)")
    parser.add_argument("--peer-identity", action="append", default=[],
                        metavar="ID=HOST:PORT",
                        help="the address that node binds and names itself by, when it is "
                             "dialed elsewhere (default: its --peer address)")
    parser.add_argument("--read-mode", default="log", choices=("log", "read-index", "stale"))
    parser.add_argument("--election-timeout", default="0.4,1.4", metavar="MIN,MAX",
                        help="PySyncObj's raftMinTimeout,raftMaxTimeout in seconds")
    parser.add_argument("--low-latency", action="store_true",
                        help="appendEntriesUseBatch=False: send each entry at once instead "
                             "of batching (PySyncObj's documented low-latency setting)")
    args = parser.parse_args(argv)
    args.peers = {}
    args.identities = {}
    for option, texts, into in (("--peer", args.peer, args.peers),
                                ("--peer-identity", args.peer_identity, args.identities)):
        for text in texts:
            name, sep, address = text.partition("=")
            if not sep:
                parser.error(f"{option} takes ID=HOST:PORT, not {text!r}")
            parse_address(address)
            into[name] = address
    unknown = set(args.identities) - set(args.peers)
    if unknown:
        parser.error(f"--peer-identity names no --peer: {', '.join(sorted(unknown))}")
    args.identities = {name: args.identities.get(name, address)
                       for name, address in args.peers.items()}
    parse_address(args.peer_listen)
    try:
        low, high = (float(x) for x in args.election_timeout.split(","))
    except ValueError:
        parser.error(f"--election-timeout takes MIN,MAX seconds, not {args.election_timeout!r}")
    if not 0 < low < high:
        parser.error("--election-timeout needs 0 < MIN < MAX")
    args.election_timeout = (low, high)
    return args


async def main_async(args: argparse.Namespace) -> None:
    node = Node(args)
    await node.serve(args.client_listen)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        trio.run(main_async, args)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        emit({"event": "error", "message": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
