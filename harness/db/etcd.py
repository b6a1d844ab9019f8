"""The ``etcd`` adapter: a real etcd 3.4 cluster, driven through its v3 JSON gateway.

    splitbrain run --db etcd --nodes 5 --nemesis partition,kill

Each member runs ``/usr/bin/etcd`` (or ``$SPLITBRAIN_ETCD``) with its data
under ``RUN_DIR/nodes/<id>/data`` and its log in ``stderr.log``; a kill is
SIGKILL (a SIGTERM'd leader may wait seconds to hand over), a restart reuses
the data directory, so the member rejoins from its own WAL.

Operations (keys as given, values JSON text, both base64 on the wire):

* ``read``  → ``POST /v3/kv/range``; ``--read-mode stale`` sets
  ``serializable: true``, so the member answers from its local state without
  asking the leader (fast, and stale: what the checker should catch).
* ``write`` → ``POST /v3/kv/put``.
* ``cas``   → ``POST /v3/kv/txn`` comparing the value, putting on success;
  an absent ``succeeded`` means false (the gateway drops zero values; int64
  fields come back as strings).
* ``txn`` (``--workload list-append|rw-register``) → two ``POST /v3/kv/txn``,
  as Jepsen's etcd test does it: a snapshot (one txn of ``request_range`` on
  every key the transaction touches: atomic, one revision, each key's value
  and ``mod_revision``), the micro-ops applied to it in the client (a read
  after the transaction's own append sees it), then, unless the transaction
  only reads, a commit: ``compare`` every touched key's ``mod_revision`` with
  the snapshot's (0 for a key that did not exist), ``success`` the puts of the
  new lists (values). A commit whose comparison fails changed nothing:
  ``fail`` (``txn-conflict``). So a committed transaction took effect at its
  commit's revision, with every key it read unchanged since the snapshot
  (strictly serializable when etcd is); a read-only one at its snapshot's.
  A list is stored as its JSON text; a key never written reads as null.

Outcomes: a read that fails or times out is ``fail`` (it changed nothing); a
write whose request may have reached a member and got no success is ``info``
unless etcd's error says the request was refused before proposing. A member
that refuses the connection is skipped for the next one within the same
operation (nothing was sent).

Network: etcd members name each other by their advertised peer URLs (member
and cluster ids are hashes of them), so all members must reach a peer at one
address and per-link relays cannot sit in between. Partitions therefore use
``--net netns`` (one namespace per member, iptables DROP), which the
``splitbrain run`` command picks by default for etcd when it runs as root;
``--net none`` runs without link faults (kill and pause still work).

What etcd does not expose: its Raft log (the log-order checks that need it
report ``unknown`` with that reason), a per-revision KV hash in the 3.4 JSON
gateway (no digests), clock control and unfsynced-write loss. ``status``
(role, term, leader, commit and applied index) comes from raft's own
``raft.status`` (``GET /debug/vars``), so leader-per-term is still checked;
``/v3/maintenance/status`` only where that is missing (its term lags a new
leader's: see ``EtcdDB.status``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from typing import Any

import trio

from harness.db.base import (
    Client,
    ComplaintPattern,
    Completion,
    DBError,
    DBOptions,
    Unsupported,
    register_db,
)
from harness.db.http import HttpConnection, HttpError
from harness.db.node_client import NodeClient
from harness.db.options import check_options
from harness.db.process import ADMIN_TIMEOUT, ProcessDB
from harness.db.wire_client import ConnectionLost

ETCD_ENV = "SPLITBRAIN_ETCD"
DEFAULT_BINARY = "/usr/bin/etcd"
#: etcd errors returned before anything was proposed: the write certainly did not happen.
DEFINITE_ERRORS = ("etcdserver: too many requests", "etcdserver: request is too large")


def etcd_binary() -> str | None:
    """The etcd executable to run, or None when it is not installed."""
    configured = os.environ.get(ETCD_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    if os.access(DEFAULT_BINARY, os.X_OK):
        return DEFAULT_BINARY
    return shutil.which("etcd")


def encode(value: Any) -> str:
    """A key or value as the gateway wants it: base64 of its bytes (values as JSON)."""
    data = value.encode() if isinstance(value, str) else json.dumps(value).encode()
    return base64.b64encode(data).decode("ascii")


def decode_value(text: str | None) -> Any:
    """A value from a range answer; an absent value field is the empty byte string."""
    raw = base64.b64decode(text or "")
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")  # written by someone else: show it as text


def request_for(op: dict[str, Any], serializable: bool) -> tuple[str, dict[str, Any]]:
    """(gateway path, JSON body) for one workload operation."""
    key = encode(str(op["key"]))
    f = op["f"]
    if f == "read":
        body: dict[str, Any] = {"key": key}
        if serializable:
            body["serializable"] = True
        return "/v3/kv/range", body
    if f == "write":
        return "/v3/kv/put", {"key": key, "value": encode(op["value"])}
    if f == "cas":
        expected, new = op["value"]
        return "/v3/kv/txn", {
            "compare": [
                {"key": key, "target": "VALUE", "result": "EQUAL", "value": encode(expected)}
            ],
            "success": [{"request_put": {"key": key, "value": encode(new)}}],
        }
    raise ValueError(f"etcd adapter cannot run operation {f!r}")


def completion_for(op: dict[str, Any], answer: dict[str, Any], node: str) -> Completion:
    """The completion of a 200 answer."""
    f = op["f"]
    if f == "read":
        kvs = answer.get("kvs") or []
        value = decode_value(kvs[0].get("value")) if kvs else None
        return Completion("ok", value=value, node=node)
    if f == "cas" and not answer.get("succeeded", False):
        return Completion("fail", error="cas-mismatch", node=node)
    return Completion("ok", node=node)


def txn_keys(mops: list[list[Any]]) -> list[str]:
    """The keys a txn touches, each once, in first-use order (as etcd keys: text)."""
    return list(dict.fromkeys(str(m[1]) for m in mops))


def txn_snapshot_request(keys: list[str], serializable: bool) -> dict[str, Any]:
    """One etcd txn of ranges: every key at one revision (no compare: always succeeds)."""
    ranges = []
    for key in keys:
        body: dict[str, Any] = {"key": encode(key)}
        if serializable:
            body["serializable"] = True
        ranges.append({"request_range": body})
    return {"success": ranges}


def txn_snapshot(keys: list[str], answer: dict[str, Any]) -> dict[str, tuple[Any, int]]:
    """key -> (value or None, mod_revision; 0 when absent) from a snapshot's answer."""
    responses = answer.get("responses") or []
    if len(responses) != len(keys):
        raise ValueError(f"expected {len(keys)} range responses, got {len(responses)}")
    snapshot: dict[str, tuple[Any, int]] = {}
    for key, response in zip(keys, responses, strict=True):
        kvs = (response.get("response_range") or {}).get("kvs") or []
        if kvs:
            snapshot[key] = (decode_value(kvs[0].get("value")), int(kvs[0].get("mod_revision", 0)))
        else:
            snapshot[key] = (None, 0)
    return snapshot


