"""The workloads: registers (reads, writes, compare-and-sets over K keys) and transactions.

:class:`TxnWorkload` (``--workload list-append|rw-register``) is at the end.

The generator is data plus a seed: :meth:`RegisterWorkload.operations`
yields the same sequence of operations for the same seed, whatever the
cluster does. That is what ``--seed`` reproduces; which operation meets
which fault still depends on real timing.

Every value written (by ``write`` or as the new value of a ``cas``) is
unique across the run, so a read names the one write it observed: this
makes linearizability checking sharper and far cheaper than with small
random values. A ``cas`` expects one of the last few values generated for
its key, so a good share of them succeed.

Optionally a key is retired after ``ops_per_key`` operations and replaced
by a fresh one (Jepsen's independent keys): per-key histories stay short,
which bounds the linearizability search.

Reads name the *read path* they ask for (``op["read"]``: read-index, lease,
log, stale). By default (``--read-mode mixed``) a run mixes every path the
system offers that is meant to be linearizable (raft_impl: read-index and
lease), because a bug in one path hides from a run that never takes it;
``stale`` follower reads are never mixed in unless asked for. The path of
each read is drawn from its own seeded stream, so adding paths does not
change which operations a seed generates.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MIX = {"read": 0.5, "write": 0.3, "cas": 0.2}
OPERATIONS = ("read", "write", "cas")

#: ``--read-mode mixed``: every read path a system offers for linearizable
#: reads, and the mode its nodes must run in to offer them all (raft_impl
#: serves read-index reads on a lease-configured node, not the reverse).
MIXED = "mixed"
MIXED_READS: dict[str, tuple[str, tuple[str, ...]]] = {
    "raft_impl": ("lease", ("read-index", "lease")),
    "etcd": ("read-index", ("read-index",)),
    "pysyncobj": ("log", ("log",)),
}
#: Systems whose nodes honour a per-request read path.
PER_REQUEST_READ_PATHS = frozenset({"raft_impl"})


def read_plan(db: str, read_mode: str) -> tuple[str, tuple[str, ...]]:
    """``(node read mode, read paths the workload mixes)`` for ``--read-mode``.

    ``mixed`` means the system's linearizable paths (:data:`MIXED_READS`);
    any other mode is that one path for every read.
    """
    if read_mode != MIXED:
        return read_mode, (read_mode,)
    node_mode, paths = MIXED_READS.get(db, ("read-index", ("read-index",)))
    if db not in PER_REQUEST_READ_PATHS:
        paths = (node_mode,)
    return node_mode, paths


#: Most concurrent client processes a run may have. Each is a task and a TCP
#: connection to a node: a thousand already saturate a cluster on a small machine
#: (most operations time out), and an unbounded number never got to run an
#: operation at all (issue 16: 10^8 workers filled memory at 30-40 MB/s before
#: the first one started, and outlived the time limit and Ctrl-C by 17-53 s).
MAX_CONCURRENCY = 1000

#: Most keys a workload keeps active at once. Each is a string and a counter made
#: before the first operation: 10^8 keys took minutes and gigabytes to set up, ran
#: no operation within --time-limit 2 and outlived Ctrl-C by over a minute.
MAX_KEYS = 10_000


def parse_mix(text: str) -> dict[str, float]:
    """``"read=5,write=3,cas=2"`` → normalised weights; ValueError on nonsense."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in OPERATIONS:
            raise ValueError(f"mix entries look like read=5,write=3,cas=2, not {part!r}")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise ValueError(f"weight of {name} must be a number, not {weight!r}") from None
    return normalise_mix(mix)


def normalise_mix(mix: dict[str, float]) -> dict[str, float]:
    if any(w < 0 for w in mix.values()):
        raise ValueError("mix weights must not be negative")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("the mix needs at least one operation with a positive weight")
    return {f: mix.get(f, 0.0) / total for f in OPERATIONS if mix.get(f, 0.0) > 0}


