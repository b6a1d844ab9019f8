"""What the proxy network costs, against direct loopback connections.

    python benchmarks/proxy_overhead.py [--frames 200000] [--pings 3000]
                                        [--cluster-seconds 10] [--rounds 3] [--trace]
                                        [--json]

Three measurements, each direct and through ``harness.net.proxy`` relays:

1. **stream**: one sender pushes ``--frames`` append-sized frames (batched
   writes, as a leader does) to a receiver that decodes every frame, as a node
   does; frames per second.
2. **ping-pong**: request a->b, answer b->a (two directed links, so two
   relays), one at a time; median round trip.
3. **cluster** (skipped with ``--cluster-seconds 0``): a real 3-node
   ``raft_impl`` cluster, 16 closed-loop clients writing through the leader
   for the given seconds; committed writes per second.

Each is measured ``--rounds`` times, direct and proxy interleaved, and the
medians are compared: on a shared machine single runs swing by 2x. The relays
run in a separate process from the endpoints in (1) and (2), as in
a real run (relays live in the harness, nodes in their own processes); in (3)
they run in this process next to the clients, exactly as ``splitbrain run``
places them. The issue's target: the proxy costs at most 20 % of cluster
throughput, i.e. ``cluster ratio >= 0.8``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from harness.net.base import NodeAddress
from harness.net.proxy import ProxyNetwork
from splitbrain_common.wire import FrameDecoder, encode_frame

HOST = "127.0.0.1"
BATCH = 64


def append_frame(index: int) -> bytes:
    """About the size of an AppendEntries carrying one small KV write."""
    return encode_frame({"type": "append", "from": "n1", "to": "n2", "term": 3,
                         "prev_index": index, "prev_term": 3, "commit": index,
                         "entries": [[index + 1, 3, "command", b"x" * 48]]})


# -- relays in a child process ------------------------------------------------------------

async def serve_relays(b_port: int, a_port: int) -> None:
    """Child mode: relays a->b and b->a to the given real ports; print their ports."""
    proxy = ProxyNetwork(seed=1)
    async with trio.open_nursery() as nursery:
        peers = await proxy.start(nursery, {"a": NodeAddress(HOST, a_port, 0),
                                            "b": NodeAddress(HOST, b_port, 0)})
        print(json.dumps(peers), flush=True)
        stdin = trio.lowlevel.FdStream(0)
        while await stdin.receive_some(1024):  # until the parent closes our stdin
            pass
        nursery.cancel_scope.cancel()


async def with_relays(b_port: int, a_port: int, body) -> Any:
    """Run ``body(peers)`` while a child process relays a<->b."""
    argv = [sys.executable, __file__, "--serve-relays", str(b_port), str(a_port)]
    process = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE)
    try:
        line = b""
        with trio.fail_after(10):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(4096)
        peers = json.loads(line)
        before = psutil.Process(process.pid).cpu_times()
        result = await body(peers)
        after = psutil.Process(process.pid).cpu_times()
        RELAY_CPU.append(after.user + after.system - before.user - before.system)
        return result
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()
            with trio.move_on_after(5):
                await process.wait()
            process.kill()
            await process.wait()
            await process.stdout.aclose()


#: CPU seconds the relay process spent in each with_relays body (load-independent cost).
RELAY_CPU: list[float] = []


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# -- 1. stream ------------------------------------------------------------------------------

async def stream_rate(frames: int, via_relay: bool) -> float:
    done = trio.Event()
    count = 0

    async def receive(stream: trio.SocketStream) -> None:
        nonlocal count
        decoder = FrameDecoder()
        while data := await stream.receive_some(65536):
            decoder.feed(data)
            for _ in decoder.messages():
                count += 1
            if count >= frames + 1:  # the hello too
                done.set()

    async def send(port: int) -> float:
        payload = b"".join(append_frame(i) for i in range(BATCH))
        stream = await trio.open_tcp_stream(HOST, port)
        start = time.perf_counter()
        await stream.send_all(encode_frame({"type": "hello", "from": "a", "to": "b"}))
        for _ in range(frames // BATCH):
            await stream.send_all(payload)
        await done.wait()
        elapsed = time.perf_counter() - start
        await stream.aclose()
        return frames // BATCH * BATCH / elapsed

    frames = frames // BATCH * BATCH
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, receive, 0)
        port = listeners[0].socket.getsockname()[1]
        if via_relay:
            rate = await with_relays(port, 1, lambda peers: send(port_of(peers["a"]["b"])))
        else:
            rate = await send(port)
        nursery.cancel_scope.cancel()
    return rate


# -- 2. ping-pong ---------------------------------------------------------------------------

async def ping_pong(rounds: int, via_relay: bool) -> float:
    """Median seconds of a request over a->b and its answer over b->a."""
    answers: trio.MemorySendChannel[int]
    answers, answered = trio.open_memory_channel[int](1)
    to_a: list[trio.SocketStream] = []

    async def b_side(stream: trio.SocketStream) -> None:  # b receives requests
        decoder = FrameDecoder()
        while data := await stream.receive_some(65536):
            decoder.feed(data)
            for message in decoder.messages():
                if message["type"] == "ping":
                    await to_a[0].send_all(encode_frame({"type": "pong", "n": message["n"]}))

    async def a_side(stream: trio.SocketStream) -> None:  # a receives answers
        decoder = FrameDecoder()
        while data := await stream.receive_some(65536):
            decoder.feed(data)
            for message in decoder.messages():
                if message["type"] == "pong":
                    await answers.send(message["n"])

    async def measure(a_to_b: int, b_to_a: int) -> float:
        ab = await trio.open_tcp_stream(HOST, a_to_b)
        to_a.append(await trio.open_tcp_stream(HOST, b_to_a))
        await ab.send_all(encode_frame({"type": "hello", "from": "a", "to": "b"}))
        await to_a[0].send_all(encode_frame({"type": "hello", "from": "b", "to": "a"}))
        times = []
        for n in range(rounds):
            start = time.perf_counter()
            await ab.send_all(encode_frame({"type": "ping", "n": n}))
            assert await answered.receive() == n
            times.append(time.perf_counter() - start)
        await ab.aclose()
        await to_a[0].aclose()
        return statistics.median(times)

    async with trio.open_nursery() as nursery:
        b_port = (await nursery.start(trio.serve_tcp, b_side, 0))[0].socket.getsockname()[1]
        a_port = (await nursery.start(trio.serve_tcp, a_side, 0))[0].socket.getsockname()[1]
        if via_relay:
            median = await with_relays(b_port, a_port, lambda peers: measure(
                port_of(peers["a"]["b"]), port_of(peers["b"]["a"])))
        else:
            median = await measure(b_port, a_port)
        nursery.cancel_scope.cancel()
    return median


# -- 3. a real cluster ------------------------------------------------------------------------

async def cluster_rate(seconds: float, via_relay: bool, clients: int = 16,
                       trace: bool = False) -> float:
    from raft_impl.client import open_client
    from raft_impl.localcluster import local_cluster

    with tempfile.TemporaryDirectory(prefix="sb-proxybench-") as tmp:
        async with trio.open_nursery() as nursery, \
                local_cluster(3, Path(tmp), start=False) as cluster:
            if via_relay:
                proxy = ProxyNetwork(seed=1, trace_path=Path(tmp) / "messages.jsonl"
                                     if trace else None)
                peers = await proxy.start(nursery, {
                    node.id: NodeAddress(node.host, node.peer_port, node.client_port)
                    for node in cluster.nodes.values()})
                direct_command = cluster.command

                def command(node: Any) -> list[str]:
                    argv = direct_command(node)
                    for i, arg in enumerate(argv[:-1]):
                        if arg == "--peer":
                            peer = argv[i + 1].split("=", 1)[0]
                            argv[i + 1] = f"{peer}={peers[node.id][peer]}"
                    return argv

                cluster.command = command  # type: ignore[method-assign]
            async with trio.open_nursery() as starters:
                for node_id in cluster.nodes:
                    starters.start_soon(cluster.start, node_id)
            leader = cluster.nodes[await cluster.wait_leader(within=10.0)]
            committed = 0
            measure_from = trio.current_time() + 1.0  # warm-up second
            stop_at = measure_from + seconds

            async def writer(worker: int) -> None:
                nonlocal committed
                rng = random.Random(worker)
                async with open_client(leader.host, leader.client_port) as client:
                    seq = 0
                    while trio.current_time() < stop_at:
                        seq += 1
                        answer = await client.request(
                            {"client": f"w{worker}", "seq": seq, "op": "write",
                             "key": f"k{rng.randrange(100)}", "value": seq}, within=5.0)
                        if answer.get("ok") and measure_from <= trio.current_time() < stop_at:
                            committed += 1

            async with trio.open_nursery() as writers:
                for worker in range(clients):
                    writers.start_soon(writer, worker)
            nursery.cancel_scope.cancel()
    return committed / seconds


# -- main -------------------------------------------------------------------------------------

async def interleaved(rounds: int, measure) -> tuple[float, float]:
    """Median of direct and of proxy over rounds run ABAB, so load from other processes
    on a shared machine hits both sides alike."""
    direct, relayed = [], []
    for _ in range(rounds):
        direct.append(await measure(False))
        relayed.append(await measure(True))
    return statistics.median(direct), statistics.median(relayed)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"rounds": args.rounds}
    direct, relayed = await interleaved(args.rounds, lambda via: stream_rate(args.frames, via))
    frames = args.frames // BATCH * BATCH
    results["stream_frames_per_s"] = {
        "direct": round(direct), "proxy": round(relayed), "ratio": round(relayed / direct, 3),
        "relay_cpu_us_per_frame": round(statistics.median(RELAY_CPU) / frames * 1e6, 2)}
    RELAY_CPU.clear()
    direct, relayed = await interleaved(args.rounds, lambda via: ping_pong(args.pings, via))
    results["ping_pong_median_us"] = {
        "direct": round(direct * 1e6, 1), "proxy": round(relayed * 1e6, 1),
        "added_us": round((relayed - direct) * 1e6, 1),
        "relay_cpu_us_per_hop": round(statistics.median(RELAY_CPU) / (2 * args.pings) * 1e6, 2)}
    if args.cluster_seconds > 0:
        direct, relayed = await interleaved(
            args.rounds, lambda via: cluster_rate(args.cluster_seconds, via))
        results["cluster_writes_per_s"] = {"direct": round(direct, 1),
                                           "proxy": round(relayed, 1),
                                           "ratio": round(relayed / direct, 3)}
        if args.trace:
            direct, traced = await interleaved(
                args.rounds, lambda via: cluster_rate(args.cluster_seconds, via, trace=via))
            results["cluster_traced_writes_per_s"] = {"direct": round(direct, 1),
                                                      "proxy": round(traced, 1),
                                                      "ratio": round(traced / direct, 3)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--pings", type=int, default=3000)
    parser.add_argument("--cluster-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="direct/proxy rounds, interleaved; medians are reported")
    parser.add_argument("--trace", action="store_true",
                        help="also measure the cluster with the message trace on")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-relays", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_relays:
        trio.run(serve_relays, *args.serve_relays)
        return 0
    results = trio.run(run, args)
    if args.json:
        print(json.dumps(results))
        return 0
    stream = results["stream_frames_per_s"]
    print(f"stream     direct {stream['direct']:>10,} frames/s   proxy {stream['proxy']:>10,} "
          f"frames/s   ratio {stream['ratio']:.2f}   relay CPU "
          f"{stream['relay_cpu_us_per_frame']:.1f} us/frame")
    ping = results["ping_pong_median_us"]
    print(f"ping-pong  direct {ping['direct']:>8.1f} us median   proxy {ping['proxy']:>8.1f} us "
          f"median   (+{ping['added_us']:.1f} us for two relays; relay CPU "
          f"{ping['relay_cpu_us_per_hop']:.1f} us/hop)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other load skews "
          "the wall-clock figures; the CPU figures much less)")
    if "cluster_writes_per_s" in results:
        cluster = results["cluster_writes_per_s"]
        verdict = "meets" if cluster["ratio"] >= 0.8 else "MISSES"
        print(f"cluster    direct {cluster['direct']:>8.1f} writes/s   proxy "
              f"{cluster['proxy']:>8.1f} writes/s   ratio {cluster['ratio']:.2f} "
              f"({verdict} the <= 20 % cost target)")
    if "cluster_traced_writes_per_s" in results:
        traced = results["cluster_traced_writes_per_s"]
        print(f"traced     direct {traced['direct']:>8.1f} writes/s   proxy "
              f"{traced['proxy']:>8.1f} writes/s   ratio {traced['ratio']:.2f} "
              "(proxy writing messages.jsonl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
