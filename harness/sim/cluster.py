"""The simulated cluster and one simulated run, start to verdict.

:class:`SimCluster` wires N :class:`~harness.sim.node.SimNode` instances, the
simulated network, the clients and the nemesis onto one event loop, and
writes the same artifacts a real run writes into a store run directory:
``test.json``, ``history.jsonl`` (through ``checker.history.HistoryWriter``),
``observations.jsonl`` (the log-order checker's input), optionally
``messages.jsonl``, ``nodes/<id>/final-log.json``; then the checkers' ``results.json``
and, when asked, ``report.html``.

Phases, as in a real run: start the nodes and wait for a leader; run the
workload and the schedule for ``time_limit`` seconds; make everything whole
(the schedule's final heal); a quiet period; the final read of every key
through the leader; a last observation of every node, marked ``healed``.

Randomness: one ``random.Random`` per concern (network, disks/cores, clients),
all derived from the test's seed, so the same test gives the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import IO, Any

import trio

from checker.history import HistoryWriter
from harness.run import store
from harness.run.workload import op_keys
from harness.sim.clients import SimClients
from harness.sim.config import SimTest
from harness.sim.control import SimControl, VirtualClock, deterministic_scheduling
from harness.sim.loop import BudgetExceeded, EventLoop
from harness.sim.network import SimNetwork
from harness.sim.node import Reply, SimNode
from nemesis.executor import HealError, NemesisState, run_schedule
from nemesis.faults import validate_schedule
from nemesis.schedule import final_heal
from splitbrain_common import files

#: Seconds between two observations (status + log) of every node, as the real collector.
OBSERVE_INTERVAL = 1.0
#: Longest wait for the first leader before the workload starts anyway.
ELECTION_WAIT = 5.0
#: After the final reads: time for followers to apply the last commits.
SETTLE = 0.5
#: Longest wait for every node to reach the same applied index before the final digests.
CONVERGENCE_WAIT = 5.0
#: Virtual seconds the executor's final heal may take (it takes none: nothing waits).
HEAL_TIMEOUT = 60.0


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


class SimCluster:
    def __init__(self, test: SimTest, run_dir: Path) -> None:
        self.test = test
        self.config = test.cluster
        self.workload = test.workload
        self.run_dir = Path(run_dir)
        self.loop = EventLoop(test.cluster.max_work)
        seed = test.seed
        self.rng = random.Random(f"{seed}/nodes")
        self.client_rng = random.Random(f"{seed}/clients")
        self.node_ids = self.config.node_ids
        self.schedule = validate_schedule(list(test.schedule), self.node_ids)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._history = HistoryWriter(self.run_dir / files.HISTORY)
        self._observations: IO[str] = open(  # noqa: SIM115 - closed in close()
            self.run_dir / files.OBSERVATIONS, "w", encoding="utf-8")
        self._messages: IO[str] | None = None
        trace = None
        if self.config.trace_messages:
            self._messages = open(  # noqa: SIM115 - closed in close()
                self.run_dir / files.MESSAGES, "w", encoding="utf-8")
            trace = self._trace_message
        self.network = SimNetwork(self.loop, random.Random(f"{seed}/net"), self.node_ids,
                                  self._deliver, self.config.latency, trace)
        raft_config = self.config.raft_config()
        self.nodes: dict[str, SimNode] = {
            node_id: SimNode(self, node_id, [p for p in self.node_ids if p != node_id],
                             raft_config)
            for node_id in self.node_ids
        }
        self.clients = SimClients(self, test.workload.operations(seed))
        self.keys: dict[str, None] = {}
        self._observed_commit: dict[str, int] = {}
        self._leading: set[str] = set()
        self._leading_since = 0.0
        self.split_brain_s = 0.0
        self.stopped: str | None = None
        self.leader_changes = 0
        self.workload_start = 0.0
        #: What the nemesis executor drives (nemesis.api.ClusterControl).
        self.control = SimControl(self)
        #: Faults the executor could not apply (as a real run's ``fault_errors``).
        self.fault_errors: list[str] = []

    # -- wiring --------------------------------------------------------------------------

    def _deliver(self, node_id: str, message: Any) -> None:
        self.nodes[node_id].receive(message)

    def fsync_latency(self) -> float:
        lo, hi = self.config.fsync_latency
        return lo + (hi - lo) * self.rng.random()

    def _client_latency(self) -> float:
        lo, hi = self.config.client_latency
        return lo + (hi - lo) * self.client_rng.random()

    def client_send(self, node_id: str, request: dict[str, Any], reply: Reply,
                    refused: Any) -> None:
        """A client request travels to the node; a down node refuses the connection."""
        def arrive() -> None:
            if not self.nodes[node_id].request(request, reply):
                self.loop.call_later(self._client_latency(), refused)
        self.loop.call_later(self._client_latency(), arrive)

    def client_reply(self, reply: Reply, answer: dict[str, Any]) -> None:
        self.loop.call_later(self._client_latency(), reply, answer)

    def next_node(self, node_id: str) -> str:
        ids = self.node_ids
        return ids[(ids.index(node_id) + 1) % len(ids)]

    def leader(self) -> str | None:
        """The up node that believes it leads in the highest term (what a status poll finds)."""
        best: tuple[int, str] | None = None
        for node_id, node in self.nodes.items():
            core = node.core
            if node.up and not node.paused and core is not None and core.role == "leader":
                candidate = (core.term, node_id)
                if best is None or candidate > best:
                    best = candidate
        return None if best is None else best[1]

    # -- recording -----------------------------------------------------------------------

    def record(self, event: dict[str, Any]) -> None:
        if event.get("type") == "invoke":
            for key in op_keys(event):
                self.keys.setdefault(key, None)
        self._history.write({"time": _ns(self.loop.now), **event})

    def record_nemesis(self, f: str, value: Any) -> None:
        self._history.write({"time": _ns(self.loop.now), "process": "nemesis", "type": "info",
                             "f": f, "value": value})

    def _leadership(self, node_id: str, leads: bool) -> None:
        """Keep the time during which two or more nodes believed they led (split brain):
        a score the fuzzer steers toward, since many bugs only show then."""
        was = len(self._leading)
        if leads:
            self._leading.add(node_id)
        else:
            self._leading.discard(node_id)
        now = self.loop.now
        if was >= 2:
            self.split_brain_s += now - self._leading_since
        self._leading_since = now
        if leads and was < len(self._leading):
            self.leader_changes += 1
        if leads:
            self.control.notify("new-leader", node_id)

    def observe(self, node_id: str | None, kind: str, **fields: Any) -> None:
        if node_id is not None:
            if kind == "role" and fields.get("role") != "leader" and node_id in self._leading:
                self.control.notify("step-down", node_id)
            if kind == "role":
                self._leadership(node_id, fields.get("role") == "leader")
                if fields.get("role") == "candidate":
                    self.control.notify("election", node_id)
            elif kind in ("crash", "lose-unfsynced"):
                self._leadership(node_id, False)
        record: dict[str, Any] = {"time": _ns(self.loop.now)}
        if node_id is not None:
            record["node"] = node_id
        record["kind"] = kind
        record.update(fields)
        self._observations.write(json.dumps(record, separators=(",", ":")) + "\n")

    def _trace_message(self, record: dict[str, Any]) -> None:
        assert self._messages is not None
        self._messages.write(json.dumps({"time": _ns(self.loop.now), **record},
                                        separators=(",", ":")) + "\n")

    def observe_nodes(self, full_log: bool = True) -> None:
        """What the real collector asks every reachable node: status and log dump.

        Periodic dumps are incremental (``from`` just after the commit index the
        previous dump of that node showed), so each committed entry is observed at
        least once while it is fresh; the final dumps are whole logs, which the
        checker compares against everything observed before.
        """
        for node_id, node in self.nodes.items():
            if not node.up or node.paused:
                continue  # a dead or stopped node does not answer the admin API
            status = node.status()  # the fields the real collector keeps
            self.observe(node_id, "status", role=status["role"], term=status["term"],
                         leader=status["leader"], commit=status["commit"],
                         applied=status["applied"], last_index=status["last_index"])
            self.observe_log(node_id, full_log)

    def observe_log(self, node_id: str, full_log: bool = False) -> None:
        """One log dump of a node: whole, or from just after the last commit seen."""
        node = self.nodes[node_id]
        if full_log:
            dump = node.log_dump()
        else:
            dump = node.log_dump(self._observed_commit.get(node_id, 0) + 1)
        self._observed_commit[node_id] = dump["commit"]
        self.observe(node_id, "log", **dump)

    def _observe_periodically(self) -> None:
        self.observe_nodes(full_log=False)
        self.loop.call_later(OBSERVE_INTERVAL, self._observe_periodically)

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        """The whole run; a spent work budget ends it early (``stopped`` says why)."""
        try:
            self._run()
        except BudgetExceeded as exc:
            self.stopped = str(exc)
            self.record_nemesis("stop", {"reason": self.stopped})
            self.finish_observations(converged=False)

    def _run(self) -> None:
        loop = self.loop
        for node in self.nodes.values():
            node.start()
        while self.leader() is None and loop.now < ELECTION_WAIT:
            loop.run_until(loop.now + 0.05)
        start = self.workload_start = loop.now
        limit = self.workload.time_limit
        loop.call_at(start, self._observe_periodically)
        loop.call_at(start, self.clients.start)
        loop.call_at(start + limit, self.clients.stop)
        self._nemesis_phase(limit)
        loop.run_until(start + limit + self.workload.quiet)
        self._drain_clients()
        self.clients.final_reads(list(self.keys), self.workload.final_read_timeout)
        self._drain_clients()
        loop.run_until(loop.now + SETTLE)
        self._await_convergence(CONVERGENCE_WAIT)
        self.finish_observations()

    def _nemesis_phase(self, limit: float) -> None:
        """The schedule, through the real runs' executor on virtual time (harness.sim.control).

        As the simulator always did, entries past the time limit happen at it, and the
        schedule ends with the final heal at the limit (``final_heal``); then the
        executor's own ``heal_all`` runs, as in a real run. Triggers still waiting at
        the end are skipped by the executor.
        """
        entries = [{**entry, "at": min(entry["at"], limit)} for entry in self.schedule]
        entries += final_heal(limit)
        clock = VirtualClock(self.loop)

        def now_ns() -> int:
            return _ns(self.loop.now)

        async def phase() -> None:
            state = NemesisState()
            with trio.CancelScope() as scope:
                clock.scope = scope
                # A deadline always, so the clock never runs the simulation without end.
                # A HealError is recorded in the history (heal-all ``errors``) already.
                with trio.move_on_after(limit + HEAL_TIMEOUT + 3600.0), \
                        contextlib.suppress(HealError):
                    await run_schedule(entries, self.control, self._history.write, now_ns,
                                       rng=random.Random(f"{self.test.seed}/nemesis"),
                                       heal_timeout=HEAL_TIMEOUT, state=state)
            self.fault_errors = list(state.errors)

        with deterministic_scheduling(f"{self.test.seed}/trio"):
            trio.run(phase, clock=clock)
        if clock.stopped is not None:
            raise clock.stopped

    def _await_convergence(self, within: float) -> bool:
        """Wait (as the real run does) until every node has applied the same index, so
        their digests are comparable; give up after ``within`` simulated seconds."""
        loop = self.loop
        deadline = loop.now + within
        while True:
            nodes = self.nodes.values()
            applied = {node.kv.applied for node in nodes if node.up and node.kv is not None}
            if all(node.up for node in nodes) and len(applied) == 1:
                return True
            if loop.now >= deadline:
                return False
            loop.run_until(loop.now + 0.1)

    def _drain_clients(self) -> None:
        loop = self.loop
        step = self.workload.op_timeout / 4
        while self.clients.busy:
            loop.run_until(loop.now + step)

    def finish_observations(self, converged: bool = True) -> None:
        if converged:  # a stopped run never healed: no digest agreement to demand
            self.observe(None, "healed")
        self.observe_nodes()
        for node_id, node in self.nodes.items():
            if node.up and not node.paused:
                self.observe(node_id, "digest", **node.digest())
        for node_id, node in self.nodes.items():
            # As a real run: the ``log`` admin answer of every node that answers it.
            directory = self.run_dir / files.NODES / node_id
            directory.mkdir(parents=True, exist_ok=True)
            if node.up and not node.paused and node.host is not None:
                store.write_json(directory / files.NODE_FINAL_LOG, node.host.log_dump())

    def close(self) -> None:
        self._history.close()
        self._observations.close()
        if self._messages is not None:
            self._messages.close()
