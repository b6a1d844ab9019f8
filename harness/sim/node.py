"""One simulated raft_impl node: a RaftCore, its state machine, its disk and clock.

This is the simulator's counterpart of ``raft_impl/node.py``: it feeds the core
ticks and messages at the node's (possibly skewed) clock, persists each Ready
on the simulated disk and waits a simulated fsync before it sends, applies
and acknowledges, answers client requests like the real client API
(``not-leader`` with a hint, proposals with ``(client, seq)``, the four read
modes), and takes snapshots to compact its log. The node-level planted bugs
are modelled here too: ``ack-before-fsync`` sends and acknowledges before the
fsync (which then happens lazily), ``forget-vote`` never persists the vote,
``no-dedup`` turns off the state machine's session table.

``ack-before-fsync`` follows the real node: its WAL is never fsynced (writes
reach the page cache only), and it sends and applies at once. A SIGKILL loses
nothing then; a machine crash (``lose-unfsynced``) loses everything the WAL
got since the start.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.sim import statemachine
from harness.sim.disk import SimDisk
from raft_impl.core import RaftConfig, RaftCore
from raft_impl.types import Snapshot, SnapshotMeta

if TYPE_CHECKING:
    from harness.sim.cluster import SimCluster

#: A reply callback: the answer map, or None when the connection was lost.
Reply = Callable[[dict[str, Any] | None], None]


class SimNode:
    def __init__(self, cluster: SimCluster, node_id: str, peers: list[str],
                 raft_config: RaftConfig) -> None:
        self.cluster = cluster
        self.loop = cluster.loop
        self.rng = cluster.rng
        self.id = node_id
        self.peers = peers
        self.raft_config = raft_config
        self.bugs = frozenset(raft_config.bugs)
        self.disk = SimDisk()
        self.up = False
        self.paused = False
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.kv: Any = None
        # The real node's clock: real + offset + (rate - 1) * (real - set_at), a bump
        # and a speed from the moment it was set, without a jump (plus a strobe).
        self.clock_offset = 0.0
        self.clock_rate = 1.0
        self.clock_set_at = 0.0
        self.strobe: tuple[float, float] | None = None  # (delta, period)
        self._busy = False  # a Ready is waiting for its fsync
        self._backlog: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._proposals: dict[int, tuple[dict[str, Any], Reply]] = {}
        self._reads: dict[int, tuple[dict[str, Any], Reply]] = {}
        self._ready_reads: list[tuple[int, int]] = []  # (index, ctx) waiting for apply
        self._inflight: list[Reply] = []
        self._next_ctx = 0
        self._snapshot_index = 0
        self._applied_term = 0
        self._duplicates: dict[int, bool] = {}

    # -- clock ---------------------------------------------------------------------------

    def clock(self) -> float:
        t = self.loop.now
        value = t + self.clock_offset + (self.clock_rate - 1.0) * (t - self.clock_set_at)
        if self.strobe is not None:
            delta, period = self.strobe
            if period > 0 and int(t / period) % 2:
                value += delta
        return value

    def set_clock(self, offset: float, rate: float) -> None:
        """The ``clock`` admin op of the real node."""
        self.clock_offset, self.clock_rate, self.clock_set_at = offset, rate, self.loop.now

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.up:
            return
        image = self.disk.image()
        self.kv = statemachine.new_state_machine(self.bugs)
        self._duplicates = {}
        applied = 0
        if image.snapshot is not None:
            self.kv.restore(image.snapshot.data)
            applied = image.snapshot.meta.index
            self._applied_term = image.snapshot.meta.term
        self._snapshot_index = applied
        self.core = RaftCore(
            self.id, self.peers, self.raft_config, random.Random(self.rng.getrandbits(64)),
            image.hard_state, image.snapshot, image.entries, self.clock(), applied=applied,
        )
        self.up = True
        self.paused = False
        self._busy = False
        self.incarnation += 1
        if self.incarnation > 1:
            self.cluster.observe(self.id, "restart")
            self.cluster.observe_log(self.id, full_log=True)  # what survived on disk
        self._schedule_tick(self.incarnation)

    def crash(self, lose_unfsynced: bool = False, torn: bool = False) -> None:
        """SIGKILL (page cache survives) or, with ``lose_unfsynced``, a machine crash."""
        if not self.up:
            return
        self.up = False
        self.paused = False
        self.core = None
        self.kv = None
        self._busy = False
        self._backlog.clear()
        self._proposals.clear()
        self._reads.clear()
        self._ready_reads.clear()
        for reply in self._inflight:
            reply(None)  # the client's connection breaks: outcome unknown
        self._inflight.clear()
        if lose_unfsynced:
            self.disk.machine_crash(self.rng, torn)
            self.cluster.observe(self.id, "lose-unfsynced")
        else:
            self.disk.process_crash()
            self.cluster.observe(self.id, "crash")

    def pause(self) -> None:
        if self.up:
            self.paused = True

    def resume(self) -> None:
        if not (self.up and self.paused):
            return
        self.paused = False
        backlog, self._backlog = self._backlog, []
        for fn, args in backlog:
            if not self.up or self.paused:
                break
            fn(*args)

    def _run(self, fn: Callable[..., None], *args: Any) -> bool:
        """Run now, or queue until resume if the process is stopped. False if down."""
        if not self.up:
            return False
        if self.paused:
            self._backlog.append((fn, args))
            return True
        fn(*args)
        return True

    # -- ticks and messages --------------------------------------------------------------

    def _schedule_tick(self, incarnation: int) -> None:
        self.loop.call_later(self.cluster.config.tick_interval, self._on_tick, incarnation)

    def _on_tick(self, incarnation: int) -> None:
        if not self.up or incarnation != self.incarnation:
            return
        self._schedule_tick(incarnation)
        if self.paused:
            return  # a stopped process does not tick; its timers fire late on resume
        assert self.core is not None
        self.core.tick(self.clock())
        self._drain()

    def receive(self, message: Any) -> None:
        self._run(self._step, message)

    def _step(self, message: Any) -> None:
        assert self.core is not None
        self.core.step(message, self.clock())
        self._drain()

    # -- the Ready cycle -----------------------------------------------------------------

    def _drain(self) -> None:
        core = self.core
        while not self._busy and not self.paused and core is not None and core.has_ready():
            self.loop.charge()
            ready = core.ready()
            wrote = self._persist(ready)
            if wrote and "ack-before-fsync" not in self.bugs:
                self._busy = True
                latency = self.cluster.fsync_latency()
                self.loop.call_later(latency, self._fsynced, self.incarnation, ready)
                return
            self._finish(ready)
            core = self.core

    def _persist(self, ready: Any) -> bool:
        disk = self.disk
        wrote = False
        if ready.snapshot is not None:
            # The snapshot file is written and fsynced on its own, as the real node does.
            disk.write_durable(("snapshot", ready.snapshot))
            wrote = True
        if ready.entries:
            disk.write(("entries", list(ready.entries)))
            wrote = True
        if ready.hard_state is not None:
            hard_state = ready.hard_state
            if "forget-vote" in self.bugs:
                hard_state = dataclasses.replace(hard_state, vote=None)
            disk.write(("hard_state", hard_state))
            wrote = True
        return wrote

    def _fsynced(self, incarnation: int, ready: Any) -> None:
        if not self.up or incarnation != self.incarnation:
            return
        if self.paused:
            self._backlog.append((self._fsynced, (incarnation, ready)))
            return
        self.disk.fsync()
        self._busy = False
        self._finish(ready)
        self._drain()

    def _finish(self, ready: Any) -> None:
        """After persistence: send, install, apply, serve reads, then advance the core."""
        core = self.core
        assert core is not None
        if ready.role_changed is not None:
            role, term = ready.role_changed
            # Observing a new leader may fire a nemesis trigger (``when``) at this very
            # instant: it may crash or stop this node before the rest of the Ready runs.
            self.cluster.observe(self.id, "role", role=role, term=term)
            if not self.up or self.core is not core:
                return
            if role != "leader":
                self._lost_leadership()
            if self.paused:
                self._backlog.append((self._send_apply_advance, (ready,)))
                return
        self._send_apply_advance(ready)

    def _send_apply_advance(self, ready: Any) -> None:
        core = self.core
        assert core is not None
        send = self.cluster.network.send
        for message in ready.messages:
            send(self.id, message.to, message)
        if ready.snapshot is not None:
            self.kv = statemachine.new_state_machine(self.bugs)
            self.kv.restore(ready.snapshot.data)
            self._duplicates = {}
            self._snapshot_index = ready.snapshot.meta.index
            self._applied_term = ready.snapshot.meta.term
            self.cluster._sim_event("snapshot", self.id)
            self.cluster._sim_event("snapshot-installed", self.id)
        for entry in ready.committed_entries:
            self._apply(entry)
        for read_state in ready.read_states:
            self._ready_reads.append((read_state.index, read_state.ctx))
        for ctx in ready.rejected_reads:
            pending = self._reads.pop(ctx, None)
            if pending is not None:
                self._answer(pending[1], self._not_leader(pending[0]))
        core.advance(ready)
        self._serve_reads()
        self._maybe_compact()

    def _apply(self, entry: Any) -> None:
        if entry.index <= self.kv.applied:
            return
        duplicate = self._is_retry(entry)
        command, result = self.kv.apply_entry(entry)
        self._applied_term = entry.term
        if duplicate is not None:
            self._duplicates[entry.index] = duplicate
        pending = self._proposals.pop(entry.index, None)
        if pending is None:
            return
        request, reply = pending
        if result is not None and statemachine.answers(command, request):
            self._answer(reply, {"id": request.get("id"), **result.reply_fields()})
        else:
            # Another leader's entry took this index: ours was never committed here.
            self._answer(reply, {"id": request.get("id"), "ok": False,
                                 "error": "leadership-lost", "definite": False})

    def _is_retry(self, entry: Any) -> bool | None:
        """Will the state machine skip this command as a retry of its session? (The
        log-order checker's ``duplicate`` flag; None for entries without a session.)"""
        command = statemachine.entry_command(entry)
        if command is None or command.client is None or command.seq is None:
            return None
        if not self.kv.dedup:
            return False
        session = self.kv.sessions.get(command.client)
        return session is not None and command.seq <= session[0]

    def _serve_reads(self) -> None:
        if not self._ready_reads:
            return
        applied = self.kv.applied
        waiting = []
        for index, ctx in self._ready_reads:
            pending = self._reads.get(ctx)
            if pending is None:
                continue
            if applied >= index:
                del self._reads[ctx]
                self._answer(pending[1], self._local_read(pending[0]))
            else:
                waiting.append((index, ctx))
        self._ready_reads = waiting

    def _maybe_compact(self) -> None:
        core = self.core
        assert core is not None
        applied = self.kv.applied
        if applied - self._snapshot_index <= self.raft_config.snapshot_threshold:
            return
        # Show the collector the entries about to vanish under the snapshot: a real
        # collector may miss them between two polls, the simulator need not.
        self.cluster.observe_log(self.id)
        snapshot = Snapshot(SnapshotMeta(applied, self._applied_term), self.kv.snapshot())
        # A snapshot file is written whole and fsynced on its own before the log is cut.
        self.disk.write_durable(("compact", snapshot))
        core.compact(snapshot)
        self._snapshot_index = applied
        self._duplicates = {i: d for i, d in self._duplicates.items() if i > applied}
        self.cluster._sim_event("snapshot", self.id)

    def _lost_leadership(self) -> None:
        """Proposals of a deposed leader may or may not commit: their outcome is unknown."""
        for request, reply in self._proposals.values():
            self._answer(reply, {"id": request.get("id"), "ok": False,
                                 "error": "leadership-lost", "definite": False})
        self._proposals.clear()

    # -- client requests -----------------------------------------------------------------

    def request(self, request: dict[str, Any], reply: Reply) -> bool:
        """A client request arrives; False when the node is down (connection refused)."""
        if not self.up:
            return False
        self._inflight.append(reply)
        return self._run(self._handle, request, reply)

    def _answer(self, reply: Reply, answer: dict[str, Any]) -> None:
        try:
            self._inflight.remove(reply)
        except ValueError:
            return  # already answered (or the connection broke)
        self.cluster.client_reply(reply, answer)

    def _not_leader(self, request: dict[str, Any]) -> dict[str, Any]:
        leader = self.core.leader_id if self.core is not None else None
        return {"id": request.get("id"), "ok": False, "error": "not-leader", "leader": leader,
                "definite": True}

    def _local_read(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"id": request.get("id"), "ok": True, "value": self.kv.read(request["key"]),
                "definite": True}

    def _handle(self, request: dict[str, Any], reply: Reply) -> None:
        core = self.core
        assert core is not None
        op = request["op"]
        mode = self.raft_config.read_mode
        if op == "read" and mode == "stale":
            self._answer(reply, self._local_read(request))
            return
        if core.role != "leader":
            self._answer(reply, self._not_leader(request))
            return
        if op == "read" and mode != "log":
            self._next_ctx += 1
            ctx = self._next_ctx
            self._reads[ctx] = (request, reply)
            core.request_read(ctx, self.clock())
            self._drain()
            return
        index = core.propose(statemachine.encode_command(request))
        if index is None:
            self._answer(reply, self._not_leader(request))
            return
        self._proposals[index] = (request, reply)
        self._drain()

    # -- introspection (the admin API) ---------------------------------------------------

    def status(self) -> dict[str, Any]:
        core = self.core
        assert core is not None
        return {"role": core.role, "term": core.term, "leader": core.leader_id,
                "commit": core.commit_index, "applied": self.kv.applied,
                "last_index": core.last_index}

    def log_dump(self, from_index: int | None = None) -> dict[str, Any]:
        core = self.core
        assert core is not None
        lo = max(core.first_index, from_index or 0)
        entries = []
        for entry in core.entries(lo, core.last_index + 1):
            command = statemachine.entry_command(entry)
            described = {"index": entry.index, "term": entry.term,
                         "client": None if command is None else command.client,
                         "seq": None if command is None else command.seq,
                         "digest": entry.digest()}
            duplicate = self._duplicates.get(entry.index)
            if duplicate is not None and entry.index <= self.kv.applied:
                described["duplicate"] = duplicate
            entries.append(described)
        # The core's view, as the real node reports it: an InstallSnapshot the core has
        # taken is on disk only once its Ready is persisted (the disk may lag).
        dump: dict[str, Any] = {
            "commit": core.commit_index, "snapshot_index": core.snapshot_index,
            "snapshot_term": core.snapshot_term, "entries": entries,
        }
        if from_index is not None:
            dump["from"] = lo
        return dump

    def digest(self) -> dict[str, Any]:
        return {"applied": self.kv.applied, "digest": self.kv.digest()}
