"""The ``netns`` network backend (Linux, root): one network namespace per node.

Works for any system under test, because it faults packets, not frames. Each
node runs inside its own namespace ``sb-<runid>-<node>`` whose ``eth0`` is one
end of a veth pair; the other ends hang on a bridge ``sb-<runid>`` in the host
namespace. The harness launches nodes through ``wrap_command`` (``ip netns exec``,
which execs, so the node keeps its PID for SIGKILL/SIGSTOP) and talks to their
client ports from the host through the bridge.

Addresses: ``198.18.X.0/24``, from the RFC 2544 block 198.18.0.0/15 that is
reserved for network benchmarking and never routed on real networks, so it will
not clash with the host's own networks. The bridge gets ``.1`` (the harness
side, never partitioned: it is the control network, as in Jepsen), node *i*
gets ``.(10 + i)``. ``X`` is the first /24 no other interface uses, chosen under
a lock file so parallel runs do not pick the same one.

Faults:

* partitions are iptables ``DROP`` rules in the receiving node's namespace
  (chain ``SB-GRUDGE``, replaced atomically with ``iptables-restore -n``).
  TCP turns a one-way cut into a stalled connection both ways (ACKs cannot
  return); that is the nature of packet partitions.
* loss is iptables ``statistic --mode random`` DROP in the sender's ``OUTPUT``
  (works without tc). TCP retransmits, so packet loss shows as latency spikes
  rather than lost messages.
* delay, duplication and reordering need ``tc netem`` (kernel module
  ``sch_netem``); when the kernel lacks it these faults raise ``NetnsError``
  with a message saying so. Reordering without a delay uses a 10 ms base delay,
  because netem only reorders by letting some packets skip a delay.

Cleanup: namespaces, veths, the bridge and any host firewall rule are removed
when the run ends, also on error and cancellation (shielded). A crash that
skips even that (SIGKILL of the harness) leaves names carrying the owner's
PID; ``cleanup_stale()`` removes those whose owner is gone, and every netns
network runs it before it creates its own, so a crashed run's leftovers
(addresses, firewall rules) never leak into the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import trio

from harness.net.base import Grudge, Link, NodeAddress, link_name
from splitbrain_common.errors import UserError

PREFIX = "sb-"
SUPERNET = ipaddress.ip_network("198.18.0.0/15")
GRUDGE_CHAIN = "SB-GRUDGE"
LOSS_CHAIN = "SB-LOSS"
LOCK_PATH = Path("/run/splitbrain-netns.lock")
REQUIRED_TOOLS = ("ip", "iptables", "iptables-restore")
REORDER_BASE_DELAY = 0.010
_NAME = re.compile(r"^[A-Za-z0-9_.]{1,32}$")


#: Why netns refuses one-way cuts (``harness.net.unsupported_faults``).
ONE_WAY_REFUSAL = ("--net netns cuts packets, and a TCP connection needs both directions, "
                   "so a one-way cut would stop both; --net proxy cuts messages one way")
#: Faults that need ``tc netem``.
NETEM_FAULTS = ("delay", "duplicate", "reorder")


@functools.cache
def netem_available() -> bool:
    """Whether ``tc`` can add a netem qdisc here: tried in a throwaway network
    namespace (``unshare --net``, gone when the command exits), so nothing is left
    behind. Needs root, as the netns backend does anyway."""
    if shutil.which("tc") is None or shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(
            ["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
             "delay", "1ms"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


class NetnsUnavailable(UserError):
    """The netns backend cannot run here (not root, not Linux, tools missing)."""


class NetnsError(RuntimeError):
    """A namespace, link or firewall command failed; the message carries its stderr."""


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if number == 0:
            return text


def new_run_id(rng: random.Random | None = None) -> str:
    """Owner PID in base 36 plus two random hex digits: short (interface names are
    limited to 15 bytes) and enough to tell a live run from a crashed one."""
    suffix = (rng or random.SystemRandom()).randrange(256)
    return f"{_base36(os.getpid())}{suffix:02x}"


def owner_pid(run_id: str) -> int | None:
    try:
        return int(run_id[:-2], 36)
    except ValueError:
        return None


def check_available() -> None:
    """Raise NetnsUnavailable with the reason when this machine cannot run the backend."""
    if not os.uname().sysname == "Linux":
        raise NetnsUnavailable("--net netns needs Linux network namespaces; use --net proxy")
    if os.geteuid() != 0:
        raise NetnsUnavailable(
            "--net netns must run as root (it creates network namespaces, a bridge and "
            "firewall rules); run as root or use the default --net proxy"
        )
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise NetnsUnavailable(
            f"--net netns needs {', '.join(missing)} (Debian: apt install iproute2 iptables); "
            "or use --net proxy"
        )


async def _run(argv: list[str], *, check: bool = True, stdin: bytes = b"") -> str:
    result = await trio.run_process(argv, stdin=stdin, capture_stdout=True,
                                    capture_stderr=True, check=False)
    if check and result.returncode != 0:
        error = result.stderr.decode(errors="replace").strip()
        raise NetnsError(f"`{' '.join(argv)}` failed ({result.returncode}): {error}")
    return result.stdout.decode(errors="replace")


def _percent(p: float) -> str:
    return f"{p * 100:.4f}%"


@dataclass
class _Netem:
    delay_mean: float = 0.0
    delay_jitter: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.delay_mean or self.delay_jitter or self.duplicate or self.reorder)

    def arguments(self) -> list[str]:
        arguments = []
        mean = self.delay_mean or (REORDER_BASE_DELAY if self.reorder else 0.0)
        if mean or self.delay_jitter:
            arguments += ["delay", f"{mean * 1000:.3f}ms", f"{self.delay_jitter * 1000:.3f}ms"]
        if self.reorder:
            arguments += ["reorder", _percent(self.reorder)]
        if self.duplicate:
            arguments += ["duplicate", _percent(self.duplicate)]
        return arguments


class NetnsNetwork:
    """Namespaces on a bridge; partitions by iptables DROP (see module doc). Implements Network."""

    @staticmethod
    def unsupported_faults() -> dict[str, str]:
        """The faults this machine cannot make: delay, duplicate and reorder without tc
        netem, and one-way cuts (``"one-way"``: dropping A's packets at B also drops
        the ACKs and handshakes of B's connection to A, so TCP peers lose both
        directions). Asked before a run starts (see ``harness.net.unsupported_faults``),
        so a run never records a fault it could not make."""
        refused = {"one-way": ONE_WAY_REFUSAL}
        if not netem_available():
            refused.update(dict.fromkeys(NETEM_FAULTS, (
                "--net netns needs tc netem (kernel module sch_netem) for it, which this "
                "machine lacks; --net proxy has it (raft_impl), or leave it out")))
        return refused

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        if owner_pid(self.run_id) is None or not re.fullmatch(r"[0-9a-z]{3,8}", self.run_id):
            raise ValueError(f"run id {self.run_id!r} must be base-36 PID + 2 hex digits")
        self.bridge = f"{PREFIX}{self.run_id}"
        self._nodes: dict[str, NodeAddress] = {}
        self._ips: dict[str, str] = {}
        self._namespaces: dict[str, str] = {}
        self._veths: list[str] = []
        self._bridge_ip: str | None = None
        self._forward_rule: list[str] | None = None
        self._loss: dict[tuple[str, str], float] = {}
        self._netem: dict[tuple[str, str], _Netem] = {}
        self._netem_available: bool | None = None
        self._scope: trio.CancelScope | None = None
        #: Names of crashed runs' leftovers that starting this network removed.
        self.stale_removed: list[str] = []
        self._stopped = trio.Event()

    # -- names and addresses ---------------------------------------------------------------

    def namespace(self, node: str) -> str:
        return self._namespaces[node]

    def ip(self, node: str) -> str:
        return self._ips[node]

    @property
    def bridge_ip(self) -> str | None:
        return self._bridge_ip

    def listen_address(self, node: str) -> NodeAddress:
        address = self._nodes[node]
        return NodeAddress(self._ips[node], address.peer_port, address.client_port)

    def wrap_command(self, node: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self._namespaces[node], *argv]

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery,
                    nodes: Mapping[str, NodeAddress]) -> dict[str, dict[str, str]]:
        check_available()
        if self._scope is not None:
            raise RuntimeError("this NetnsNetwork was already started")
        bad = [node for node in nodes if not _NAME.match(node)]
        if bad:
            raise ValueError(f"node names {bad} cannot name namespaces (letters, digits, _ .)")
        if not 1 <= len(nodes) <= 200:
            raise ValueError("netns supports 1 to 200 nodes")
        return await nursery.start(self._run, dict(nodes))

    async def _run(self, nodes: dict[str, NodeAddress],
                   task_status: trio.TaskStatus[dict[str, dict[str, str]]]) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                self._nodes = nodes
                await self._create(nodes)
                peers = {
                    src: {dst: f"{self._ips[dst]}:{nodes[dst].peer_port}"
                          for dst in nodes if dst != src}
                    for src in nodes
                }
                task_status.started(peers)
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await self._destroy()
                self._stopped.set()

    async def aclose(self) -> None:
        if self._scope is None:
            return
        self._scope.cancel()
        await self._stopped.wait()

    async def _create(self, nodes: dict[str, NodeAddress]) -> None:
        self.stale_removed = await cleanup_stale()
        subnet = await self._claim_subnet()
        hosts = list(subnet.hosts())
        self._bridge_ip = str(hosts[0])
        for index, node in enumerate(nodes):
            self._ips[node] = str(hosts[9 + index])
        for index, node in enumerate(nodes):
            namespace = f"{PREFIX}{self.run_id}-{node}"
            host_end, node_end = f"{self.bridge}-{index}", f"{self.bridge}-{index}p"
            await _run(["ip", "netns", "add", namespace])
            self._namespaces[node] = namespace
            await _run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end])
            self._veths.append(host_end)
            host_commands = [
                f"link set {node_end} netns {namespace}",
                f"link set {host_end} master {self.bridge}",
                f"link set {host_end} up",
            ]
            node_commands = [
                f"link set {node_end} name eth0",
                f"addr add {self._ips[node]}/{subnet.prefixlen} dev eth0",
                "link set eth0 up",
                "link set lo up",
            ]
            await _run(["ip", "-batch", "-"], stdin="\n".join(host_commands).encode() + b"\n")
            await _run(["ip", "-n", namespace, "-batch", "-"],
                       stdin="\n".join(node_commands).encode() + b"\n")
            rules = (f"*filter\n:{GRUDGE_CHAIN} - [0:0]\n:{LOSS_CHAIN} - [0:0]\n"
                     f"-A INPUT -j {GRUDGE_CHAIN}\n-A OUTPUT -j {LOSS_CHAIN}\nCOMMIT\n")
            await self._iptables_restore(node, rules)
        await self._allow_bridged_forwarding()

    async def _claim_subnet(self) -> ipaddress.IPv4Network:
        """Create the bridge holding the first free /24 of SUPERNET, under a lock file."""
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(LOCK_PATH, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            with trio.fail_after(10):
                while True:
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await trio.sleep(0.05)  # another run is picking its subnet
            try:
                used = set()
                for match in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/",
                                         await _run(["ip", "-4", "-o", "addr", "show"])):
                    address = ipaddress.ip_address(match.group(1))
                    if address in SUPERNET:
                        used.add(ipaddress.ip_network(f"{address}/24", strict=False))
                free = [net for net in SUPERNET.subnets(new_prefix=24) if net not in used]
                if not free:
                    raise NetnsError(
                        f"every /24 of {SUPERNET} is in use by other live runs; "
                        "wait for some to end")
                subnet = free[0]
                await _run(["ip", "link", "add", self.bridge, "type", "bridge"])
                await _run(["ip", "-batch", "-"], stdin=(
                    f"addr add {next(subnet.hosts())}/24 dev {self.bridge}\n"
                    f"link set {self.bridge} up\n").encode())
                return subnet
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            os.close(lock)

    async def _allow_bridged_forwarding(self) -> None:
        """Bridged frames may pass the host's FORWARD chain (br_netfilter); if its policy
        drops, let our own bridge's traffic through with a rule removed at cleanup."""
        rules = await _run(["iptables", "-w", "-S", "FORWARD"], check=False)
        if "-P FORWARD ACCEPT" in rules:
            return
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-m", "comment",
                "--comment", self.bridge, "-j", "ACCEPT"]
        await _run(["iptables", "-w", "-I", *rule])
        self._forward_rule = rule

    async def _destroy(self) -> None:
        """Remove everything this run created; each step is tried even if others fail."""
        for namespace in self._namespaces.values():
            await _kill_namespace_processes(namespace)
            await _run(["ip", "netns", "del", namespace], check=False)
        for veth in self._veths:
            await _run(["ip", "link", "del", veth], check=False)
        await _run(["ip", "link", "del", self.bridge], check=False)
        if self._forward_rule is not None:
            await _run(["iptables", "-w", "-D", *self._forward_rule], check=False)
        self._namespaces.clear()
        self._veths.clear()

    # -- faults -----------------------------------------------------------------------------

    async def _iptables_restore(self, node: str, rules: str) -> None:
        await _run(["ip", "netns", "exec", self._namespaces[node], "iptables-restore", "-w",
                    "-n"], stdin=rules.encode())

    def _links(self, links: Iterable[Link] | None) -> list[tuple[str, str]]:
        if links is None:
            return [(src, dst) for src in self._nodes for dst in self._nodes if src != dst]
        selected = []
        for src, dst in links:
            if src not in self._nodes or dst not in self._nodes or src == dst:
                raise ValueError(f"no link {src}->{dst}; nodes are {sorted(self._nodes)}")
            selected.append((src, dst))
        return selected

    async def partition(self, grudge: Grudge) -> None:
        blocked: dict[str, list[str]] = {node: [] for node in self._nodes}
        for dst, srcs in grudge.items():
            for src in srcs:
                self._links([(src, dst)])
                blocked[dst].append(src)
        async with trio.open_nursery() as nursery:
            for dst, srcs in blocked.items():
                rules = "".join(f"-A {GRUDGE_CHAIN} -s {self._ips[src]}/32 -j DROP\n"
                                for src in sorted(srcs))
                nursery.start_soon(self._iptables_restore, dst,
                                   f"*filter\n:{GRUDGE_CHAIN} - [0:0]\n{rules}COMMIT\n")

    async def heal(self) -> None:
        await self.partition({})

    async def set_loss(self, p: float, links: Iterable[Link] | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {p}")
        for link in self._links(links):
            self._loss[link] = p
        await self._apply_loss()

    async def _apply_loss(self) -> None:
        async with trio.open_nursery() as nursery:
            for src in self._nodes:
                rules = "".join(
                    f"-A {LOSS_CHAIN} -d {self._ips[dst]}/32 -m statistic --mode random "
                    f"--probability {p:.6f} -j DROP\n"
                    for (s, dst), p in sorted(self._loss.items()) if s == src and p > 0)
                nursery.start_soon(self._iptables_restore, src,
                                   f"*filter\n:{LOSS_CHAIN} - [0:0]\n{rules}COMMIT\n")

    async def _check_netem(self) -> None:
        if self._netem_available is None:
            namespace = next(iter(self._namespaces.values()))
            probe = ["ip", "netns", "exec", namespace, "tc", "qdisc"]
            self._netem_available = shutil.which("tc") is not None and not (
                await trio.run_process([*probe, "add", "dev", "lo", "root", "netem"],
                                       capture_stdout=True, capture_stderr=True, check=False)
            ).returncode
            if self._netem_available:
                await _run([*probe, "del", "dev", "lo", "root"], check=False)
        if not self._netem_available:
            raise NetnsError(
                "delay, duplicate and reorder need tc netem (kernel module sch_netem), which "
                "this machine lacks; use --net proxy for message faults"
            )

    async def _set_netem(self, links: Iterable[Link] | None, **change: float) -> None:
        selected = self._links(links)
        if any(change.values()):
            await self._check_netem()
        for link in selected:
            params = self._netem.setdefault(link, _Netem())
            for key, value in change.items():
                setattr(params, key, value)
        if self._netem_available:
            async with trio.open_nursery() as nursery:
                for src in {src for src, _ in selected}:
                    nursery.start_soon(self._apply_netem, src)

    async def _apply_netem(self, src: str) -> None:
        """Rebuild src's egress qdisc: a prio root with one netem band per faulted peer."""
        tc = ["ip", "netns", "exec", self._namespaces[src], "tc"]
        await _run([*tc, "qdisc", "del", "dev", "eth0", "root"], check=False)
        faulted = [(dst, params) for (s, dst), params in sorted(self._netem.items())
                   if s == src and params.active]
        if not faulted:
            return
        bands = len(faulted) + 1
        await _run([*tc, "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "prio",
                    "bands", str(bands), "priomap", *["0"] * 16])
        for band, (dst, params) in enumerate(faulted, start=2):
            await _run([*tc, "qdisc", "add", "dev", "eth0", "parent", f"1:{band}",
                        "netem", *params.arguments()])
            await _run([*tc, "filter", "add", "dev", "eth0", "parent", "1:0", "protocol", "ip",
                        "prio", "1", "u32", "match", "ip", "dst", f"{self._ips[dst]}/32",
                        "flowid", f"1:{band}"])

    async def set_delay(self, mean_s: float, jitter_s: float,
                        links: Iterable[Link] | None = None) -> None:
        if mean_s < 0 or jitter_s < 0:
            raise ValueError(f"delay mean and jitter must be >= 0, got {mean_s}, {jitter_s}")
        await self._set_netem(links, delay_mean=mean_s, delay_jitter=jitter_s)

    async def set_duplicate(self, p: float, links: Iterable[Link] | None = None) -> None:
        await self._set_netem(links, duplicate=p)

    async def set_reorder(self, p: float, links: Iterable[Link] | None = None) -> None:
        await self._set_netem(links, reorder=p)

    async def reset_faults(self) -> None:
        self._loss.clear()
        await self._apply_loss()
        if any(params.active for params in self._netem.values()):
            self._netem.clear()
            async with trio.open_nursery() as nursery:
                for src in self._nodes:
                    nursery.start_soon(self._apply_netem, src)
        self._netem.clear()

    def counters(self) -> dict[str, dict[str, int]]:
        """Packet faults have no per-message counters; report the configured loss per link."""
        return {link_name(src, dst): {"loss_ppm": int(p * 1_000_000)}
                for (src, dst), p in self._loss.items() if p > 0}


async def _kill_namespace_processes(namespace: str) -> None:
    """SIGKILL what still runs in one of our namespaces (it would keep the namespace alive)."""
    output = await _run(["ip", "netns", "pids", namespace], check=False)
    for pid in (int(token) for token in output.split() if token.isdigit()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _run_id_of(name: str) -> str | None:
    parts = name.split("-")
    return parts[1] if len(parts) >= 2 and name.startswith(PREFIX) and parts[1] else None


async def cleanup_stale(*, force: bool = False) -> list[str]:
    """Remove ``sb-`` namespaces, links and FORWARD rules left by crashed runs.

    A name belongs to a crashed run when the PID encoded in its run id no longer
    exists (or ``force``). Live runs, including this process's, are left alone.
    Returns the names removed.
    """
    check_available()

    def stale(name: str) -> bool:
        run_id = _run_id_of(name)
        if run_id is None:
            return False
        pid = owner_pid(run_id)
        return force or pid is None or not psutil.pid_exists(pid)

    removed = []
    for line in (await _run(["ip", "netns", "list"])).splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX) and stale(name):
            await _kill_namespace_processes(name)
            await _run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    links = await _run(["ip", "-o", "link", "show"])
    names = [match.group(1) for match in re.finditer(r"^\d+: ([^:@\s]+)", links, re.MULTILINE)]
    # Veths first: deleting the bridge does not delete its ports.
    for name in sorted((n for n in names if n.startswith(PREFIX) and stale(n)),
                       key=lambda n: n.count("-"), reverse=True):
        await _run(["ip", "link", "del", name], check=False)
        removed.append(name)
    for rule in (await _run(["iptables", "-w", "-S", "FORWARD"], check=False)).splitlines():
        match = re.search(r'--comment "?(sb-[0-9a-z]+)"?', rule)
        if match and rule.startswith("-A ") and stale(match.group(1)):
            await _run(["iptables", "-w", "-D", *rule[3:].replace('"', "").split()], check=False)
            removed.append(f"FORWARD rule {match.group(1)}")
    return removed
