"""Build realistic run directories for report tests (and the report-size benchmark).

A small simulation of a Raft key/value cluster under a nemesis: client
processes issue reads, writes and cas ops one at a time; every op takes effect
at a random point inside its interval (so the history is linearizable by
construction); a partition isolates the old leader, whose clients time out.
``kind`` plants an anomaly:

- ``"valid"``: nothing wrong;
- ``"stale-read"``: during the partition the isolated old leader serves a read
  from its stale state, missing a write the majority had acknowledged;
- ``"log-divergence"``: one node's log holds a different entry at a committed index.

Files follow the store layout: test.json, history.jsonl, results.json,
observations.jsonl, messages.jsonl, nodes/<id>/stderr.log.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checker.history import load_history
from checker.linearizable import check_history
from checker.logorder import check_log_order, load_observations
from checker.results import compose

NS = 1_000_000_000
MS = 1_000_000


@dataclass
class SimOp:
    process: int
    f: str
    key: str
    value: Any
    start: int
    end: int
    node: str
    result: str = "ok"
    out: Any = None
    point: int = 0
    error: str | None = None
    client: str = ""
    seq: int = 0
    index: int = -1  # history index of the invocation, set when written


@dataclass
class Sim:
    nodes: list[str]
    ops: list[SimOp] = field(default_factory=list)
    nemesis: list[dict[str, Any]] = field(default_factory=list)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def simulate(rng: random.Random, nodes: list[str], duration: int, concurrency: int,
             keys: int, partition: tuple[int, int] | None, rate: float | None = None) -> Sim:
    """Generate ops for each client thread; ops on the isolated node time out."""
    sim = Sim(nodes=nodes)
    old_leader, new_leader = nodes[0], nodes[1]
    process_of = list(range(concurrency))
    seq = [0] * concurrency
    last_written: dict[str, Any] = {}
    fresh = itertools.count(1)
    for thread in range(concurrency):
        t = rng.randrange(0, 20 * MS)
        while t < duration:
            in_partition = partition is not None and partition[0] <= t < partition[1]
            # clients are pinned to nodes; the old leader's clients keep asking it
            node = nodes[thread % len(nodes)]
            healed = partition is not None and t >= partition[1]
            moved = (in_partition and node != old_leader) or healed
            leader = new_leader if moved else old_leader
            f = rng.choice(["read", "read", "write", "write", "cas"])
            key = f"k{rng.randrange(keys)}"
            value: Any = None
            # every write writes a fresh value, so a read names the write it saw
            if f == "write":
                value = next(fresh)
            elif f == "cas":  # often expect the current value (the last one written)
                value = [rng.choice([last_written.get(key), next(fresh)]), next(fresh)]
                last_written[key] = value[1]
            seq[thread] += 1
            if f == "write":
                last_written[key] = value
            latency = int(rng.lognormvariate(1.6, 0.5) * MS)
            op = SimOp(process=process_of[thread], f=f, key=key, value=value, start=t,
                       end=t + latency, node=leader, client=f"c{thread}", seq=seq[thread])
            if in_partition and node == old_leader:
                if f == "read" and rng.random() < 0.5:
                    op.result, op.error, op.end = "fail", "not-leader", t + 2 * MS
                else:  # no quorum: the request hangs and times out, outcome unknown
                    op.result, op.error, op.end = "info", "timeout", t + 1 * NS
                    process_of[thread] += concurrency  # Jepsen: retire the process
            op.point = rng.randrange(op.start, op.end + 1)
            sim.ops.append(op)
            # think time: back to back, or paced so all threads together make ``rate`` ops/s
            pause = rng.expovariate(rate / concurrency) * NS if rate else rng.randrange(8 * MS)
            t = op.end + int(pause)
    # apply in order of the linearization points: reads see, cas checks, the real state
    state: dict[str, Any] = {}
    for op in sorted(sim.ops, key=lambda o: o.point):
        if op.result != "ok":
            continue  # failed or timed-out ops never took effect
        if op.f == "read":
            op.out = state.get(op.key)
        elif op.f == "write":
            state[op.key] = op.value
        elif state.get(op.key) == op.value[0]:
            state[op.key] = op.value[1]
        else:
            op.result, op.error = "fail", "cas-mismatch"
    return sim


def _state_before(sim: Sim, key: str, time: int) -> tuple[Any, SimOp | None]:
    """The register's value at ``time`` and the op that wrote it."""
    value, writer = None, None
    for op in sorted(sim.ops, key=lambda o: o.point):
        if op.point >= time:
            break
        if op.key == key and op.result == "ok" and op.f in ("write", "cas"):
            value, writer = (op.value if op.f == "write" else op.value[1]), op
    return value, writer


