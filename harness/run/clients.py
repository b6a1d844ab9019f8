"""Clients in Jepsen's process model, and the recorder that writes the history.

A *process* is a logical single-threaded client: it runs one operation at a
time, records ``invoke`` before sending and a completion after. When an
operation ends ``info`` (timed out, or answered "outcome unknown"), the
process may still have it in flight as far as the system is concerned, so
it must never issue another operation: it is retired and a new process with
a fresh number (old + concurrency, as in Jepsen) and a fresh client session
takes its worker slot.

Each invoke event carries the session of the request (``client``, ``seq``)
so the log-order checker can match acknowledged writes to log entries, and
a read's invoke names the read path it asked for (``read``).

The processes of the first ``retry_slots`` worker slots retry an in-doubt
attempt in their session (same client id and seq, which the system must
deduplicate) instead of giving up at once. Such an operation stays one
operation in the history: one invoke, and one completion when the final
answer comes (``retries``: how many attempts were re-sent), or ``info`` if
none came within the operation's timeout. It may have taken effect at any
moment in between, which is exactly what an open operation means to the
linearizability checker.

The processes of the last ``pin_slots`` worker slots are *pinned* to their
node: each operation is sent first to the process's own node (``p mod n``),
and a not-leader hint is followed only within that operation, as a Jepsen
client bound to one node. The other processes stay with the last leader they
heard of, which is efficient but means nobody asks a deposed leader that
still believes it leads: its stale reads and doomed writes would never be
seen. A pinned process's successor (after ``info``) keeps the node.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from harness.db.base import DB, Client, Completion
from harness.run.workload import MAX_CONCURRENCY, Pacer

NEMESIS = "nemesis"


class HistoryRecorder:
    """The run's single writer of ``history.jsonl``: stamps time, flushes, notifies.

    Uses ``checker.history.HistoryWriter`` (flush per event). Listeners see
    every event as written — the live display and the fault tracker use
    that; they must be quick and must not raise.
    """

    def __init__(self, path: Path, clock: Callable[[], int]) -> None:
        from checker.history import HistoryWriter

        self.path = path
        self.clock = clock
        self._writer = HistoryWriter(path)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.closed = False

    def write(self, event: dict[str, Any]) -> dict[str, Any]:
        if "time" not in event:
            event = {**event, "time": self.clock()}
        # index first, then time, as in docs/DESIGN.md's example (cosmetic).
        written = self._writer.write(event)
        for listener in self.listeners:
            listener(written)
        return written

    append = write

    def close(self) -> None:
        self._writer.close()
        self.closed = True


@dataclass
class ClientStats:
    """Running totals for the live display and the run summary."""

    by_type: Counter[str] = field(default_factory=Counter)
    by_f: Counter[tuple[str, str]] = field(default_factory=Counter)
    invoked: int = 0
    processes_retired: int = 0
    first_invoke_ns: int | None = None
    last_completion_ns: int | None = None

    def observe(self, event: dict[str, Any]) -> None:
        if event.get("process") == NEMESIS:
            return
        kind = event.get("type")
        if kind == "invoke":
            self.invoked += 1
            if self.first_invoke_ns is None:
                self.first_invoke_ns = event.get("time")
        elif kind in ("ok", "fail", "info"):
            self.by_type[kind] += 1
            self.by_f[(str(event.get("f")), kind)] += 1
            self.last_completion_ns = event.get("time")

    def to_json(self) -> dict[str, Any]:
        return {
            "invoked": self.invoked,
            "ok": self.by_type["ok"],
            "fail": self.by_type["fail"],
            "info": self.by_type["info"],
            "processes_retired": self.processes_retired,
            "by_f": {f"{f}:{t}": n for (f, t), n in sorted(self.by_f.items())},
        }


class Process:
    """One logical process: a number, a client session and a sequence counter."""

    def __init__(self, number: int, client: Client, node: str, pinned: bool = False) -> None:
        self.number = number
        self.client = client
        self.node = node
        #: Every operation starts at ``node`` (see the module docstring).
        self.pinned = pinned
        self.client_id = f"c{number}"
        self.seq = 0


class ProcessPool:
    """Runs operations under the process model against a DB.

    ``concurrency`` worker slots each hold one live process; the nodes are
    assigned round robin by process number (process p first talks to node
    p mod n), so load and leader discovery are spread like Jepsen's.
    """

    def __init__(
        self,
        db: DB,
        nodes: list[str],
        recorder: HistoryRecorder,
        *,
        concurrency: int,
        op_timeout: float,
        stats: ClientStats | None = None,
        retry_slots: int = 0,
        pin_slots: int = 0,
    ) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1 to {MAX_CONCURRENCY}, not {concurrency}")
        self.db = db
        self.nodes = nodes
        self.recorder = recorder
        self.concurrency = concurrency
        self.op_timeout = op_timeout
        self.stats = stats or ClientStats()
        #: Worker slots (process number mod concurrency) whose processes retry in doubt.
        self.retry_slots = retry_slots
        #: Worker slots (the last ``pin_slots``) whose processes are pinned to their node.
        self.pin_slots = pin_slots

    async def new_process(
        self, number: int, node: str | None = None, *, retry: bool | None = None,
        pinned: bool | None = None,
    ) -> Process:
        node = node or self.nodes[number % len(self.nodes)]
        if pinned is None:
            pinned = number % self.concurrency >= self.concurrency - self.pin_slots
        client = self.db.client(node)
        if retry is None:
            retry = number % self.concurrency < self.retry_slots
        if retry and client.can_retry_in_doubt:
            client.retry_indefinite = True
        await client.open()
        return Process(number, client, node, pinned=pinned)

    async def retire(self, process: Process, slot: int) -> Process:
        """Close a process whose last operation is indefinite; return its successor
        (a pinned process's successor keeps its node)."""
        await process.client.close()
        self.stats.processes_retired += 1
        return await self.new_process(process.number + self.concurrency,
                                      process.node if process.pinned else None)

    async def run_op(self, process: Process, op: dict[str, Any]) -> dict[str, Any]:
        """Invoke one operation and record both ends. Returns the completion event."""
        process.seq += 1
        # A txn has no key of its own: its micro-ops name theirs (checker/README.md).
        key = {"key": op["key"]} if "key" in op else {}
        self.recorder.write(
            {
                "process": process.number,
                "type": "invoke",
                "f": op["f"],
                **key,
                "value": op.get("value"),
                "node": process.node,
                "client": process.client_id,
                "seq": process.seq,
                **({"read": op["read"]} if op["f"] in ("read", "txn") and op.get("read")
                   else {}),
            }
        )
        if process.pinned and hasattr(process.client, "target"):
            process.client.target = process.node  # ask its own node first, every time
        completion: Completion | None = None
        with trio.move_on_after(self.op_timeout):
            completion = await process.client.invoke(
                op, client_id=process.client_id, seq=process.seq
            )
        if completion is None:
            # Timed out. If no attempt could have reached a node (all were
            # refused definitely), the operation certainly did not happen.
            in_doubt = getattr(process.client, "in_doubt", True)
            completion = Completion(
                "info" if in_doubt else "fail", error="timeout",
                retries=getattr(process.client, "retries", 0),
            )
        value = op.get("value")
        if completion.type == "ok" and op["f"] in ("read", "txn"):
            value = completion.value  # a txn's answer: its micro-ops with the reads filled in
        event: dict[str, Any] = {
            "process": process.number,
            "type": completion.type,
            "f": op["f"],
            **key,
            "value": value,
        }
        if completion.node is not None:
            event["node"] = completion.node
        if completion.error is not None:
            event["error"] = completion.error
        if completion.retries:
            event["retries"] = completion.retries
        return self.recorder.write(event)

    async def run_workers(
        self,
        operations: Iterator[dict[str, Any]],
        rate: float,
        stop: trio.Event,
    ) -> None:
        """Drive ``concurrency`` processes until ``stop`` is set (in-flight ops finish)."""
        pacer = Pacer(rate, trio.current_time())

        async def worker(slot: int) -> None:
            process = await self.new_process(slot)
            try:
                while not stop.is_set():
                    wait = pacer.claim(trio.current_time())
                    if wait > 0:
                        with trio.move_on_after(wait):
                            await stop.wait()
                        if stop.is_set():
                            break
                    completion = await self.run_op(process, next(operations))
                    if completion["type"] == "info":
                        process = await self.retire(process, slot)
            finally:
                with trio.CancelScope(shield=True):
                    await process.client.close()

        async with trio.open_nursery() as nursery:
            for slot in range(self.concurrency):
                nursery.start_soon(worker, slot)

    async def final_reads(
        self, keys: list[str], within: float, leader: Callable[[], Any] | None = None,
        read_op: Callable[[str], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Read every key once more, through the leader, after healing and quiet.

        Each read is retried (by a fresh process when the last one ended
        ``info``) until it succeeds or the time runs out. Returns key ->
        value for the reads that succeeded. ``leader`` (an async callable)
        names the node to ask first; not-leader answers redirect anyway.
        ``read_op(key)`` is the workload's read of one key (a one-read txn for
        the transactional workloads); a plain read by default.
        """
        values: dict[str, Any] = {}
        numbers = itertools.count(10_000_000)  # far away from worker process numbers
        with trio.move_on_after(within):
            for key in keys:
                while key not in values:
                    first = await leader() if leader is not None else None
                    process = await self.new_process(next(numbers), first, retry=False,
                                                     pinned=False)
                    try:
                        op = read_op(key) if read_op is not None else {
                            "f": "read", "key": key, "value": None}
                        done = await self.run_op(process, op)
                    finally:
                        await process.client.close()
                    if done["type"] == "ok":
                        values[key] = done["value"]
                    else:
                        await trio.sleep(0.05)
        return values
