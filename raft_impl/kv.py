"""The replicated key/value state machine of raft_impl.

Commands travel inside log entries as compact msgpack lists. Every replica
applies the same commands in the same order, so everything here must be
deterministic: no clocks, no randomness, no iteration over unordered sets.

**Sessions.** A client tags each command with ``(client, seq)``, seq growing
per client. The state machine remembers, per client, the last applied seq and
its result. A retry of that seq (the client timed out and resent, or a new
leader re-proposed) returns the cached result instead of applying twice, which
is what makes a retried ``append`` or ``cas`` exactly-once. A seq below the last
one can only be a delayed duplicate: it is refused without applying and its
answer is marked not definite. Sessions are evicted oldest-used first beyond
``max_sessions``; eviction order is part of the replicated state, so it is
identical on every replica.

**Transactions.** A ``txn`` command carries a list of micro-ops ``[f, key,
value]``: ``["r", k, null]`` reads ``k``, ``["append", k, v]`` appends ``v``
to the list at ``k``, ``["w", k, v]`` writes ``v``. The whole list is one log
entry, applied atomically: every micro-op sees the effects of the ones before
it in the same transaction, and if one fails (an append to a key holding a
register) none takes effect. A read returns what the key holds: a list for a
key that was appended to, the value for a register, null for a key never
written. The answer is the micro-ops with the reads filled in, which is the
completion value the transactional checker reads (checker/README.md).
A read-only transaction changes nothing, so it is served like a read
(:meth:`KVStateMachine.read_txn`, on the read path) instead of through the log.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgpack

from .types import Entry, EntryKind

OPS = frozenset({"read", "write", "cas", "append", "txn"})
#: Micro-op names of a ``txn``: read, append to a list, write a register.
TXN_FS = frozenset({"r", "append", "w"})
#: Most micro-ops one transaction may carry (a bound on one entry's work).
MAX_TXN_OPS = 1000


class CommandError(ValueError):
    """A client request that cannot become a command (unknown op, missing key)."""


@dataclass(frozen=True, slots=True)
class Command:
    """One state machine command, as stored in a log entry."""

    op: str
    key: Any
    value: Any = None
    expected: Any = None
    client: str | None = None
    seq: int | None = None

    def encode(self) -> bytes:
        return msgpack.packb(
            [self.op, self.key, self.value, self.expected, self.client, self.seq],
            use_bin_type=True,
        )

    @staticmethod
    def decode(data: bytes) -> Command:
        op, key, value, expected, client, seq = msgpack.unpackb(data, raw=False)
        return Command(op, key, value, expected, client, seq)

    @staticmethod
    def from_request(request: dict[str, Any]) -> Command:
        """Build a command from a client request map; raises CommandError if malformed."""
        op = request.get("op")
        if op not in OPS:
            raise CommandError(f"unknown op {op!r}")
        client, seq = _session(request)
        if op == "txn":
            return Command("txn", None, validate_txn(request.get("value")), None, client, seq)
        key = request.get("key")
        if isinstance(key, bool) or not isinstance(key, str | int | bytes):
            raise CommandError(f"op {op} needs a key that is a string or an integer")
        if op in ("write", "cas", "append") and "value" not in request:
            raise CommandError(f"op {op} needs a value")
        if op == "cas" and "expected" not in request:
            raise CommandError("op cas needs an expected value")
        return Command(op, key, request.get("value"), request.get("expected"), client, seq)

    @property
    def read_only(self) -> bool:
        """A transaction of reads only: it changes nothing, so it may take the read path."""
        return self.op == "txn" and all(mop[0] == "r" for mop in self.value)


def _session(request: dict[str, Any]) -> tuple[str | None, int | None]:
    client = request.get("client")
    seq = request.get("seq")
    if client is not None and not isinstance(client, str):
        raise CommandError("client must be a string")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise CommandError("seq must be an integer")
    return client, seq


def _is_key(key: Any) -> bool:
    return not isinstance(key, bool) and isinstance(key, str | int | bytes)


def validate_txn(mops: Any) -> list[list[Any]]:
    """A ``txn`` request's micro-ops, checked at the boundary (CommandError if malformed).

    Each is ``[f, key, value]`` with f ``r`` (value null), ``append`` or ``w``
    (value a non-null scalar: the checker needs values it can tell apart), a
    key as for other commands; 1 to :data:`MAX_TXN_OPS` of them. Returns them
    as fresh lists, so nothing of the request is shared with the log entry.
    """
    if not isinstance(mops, list | tuple) or not mops:
        raise CommandError("op txn needs a value: a non-empty list of micro-ops [f, key, value]")
    if len(mops) > MAX_TXN_OPS:
        raise CommandError(f"a txn has at most {MAX_TXN_OPS} micro-ops, not {len(mops)}")
    out: list[list[Any]] = []
    for i, mop in enumerate(mops):
        if not isinstance(mop, list | tuple) or len(mop) != 3:
            raise CommandError(f"micro-op {i} must be a list [f, key, value]")
        f, key, value = mop
        if f not in TXN_FS:
            raise CommandError(f"micro-op {i}: unknown f {f!r} (r, append or w)")
        if not _is_key(key):
            raise CommandError(f"micro-op {i}: the key must be a string or an integer")
        if f == "r":
            if value is not None:
                raise CommandError(f"micro-op {i}: a read's value must be null")
        elif value is None or isinstance(value, list | tuple | dict):
            raise CommandError(f"micro-op {i}: {f} needs a value that is a non-null scalar")
        out.append([f, key, value])
    return out


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of applying a command, turned into a client answer by the node."""

    ok: bool
    value: Any = None
    error: str | None = None
    #: False when the outcome of the client's original attempt is unknown.
    definite: bool = True
    #: Reads answer a ``value`` field even when it is null (a never-written key).
    has_value: bool = False

    def reply_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"ok": self.ok}
        if self.has_value:
            fields["value"] = self.value
        if self.error is not None:
            fields["error"] = self.error
        fields["definite"] = self.definite
        return fields

    def to_wire(self) -> list:
        return [self.ok, self.value, self.error, self.definite, self.has_value]

    @staticmethod
    def from_wire(item: list) -> Result:
        return Result(*item)