def apply_txn(mops: list[list[Any]], snapshot: dict[str, tuple[Any, int]]
              ) -> tuple[list[list[Any]], dict[str, Any]]:
    """The micro-ops with their reads filled in, and the new value of each written key."""
    state = {key: value for key, (value, _) in snapshot.items()}
    written: dict[str, Any] = {}
    done: list[list[Any]] = []
    for f, key, value in mops:
        name = str(key)
        if f == "r":
            current = state[name]
            done.append([f, key, list(current) if isinstance(current, list) else current])
            continue
        if f == "append":
            current = state[name]
            state[name] = [*(current if isinstance(current, list) else ()), value]
        elif f == "w":
            state[name] = value
        else:
            raise ValueError(f"etcd adapter cannot run micro-op {f!r}")
        written[name] = state[name]
        done.append([f, key, value])
    return done, written


def txn_commit_request(snapshot: dict[str, tuple[Any, int]],
                       written: dict[str, Any]) -> dict[str, Any]:
    """Put the written keys if no touched key changed since the snapshot."""
    return {
        "compare": [{"key": encode(key), "target": "MOD", "result": "EQUAL",
                     "mod_revision": str(revision)}
                    for key, (_, revision) in snapshot.items()],
        "success": [{"request_put": {"key": encode(key), "value": encode(value)}}
                    for key, value in written.items()],
    }