def plant_stale_read(sim: Sim, rng: random.Random, partition: tuple[int, int]) -> SimOp:
    """Make a read served by the isolated old leader return the pre-partition value.

    Picks a key whose value changed on the majority during the partition, and a
    read on that key invoked after the change was acknowledged.
    """
    old_leader = sim.nodes[0]
    stale: dict[str, Any] = {}
    for key in sorted({op.key for op in sim.ops}):
        stale[key] = _state_before(sim, key, partition[0])[0]
    candidates = []
    for op in sim.ops:
        middle = (partition[0] + partition[1]) // 2  # well inside: clearly not a race
        if not (op.f == "read" and middle < op.start < partition[1] - 200 * MS):
            continue
        acknowledged = [w for w in sim.ops if w.key == op.key and w.result == "ok"
                        and w.f == "write" and partition[0] < w.end < op.start
                        and w.value != stale[op.key]]
        if acknowledged:
            candidates.append(op)
    read = candidates[len(candidates) // 2]
    read.node = old_leader
    read.result, read.error = "ok", None
    read.out = stale[read.key]
    read.end = read.start + 3 * MS
    return read


def _history_events(sim: Sim) -> list[dict[str, Any]]:
    events: list[tuple[int, int, dict[str, Any]]] = []
    for n, op in enumerate(sim.ops):
        invoke = {"process": op.process, "type": "invoke", "f": op.f, "key": op.key,
                  "value": op.value, "node": op.node, "client": op.client, "seq": op.seq}
        done = {"process": op.process, "type": op.result, "f": op.f, "key": op.key,
                "value": op.out if op.f == "read" else op.value, "node": op.node}
        if op.error:
            done["error"] = op.error
        events.append((op.start, 0, invoke | {"_op": n}))
        events.append((op.end, 1, done))
    for event in sim.nemesis:
        events.append((event["time"], 2, {k: v for k, v in event.items() if k != "time"}))
    events.sort(key=lambda e: (e[0], e[1]))
    out = []
    for index, (time, _, event) in enumerate(events):
        op_number = event.pop("_op", None)
        if op_number is not None:
            sim.ops[op_number].index = index
        out.append({"index": index, "time": time, **event})
    return out


def _messages(sim: Sim, rng: random.Random, duration: int,
              partition: tuple[int, int] | None) -> list[dict[str, Any]]:
    old_leader, new_leader = sim.nodes[0], sim.nodes[1]
    out: list[dict[str, Any]] = []

    def cut(a: str, b: str, t: int) -> bool:
        return partition is not None and partition[0] <= t < partition[1] and (
            old_leader in (a, b))

    term = 2
    for tick in range(0, duration, 50 * MS):
        after = partition is not None and tick >= partition[0] + 400 * MS
        leader = new_leader if after else old_leader
        if after and term == 2:
            term = 3
            for peer in sim.nodes:
                if peer != new_leader:
                    t = tick - 5 * MS
                    action = "drop" if cut(new_leader, peer, t) else "deliver"
                    out.append({"time": t, "from": new_leader, "to": peer, "type": "vote",
                                "term": 3, "action": action})
                    if action == "deliver":
                        out.append({"time": t + MS, "from": peer, "to": new_leader,
                                    "type": "vote-resp", "term": 3, "action": "deliver"})
        senders = [leader] + ([old_leader] if partition and partition[0] <= tick <
                              partition[1] and leader != old_leader else [])
        for sender in senders:
            sender_term = term if sender == leader else 2
            for peer in sim.nodes:
                if peer == sender:
                    continue
                t = tick + rng.randrange(0, 2 * MS)
                action = "drop" if cut(sender, peer, t) else "deliver"
                if action == "deliver" and rng.random() < 0.01:
                    action = "delay"
                out.append({"time": t, "from": sender, "to": peer, "type": "heartbeat",
                            "term": sender_term, "action": action})
                if action != "drop":
                    out.append({"time": t + MS, "from": peer, "to": sender,
                                "type": "heartbeat-resp", "term": sender_term,
                                "action": "deliver"})
    for op in sim.ops:
        if op.f == "read" or op.result != "ok":
            continue
        leader = op.node
        for peer in sim.nodes:
            if peer != leader:
                t = op.start + MS
                action = "drop" if cut(leader, peer, t) else "deliver"
                out.append({"time": t, "from": leader, "to": peer, "type": "append",
                            "term": 3 if leader == new_leader else 2, "action": action})
    out.sort(key=lambda m: m["time"])
    return out


def _observations(sim: Sim, duration: int, divergent: bool) -> list[dict[str, Any]]:
    writes = sorted((o for o in sim.ops if o.result == "ok" and o.f in ("write", "cas")),
                    key=lambda o: o.point)
    entries = [{"index": 1, "term": 1, "client": None, "seq": None, "digest": _digest("noop")}]
    for op in writes:
        term = 3 if op.node == sim.nodes[1] else 2
        entries.append({"index": len(entries) + 1, "term": term, "client": op.client,
                        "seq": op.seq, "digest": _digest(op.client, op.seq, op.f, op.value)})
    rows: list[dict[str, Any]] = []
    for node in sim.nodes:
        rows.append({"time": 0, "node": node, "kind": "role", "term": 1, "role": "follower"})
    rows.append({"time": 300 * MS, "node": sim.nodes[0], "kind": "role", "term": 2,
                 "role": "leader"})
    commit = len(entries)
    for node in sim.nodes:
        log = [dict(e) for e in entries]
        if divergent and node == sim.nodes[2]:
            bad = commit // 2
            log[bad - 1] = {**log[bad - 1], "term": log[bad - 1]["term"] + 1,
                            "digest": _digest("lost", bad), "client": "c99", "seq": 1}
        rows.append({"time": duration + 500 * MS, "node": node, "kind": "log",
                     "commit": commit, "snapshot_index": 0, "snapshot_term": 0,
                     "entries": log})
        rows.append({"time": duration + 600 * MS, "node": node, "kind": "digest",
                     "applied": commit, "digest": _digest(node if divergent and
                                                          node == sim.nodes[2] else "ok")})
    rows.append({"time": duration + 400 * MS, "kind": "healed"})
    rows.sort(key=lambda row: row["time"])
    return rows


def _stderr(node: str, sim: Sim, duration: int, partition: tuple[int, int] | None,
            rng: random.Random) -> str:
    lines = [f"0.004 INFO {node} starting, data dir /tmp/{node}",
             f"0.012 INFO {node} listening peer=127.0.0.1:70{node[1:]}0"]
    if node == sim.nodes[0]:
        lines.append(f"0.301 INFO {node} became leader term=2")
    if partition is not None:
        lo, hi = partition
        if node == sim.nodes[0]:
            for t in range(lo + 150 * MS, hi, 300 * MS):
                lines.append(f"{t / NS:.3f} WARN {node} append to n{rng.randint(2, 5)} "
                             f"failed: connection reset; retrying")
            lines.append(f"{(lo + 900 * MS) / NS:.3f} INFO {node} serving read k* locally "
                         f"(lease still valid, term=2)")
            lines.append(f"{hi / NS + 0.05:.3f} INFO {node} stepped down: saw term=3 from n2")
        elif node == sim.nodes[1]:
            lines.append(f"{(lo + 395 * MS) / NS:.3f} INFO {node} election timeout; "
                         f"pre-vote term=3")
            lines.append(f"{(lo + 400 * MS) / NS:.3f} INFO {node} became leader term=3")
        else:
            lines.append(f"{(lo + 401 * MS) / NS:.3f} INFO {node} voted for n2 term=3")
    lines.append(f"{duration / NS:.3f} INFO {node} shutting down")
    lines.sort(key=lambda line: float(line.split()[0]))
    return "\n".join(lines) + "\n"


def make_run(root: Path, kind: str = "valid", *, nodes: int = 5, duration_s: float = 8.0,
             concurrency: int = 5, keys: int = 3, seed: int = 7,
             rate: float | None = None) -> Path:
    """Write a run directory ``root/<test>/<timestamp>/`` and return its path.

    ``rate`` (ops/s over all clients) paces the clients like the harness does;
    without it they run back to back (many more ops, a stress case).
    """
    if kind not in ("valid", "stale-read", "log-divergence"):
        raise ValueError(f"unknown fixture kind {kind!r}")
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(1, nodes + 1)]
    duration = int(duration_s * NS)
    partition = (int(duration * 0.35), int(duration * 0.65))
    sim = simulate(rng, names, duration, concurrency, keys, partition, rate)
    others = names[1:]
    grudge = {names[0]: others, **{n: [names[0]] for n in others}}
    sim.nemesis = [
        {"time": partition[0], "process": "nemesis", "type": "info", "f": "start-partition",
         "value": {"grudge": grudge, "description": f"isolate leader {names[0]}"}},
        {"time": partition[1], "process": "nemesis", "type": "info", "f": "stop-partition",
         "value": "healed"},
        {"time": int(duration * 0.8), "process": "nemesis", "type": "info", "f": "kill",
         "value": [names[-1]]},
        {"time": int(duration * 0.88), "process": "nemesis", "type": "info", "f": "start",
         "value": [names[-1]]},
    ]
    planted = plant_stale_read(sim, rng, partition) if kind == "stale-read" else None
    events = _history_events(sim)
    schedule_f = {"start-partition": "partition", "stop-partition": "heal"}
    schedule = [{"at": round(e["time"] / NS, 3), "f": schedule_f.get(e["f"], e["f"]),
                 "value": e["value"]} for e in sim.nemesis]
    bugs = {"stale-read": ["stale-leader-read"], "log-divergence": ["truncate-on-append"]}
    command = ["splitbrain", "run", "--nodes", str(nodes), "--time-limit", str(duration_s),
               "--concurrency", str(concurrency), "--seed", str(seed),
               "--nemesis", "partition,kill"]
    for bug in bugs.get(kind, []):
        command += ["--bug", bug]
    config = {
        "name": f"raft-kv-{kind}", "seed": seed, "nodes": names, "workload": "register",
        "concurrency": concurrency, "time_limit": duration_s, "read_mode": "read-index",
        "bugs": bugs.get(kind, []), "network": "proxy", "schedule": schedule,
        "command": command,
    }
    run_dir = root / config["name"] / f"20260101T0000{seed % 60:02d}Z-{kind}"
    run_dir.mkdir(parents=True)
    (run_dir / "test.json").write_text(json.dumps(config, indent=2))
    if planted is not None:  # for the tests only: what a reader must find in the report
        (run_dir / PLANTED).write_text(json.dumps({
            "process": planted.process, "key": planted.key, "value": planted.out,
            "node": planted.node, "start": planted.start}))
    _write_jsonl(run_dir / "history.jsonl", events)
    _write_jsonl(run_dir / "observations.jsonl",
                 _observations(sim, duration, kind == "log-divergence"))
    # the verdicts come from the real checkers, so the report is tested on their evidence
    history = load_history(run_dir / "history.jsonl")
    results = compose({
        "linearizable": check_history(history, timeout=60),
        "log-order": check_log_order(load_observations(run_dir / "observations.jsonl"),
                                     history),
    })
    (run_dir / "results.json").write_text(json.dumps(results, default=str))
    _write_jsonl(run_dir / "messages.jsonl", _messages(sim, rng, duration, partition))
    for node in names:
        (run_dir / "nodes" / node).mkdir(parents=True)
        (run_dir / "nodes" / node / "stderr.log").write_text(
            _stderr(node, sim, duration, partition, rng))
    return run_dir


PLANTED = "planted-stale-read.json"


def planted_read(run_dir: Path) -> dict[str, Any]:
    """The stale read a ``stale-read`` fixture planted: process, key, value, node, start."""
    return json.loads((run_dir / PLANTED).read_text())


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
