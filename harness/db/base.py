"""Pluggable databases: the DB and Client protocols of a test, after Jepsen's.

A *DB* knows how to install, start, kill, pause, resume and tear down the
nodes of one system, and where each node's logs are. A *Client* turns one
abstract operation (``{"f": "write", "key": "k1", "value": 5}``) into a
request to that system and its answer into a completion of type ``ok``
(it happened), ``fail`` (it certainly did not happen) or ``info`` (unknown:
it may have happened, now or later).

The harness core (cluster, clients, run) only talks to these two classes, so
a second system is added by writing one module with a ``DB`` subclass and
registering it (``register_db("name", factory)`` or the ``splitbrain.dbs``
entry point group); nothing in the core changes.

Optional abilities (admin status, log dumps, state digests, clock faults,
losing unfsynced writes) raise :class:`Unsupported` by default: the nemesis
and the collector skip what a system cannot do, and say so.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import trio

from nemesis.api import NodeAddress  # one address type for DBs and networks

CompletionType = Literal["ok", "fail", "info"]


class Unsupported(Exception):
    """This system cannot do that (no admin API for it, no clock control …)."""


class DBError(Exception):
    """A node could not be set up or started (it crashed, never got ready …)."""


@dataclass
class DBOptions:
    """What a test asks of its system; adapters take what concerns them."""

    read_mode: str = "read-index"
    bugs: tuple[str, ...] = ()
    election_timeout: tuple[float, float] | None = None
    #: Retry in-doubt operations with their session (see RaftImplClient).
    retry_indefinite: bool = False
    attempt_timeout: float = 0.5
    #: Extra words for every node's command line (raft_impl tuning, e.g.
    #: ``--max-append-entries 1``); adapters that start no processes ignore them.
    node_args: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["bugs"] = list(self.bugs)
        return data


@dataclass
class Completion:
    """The end of one operation as a client saw it."""

    type: CompletionType
    value: Any = None
    error: str | None = None
    node: str | None = None  # the node that gave the final answer
    #: In-doubt attempts re-sent in the same session before this answer.
    retries: int = 0

    def __post_init__(self) -> None:
        if self.type not in ("ok", "fail", "info"):
            raise ValueError(f"completion type must be ok/fail/info, not {self.type!r}")


@dataclass(frozen=True)
class ComplaintPattern:
    """A line a system prints when it notices it is breaking safety (or close to it).

    The collector matches ``regex`` (Python ``re``, searched) against every new line of
    a node's output files (:meth:`DB.complaint_files`) and records a ``complaint``
    observation; the ``node-complaints`` checker fails the run on a ``violation``
    and lists a ``warning``. The regex's named groups (digits become integers) go
    into the observation's ``details``.

    ``culprit`` says which traced message (``messages.jsonl``) made the node say
    it, so the evidence can name the message and not only the node:
    ``{"type": T, "field": F, "group": G, "offset": k}`` means the last message
    of type ``T`` to that node whose ``F`` is group ``G`` plus ``k`` (PySyncObj's
    truncation "from index I" comes from an append whose ``prev_index`` is I - 1).
    """

    name: str
    regex: str
    severity: Literal["violation", "warning"]
    message: str
    culprit: Mapping[str, Any] | None = None

    def details(self, match: re.Match[str]) -> dict[str, Any]:
        """What a matching line says beyond the pattern: its named groups, and the
        message to look for (``culprit``: the trace fields it must have)."""
        groups = {key: int(value) if value is not None and value.isdigit() else value
                  for key, value in match.groupdict().items()}
        rule = self.culprit
        if rule and isinstance(groups.get(rule["group"]), int):
            groups["culprit"] = {"type": rule["type"],
                                 rule["field"]: groups[rule["group"]] + rule.get("offset", 0)}
        return groups


#: Callback the DB calls for every structured event a node prints
#: (``{"event": "role", ...}``); the collector turns them into observations.
NodeEventSink = Callable[[str, dict[str, Any]], None]


class Client:
    """One logical process's connection to the system (Jepsen's client).

    ``invoke`` must never raise for a failed operation: every outcome is a
    :class:`Completion`. Timeouts are the caller's (it cancels ``invoke``
    and records ``info``), so an implementation only needs to be cancel-safe.
    """

    #: True when the client can retry an in-doubt attempt in its session (same
    #: client id and seq, deduplicated by the system) when ``retry_indefinite``
    #: is set on it; the client pool sets it for some of its processes.
    can_retry_in_doubt = False
    retry_indefinite = False
    #: Re-sent attempts of the operation in flight (read when it times out).
    retries = 0

    async def open(self) -> None:
        """Connect lazily or eagerly; called once before the first invoke."""

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        raise NotImplementedError

    async def close(self) -> None:
        """Release sockets; must be safe to call more than once."""


class DB:
    """One system under test, driven through its nodes (Jepsen's db).

    Lifecycle: ``plan`` (choose addresses, no side effects beyond the run
    directory) → the network starts and maps addresses → ``setup`` →
    ``start`` each node → … faults … → ``teardown`` (must kill everything,
    idempotent, safe under cancellation).
    """

    name = "db"
    #: True when nodes print ``{"event": "role", "role": ..., "term": ...}`` on
    #: every role change (elections are then seen as they happen, not polled).
    role_events = False
    #: True when nodes push committed entries, snapshots and complaints as events
    #: (docs/node-events.md); the log is still polled for what pushes cannot show.
    pushes_events = False
    #: What a node of this system prints when it breaks safety (see ComplaintPattern).
    complaint_patterns: tuple[ComplaintPattern, ...] = ()

    def plan(
        self, run_dir: Path, nodes: list[str], host: str = "127.0.0.1"
    ) -> dict[str, NodeAddress]:
        """Reserve listen addresses for each node and remember the run directory."""
        raise NotImplementedError

    async def setup(
        self,
        nursery: trio.Nursery,
        peer_addresses: Mapping[str, Mapping[str, str]],
        on_event: NodeEventSink | None = None,
        listen: Mapping[str, NodeAddress] | None = None,
        wrap_command: Callable[[str, list[str]], list[str]] | None = None,
    ) -> None:
        """Prepare nodes (data dirs, configs). ``peer_addresses[a][b]`` is how a reaches b.

        ``nursery`` hosts background tasks (stdout pumps) that must live as
        long as the cluster. ``listen`` overrides where each node binds and
        ``wrap_command`` how it is launched (a network namespace backend
        needs both); by default nodes bind where ``plan`` said.
        """
        raise NotImplementedError

    async def start(self, node: str) -> str | None:
        """Start the node (from whatever it has on disk) and wait until it is ready.

        None once it is; a reason string when nothing was started (running or starting
        already); ``nemesis.api.StartInterrupted`` when a kill lands before it is ready."""
        raise NotImplementedError

    async def kill(self, node: str) -> None:
        """Crash the node (SIGKILL or equivalent); returns once it is dead."""
        raise NotImplementedError

    async def pause(self, node: str) -> None:
        raise NotImplementedError

    async def resume(self, node: str) -> None:
        raise NotImplementedError

    async def teardown(self) -> None:
        """Kill every process this DB started. Idempotent."""
        raise NotImplementedError

    def is_running(self, node: str) -> bool:
        raise NotImplementedError

    def log_files(self, node: str) -> list[Path]:
        """Files worth keeping for this node (stdout, stderr, dumps)."""
        return []

    def complaint_files(self, node: str) -> list[Path]:
        """The node's output files searched for :attr:`complaint_patterns` (its text logs)."""
        return []

    def client(self, node: str) -> Client:
        """A fresh client whose first contact is ``node``."""
        raise NotImplementedError

    # -- optional abilities -------------------------------------------------

    async def status(self, node: str) -> dict[str, Any]:
        """``{"role","term","leader","commit","applied","last_index"}`` of a node."""
        raise Unsupported(f"{self.name} has no status API")

    async def log(self, node: str, from_index: int | None = None) -> dict[str, Any]:
        """``{"commit","snapshot_index","snapshot_term","entries":[...]}`` of a node."""
        raise Unsupported(f"{self.name} cannot dump its log")

    async def state_digest(self, node: str) -> dict[str, Any]:
        raise Unsupported(f"{self.name} has no state digest")

    async def set_clock(self, node: str, offset: float, rate: float) -> None:
        raise Unsupported(f"{self.name} has no clock control")

    async def lose_unfsynced(self, node: str) -> None:
        """Crash the node and drop what it wrote after its last fsync."""
        raise Unsupported(f"{self.name} cannot lose unfsynced writes")

    async def leader(self) -> str | None:
        """The node that currently believes it leads (with the highest term), if any."""
        raise Unsupported(f"{self.name} cannot tell its leader")


# -- registry ----------------------------------------------------------------

DBFactory = Callable[[DBOptions], DB]
_REGISTRY: dict[str, DBFactory] = {}
_BUILTIN = {
    "raft_impl": "harness.db.raft_impl",
    "etcd": "harness.db.etcd",
    "pysyncobj": "harness.db.pysyncobj",
    "maelstrom": "harness.db.maelstrom",
}


def register_db(name: str, factory: DBFactory) -> None:
    """Make ``--db name`` build ``factory(options)``."""
    _REGISTRY[name] = factory


def _load_entry_points() -> None:
    try:
        entries = metadata.entry_points(group="splitbrain.dbs")
    except Exception:  # broken metadata must not break the core
        return
    for entry in entries:
        if entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = entry.load()


def available_dbs() -> list[str]:
    _load_entry_points()
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def create_db(name: str, options: DBOptions) -> DB:
    """Build the adapter registered as ``name``; KeyError names the known ones."""
    if name not in _REGISTRY and name in _BUILTIN:
        import importlib

        importlib.import_module(_BUILTIN[name])  # registers itself on import
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise KeyError(f"unknown database {name!r}; known: {', '.join(available_dbs())}")
    return _REGISTRY[name](options)
