"""What one simulated test is: the cluster, the workload, the schedule and the seed.

All three parts are frozen dataclasses that round-trip through JSON, because a
failing case found by the fuzzer is saved as ``repro.json`` and must replay to
the identical history, and because ``test.json`` of a simulated run records
exactly what ran.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.run.workload import (
    DEFAULT_MIX,
    MAX_KEYS,
    WORKLOADS,
    RegisterWorkload,
    TxnWorkload,
)
from raft_impl.bugs import validate_bugs
from raft_impl.core import READ_MODES, RaftConfig


@dataclass(frozen=True)
class SimClusterConfig:
    """The simulated cluster: size, Raft settings, planted bugs, and the simulated hardware."""

    nodes: int = 3
    read_mode: str = "read-index"
    bugs: tuple[str, ...] = ()
    election_timeout: tuple[float, float] = (0.3, 0.6)
    heartbeat_interval: float = 0.05
    snapshot_threshold: int = 10_000
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_append: int = 256
    max_inflight_appends: int = 64
    #: How often a node's core is ticked (a real node runs a timer like this).
    tick_interval: float = 0.01
    #: One-way peer message latency, uniform in [lo, hi] seconds (before link faults).
    latency: tuple[float, float] = (0.0005, 0.002)
    #: Client <-> node latency, uniform in [lo, hi] seconds (clients are never partitioned).
    client_latency: tuple[float, float] = (0.0002, 0.001)
    #: Duration of one fsync, uniform in [lo, hi] seconds.
    fsync_latency: tuple[float, float] = (0.0002, 0.002)
    #: Whether lose-unfsynced may keep a prefix of the unsynced writes (a torn tail).
    torn_writes: bool = True
    #: Trace every peer message to messages.jsonl (slower; on for replays and reports).
    trace_messages: bool = False
    #: Work budget of one run (events + Readies; a normal 10 s run needs ~20,000). Past
    #: it the run stops where it is, like an interrupted real run, and is checked as far
    #: as it got: a message storm must not stall a fuzz campaign.
    max_work: int = 2_000_000

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if self.read_mode not in READ_MODES:
            raise ValueError(f"read mode must be one of {', '.join(READ_MODES)}, "
                             f"not {self.read_mode!r}")
        object.__setattr__(self, "bugs", tuple(sorted(validate_bugs(self.bugs))))
        for name in ("election_timeout", "latency", "client_latency", "fsync_latency"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range [lo, hi] with 0 <= lo <= hi")
            object.__setattr__(self, name, (float(lo), float(hi)))

    @property
    def node_ids(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]

    def raft_config(self) -> RaftConfig:
        return RaftConfig(
            election_timeout_min=self.election_timeout[0],
            election_timeout_max=self.election_timeout[1],
            heartbeat_interval=self.heartbeat_interval,
            snapshot_threshold=self.snapshot_threshold,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            max_entries_per_append=self.max_entries_per_append,
            max_inflight_appends=self.max_inflight_appends,
            read_mode=self.read_mode,
            bugs=frozenset(self.bugs),
        )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name, value in data.items():
            if isinstance(value, tuple):
                data[name] = list(value)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimClusterConfig:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class SimWorkload:
    """The workload of a real run, plus the phases and client timeouts.

    ``name`` is ``register`` (reads, writes and cas over ``keys`` keys, in
    ``mix``) or a transactional workload, ``list-append`` / ``rw-register``
    (:class:`harness.run.workload.TxnWorkload` over ``keys`` active keys, each
    retired after ``ops_per_key`` writes, 32 by default; ``mix`` and
    ``cas_window`` do not apply). The simulated nodes run the node's own
    logic, so a txn is applied exactly as a real node applies it.
    """

    keys: int = 3
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    rate: float = 50.0
    concurrency: int = 5
    ops_per_key: int | None = None
    cas_window: int = 3
    #: Seconds of workload (and faults); then everything is healed.
    time_limit: float = 10.0
    #: Seconds of calm after the heal before the final reads.
    quiet: float = 2.0
    #: An operation without an answer for this long is recorded info.
    op_timeout: float = 1.0
    #: Retry an attempt that may have applied with the same session (as ``--retry-indefinite``).
    retry_indefinite: bool = False
    attempt_timeout: float = 0.5
    #: The final reads (every key, through the leader) must finish within this.
    final_read_timeout: float = 15.0
    #: ``register``, ``list-append`` or ``rw-register`` (``--workload``).
    name: str = "register"

    def __post_init__(self) -> None:
        if self.name not in WORKLOADS:
            raise ValueError(f"workload.name must be one of {', '.join(WORKLOADS)}, "
                             f"not {self.name!r}")
        self.register()  # validates keys, mix, rate, concurrency
        if self.transactional:
            self.txn()
        if self.time_limit <= 0 or self.quiet < 0 or self.op_timeout <= 0:
            raise ValueError("time_limit and op_timeout must be > 0, quiet >= 0")

    def register(self) -> RegisterWorkload:
        return RegisterWorkload(keys=self.keys, mix=dict(self.mix), rate=self.rate,
                                concurrency=self.concurrency, ops_per_key=self.ops_per_key,
                                cas_window=self.cas_window)

    @property
    def transactional(self) -> bool:
        return self.name != "register"

    def txn(self) -> TxnWorkload:
        extra = {"writes_per_key": self.ops_per_key} if self.ops_per_key is not None else {}
        return TxnWorkload(model=self.name, keys=self.keys, rate=self.rate,
                           concurrency=self.concurrency, **extra)

    def operations(self, seed: int) -> Iterator[dict[str, Any]]:
        """The seed's operation stream: the same as a real run of this workload draws."""
        if self.transactional:
            return self.txn().operations(seed)
        return self.register().operations(seed)

    def final_read(self, key: Any) -> dict[str, Any]:
        """The read of one key after the faults (a one-read txn for txn workloads)."""
        if self.transactional:
            return TxnWorkload.final_read(key)
        return RegisterWorkload.final_read(key)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimWorkload:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class SimTest:
    """One fully determined simulated test."""

    cluster: SimClusterConfig = field(default_factory=SimClusterConfig)
    workload: SimWorkload = field(default_factory=SimWorkload)
    schedule: tuple[dict[str, Any], ...] = ()
    seed: int = 0
    name: str = "sim"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "backend": "sim", "seed": self.seed,
                "cluster": self.cluster.to_json(), "workload": self.workload.to_json(),
                "schedule": [dict(entry) for entry in self.schedule]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimTest:
        """Read what :meth:`to_json` wrote (extra keys, such as a test.json's, are ignored).

        A hand-edited or damaged file gets a ValueError naming the field (never a
        TypeError from deep inside), and sizes a replay could not finish (a billion
        nodes) are refused: see :data:`LIMITS`.
        """
        if not isinstance(data, dict):
            raise ValueError(f"must be a JSON object, got {type(data).__name__}")
        for section in ("cluster", "workload"):
            if not isinstance(data.get(section, {}), dict):
                raise ValueError(f"{section!r} must be a JSON object")
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"'seed' must be an integer, got {seed!r}")
        cluster = SimClusterConfig.from_json(data.get("cluster", {}))
        workload = SimWorkload.from_json(data.get("workload", {}))
        schedule = data.get("schedule", [])
        if not isinstance(schedule, list):
            raise ValueError(f"'schedule' must be a list of entries, got {schedule!r:.60}")
        from nemesis.faults import validate_schedule
        from nemesis.schedule import refuse_after

        try:
            entries = validate_schedule(schedule, cluster.node_ids)
            refuse_after(entries, workload.time_limit, "the workload's time_limit")
        except ValueError as exc:  # ScheduleError: say which part of the file
            raise ValueError(f"'schedule': {exc}") from None
        return cls(cluster=cluster, workload=workload, schedule=tuple(schedule),
                   seed=seed, name=str(data.get("name", "sim")))