#: raft.status's ``raftState`` -> the role names of the observation format
RAFT_ROLES = {"StateLeader": "leader", "StateFollower": "follower",
              "StateCandidate": "candidate", "StatePreCandidate": "pre-candidate"}


def raft_status_fields(node_id: str, raft: dict[str, Any], db: Any) -> dict[str, Any]:
    """The ``status`` fields from etcd's ``raft.status`` (ids in hex, term current)."""
    member = int(str(raft.get("id") or "0"), 16)
    if member:
        db.member_ids[node_id] = member
    leader = int(str(raft.get("lead") or "0"), 16)
    return {
        "id": node_id,
        "role": RAFT_ROLES.get(str(raft.get("raftState")), "follower"),
        "term": int(raft.get("term") or 0),
        "leader": db.node_of(leader) if leader else None,
        "commit": int(raft.get("commit") or 0),
        "applied": int(raft.get("applied") or 0),
    }


def error_text(status: int, answer: Any) -> str:
    if isinstance(answer, dict):
        text = answer.get("error") or answer.get("message")
        if text:
            return str(text)
    return f"HTTP {status}"


#: What etcd's raft says (then panics) when it notices a safety violation (raft/log.go,
#: raft/raft.go of etcd 3.4): a committed entry asked to change, a commit index beyond
#: the log, a persisted commit index out of range.
COMPLAINTS = (
    ComplaintPattern(
        "conflict-with-committed-entry",
        r"conflict with committed entry",
        "violation",
        "etcd was asked to overwrite a committed log entry",
    ),
    ComplaintPattern(
        "commit-out-of-range",
        r"tocommit\(\d+\) is out of range",
        "violation",
        "etcd was asked to commit beyond its log: the log was corrupted, truncated or lost",
    ),
    ComplaintPattern(
        "state-commit-out-of-range",
        r"state\.commit \d+ is out of range",
        "violation",
        "etcd's persisted commit index lies outside its log",
    ),
)


