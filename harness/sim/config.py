"""What one simulated test is: the cluster, the workload, the schedule and the seed.

All three parts are frozen dataclasses that round-trip through JSON, because a
failing case found by the fuzzer is saved as ``repro.json`` and must replay to
the identical history, and because ``test.json`` of a simulated run records
exactly what ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harness.workload import DEFAULT_MIX, RegisterWorkload
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
    """The register workload of a real run, plus the phases and client timeouts."""

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

    def __post_init__(self) -> None:
        self.register()  # validates keys, mix, rate, concurrency
        if self.time_limit <= 0 or self.quiet < 0 or self.op_timeout <= 0:
            raise ValueError("time_limit and op_timeout must be > 0, quiet >= 0")

    def register(self) -> RegisterWorkload:
        return RegisterWorkload(keys=self.keys, mix=dict(self.mix), rate=self.rate,
                                concurrency=self.concurrency, ops_per_key=self.ops_per_key,
                                cas_window=self.cas_window)

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
        """Read what :meth:`to_json` wrote (extra keys, such as a test.json's, are ignored)."""
        return cls(cluster=SimClusterConfig.from_json(data.get("cluster", {})),
                   workload=SimWorkload.from_json(data.get("workload", {})),
                   schedule=tuple(data.get("schedule", ())),
                   seed=int(data.get("seed", 0)), name=str(data.get("name", "sim")))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    out = {}
    for name, value in data.items():
        out[name] = tuple(value) if isinstance(value, list) and name != "mix" else value
    return out