#: What a saved test may ask for. Past these a replay would not end in reasonable
#: time or memory (a billion nodes, a billion clients); the fuzzer draws far less.
LIMITS: dict[str, tuple[float, float]] = {
    "nodes": (1, 9),
    "concurrency": (1, 1000),
    "keys": (1, MAX_KEYS),
    "max_work": (1, 100_000_000),
    "time_limit": (0.001, 24 * 3600),
    "quiet": (0, 3600),
    "final_read_timeout": (0, 3600),
    "tick_interval": (0.0001, 10),
}


def _checked(cls: type, name: str, value: Any) -> Any:
    """``value`` for field ``name`` of ``cls``, checked against the field's default's type."""
    default = next(f for f in dataclasses.fields(cls) if f.name == name)
    sample = (default.default if default.default is not dataclasses.MISSING
              else default.default_factory())  # type: ignore[misc]
    where = f"{'cluster' if cls is SimClusterConfig else 'workload'}.{name}"

    def number(item: Any, integer: bool) -> float:
        if isinstance(item, bool) or not isinstance(item, int if integer else int | float):
            raise ValueError(f"{where} must be {'an integer' if integer else 'a number'}, "
                             f"got {item!r:.60}")
        if not math.isfinite(item) or item < 0:
            raise ValueError(f"{where} must be a finite number >= 0, got {item!r}")
        low, high = LIMITS.get(name, (0, math.inf))
        if not low <= item <= high:
            raise ValueError(f"{where} must be between {low:g} and {high:g}, got {item!r}")
        return item

    if isinstance(sample, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r:.60}")
        return value
    if isinstance(sample, int) or (sample is None and name == "ops_per_key"):
        return value if value is None and sample is None else number(value, True)
    if isinstance(sample, float):
        return number(value, False)
    if isinstance(sample, str):
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r:.60}")
        return value
    if isinstance(sample, dict):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where} must be an object of names to weights, "
                             f"got {value!r:.60}")
        return {k: number(v, False) for k, v in value.items()}
    if isinstance(sample, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list, got {value!r:.60}")
        if name == "bugs":
            if not all(isinstance(item, str) for item in value):
                raise ValueError(f"{where} must be a list of bug names, got {value!r:.60}")
            return tuple(value)
        if len(value) != len(sample):
            raise ValueError(f"{where} must be a pair [lo, hi], got {value!r:.60}")
        return tuple(number(item, False) for item in value)
    return value


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return {name: _checked(cls, name, value) for name, value in data.items()}
