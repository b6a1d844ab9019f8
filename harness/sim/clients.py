"""Simulated clients, following Jepsen's process model and the real client's rules.

``concurrency`` logical processes each run one operation at a time, drawn from
the same :class:`harness.workload.RegisterWorkload` stream a real run uses and
paced by the same :class:`harness.workload.Pacer`. An operation is sent to the
process's current node with its session ``(client, seq)``; the answers are
handled exactly like ``harness.raft_impl_db.RaftImplClient``:

- ``not-leader`` is definite: retry the same ``(client, seq)`` at the hinted
  leader (or the next node after a short back-off);
- a refused connection (node down) is definite: try the next node;
- ``definite: false``, a connection broken after sending, or no answer
  before the operation's timeout: the outcome is unknown, the operation is
  recorded ``info`` and the process is replaced by a fresh one (new process
  number, new session), because it may still take effect later.

With ``retry_in_doubt`` (a simulator-only option) an attempt that timed out is
instead retried with the same ``(client, seq)`` until the operation's deadline
— legal thanks to sessions, and exactly what the planted ``no-dedup`` bug
breaks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness.workload import Pacer

if TYPE_CHECKING:
    from harness.sim.cluster import SimCluster

#: Pause before trying the next node when no leader is known (as the real client).
BACKOFF = 0.05


class SimProcess:
    """One client slot; its ``process`` number changes each time it is replaced."""

    def __init__(self, cluster: SimCluster, slot: int) -> None:
        self.cluster = cluster
        self.slot = slot
        self.process = slot
        self.seq = 0
        self.target = cluster.node_ids[slot % len(cluster.node_ids)]
        self.op: dict[str, Any] | None = None
        self.attempt = 0
        self.in_doubt = False
        self.deadline_timer: Any = None

    @property
    def client_id(self) -> str:
        return f"c{self.process}"

    def replace(self) -> None:
        self.process += self.cluster.workload.concurrency
        self.seq = 0


class SimClients:
    """Drives every process: pacing, invocations, retries, completions, final reads."""

    def __init__(self, cluster: SimCluster, operations: Iterator[dict[str, Any]],
                 rng: random.Random) -> None:
        self.cluster = cluster
        self.loop = cluster.loop
        self.rng = rng
        self.operations = operations
        self.workload = cluster.workload
        self.processes = [SimProcess(cluster, i) for i in range(self.workload.concurrency)]
        self.pacer = Pacer(self.workload.rate, 0.0)
        self.accepting = False
        self._final_keys: list[str] = []
        self.completed = {"ok": 0, "fail": 0, "info": 0}

    # -- main phase ----------------------------------------------------------------------

    def start(self) -> None:
        self.accepting = True
        for process in self.processes:
            self._schedule_next(process)

    def stop(self) -> None:
        """No new operations after the time limit; those in flight finish or time out."""
        self.accepting = False

    def _schedule_next(self, process: SimProcess) -> None:
        if not self.accepting:
            return
        wait = self.pacer.claim(self.loop.now)
        self.loop.call_later(wait, self._begin_next, process)

    def _begin_next(self, process: SimProcess) -> None:
        if not self.accepting or process.op is not None:
            return
        self.invoke(process, next(self.operations))

    # -- one operation -------------------------------------------------------------------

    def invoke(self, process: SimProcess, op: dict[str, Any]) -> None:
        process.seq += 1
        process.op = op
        process.in_doubt = False
        event = {"process": process.process, "type": "invoke", "f": op["f"], "key": op["key"],
                 "value": op["value"], "node": process.target, "client": process.client_id,
                 "seq": process.seq}
        self.cluster.record(event)
        deadline = self.loop.now + self.workload.op_timeout
        process.deadline_timer = self.loop.timer_at(deadline, self._timed_out, process, op)
        self._attempt(process, op)

    def _request(self, process: SimProcess, op: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"id": process.attempt, "client": process.client_id,
                                   "seq": process.seq, "op": op["f"], "key": op["key"]}
        if op["f"] == "write":
            request["value"] = op["value"]
        elif op["f"] == "cas":
            request["expected"], request["value"] = op["value"]
        return request

    def _attempt(self, process: SimProcess, op: dict[str, Any]) -> None:
        process.attempt += 1
        attempt = process.attempt
        node = process.target
        request = self._request(process, op)

        def reply(answer: dict[str, Any] | None) -> None:
            self._answered(process, op, attempt, node, answer)

        self.cluster.client_send(node, request, reply, self._refused, process, op, attempt)
        if self.workload.retry_in_doubt:
            self.loop.call_later(self.workload.attempt_timeout, self._attempt_expired,
                                 process, op, attempt)

    def _live(self, process: SimProcess, op: dict[str, Any], attempt: int) -> bool:
        return process.op is op and process.attempt == attempt

    def _refused(self, process: SimProcess, op: dict[str, Any], attempt: int) -> None:
        """The node is down: nothing was sent, try the next node after a back-off."""
        if not self._live(process, op, attempt):
            return
        process.target = self.cluster.next_node(process.target)
        self.loop.call_later(BACKOFF, self._retry, process, op, attempt)

    def _retry(self, process: SimProcess, op: dict[str, Any], attempt: int) -> None:
        if self._live(process, op, attempt):
            self._attempt(process, op)

    def _attempt_expired(self, process: SimProcess, op: dict[str, Any], attempt: int) -> None:
        if not self._live(process, op, attempt):
            return
        process.in_doubt = True
        process.target = self.cluster.next_node(process.target)
        self._attempt(process, op)

    def _answered(self, process: SimProcess, op: dict[str, Any], attempt: int, node: str,
                  answer: dict[str, Any] | None) -> None:
        if not self._live(process, op, attempt):
            return
        if answer is None:  # connection broken after the request was sent
            if self.workload.retry_in_doubt:
                process.in_doubt = True
                process.target = self.cluster.next_node(node)
                self.loop.call_later(BACKOFF, self._retry, process, op, attempt)
                return
            self._complete(process, op, "info", node, error="connection lost")
            return
        if answer.get("ok"):
            value = answer.get("value") if op["f"] == "read" else op["value"]
            self._complete(process, op, "ok", node, value=value)
            return
        error = answer.get("error") or "unknown-error"
        if not answer.get("definite", True):
            if self.workload.retry_in_doubt:
                process.in_doubt = True
                self.loop.call_later(BACKOFF, self._retry, process, op, attempt)
                return
            self._complete(process, op, "info", node, error=error)
            return
        if error == "not-leader":
            hint = answer.get("leader")
            if hint in self.cluster.nodes and hint != node:
                process.target = hint
                self._attempt(process, op)
            else:
                process.target = self.cluster.next_node(node)
                self.loop.call_later(BACKOFF, self._retry, process, op, attempt)
            return
        if process.in_doubt:
            # An earlier attempt may have applied; a definite answer to a later one
            # (say a cas mismatch caused by our own first attempt) proves nothing.
            self._complete(process, op, "info", node, error=error)
            return
        self._complete(process, op, "fail", node, error=error)

    def _timed_out(self, process: SimProcess, op: dict[str, Any]) -> None:
        if process.op is not op:
            return
        self._complete(process, op, "info", process.target, error="timeout", timer_fired=True)

    def _complete(self, process: SimProcess, op: dict[str, Any], kind: str, node: str, *,
                  value: Any = None, error: str | None = None, timer_fired: bool = False) -> None:
        if not timer_fired and process.deadline_timer is not None:
            process.deadline_timer.cancel()
        process.deadline_timer = None
        if kind != "ok":
            value = None if op["f"] == "read" else op["value"]
        event: dict[str, Any] = {"process": process.process, "type": kind, "f": op["f"],
                                 "key": op["key"], "value": value, "node": node}
        if error is not None:
            event["error"] = error
        self.cluster.record(event)
        self.completed[kind] += 1
        process.op = None
        process.attempt += 1  # late answers to old attempts are ignored
        if kind == "info":
            process.replace()
        if self._final_keys:
            self._final_next(process)
        else:
            self._schedule_next(process)

    # -- final reads ---------------------------------------------------------------------

    def final_reads(self, keys: list[str]) -> None:
        """After the quiet period: read every key once, spread over the processes."""
        self._final_keys = list(keys)
        for process in self.processes:
            if process.op is None:
                self._final_next(process)

    def _final_next(self, process: SimProcess) -> None:
        if not self._final_keys:
            return
        key = self._final_keys.pop(0)
        leader = self.cluster.leader()
        if leader is not None:
            process.target = leader
        self.invoke(process, {"f": "read", "key": key, "value": None})

    @property
    def busy(self) -> bool:
        return any(process.op is not None for process in self.processes)