class EtcdDB(ProcessDB):
    complaint_patterns = COMPLAINTS
    name = "etcd"

    def __init__(self, options: DBOptions | None = None) -> None:
        super().__init__()
        self.options = options or DBOptions()
        check_options(self.name, self.options)
        # Serializable reads are answered by any member from its local state.
        self.serializable = self.options.read_mode == "stale"
        binary = etcd_binary()
        if binary is None:
            raise DBError(
                f"etcd is not installed (looked for {DEFAULT_BINARY}, $PATH and "
                f"${ETCD_ENV}); on Debian: apt install etcd-server"
            )
        self.binary = binary
        #: node -> etcd member id, learned from status answers.
        self.member_ids: dict[str, int] = {}

    # -- processes -----------------------------------------------------------------

    def url(self, address: str) -> str:
        return f"http://{address}"

    def command(self, node_id: str) -> list[str]:
        node = self.nodes[node_id]
        assert self.run_dir is not None
        members = []
        for other in self.nodes:
            peer = node.address.peer if other == node_id else self.peer_addresses[node_id][other]
            members.append(f"{other}={self.url(peer)}")
        cmd = [
            self.binary,
            "--name", node_id,
            "--data-dir", str(node.data_dir),
            "--listen-peer-urls", self.url(node.address.peer),
            "--initial-advertise-peer-urls", self.url(node.address.peer),
            "--listen-client-urls", self.url(node.address.client),
            "--advertise-client-urls", self.url(node.address.client),
            "--initial-cluster", ",".join(members),
            "--initial-cluster-state", "new",  # ignored once the data dir holds a WAL
            "--initial-cluster-token", f"splitbrain-{self.run_dir.name}",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]
        if self.options.election_timeout is not None:
            election_ms = max(10, round(self.options.election_timeout[0] * 1000))
            heartbeat_ms = max(1, election_ms // 10)
            cmd += ["--election-timeout", str(election_ms),
                    "--heartbeat-interval", str(heartbeat_ms)]
        return cmd

    def environment(self, node_id: str) -> dict[str, str]:
        # ETCD_* variables of the caller would silently reconfigure every member.
        return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}

    async def probe_ready(self, node_id: str) -> bool:
        """The client port accepts connections.

        etcd opens its listeners at once but serves requests only after the
        member published itself through Raft, which needs a quorum; a member
        restarted inside a minority would never be "ready" by that measure,
        so a restart counts as done when the listener is up.
        """
        address = self.nodes[node_id].address
        try:
            with trio.move_on_after(0.5):
                stream = await trio.open_tcp_stream(address.host, address.client_port)
                await stream.aclose()
                return True
        except OSError:
            return False
        return False

    def client(self, node_id: str) -> Client:
        return EtcdClient(self, node_id)

    # -- admin --------------------------------------------------------------------

    async def post(self, node_id: str, path: str, body: dict[str, Any],
                   within: float = ADMIN_TIMEOUT) -> dict[str, Any]:
        """One admin request on a fresh connection; DBError when unanswered or refused."""
        address = self.reachable(node_id).address
        connection = HttpConnection(address.host, address.client_port)
        try:
            with trio.fail_after(within):
                status, answer = await connection.post(path, body)
        except (trio.TooSlowError, ConnectionLost, HttpError) as exc:
            raise DBError(f"{node_id} did not answer {path}: {exc or 'timeout'}") from exc
        finally:
            await connection.aclose()
        if status != 200 or not isinstance(answer, dict):
            raise DBError(f"{node_id} refused {path}: {error_text(status, answer)}")
        return answer

    def node_of(self, member_id: int) -> str | None:
        for node, known in self.member_ids.items():
            if known == member_id:
                return node
        return None

    async def status(self, node_id: str) -> dict[str, Any]:
        """Role, term and leader from raft itself (``/debug/vars``' ``raft.status``,
        one consistent snapshot of raft's state), else from the maintenance API.

        The maintenance API's ``raftTerm`` is the term etcd last *applied*, while
        its ``leader`` is current: a member elected in term 13 that has not yet
        applied an entry of term 13 reports itself leader "in term 10", which
        looks like a second leader of term 10 (leader-per-term failed a correct
        etcd that way, 2026-12-08).
        """
        try:
            raft = await self.raft_status(node_id)
        except DBError:
            raft = None
        if raft is not None:
            return raft
        answer = await self.post(node_id, "/v3/maintenance/status", {})
        header = answer.get("header") or {}
        member = int(header.get("member_id") or 0)
        if member:
            self.member_ids[node_id] = member
        leader = int(answer.get("leader") or 0)
        return {
            "id": node_id,
            # The status API names the leader, not the member's own raft state:
            # a member that is not leader is reported as follower (candidates too).
            "role": "leader" if leader and leader == member else "follower",
            "term": int(answer.get("raftTerm") or 0),
            "leader": self.node_of(leader) if leader else None,
            "commit": int(answer.get("raftIndex") or 0),
            "applied": int(answer.get("raftAppliedIndex") or 0),
            "revision": int(header.get("revision") or 0),
        }

    async def raft_status(self, node_id: str) -> dict[str, Any] | None:
        """``status`` from raft's own ``raft.status`` expvar; None if etcd has none."""
        address = self.reachable(node_id).address
        connection = HttpConnection(address.host, address.client_port)
        try:
            with trio.fail_after(ADMIN_TIMEOUT):
                status, answer = await connection.get("/debug/vars")
        except (trio.TooSlowError, ConnectionLost, HttpError) as exc:
            raise DBError(f"{node_id} did not answer /debug/vars: {exc or 'timeout'}") from exc
        finally:
            await connection.aclose()
        raft = answer.get("raft.status") if status == 200 and isinstance(answer, dict) else None
        if not isinstance(raft, dict) or "term" not in raft:
            return None
        return raft_status_fields(node_id, raft, self)

    async def state_digest(self, node_id: str) -> dict[str, Any]:
        raise Unsupported(
            "etcd 3.4's JSON gateway has no per-revision key/value hash (HashKV), so "
            "applied-state digests cannot be compared"
        )

    async def log(self, node_id: str, from_index: int | None = None) -> dict[str, Any]:
        raise Unsupported(
            "etcd exposes no dump of its Raft log to clients, so log agreement, durability "
            "of committed entries and acknowledged writes cannot be checked from the log"
        )


