"""Write throughput and latency of a real cluster on loopback, fsync on.

    python benchmarks/throughput.py --nodes 3 --clients 16 --duration 10 [--json]

Starts the cluster, lets ``--clients`` concurrent closed-loop clients write
random keys through the leader (each one request at a time, with its own
session ``(client, seq)``), and prints committed writes per second, p50/p99
latency and the peak RSS of the node processes (sampled with psutil). With
``--json`` one object with keys ``ops_per_s``, ``p50_ms``, ``p99_ms``,
``max_rss_mb`` (plus the run's parameters) is printed instead.

Systems are pluggable: a :class:`Target` starts the cluster and opens client
sessions; ``TARGETS`` maps ``--target`` names to them (raft_impl today; etcd
and pysyncobj adapters can register here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil
import trio

from raft_impl.client import ConnectionLost, NodeClient, RequestTimeout, open_client
from raft_impl.localcluster import LocalCluster, local_cluster


class WriteFailed(Exception):
    """A write got a definite failure or no answer; not counted as committed."""


class Session(Protocol):
    async def write(self, key: str, value: int) -> None:
        """Write and wait until the system acknowledges it as committed."""


class Target(Protocol):
    name: str

    def cluster(self, nodes: int, workdir: Path) -> AbstractAsyncContextManager[None]:
        """Start the cluster for the duration of the block; kill everything on exit."""

    def pids(self) -> list[int]:
        """Process ids of the running nodes, for RSS sampling."""

    def session(self, worker: int) -> AbstractAsyncContextManager[Session]:
        """A client session for one closed-loop worker."""


class RaftImplSession:
    """One closed-loop client: one connection to the leader, followed when it moves."""

    def __init__(self, target: RaftImplTarget, worker: int) -> None:
        self.target = target
        self.client_id = f"bench-{worker}-{random.getrandbits(32):08x}"
        self.seq = 0
        self.node_id = ""
        self.connection: NodeClient | None = None
        self._stack = AsyncExitStack()

    async def _connect(self) -> NodeClient:
        if self.connection is None or self.connection.closed or self.node_id != self.target.leader:
            await self._stack.aclose()
            self._stack = AsyncExitStack()
            self.node_id = self.target.leader
            self.connection = await self._stack.enter_async_context(
                self.target.open_node(self.node_id)
            )
        return self.connection

    async def write(self, key: str, value: int) -> None:
        self.seq += 1
        request = {"client": self.client_id, "seq": self.seq, "op": "write", "key": key,
                   "value": value}
        try:
            connection = await self._connect()
            answer = await connection.request(request, within=self.target.timeout)
        except (OSError, ConnectionLost, RequestTimeout, trio.TooSlowError) as exc:
            await self.target.find_leader()
            raise WriteFailed(str(exc)) from exc
        if answer.get("ok"):
            return
        if answer.get("error") == "not-leader":
            if answer.get("leader"):
                self.target.leader = answer["leader"]
            else:
                await self.target.find_leader()
        raise WriteFailed(str(answer.get("error")))

    async def aclose(self) -> None:
        await self._stack.aclose()


class RaftImplTarget:
    """raft_impl node processes, started with raft_impl.localcluster."""

    name = "raft_impl"

    def __init__(self, timeout: float = 2.0, extra_args: tuple[str, ...] = ()) -> None:
        self.timeout = timeout
        self.extra_args = extra_args
        self._cluster: LocalCluster | None = None
        self.leader = ""
        self.timings: dict[str, float] = {}

    @asynccontextmanager
    async def cluster(self, nodes: int, workdir: Path) -> AsyncIterator[None]:
        spawned = time.perf_counter()
        async with local_cluster(nodes, workdir, self.extra_args) as cluster:
            self._cluster = cluster
            ready = time.perf_counter()
            self.leader = await cluster.wait_leader(within=10.0)
            elected = time.perf_counter()
            # From the spawn of the processes, and from the last one's ready event.
            self.timings = {"startup_leader_s": round(elected - spawned, 3),
                            "leader_after_ready_s": round(elected - ready, 3)}
            yield

    async def failover(self) -> float:
        """SIGKILL the leader; seconds until another node leads (the leader stays dead)."""
        assert self._cluster is not None
        old = self.leader
        killed = time.perf_counter()
        await self._cluster.kill(old)
        self.leader = await self._cluster.wait_leader(within=10.0, exclude=[old])
        return round(time.perf_counter() - killed, 3)

    async def find_leader(self) -> None:
        """After a failure: ask the nodes who leads now (elections take a moment)."""
        assert self._cluster is not None
        with contextlib.suppress(trio.TooSlowError):
            self.leader = await self._cluster.wait_leader(within=self.timeout)

    def open_node(self, node_id: str) -> AbstractAsyncContextManager[NodeClient]:
        assert self._cluster is not None
        node = self._cluster.nodes[node_id]
        return open_client(node.host, node.client_port)

    def pids(self) -> list[int]:
        assert self._cluster is not None
        return [n.process.pid for n in self._cluster.nodes.values() if n.process is not None]

    @asynccontextmanager
    async def session(self, worker: int) -> AsyncIterator[Session]:
        session = RaftImplSession(self, worker)
        try:
            yield session
        finally:
            await session.aclose()


TARGETS: dict[str, type] = {"raft_impl": RaftImplTarget}
try:  # etcd and pysyncobj, through the harness's DB adapters (benchmarks/adapter_targets.py)
    from adapter_targets import TARGETS as ADAPTER_TARGETS  # run as a script
    from adapter_targets import table, with_ratios
except ImportError:
    from benchmarks.adapter_targets import TARGETS as ADAPTER_TARGETS
    from benchmarks.adapter_targets import table, with_ratios
TARGETS.update(ADAPTER_TARGETS)


@dataclass
class Measurement:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    max_rss: int = 0
    #: CPU seconds (user + system) the nodes and this client process spent measuring.
    node_cpu: float = 0.0
    client_cpu: float = 0.0


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    position = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[position]


async def run_benchmark(args: argparse.Namespace) -> dict:
    node_args = tuple(getattr(args, "node_arg", None) or ())
    if args.target == "raft_impl":
        target: Target = RaftImplTarget(extra_args=node_args)
    else:
        target = TARGETS[args.target]()
    measurement = Measurement()
    keys = [f"k{i}" for i in range(args.keys)]
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        async with target.cluster(args.nodes, Path(tmp)):
            start = time.perf_counter()
            measure_from = start + args.warmup
            stop_at = measure_from + args.duration

            async def sample_rss() -> None:
                while True:
                    for pid in target.pids():
                        try:
                            rss = psutil.Process(pid).memory_info().rss
                        except psutil.Error:
                            continue
                        measurement.max_rss = max(measurement.max_rss, rss)
                    await trio.sleep(0.25)

            async def worker(i: int) -> None:
                rng = random.Random(i)
                async with target.session(i) as session:
                    value = 0
                    while True:
                        value += 1
                        begin = time.perf_counter()
                        if begin >= stop_at:
                            return
                        try:
                            await session.write(rng.choice(keys), value)
                        except Exception:  # a failed write is counted, never fatal
                            if begin >= measure_from:
                                measurement.errors += 1
                            continue
                        end = time.perf_counter()
                        if begin >= measure_from and end <= stop_at:
                            measurement.latencies.append(end - begin)
                        if args.ops and len(measurement.latencies) >= args.ops:
                            return

            cpu_start: list[float] = []

            async def start_cpu_clock() -> None:
                await trio.sleep(max(0.0, measure_from - time.perf_counter()))
                cpu_start[:] = [cpu_seconds(target.pids()), time.process_time()]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample_rss)
                nursery.start_soon(start_cpu_clock)
                async with trio.open_nursery() as workers:
                    for i in range(args.clients):
                        workers.start_soon(worker, i)
                if cpu_start:
                    measurement.node_cpu = cpu_seconds(target.pids()) - cpu_start[0]
                    measurement.client_cpu = time.process_time() - cpu_start[1]
                nursery.cancel_scope.cancel()
            elapsed = min(time.perf_counter(), stop_at) - measure_from
            timings = dict(getattr(target, "timings", {}))
            if getattr(args, "failover", False) and hasattr(target, "failover"):
                timings["failover_leader_s"] = await target.failover()
    latencies = sorted(measurement.latencies)
    return {
        "target": target.name,
        "nodes": args.nodes,
        "clients": args.clients,
        "duration": round(elapsed, 3),
        "ops": len(latencies),
        "errors": measurement.errors,
        "ops_per_s": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1e3, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1e3, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1e3, 2) if latencies else None,
        "max_rss_mb": round(measurement.max_rss / 2**20, 1),
        # CPU cost per committed write, to compare runs on a machine shared with others.
        "node_cpu_ms_per_op": round(measurement.node_cpu * 1e3 / len(latencies), 3)
        if latencies else None,
        "client_cpu_ms_per_op": round(measurement.client_cpu * 1e3 / len(latencies), 3)
        if latencies else None,
        "load_avg_1m": round(psutil.getloadavg()[0], 2),
        **timings,
    }


async def run_interruptible(args: argparse.Namespace) -> dict | None:
    """Run the benchmark; SIGINT/SIGTERM cancel it cleanly (the cluster is killed)."""
    result: dict | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            result = await run_benchmark(args)
            nursery.cancel_scope.cancel()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=[*sorted(TARGETS), "all"], default="raft_impl",
                        help="system to load; all = each in turn, with ratios to raft_impl")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--keys", type=int, default=1000, help="distinct keys written")
    parser.add_argument("--ops", type=int, default=0,
                        help="stop after this many measured writes (0: run for --duration)")
    parser.add_argument("--node-arg", action="append", default=[], metavar="WORD",
                        help="extra word for every raft_impl node's command line (repeatable), "
                        "e.g. --node-arg=--max-inflight-appends --node-arg=4")
    parser.add_argument("--failover", action="store_true",
                        help="after the run, SIGKILL the leader and time the next election")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.clients < 1 or args.duration <= 0 or args.keys < 1:
        parser.error("--nodes, --clients, --keys must be >= 1 and --duration > 0")
    if args.target == "all":
        return compare_all(args)
    result = trio.run(run_interruptible, args)
    if result is None:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['target']}: {args.nodes} nodes, {args.clients} clients, "
              f"{result['duration']} s measured, fsync on")
        print(f"committed writes/s: {result['ops_per_s']:.1f}  "
              f"({result['ops']} ok, {result['errors']} failed)")
        print(f"latency p50: {result['p50_ms']:.2f} ms   p99: {result['p99_ms']:.2f} ms")
        print(f"peak node RSS: {result['max_rss_mb']:.1f} MB")
        print(f"CPU per write: nodes {result['node_cpu_ms_per_op']} ms, "
              f"client {result['client_cpu_ms_per_op']} ms "
              f"(1-min load average {result['load_avg_1m']})")
        if "startup_leader_s" in result:
            print(f"leader elected {result['startup_leader_s']} s after the processes were "
                  f"spawned ({result['leader_after_ready_s']} s after all were ready)")
        if "failover_leader_s" in result:
            print(f"new leader {result['failover_leader_s']} s after the leader was killed")
    return 0


def compare_all(args: argparse.Namespace) -> int:
    """Every target under the same load, one after the other, with ratios to raft_impl."""
    results = []
    for name in TARGETS:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        result = trio.run(run_interruptible, argparse.Namespace(**{**vars(args), "target": name}))
        if result is None:
            print("interrupted", file=sys.stderr)
            return 130
        results.append(result)
    with_ratios(results)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{args.nodes} nodes, {args.clients} closed-loop clients, {args.duration} s "
              f"measured each; 1-min load average at the end {results[-1]['load_avg_1m']}")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
