"""Benchmark targets for the harness's DB adapters (etcd, PySyncObj), and ``--target all``.

``benchmarks/throughput.py --target etcd|pysyncobj`` drives these with exactly
the closed-loop write load it drives raft_impl with: each worker writes a
random key through its session and waits for the acknowledgement. A session
here is one harness ``Client`` of the adapter (the same client a test run
uses), pointed at the current leader, so no system pays an extra forwarding
hop. Nodes talk directly (no relay, no namespace).

Durability differs, and the figures say so: raft_impl and etcd fsync before
acknowledging; PySyncObj writes its journal into an mmap and acknowledges
without syncing it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import trio

from harness.db.base import DBOptions, create_db
from harness.run.cluster import node_names, open_cluster

DURABILITY = {
    "raft_impl": "fsync before ack",
    "etcd": "fsync before ack",
    "pysyncobj": "no fsync (mmap journal)",
    "pysyncobj-low-latency": "no fsync (mmap journal)",
}


class AdapterWriteFailed(Exception):
    """A write ended fail/info or took longer than the target's timeout."""


class AdapterSession:
    def __init__(self, target: AdapterTarget, worker: int) -> None:
        self.target = target
        self.worker = worker
        self.seq = 0
        self.node = target.leader or target.nodes[worker % len(target.nodes)]
        self.client: Any = None

    async def open(self) -> None:
        self.client = self.target.db.client(self.node)
        await self.client.open()

    async def write(self, key: str, value: int) -> None:
        self.seq += 1
        completion = None
        with trio.move_on_after(self.target.timeout):
            completion = await self.client.invoke(
                {"f": "write", "key": key, "value": value},
                client_id=f"bench-{self.worker}", seq=self.seq,
            )
        if completion is None or completion.type != "ok":
            # The connection may hold a late answer: start over with a fresh client.
            await self.client.close()
            self.node = await self.target.find_leader() or self.node
            await self.open()
            error = completion.error if completion is not None else "timeout"
            raise AdapterWriteFailed(str(error))

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()


class AdapterTarget:
    """A cluster of any registered harness DB (``harness.db.base.create_db``)."""

    db_name = ""
    #: The target's name in the results (default: the database's).
    target_name = ""
    #: Adapter options beyond the defaults (``DBOptions.extra``).
    extra: ClassVar[dict[str, Any]] = {}

    def __init__(self, timeout: float = 2.0) -> None:
        self.name = self.target_name or self.db_name
        self.timeout = timeout
        self.db: Any = None
        self.nodes: list[str] = []
        self.leader: str | None = None

    @asynccontextmanager
    async def cluster(self, nodes: int, workdir: Path) -> AsyncIterator[None]:
        self.db = create_db(self.db_name, DBOptions(extra=dict(self.extra)))
        self.nodes = node_names(nodes)
        run_dir = workdir / self.name
        run_dir.mkdir(parents=True, exist_ok=True)
        async with open_cluster(self.db, None, self.nodes, run_dir, leader_timeout=20.0) as c:
            self.leader = c.last_leader
            yield

    async def find_leader(self) -> str | None:
        with trio.move_on_after(self.timeout):
            leader = await self.db.leader()
            if leader is not None:
                self.leader = leader
        return self.leader

    def pids(self) -> list[int]:
        return [slot.process.pid for slot in self.db.nodes.values() if slot.process is not None]

    @asynccontextmanager
    async def session(self, worker: int) -> AsyncIterator[AdapterSession]:
        session = AdapterSession(self, worker)
        await session.open()
        try:
            yield session
        finally:
            with trio.CancelScope(shield=True):
                await session.aclose()


class EtcdTarget(AdapterTarget):
    db_name = "etcd"


class PySyncObjTarget(AdapterTarget):
    db_name = "pysyncobj"


class PySyncObjLowLatencyTarget(AdapterTarget):
    """PySyncObj with its documented low-latency setting (``appendEntriesUseBatch=False``):
    with defaults, 16 closed-loop clients wait on its batching period."""

    db_name = "pysyncobj"
    target_name = "pysyncobj-low-latency"
    extra: ClassVar[dict[str, Any]] = {"low_latency": True}


TARGETS: dict[str, type] = {"etcd": EtcdTarget, "pysyncobj": PySyncObjTarget,
                            "pysyncobj-low-latency": PySyncObjLowLatencyTarget}


def with_ratios(results: list[dict[str, Any]], base: str = "raft_impl") -> list[dict[str, Any]]:
    """Add ``ratio`` (base ops/s over this target's) and ``durability`` to each result.

    A ratio above 1 means the base (raft_impl) committed more writes per
    second than that target under the same load.
    """
    reference = next((r for r in results if r["target"] == base), None)
    for result in results:
        result["durability"] = DURABILITY.get(result["target"], "")
        ops = result.get("ops_per_s") or 0.0
        if reference is None or not ops:
            result["ratio_raft_impl_over_target"] = None
        else:
            ratio = reference["ops_per_s"] / ops
            result["ratio_raft_impl_over_target"] = round(ratio, 2) if math.isfinite(ratio) \
                else None
    return results


def table(results: list[dict[str, Any]]) -> str:
    """A plain-text table: one row per target."""
    header = (f"{'target':<10} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} "
              f"{'raft_impl/target':>17}  durability")
    rows = [header, "-" * len(header)]
    for r in results:
        ratio = r.get("ratio_raft_impl_over_target")
        rows.append(
            f"{r['target']:<10} {r['ops_per_s']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['errors']:>7} {f'{ratio:.2f}' if ratio else '-':>17}  {r['durability']}"
        )
    return "\n".join(rows)
