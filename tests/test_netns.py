"""The netns backend: real namespaces, a bridge and iptables (root only, else skipped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psutil
import pytest
import trio

from harness.net import netns
from harness.net.base import NodeAddress
from harness.net.netns import NetnsError, NetnsNetwork, NetnsUnavailable, cleanup_stale
from splitbrain_common.errors import UserError

ROOT_AND_TOOLS = (
    sys.platform.startswith("linux")
    and os.geteuid() == 0
    and all(shutil.which(tool) for tool in netns.REQUIRED_TOOLS)
)
needs_root = pytest.mark.skipif(not ROOT_AND_TOOLS,
                                reason="netns tests need root, ip, iptables and iptables-restore")

# A peer that accepts connections and says so; run inside a node's namespace.
LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    connection, _ = server.accept()
    connection.sendall(b"hi")
    connection.close()
"""
# Exit 0 when the address answers "hi" within the timeout, 1 otherwise.
DIALER = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
        s.settimeout(float(sys.argv[3]))
        sys.exit(0 if s.recv(2) == b"hi" else 1)
except OSError:
    sys.exit(1)
"""
NODES = {name: NodeAddress("127.0.0.1", 7000 + i, 8000 + i)
         for i, name in enumerate(["a", "b", "c"], start=1)}


def our_names(network: NetnsNetwork) -> set[str]:
    """Namespaces and links of this network that exist right now."""
    found = set()
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if name.startswith(network.bridge):
            found.add(name)
    for name in psutil.net_if_addrs():
        if name.startswith(network.bridge):
            found.add(name)
    return found


async def reaches(network: NetnsNetwork, src: str, address: str, patience: float = 0.5) -> bool:
    host, port = address.rsplit(":", 1)
    argv = network.wrap_command(src, [sys.executable, "-I", "-S", "-c", DIALER, host, port,
                                      str(patience)])
    return (await trio.run_process(argv, check=False)).returncode == 0


def test_refuses_clearly_when_not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetnsUnavailable, match="must run as root") as info:
        netns.check_available()
    assert isinstance(info.value, UserError)  # the CLI prints it without a traceback


def test_refuses_clearly_when_tools_are_missing(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "iptables" else "/x")
    with pytest.raises(NetnsUnavailable, match="needs iptables"):
        netns.check_available()


def test_run_ids_carry_the_owner_pid_and_fit_interface_names():
    run_id = netns.new_run_id()
    assert netns.owner_pid(run_id) == os.getpid()
    assert len(f"sb-{run_id}-99p") <= 15  # IFNAMSIZ - 1


@needs_root
async def test_namespaces_partition_loss_and_cleanup() -> None:
    network = NetnsNetwork()
    async with trio.open_nursery() as nursery:
        peers = await network.start(nursery, NODES)
        assert peers["a"]["b"] == f"{network.ip('b')}:{NODES['b'].peer_port}"
        listen = network.listen_address("b")
        assert listen.host == network.ip("b") and listen.peer_port == NODES["b"].peer_port
        assert network.ip("a").startswith("198.18.") and network.bridge_ip.endswith(".1")
        listener = await nursery.start(_listen, network, "b")
        # the harness (host namespace) reaches the node over the bridge
        stream = await trio.open_tcp_stream(listen.host, listen.peer_port)
        assert await stream.receive_some(2) == b"hi"
        await stream.aclose()
        assert await reaches(network, "a", peers["a"]["b"])

        await network.partition({"b": {"a"}})
        assert not await reaches(network, "a", peers["a"]["b"])
        assert await reaches(network, "c", peers["c"]["b"])
        await network.heal()
        assert await reaches(network, "a", peers["a"]["b"])

        await network.set_loss(1.0, links=[("c", "b")])
        assert not await reaches(network, "c", peers["c"]["b"])
        assert network.counters() == {"c->b": {"loss_ppm": 1_000_000}}
        await network.reset_faults()
        assert await reaches(network, "c", peers["c"]["b"])

        try:
            await network.set_delay(0.2, 0.0, links=[("a", "b")])
        except NetnsError as exc:  # kernels without sch_netem: must say so
            assert "netem" in str(exc)
        else:
            before = trio.current_time()
            assert await reaches(network, "a", peers["a"]["b"], patience=2.0)
            assert trio.current_time() - before >= 0.2
            await network.reset_faults()

        assert our_names(network)
        await network.aclose()
        assert not our_names(network)
        assert not psutil.pid_exists(listener) or \
            psutil.Process(listener).status() == psutil.STATUS_ZOMBIE


async def _listen(network: NetnsNetwork, node: str,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    address = network.listen_address(node)
    argv = network.wrap_command(node, [sys.executable, "-I", "-S", "-c", LISTENER,
                                       address.host, str(address.peer_port)])
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
    try:
        with trio.fail_after(10):
            assert await process.stdout.receive_some(6) == b"ready\n"
        task_status.started(process.pid)
        await process.wait()  # ends when the network's cleanup kills it
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await process.stdout.aclose()


@needs_root
async def test_cancellation_removes_everything() -> None:
    network = NetnsNetwork()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await network.start(nursery, {"a": NODES["a"], "b": NODES["b"]})
            assert len(our_names(network)) == 5  # 2 namespaces, 2 veths, 1 bridge
            scope.cancel()
    assert not our_names(network)


@needs_root
async def test_cleanup_stale_removes_only_crashed_runs() -> None:
    dead_pid = next(pid for pid in range(4_000_000, 4_100_000) if not psutil.pid_exists(pid))
    dead = f"sb-{netns._base36(dead_pid)}00"
    alive = f"sb-{netns.new_run_id()}"
    try:
        for name in (f"{dead}-x", f"{alive}-x"):
            await trio.run_process(["ip", "netns", "add", name])
        await trio.run_process(["ip", "link", "add", dead, "type", "bridge"])
        removed = await cleanup_stale()
        assert f"{dead}-x" in removed and dead in removed
        assert f"{alive}-x" not in removed
        assert await trio.Path(f"/run/netns/{alive}-x").exists()
        assert not await trio.Path(f"/run/netns/{dead}-x").exists()
    finally:
        for name in (f"{dead}-x", f"{alive}-x"):
            await trio.run_process(["ip", "netns", "del", name], check=False)
        await trio.run_process(["ip", "link", "del", dead], check=False, capture_stderr=True)


@needs_root
async def test_starting_a_network_removes_a_crashed_runs_namespaces() -> None:
    dead_pid = next(pid for pid in range(4_000_000, 4_100_000) if not psutil.pid_exists(pid))
    dead = f"sb-{netns._base36(dead_pid)}00-x"
    network = NetnsNetwork()
    try:
        await trio.run_process(["ip", "netns", "add", dead])
        async with trio.open_nursery() as nursery:
            await network.start(nursery, {"a": NODES["a"]})
            assert dead in network.stale_removed
            assert not await trio.Path(f"/run/netns/{dead}").exists()
            await network.aclose()
    finally:
        await trio.run_process(["ip", "netns", "del", dead], check=False, capture_stderr=True)


async def test_netem_commands_per_link_without_touching_the_system(monkeypatch):
    """The tc plan for delay/duplicate/reorder (kernels here may lack sch_netem)."""
    commands: list[list[str]] = []

    async def fake_run(argv, *, check=True, stdin=b""):
        commands.append(argv)
        return ""

    monkeypatch.setattr(netns, "_run", fake_run)
    network = NetnsNetwork()
    network._nodes = dict(NODES)
    network._ips = {"a": "198.18.0.10", "b": "198.18.0.11", "c": "198.18.0.12"}
    network._namespaces = {node: f"sb-x-{node}" for node in NODES}
    network._netem_available = True

    await network.set_delay(0.05, 0.01, links=[("a", "b")])
    await network.set_reorder(0.25, links=[("a", "c")])
    tc = [argv[4:] for argv in commands if argv[:4] == ["ip", "netns", "exec", "sb-x-a"]]
    assert tc[-6:] == [  # the rebuild after the second change: one netem band per peer
        ["tc", "qdisc", "del", "dev", "eth0", "root"],
        ["tc", "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "prio", "bands", "3",
         "priomap", *["0"] * 16],
        ["tc", "qdisc", "add", "dev", "eth0", "parent", "1:2", "netem",
         "delay", "50.000ms", "10.000ms"],
        ["tc", "filter", "add", "dev", "eth0", "parent", "1:0", "protocol", "ip", "prio", "1",
         "u32", "match", "ip", "dst", "198.18.0.11/32", "flowid", "1:2"],
        ["tc", "qdisc", "add", "dev", "eth0", "parent", "1:3", "netem",
         "delay", "10.000ms", "0.000ms", "reorder", "25.0000%"],
        ["tc", "filter", "add", "dev", "eth0", "parent", "1:0", "protocol", "ip", "prio", "1",
         "u32", "match", "ip", "dst", "198.18.0.12/32", "flowid", "1:3"],
    ]
    commands.clear()
    await network.reset_faults()
    deleted = {argv[3] for argv in commands if argv[-3:] == ["dev", "eth0", "root"]}
    assert deleted == {"sb-x-a", "sb-x-b", "sb-x-c"}
    assert not any("netem" in argv for argv in commands)
    with pytest.raises(ValueError, match="no link a->zz"):
        await network.set_duplicate(0.1, links=[("a", "zz")])