@dataclass(frozen=True)
class RegisterWorkload:
    keys: int = 5
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    rate: float = 100.0  # operations per second over all processes; 0 = as fast as possible
    concurrency: int = 5
    ops_per_key: int | None = None
    #: How many recent values of a key a cas may expect.
    cas_window: int = 3
    #: Read paths reads ask for, drawn uniformly per read (empty: name none).
    read_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.keys <= MAX_KEYS:
            raise ValueError(f"keys must be 1 to {MAX_KEYS}, not {self.keys}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1 to {MAX_CONCURRENCY}, not {self.concurrency}")
        if self.rate < 0:
            raise ValueError("rate must not be negative")
        if self.ops_per_key is not None and self.ops_per_key < 1:
            raise ValueError("ops-per-key must be at least 1")
        object.__setattr__(self, "mix", normalise_mix(self.mix))
        object.__setattr__(self, "read_paths", tuple(self.read_paths))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": "register",
            "keys": self.keys,
            "mix": self.mix,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "ops_per_key": self.ops_per_key,
            "cas_window": self.cas_window,
            "read_paths": list(self.read_paths),
        }

    def operations(self, seed: int) -> Iterator[dict[str, Any]]:
        """An endless, seed-determined stream of ``{"f", "key", "value"}`` operations."""
        rng = random.Random(seed)
        # A stream of its own: the operations of a seed do not depend on the paths.
        path_rng = random.Random(seed ^ 0x2EAD)
        names = list(self.mix)
        weights = [self.mix[f] for f in names]
        active = [f"k{i}" for i in range(1, self.keys + 1)]
        next_key = self.keys + 1
        uses = dict.fromkeys(active, 0)
        recent: dict[str, list[int]] = {k: [] for k in active}
        next_value = 1
        while True:
            slot = rng.randrange(len(active))
            key = active[slot]
            f = rng.choices(names, weights)[0]
            if f == "cas" and not recent[key]:
                f = "write" if "write" in self.mix else "read"
            if f == "read":
                op: dict[str, Any] = {"f": "read", "key": key, "value": None}
                if self.read_paths:
                    op["read"] = path_rng.choice(self.read_paths)
            elif f == "write":
                op = {"f": "write", "key": key, "value": next_value}
                recent[key] = [*recent[key], next_value][-self.cas_window :]
                next_value += 1
            else:
                expected = rng.choice(recent[key])
                op = {"f": "cas", "key": key, "value": [expected, next_value]}
                recent[key] = [*recent[key], next_value][-self.cas_window :]
                next_value += 1
            uses[key] += 1
            if self.ops_per_key is not None and uses[key] >= self.ops_per_key:
                fresh = f"k{next_key}"
                next_key += 1
                active[slot] = fresh
                uses[fresh] = 0
                recent[fresh] = []
            yield op

    @staticmethod
    def final_read(key: str) -> dict[str, Any]:
        """The operation that reads ``key`` once more after the faults."""
        return {"f": "read", "key": key, "value": None}


#: ``--workload`` names: registers (linearizability) or transactions (checker.elle).
WORKLOADS = ("register", "list-append", "rw-register")
TXN_WORKLOADS = ("list-append", "rw-register")


