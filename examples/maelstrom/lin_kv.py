#!/usr/bin/env python3
"""A linearizable Maelstrom ``lin-kv`` node: one fixed leader, majority-replicated state.

    splitbrain run --db maelstrom --bin "python3 examples/maelstrom/lin_kv.py" \\
        --nodes 3 --nemesis partition,loss,reorder --time-limit 10

Safe, not available: the first node of ``node_ids`` is the only leader. Other
nodes forward client requests to it. The leader handles requests in batches:
it applies a batch to a copy of its state, sends the whole state as
``accept(epoch, seq, kv)`` to every node, and answers the batch only once a
majority (itself included) has accepted that version. Reads go through the
same round, so a read never returns a state a majority has not seen.

A restarted leader has lost its memory: it picks a new epoch (wall-clock ns,
larger than any earlier incarnation's), asks every node to ``prepare`` (promise
to ignore older epochs and report its latest version), and adopts the newest
version of a majority before it serves, so no acknowledged write is lost: every
acknowledged version sits on a majority, and two majorities meet.
Followers accept a version only if it is newer than theirs and from an epoch
at least the one they promised, so late, duplicated or reordered messages
cannot roll them back.

``--stale-reads`` makes it deliberately broken (``broken_kv.py``): a follower
answers reads from its own copy, which a partition or lost message leaves
behind: the linearizability checker should call such a run invalid.

Also serves Maelstrom's txn-list-append and txn-rw-register (``txn`` of ``r``,
``append``, ``w`` micro-ops), through the same rounds: ``--workload list-append``.

Standard library only; logs go to stderr.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from typing import Any

RETRY = 0.1  # seconds between re-sends of an unanswered prepare or accept


class Node:
    def __init__(self, stale_reads: bool = False) -> None:
        self.stale_reads = stale_reads
        self.id = ""
        self.ids: list[str] = []
        self.next_msg_id = 0
        # Replica state (every node, the leader too).
        self.kv: dict[str, Any] = {}
        self.version = (0, 0)  # (epoch, seq) of kv
        self.promised = 0
        # Leader state.
        self.epoch = 0
        self.ready = False  # recovered from a majority
        self.prepared: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
        self.queue: list[dict[str, Any]] = []  # client requests waiting for a round
        self.round: list[dict[str, Any]] | None = None  # requests of the round in flight
        self.round_replies: list[dict[str, Any]] = []
        self.round_kv: dict[str, Any] = {}
        self.seq = 0
        self.acks: set[str] = set()
        self.last_send = 0.0

    # -- I/O ----------------------------------------------------------------------------------

    def send(self, dest: str, body: dict[str, Any]) -> None:
        self.next_msg_id += 1
        body = {**body, "msg_id": self.next_msg_id}
        sys.stdout.write(json.dumps({"src": self.id, "dest": dest, "body": body}) + "\n")

    def reply(self, request: dict[str, Any], body: dict[str, Any]) -> None:
        self.send(request["src"], {**body, "in_reply_to": request["body"].get("msg_id")})

    @property
    def leader(self) -> str:
        return self.ids[0]

    def majority(self) -> int:
        return len(self.ids) // 2 + 1

    # -- messages -----------------------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> None:
        body = message["body"]
        kind = body.get("type")
        if kind == "init":
            self.id, self.ids = body["node_id"], list(body["node_ids"])
            self.reply(message, {"type": "init_ok"})
            if self.id == self.leader:
                self.epoch = time.time_ns()
                self.promised = self.epoch
                self.prepared = {self.id: (self.version, self.kv)}
                self.broadcast({"type": "prepare", "epoch": self.epoch})
            return
        if kind in ("read", "write", "cas", "txn"):
            if self.stale_reads and self.id != self.leader and is_read_only(body):
                self.answer_read_locally(message)
            elif self.id == self.leader:
                self.queue.append(message)
                self.maybe_start_round()
            else:
                self.send(self.leader, {"type": "forward", "request": message})
        elif kind == "forward" and self.id == self.leader:
            self.queue.append(body["request"])
            self.maybe_start_round()
        elif kind == "prepare":
            if body["epoch"] >= self.promised:
                self.promised = body["epoch"]
                self.reply(message, {"type": "prepare_ok", "epoch": body["epoch"],
                                     "version": list(self.version), "kv": self.kv})
        elif kind == "prepare_ok" and self.id == self.leader and not self.ready:
            if body["epoch"] == self.epoch:
                self.prepared[message["src"]] = (tuple(body["version"]), body["kv"])
                if len(self.prepared) >= self.majority():
                    self.version, self.kv = max(self.prepared.values(), key=lambda p: p[0])
                    self.ready = True
                    print(f"{self.id} leads epoch {self.epoch} from version {self.version}",
                          file=sys.stderr)
                    self.maybe_start_round()
        elif kind == "accept":
            version = (body["epoch"], body["seq"])
            if body["epoch"] >= self.promised and version >= self.version:
                self.promised = body["epoch"]
                self.version, self.kv = version, body["kv"]
                self.reply(message, {"type": "accept_ok", "epoch": body["epoch"],
                                     "seq": body["seq"]})
        elif (kind == "accept_ok" and self.round is not None
              and (body["epoch"], body["seq"]) == (self.epoch, self.seq)):
            self.acks.add(message["src"])
            if len(self.acks) >= self.majority():
                self.finish_round()

    def answer_read_locally(self, request: dict[str, Any]) -> None:
        self.reply(request, apply(dict(self.kv), request["body"]))

    # -- the leader's rounds --------------------------------------------------------------------

    def maybe_start_round(self) -> None:
        if not self.ready or self.round is not None or not self.queue:
            return
        self.round, self.queue = self.queue, []
        kv = dict(self.kv)
        self.round_replies = [apply(kv, request["body"]) for request in self.round]
        self.seq += 1
        self.round_kv = kv
        self.version, self.kv = (self.epoch, self.seq), kv
        self.acks = {self.id}
        self.broadcast(self.accept_message())
        if len(self.acks) >= self.majority():
            self.finish_round()

    def accept_message(self) -> dict[str, Any]:
        return {"type": "accept", "epoch": self.epoch, "seq": self.seq, "kv": self.round_kv}

    def finish_round(self) -> None:
        assert self.round is not None
        for request, answer in zip(self.round, self.round_replies, strict=True):
            self.reply(request, answer)
        self.round = None
        self.maybe_start_round()

    def broadcast(self, body: dict[str, Any]) -> None:
        self.last_send = time.monotonic()
        for node in self.ids:
            if node != self.id:
                self.send(node, body)

    def tick(self) -> None:
        """Re-send what is still unanswered (messages may be lost)."""
        if self.id != self.leader or time.monotonic() - self.last_send < RETRY:
            return
        if not self.ready:
            self.broadcast({"type": "prepare", "epoch": self.epoch})
        elif self.round is not None:
            self.broadcast(self.accept_message())


def is_read_only(body: dict[str, Any]) -> bool:
    if body["type"] == "txn":
        return all(mop[0] == "r" for mop in body["txn"])
    return body["type"] == "read"


def apply(kv: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Apply one request to ``kv`` (in place) and return the answer's body.

    lin-kv: read, write, cas. txn-list-append / txn-rw-register: ``txn`` of
    ``["r", k, null]``, ``["append", k, v]``, ``["w", k, v]`` micro-ops, all at once.
    """
    kind = body["type"]
    if kind == "txn":
        done = []
        for f, k, v in body["txn"]:
            key = json.dumps(k)
            if f == "r":
                value = kv.get(key)
                done.append([f, k, list(value) if isinstance(value, list) else value])
            elif f == "append":
                kv[key] = [*(kv.get(key) or []), v]
                done.append([f, k, v])
            else:
                kv[key] = v
                done.append([f, k, v])
        return {"type": "txn_ok", "txn": done}
    key = json.dumps(body["key"])
    if kind == "read":
        if key in kv:
            return {"type": "read_ok", "value": kv[key]}
        return {"type": "error", "code": 20, "text": "key does not exist"}
    if kind == "write":
        kv[key] = body["value"]
        return {"type": "write_ok"}
    if key not in kv:
        return {"type": "error", "code": 20, "text": "key does not exist"}
    if kv[key] != body["from"]:
        return {"type": "error", "code": 22, "text": f"value is {kv[key]!r}"}
    kv[key] = body["to"]
    return {"type": "cas_ok"}


def main() -> None:
    node = Node(stale_reads="--stale-reads" in sys.argv[1:])
    stdin = sys.stdin.fileno()
    buffer = b""
    while True:
        readable, _, _ = select.select([stdin], [], [], RETRY / 2)
        if readable:
            chunk = os.read(stdin, 65536)
            if not chunk:
                return
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    node.handle(json.loads(line))
        node.tick()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