class KVStateMachine:
    """Key/value map with read, write, cas and append, plus client sessions."""

    def __init__(self, *, dedup: bool = True, max_sessions: int = 100_000) -> None:
        #: False only for the planted bug no-dedup: retries apply again.
        self.dedup = dedup
        self.max_sessions = max_sessions
        self.data: dict[Any, Any] = {}
        self.sessions: OrderedDict[str, tuple[int, Result]] = OrderedDict()
        self.applied = 0
        #: Whether the last command applied was skipped as a retry or a stale seq of its
        #: session (no effect): the node tells the harness, which checks exactly-once.
        self.skipped = False

    # ---- applying

    def apply_entry(self, entry: Entry) -> tuple[Command | None, Result | None]:
        """Apply one committed entry; no-ops only advance ``applied``."""
        self.applied = entry.index
        if entry.kind is not EntryKind.COMMAND or not entry.data:
            return None, None
        command = Command.decode(entry.data)
        return command, self.apply(command)

    def apply(self, command: Command) -> Result:
        client, seq = command.client, command.seq
        self.skipped = False
        if client is not None and seq is not None:
            session = self.sessions.get(client)
            if session is not None and self.dedup:
                last_seq, last_result = session
                if seq == last_seq:
                    self.sessions.move_to_end(client)
                    self.skipped = True
                    return last_result
                if seq < last_seq:
                    self.skipped = True
                    return Result(False, None, "stale-seq", definite=False)
            result = self._execute(command)
            self.sessions[client] = (seq, result)
            self.sessions.move_to_end(client)
            if len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
            return result
        return self._execute(command)

    def _execute(self, command: Command) -> Result:
        op, key = command.op, command.key
        if op == "txn":
            return self._execute_txn(command.value)
        current = self.data.get(key)
        if op == "read":
            return Result(True, current, has_value=True)
        if op == "write":
            self.data[key] = command.value
            return Result(True)
        if op == "cas":
            if current != command.expected:
                return Result(False, None, "cas-mismatch")
            self.data[key] = command.value
            return Result(True)
        if op == "append":
            if current is None:
                self.data[key] = [command.value]
            elif isinstance(current, list):
                # Copy, never mutate: a cached read result may share the old list.
                self.data[key] = [*current, command.value]
            else:
                return Result(False, None, "not-a-list")
            return Result(True)
        # Unknown ops never get into the log (Command.from_request refuses them), but
        # a replica must not crash on one: answer definitely failed, change nothing.
        return Result(False, None, f"unknown-op:{op}")

    def _execute_txn(self, mops: list[list[Any]]) -> Result:
        """All micro-ops or none: they run against a private overlay, merged at the end."""
        done, writes = run_txn(self.data, mops)
        if writes is None:
            return Result(False, None, "not-a-list")
        self.data.update(writes)
        return Result(True, done, has_value=True)

    def read(self, key: Any) -> Any:
        """Local read for read-index, lease and stale reads."""
        return self.data.get(key)

    def read_txn(self, mops: list[list[Any]]) -> Result:
        """A read-only transaction against the local state (read path; changes nothing)."""
        done, _ = run_txn(self.data, mops)
        return Result(True, done, has_value=True)

    # ---- digest and snapshots

    def digest(self) -> str:
        """Hash of the canonical msgpack encoding of the map (key order independent)."""
        canonical = msgpack.packb(_canonical(self.data), use_bin_type=True)
        return hashlib.blake2b(canonical, digest_size=16).hexdigest()

    def snapshot(self) -> bytes:
        return msgpack.packb(
            {
                "v": 1,
                "applied": self.applied,
                "kv": [[k, v] for k, v in self.data.items()],
                "sessions": [[c, s, r.to_wire()] for c, (s, r) in self.sessions.items()],
            },
            use_bin_type=True,
        )

    def restore(self, data: bytes) -> None:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if obj.get("v") != 1:
            raise ValueError(f"unsupported snapshot version {obj.get('v')!r}")
        self.applied = obj["applied"]
        self.data = {k: v for k, v in obj["kv"]}
        self.sessions = OrderedDict(
            (c, (s, Result.from_wire(r))) for c, s, r in obj["sessions"]
        )