class EtcdClient(NodeClient[EtcdDB, HttpConnection]):
    """One process's view of etcd: requests go to its member, which forwards to the leader.

    etcd members proxy proposals and linearizable reads to the leader
    themselves, so there is no leader following here; only a member that
    refuses connections (killed) is skipped for the next one. A read never
    takes effect, so one that is lost or unanswered is ``fail``, not ``info``.
    """

    def open_connection(self, host: str, port: int) -> HttpConnection:
        return HttpConnection(host, port)

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        if op["f"] == "txn":
            return await self._txn(op["value"])
        path, body = request_for(op, self.db.serializable)
        is_read = op["f"] == "read"
        try:
            sent = await self._send_to_a_live_node(
                lambda connection: connection.post(path, body), may_take_effect=not is_read
            )
        except HttpError as exc:
            kind = "fail" if is_read else "info"
            return self._done(Completion(kind, error=str(exc), node=self.target))
        if isinstance(sent, Completion):
            return sent
        node, (status, answer) = sent
        if status == 200 and isinstance(answer, dict):
            return self._done(completion_for(op, answer, node))
        error = error_text(status, answer)
        definite = is_read or error.startswith(DEFINITE_ERRORS)
        return self._done(Completion("fail" if definite else "info", error=error, node=node))

    async def _txn(self, mops: list[list[Any]]) -> Completion:
        """Snapshot, apply, commit on unchanged mod revisions (see the module docstring)."""
        keys = txn_keys(mops)
        snap = txn_snapshot_request(keys, self.db.serializable)
        try:  # the snapshot changes nothing: whatever happens to it, the txn did not
            sent = await self._send_to_a_live_node(
                lambda connection: connection.post("/v3/kv/txn", snap), may_take_effect=False)
        except HttpError as exc:
            return self._done(Completion("fail", error=str(exc), node=self.target))
        if isinstance(sent, Completion):
            return sent
        node, (status, answer) = sent
        if status != 200 or not isinstance(answer, dict):
            return self._done(Completion("fail", error=error_text(status, answer), node=node))
        snapshot = txn_snapshot(keys, answer)
        done, written = apply_txn(mops, snapshot)
        if not written:
            return self._done(Completion("ok", value=done, node=node))
        commit = txn_commit_request(snapshot, written)
        try:
            sent = await self._send_to_a_live_node(
                lambda connection: connection.post("/v3/kv/txn", commit), may_take_effect=True)
        except HttpError as exc:
            return self._done(Completion("info", error=str(exc), node=self.target))
        if isinstance(sent, Completion):
            return sent
        node, (status, answer) = sent
        if status == 200 and isinstance(answer, dict):
            if answer.get("succeeded", False):
                return self._done(Completion("ok", value=done, node=node))
            return self._done(Completion("fail", error="txn-conflict", node=node))
        error = error_text(status, answer)
        kind = "fail" if error.startswith(DEFINITE_ERRORS) else "info"
        return self._done(Completion(kind, error=error, node=node))


register_db("etcd", EtcdDB)