@dataclass(frozen=True)
class TxnWorkload:
    """Transactions of micro-ops over K active keys, checked by ``checker.elle``.

    ``list-append`` appends values to per-key lists and reads whole lists;
    ``rw-register`` writes and reads registers. Every value written is unique
    across the run (a counter), so a read names the writes it saw. A
    transaction has 1 to ``max_ops`` micro-ops, each a read with probability
    ``read_share``, else a write to a key drawn from the active ones.

    Keys retire as Elle's generators do: a key that has taken
    ``writes_per_key`` writes is replaced by a fresh one, so lists stay short
    and each key's version order stays cheap to infer. A read-only transaction
    names a read path (``op["read"]``) like a register read.
    """

    model: str = "list-append"
    keys: int = 5
    rate: float = 100.0
    concurrency: int = 5
    max_ops: int = 4
    writes_per_key: int = 32
    read_share: float = 0.5
    read_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.model not in TXN_WORKLOADS:
            raise ValueError(f"a transactional workload is one of {', '.join(TXN_WORKLOADS)}")
        if not 1 <= self.keys <= MAX_KEYS:
            raise ValueError(f"keys must be 1 to {MAX_KEYS}, not {self.keys}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1 to {MAX_CONCURRENCY}, not {self.concurrency}")
        if self.rate < 0:
            raise ValueError("rate must not be negative")
        if self.max_ops < 1 or self.writes_per_key < 1:
            raise ValueError("max_ops and writes_per_key must be at least 1")
        if not 0 <= self.read_share <= 1:
            raise ValueError("read_share must be between 0 and 1")
        object.__setattr__(self, "read_paths", tuple(self.read_paths))

    def to_json(self) -> dict[str, Any]:
        # "model" is what checker.runner.model_from_config reads to pick the checker.
        return {
            "name": self.model,
            "model": self.model,
            "keys": self.keys,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "max_ops": self.max_ops,
            "writes_per_key": self.writes_per_key,
            "read_share": self.read_share,
            "read_paths": list(self.read_paths),
        }

    def operations(self, seed: int) -> Iterator[dict[str, Any]]:
        """An endless, seed-determined stream of ``{"f": "txn", "value": micro-ops}``."""
        rng = random.Random(seed)
        path_rng = random.Random(seed ^ 0x2EAD)
        write_f = "append" if self.model == "list-append" else "w"
        active = [f"k{i}" for i in range(1, self.keys + 1)]
        next_key = self.keys + 1
        writes = dict.fromkeys(active, 0)
        next_value = 1
        while True:
            mops: list[list[Any]] = []
            for _ in range(rng.randint(1, self.max_ops)):
                slot = rng.randrange(len(active))
                key = active[slot]
                if rng.random() < self.read_share:
                    mops.append(["r", key, None])
                    continue
                mops.append([write_f, key, next_value])
                next_value += 1
                writes[key] += 1
                if writes[key] >= self.writes_per_key:
                    active[slot] = f"k{next_key}"
                    writes[active[slot]] = 0
                    next_key += 1
            op: dict[str, Any] = {"f": "txn", "value": mops}
            if self.read_paths and all(m[0] == "r" for m in mops):
                op["read"] = path_rng.choice(self.read_paths)
            yield op

    @staticmethod
    def final_read(key: str) -> dict[str, Any]:
        """The operation that reads ``key`` once more after the faults."""
        return {"f": "txn", "value": [["r", key, None]]}


def make_workload(name: str, *, keys: int, rate: float, concurrency: int,
                  mix: dict[str, float] | None = None, ops_per_key: int | None = None,
                  read_paths: tuple[str, ...] = ()) -> RegisterWorkload | TxnWorkload:
    """The workload ``--workload NAME`` asks for (``ops_per_key`` retires txn keys too)."""
    if name == "register":
        return RegisterWorkload(keys=keys, mix=mix or dict(DEFAULT_MIX), rate=rate,
                                concurrency=concurrency, ops_per_key=ops_per_key,
                                read_paths=read_paths)
    if name in TXN_WORKLOADS:
        extra = {"writes_per_key": ops_per_key} if ops_per_key is not None else {}
        return TxnWorkload(model=name, keys=keys, rate=rate, concurrency=concurrency,
                           read_paths=read_paths, **extra)
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")


def op_keys(op: dict[str, Any]) -> list[Any]:
    """The keys an operation touches: its ``key``, or its micro-ops' keys (a txn)."""
    if op.get("f") == "txn":
        return [mop[1] for mop in op.get("value") or ()]
    return [op["key"]] if "key" in op else []


class Pacer:
    """Spaces operation starts ``1/rate`` apart over all processes together.

    The schedule is absolute (slot i starts at ``origin + i/rate``), so a
    slow operation does not shift every later one, but a process that was
    blocked does not get a burst either: slots in the past are skipped.
    """

    def __init__(self, rate: float, now: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = now

    def claim(self, now: float) -> float:
        """Reserve the next slot; returns how long to wait for it."""
        if self.interval == 0.0:
            return 0.0
        if self.next_at < now - self.interval:
            self.next_at = now
        at = self.next_at
        self.next_at += self.interval
        return max(0.0, at - now)