def run_txn(data: dict[Any, Any], mops: list[list[Any]]
            ) -> tuple[list[list[Any]], dict[Any, Any] | None]:
    """Run micro-ops over ``data`` without changing it: (completed micro-ops, writes).

    Writes are ``None`` when an append met a key holding something other than a
    list: the transaction then fails as a whole. Lists are copied, never
    mutated, since an answer already given may share the old list.
    """
    writes: dict[Any, Any] = {}
    done: list[list[Any]] = []
    for f, key, value in mops:
        current = writes[key] if key in writes else data.get(key)
        if f == "r":
            done.append([f, key, list(current) if isinstance(current, list) else current])
            continue
        if f == "append":
            if current is None:
                writes[key] = [value]
            elif isinstance(current, list):
                writes[key] = [*current, value]
            else:
                return done, None
        else:
            writes[key] = value
        done.append([f, key, value])
    return done, writes


def _canonical(obj: Any) -> Any:
    """Same value, with every map turned into a list of pairs sorted by encoded key."""
    if isinstance(obj, dict):
        pairs = [(msgpack.packb(_canonical(k), use_bin_type=True), k, v) for k, v in obj.items()]
        pairs.sort(key=lambda p: p[0])
        return [[_canonical(k), _canonical(v)] for _, k, v in pairs]
    if isinstance(obj, list | tuple):
        return [_canonical(x) for x in obj]
    return obj
