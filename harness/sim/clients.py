"""Simulated clients: Jepsen's process model, with the real client's exact rules.

This mirrors ``harness.run.clients.ProcessPool`` and
``harness.db.raft_impl.RaftImplClient`` step for step, on the virtual clock:

- ``concurrency`` worker slots, each holding one live process; process ``p``
  first talks to node ``p mod n``; operations come from the same
  :class:`harness.run.workload.RegisterWorkload` (or ``TxnWorkload``) stream and are
  started by the same
  :class:`harness.run.workload.Pacer`;
- ``not-leader`` is definite: retry the same ``(client, seq)`` at the hinted
  leader, or the next node after a back-off; a refused connection (node down)
  is definite too: next node after a back-off;
- an answer marked ``definite: false`` or a connection broken after sending is
  ``info`` — unless ``retry_indefinite``, where such attempts (and attempts
  unanswered within ``attempt_timeout``) are retried with the same session
  until the operation's time runs out (correct only with session dedup);
- an operation unanswered after ``op_timeout`` is ``info`` when some attempt
  may have reached a node, else ``fail``; a process whose operation ended
  ``info`` is retired and replaced by process ``p + concurrency``;
- after the quiet period, every key is read once through the leader, each
  read by a fresh process, retried until it succeeds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness.run.workload import Pacer

if TYPE_CHECKING:
    from harness.sim.cluster import SimCluster

#: Pause before trying again when no node knows a leader (as the real client).
BACKOFF = 0.05
#: First process number of the final reads (far from the workers', as in a real run).
FINAL_READ_PROCESSES = 10_000_000


class SimProcess:
    """One logical process: number, session, and the state of its current operation."""

    def __init__(self, cluster: SimCluster, number: int, node: str | None = None) -> None:
        self.number = number
        self.node = node or cluster.node_ids[number % len(cluster.node_ids)]
        self.client_id = f"c{number}"
        self.seq = 0
        self.target = self.node
        self.op: dict[str, Any] | None = None
        self.attempt = 0
        self.hops = 0
        self.doubtful = False
        self.in_doubt = False
        self.deadline: Any = None
        self.done: Any = None  # called with (kind, value) when the operation completes


class SimClients:
    """Drives the worker slots, the final reads, and every operation's attempts."""

    def __init__(self, cluster: SimCluster, operations: Iterator[dict[str, Any]]) -> None:
        self.cluster = cluster
        self.loop = cluster.loop
        self.operations = operations
        self.workload = cluster.workload
        self.slots = [SimProcess(cluster, i) for i in range(self.workload.concurrency)]
        self.pacer = Pacer(self.workload.rate, 0.0)
        self.accepting = False
        self.completed = {"ok": 0, "fail": 0, "info": 0}
        self.final_values: dict[str, Any] = {}
        self._final_keys: list[str] = []
        self._final_numbers = itertools.count(FINAL_READ_PROCESSES)
        self._final_deadline = 0.0
        self._final_process: SimProcess | None = None

    # -- workers -------------------------------------------------------------------------

    def start(self) -> None:
        self.pacer = Pacer(self.workload.rate, self.loop.now)
        self.accepting = True
        for slot in range(len(self.slots)):
            self._next(slot)

    def stop(self) -> None:
        """No new operations after the time limit; those in flight finish or time out."""
        self.accepting = False

    def _next(self, slot: int) -> None:
        if self.accepting:
            wait = self.pacer.claim(self.loop.now)
            self.loop.call_later(wait, self._begin, slot)

    def _begin(self, slot: int) -> None:
        process = self.slots[slot]
        if self.accepting and process.op is None:
            self._invoke(process, next(self.operations),
                         lambda kind, value: self._worker_done(slot, kind))

    def _worker_done(self, slot: int, kind: str) -> None:
        if kind == "info":  # retire the process: its operation may still take effect
            process = self.slots[slot]
            self.slots[slot] = SimProcess(self.cluster, process.number + len(self.slots))
        self._next(slot)

    @property
    def busy(self) -> bool:
        return any(p.op is not None for p in self.slots) or self._final_process is not None

    # -- final reads ---------------------------------------------------------------------

    def final_reads(self, keys: list[str], within: float) -> None:
        self._final_keys = list(keys)
        self._final_deadline = self.loop.now + within
        self._final_next()

    def _final_next(self) -> None:
        self._final_process = None
        while self._final_keys and self._final_keys[0] in self.final_values:
            self._final_keys.pop(0)
        if not self._final_keys or self.loop.now >= self._final_deadline:
            return
        key = self._final_keys[0]
        process = SimProcess(self.cluster, next(self._final_numbers), self.cluster.leader())
        self._final_process = process

        def done(kind: str, value: Any) -> None:
            if kind == "ok":
                self.final_values[key] = value
            self._final_next()

        self._invoke(process, self.workload.final_read(key), done)

    # -- one operation -------------------------------------------------------------------

    def _invoke(self, process: SimProcess, op: dict[str, Any], done: Any) -> None:
        process.seq += 1
        process.op = op
        process.hops = 0
        process.doubtful = False
        process.in_doubt = False
        process.done = done
        # A txn has no key of its own: its micro-ops name theirs (as in a real run).
        key = {"key": op["key"]} if "key" in op else {}
        self.cluster.record({"process": process.number, "type": "invoke", "f": op["f"],
                             **key, "value": op.get("value"), "node": process.node,
                             "client": process.client_id, "seq": process.seq,
                             **({"read": op["read"]} if op.get("read") else {})})
        process.deadline = self.loop.timer_at(self.loop.now + self.workload.op_timeout,
                                              self._timed_out, process, op)
        self._attempt(process, op)

    def _request(self, process: SimProcess, op: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"id": process.attempt, "client": process.client_id,
                                   "seq": process.seq, "op": op["f"]}
        if "key" in op:
            request["key"] = op["key"]
        if op.get("read"):
            request["read"] = op["read"]
        if op["f"] in ("write", "txn"):
            request["value"] = op["value"]
        elif op["f"] == "cas":
            request["expected"], request["value"] = op["value"]
        return request

    def _attempt(self, process: SimProcess, op: dict[str, Any]) -> None:
        process.hops += 1
        if process.hops > len(self.cluster.node_ids):
            # Hints keep bouncing (a leader change is under way): slow down.
            self._later(BACKOFF, process, op, self._send)
        else:
            self._send(process, op)

    def _send(self, process: SimProcess, op: dict[str, Any]) -> None:
        process.attempt += 1
        attempt = process.attempt
        node = process.target
        process.in_doubt = True

        def reply(answer: dict[str, Any] | None) -> None:
            if process.op is op and process.attempt == attempt:
                self._answered(process, op, node, answer)

        def refused() -> None:
            if process.op is op and process.attempt == attempt:
                process.in_doubt = process.doubtful
                process.target = self.cluster.next_node(node)
                self._later(BACKOFF, process, op, self._attempt)

        self.cluster.client_send(node, self._request(process, op), reply, refused)
        if self.workload.retry_indefinite:
            self.loop.call_later(self.workload.attempt_timeout, self._attempt_expired,
                                 process, op, attempt)

    def _later(self, delay: float, process: SimProcess, op: dict[str, Any], fn: Any) -> None:
        attempt = process.attempt

        def fire() -> None:
            if process.op is op and process.attempt == attempt:
                fn(process, op)
        self.loop.call_later(delay, fire)

    def _attempt_expired(self, process: SimProcess, op: dict[str, Any], attempt: int) -> None:
        if process.op is op and process.attempt == attempt:
            process.doubtful = True
            process.target = self.cluster.next_node(process.target)
            self._attempt(process, op)

    def _answered(self, process: SimProcess, op: dict[str, Any], node: str,
                  answer: dict[str, Any] | None) -> None:
        retry = self.workload.retry_indefinite
        if answer is None:  # connection broken after the request was sent
            if not retry:
                self._complete(process, op, "info", node, error="connection lost")
                return
            process.doubtful = True
            process.in_doubt = True
            process.target = self.cluster.next_node(node)
            self._later(BACKOFF, process, op, self._attempt)
            return
        if answer.get("ok"):
            process.in_doubt = False
            self._complete(process, op, "ok", node, value=answer.get("value"))
            return
        error = answer.get("error") or "unknown-error"
        if not answer.get("definite", True):
            if not retry:
                self._complete(process, op, "info", node, error=error)
                return
            process.doubtful = True
            self._later(BACKOFF, process, op, self._attempt)
            return
        process.in_doubt = process.doubtful
        if error == "not-leader":
            hint = answer.get("leader")
            if hint in self.cluster.nodes and hint != node:
                process.target = hint
                self._attempt(process, op)
            else:
                process.target = self.cluster.next_node(node)
                self._later(BACKOFF, process, op, self._attempt)
            return
        # A definite failure after a doubtful attempt is the session's answer for the
        # one application, so it stands (as in the real client).
        process.in_doubt = False
        self._complete(process, op, "fail", node, error=error)

    def _timed_out(self, process: SimProcess, op: dict[str, Any]) -> None:
        if process.op is op:
            kind = "info" if process.in_doubt else "fail"
            self._complete(process, op, kind, None, error="timeout", timer_fired=True)

    def _complete(self, process: SimProcess, op: dict[str, Any], kind: str, node: str | None,
                  *, value: Any = None, error: str | None = None,
                  timer_fired: bool = False) -> None:
        if not timer_fired and process.deadline is not None:
            process.deadline.cancel()
        process.deadline = None
        if not (kind == "ok" and op["f"] in ("read", "txn")):
            value = op.get("value")  # a txn's answer: its micro-ops with the reads filled in
        key = {"key": op["key"]} if "key" in op else {}
        event: dict[str, Any] = {"process": process.number, "type": kind, "f": op["f"],
                                 **key, "value": value}
        if node is not None:
            event["node"] = node
        if error is not None:
            event["error"] = error
        self.cluster.record(event)
        self.completed[kind] += 1
        process.op = None
        process.attempt += 1  # late answers to earlier attempts are ignored
        process.done(kind, value)
