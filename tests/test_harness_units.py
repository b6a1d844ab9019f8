"""Unit tests of the harness parts that need no real node process."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.db.base import DB, Client, Completion, DBError, DBOptions, create_db, register_db
from harness.run import store
from harness.run.clients import ClientStats, HistoryRecorder, ProcessPool
from harness.run.cluster import RunClock
from harness.run.collect import Collector, ObservationWriter
from harness.run.workload import Pacer, RegisterWorkload, parse_mix
from splitbrain_common.exits import worst as worst_exit_code
from splitbrain_common.ports import LOWEST_PORT, ephemeral_range, free_ports
from splitbrain_common.streams import pump_lines

# -- workload -------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**31),
    keys=st.integers(1, 8),
    ops_per_key=st.one_of(st.none(), st.integers(1, 20)),
)
@settings(max_examples=60, deadline=None)
def test_workload_is_seeded_and_writes_unique_values(seed, keys, ops_per_key):
    workload = RegisterWorkload(keys=keys, ops_per_key=ops_per_key)
    first = [op for op, _ in zip(workload.operations(seed), range(300), strict=False)]
    again = [op for op, _ in zip(workload.operations(seed), range(300), strict=False)]
    assert first == again
    written = [op["value"] if op["f"] == "write" else op["value"][1]
               for op in first if op["f"] in ("write", "cas")]
    assert len(written) == len(set(written)), "every written value is unique"
    seen_per_key: dict[str, set] = {}
    for op in first:
        values = seen_per_key.setdefault(op["key"], set())
        if op["f"] == "cas":
            assert op["value"][0] in values, "cas expects a value generated for its key"
        if op["f"] in ("write", "cas"):
            values.add(op["value"] if op["f"] == "write" else op["value"][1])
    uses = Counter(op["key"] for op in first)
    if ops_per_key is not None:
        assert max(uses.values()) <= ops_per_key
    else:
        assert set(uses) <= {f"k{i}" for i in range(1, keys + 1)}


def test_workload_mix_is_respected():
    workload = RegisterWorkload(keys=3, mix={"read": 1, "write": 0, "cas": 0})
    ops = [op for op, _ in zip(workload.operations(1), range(200), strict=False)]
    assert {op["f"] for op in ops} == {"read"}
    assert parse_mix("read=1,write=1") == {"read": 0.5, "write": 0.5}
    for bad in ("read", "read=x", "jump=1", "read=0,write=0", "read=-1,write=2"):
        with pytest.raises(ValueError):
            parse_mix(bad)


@given(rate=st.floats(1, 1000), steps=st.lists(st.floats(0, 0.5), max_size=50))
def test_pacer_never_bursts(rate, steps):
    pacer = Pacer(rate, 0.0)
    now, starts = 0.0, []
    for step in steps:
        now += step
        starts.append(now + pacer.claim(now))
    # A late slot may start close to the next one, but never more than one
    # extra start per interval: j - i starts need at least (j - i - 1) intervals.
    interval = 1.0 / rate
    for i, a in enumerate(starts):
        for j in range(i + 1, len(starts)):
            assert starts[j] - a >= (j - i - 1) * interval - 1e-6 * max(1.0, starts[j])


# -- store ------------------------------------------------------------------------


def test_store_layout_and_latest_links(tmp_path: Path):
    first = store.create_run_dir(tmp_path, "raft_impl-partition")
    second = store.create_run_dir(tmp_path, "raft_impl-partition")
    assert first != second and first.parent == second.parent
    assert (first / "nodes").is_dir()
    assert (tmp_path / "latest").resolve() == second.resolve()
    assert (tmp_path / "raft_impl-partition" / "latest").resolve() == second.resolve()
    assert os.readlink(tmp_path / "latest") == str(second.relative_to(tmp_path))
    store.write_json(second / "test.json", {"seed": 1})
    assert store.resolve_run_dir(tmp_path) == second.resolve()
    assert store.safe_name("a/b c") == "a_b_c"
    with pytest.raises(FileNotFoundError):
        store.resolve_run_dir(tmp_path / "raft_impl-partition" / "nothing")


# -- DB registry -------------------------------------------------------------------


def test_registry_adds_a_system_without_touching_the_core():
    class Other(DB):
        name = "other"

        def __init__(self, options: DBOptions) -> None:
            self.options = options

    register_db("other-test-system", Other)
    db = create_db("other-test-system", DBOptions(read_mode="log"))
    assert isinstance(db, Other) and db.options.read_mode == "log"
    assert create_db("raft_impl", DBOptions()).name == "raft_impl"
    with pytest.raises(KeyError, match="known"):
        create_db("no-such-system", DBOptions())


# -- clients under the process model -------------------------------------------------


class FakeClient(Client):
    """A linearizable register that can be told to hang (timeout) or refuse."""

    def __init__(self, db: FakeDB) -> None:
        self.db = db
        self.in_doubt = False

    async def invoke(self, op: dict[str, Any], *, client_id: str, seq: int) -> Completion:
        self.db.sessions.append((client_id, seq))
        behaviour = self.db.script.pop(0) if self.db.script else "ok"
        if behaviour == "hang":
            self.in_doubt = True
            await trio.sleep_forever()
        if behaviour == "refuse":  # never reached a leader: definitely not applied
            self.in_doubt = False
            await trio.sleep_forever()
        key = op["key"]
        if op["f"] == "read":
            return Completion("ok", self.db.data.get(key), node="n1")
        if op["f"] == "write":
            self.db.data[key] = op["value"]
            return Completion("ok", node="n1")
        expected, new = op["value"]
        if self.db.data.get(key) != expected:
            return Completion("fail", error="cas-mismatch", node="n1")
        self.db.data[key] = new
        return Completion("ok", node="n1")


class FakeDB(DB):
    name = "fake"

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.script: list[str] = []
        self.sessions: list[tuple[str, int]] = []

    def client(self, node: str) -> Client:
        return FakeClient(self)


def read_history(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_process_model_retires_on_timeout(tmp_path: Path):
    db = FakeDB()
    db.script = ["ok", "hang", "refuse", "ok"]
    recorder = HistoryRecorder(tmp_path / "history.jsonl", RunClock())
    pool = ProcessPool(db, ["n1", "n2", "n3"], recorder, concurrency=2, op_timeout=0.05)
    process = await pool.new_process(1)
    assert process.node == "n2"
    ops = [
        {"f": "write", "key": "k1", "value": 1},
        {"f": "write", "key": "k1", "value": 2},
        {"f": "write", "key": "k1", "value": 3},
        {"f": "read", "key": "k1", "value": None},
    ]
    done = await pool.run_op(process, ops[0])
    assert done["type"] == "ok"
    done = await pool.run_op(process, ops[1])
    assert done["type"] == "info" and done["error"] == "timeout"
    process = await pool.retire(process, 1)
    assert process.number == 3 and process.client_id == "c3" and process.seq == 0
    done = await pool.run_op(process, ops[2])
    assert done["type"] == "fail", "a timeout with no attempt in doubt is a definite failure"
    done = await pool.run_op(process, ops[3])
    assert done == {**done, "type": "ok", "value": 1}
    recorder.close()
    events = read_history(tmp_path / "history.jsonl")
    assert [e["index"] for e in events] == list(range(8))
    invokes = [e for e in events if e["type"] == "invoke"]
    assert [(e["client"], e["seq"]) for e in invokes] == [
        ("c1", 1), ("c1", 2), ("c3", 1), ("c3", 2)
    ]
    assert all(e["time"] >= 0 for e in events)
    times = [e["time"] for e in events]
    assert times == sorted(times)


async def test_workers_keep_one_op_per_process(tmp_path: Path):
    db = FakeDB()
    db.script = ["ok"] * 5 + ["hang"] + ["ok"] * 200
    stats = ClientStats()
    recorder = HistoryRecorder(tmp_path / "history.jsonl", RunClock())
    recorder.listeners.append(stats.observe)
    pool = ProcessPool(db, ["n1"], recorder, concurrency=3, op_timeout=0.05, stats=stats)
    stop = trio.Event()
    workload = RegisterWorkload(keys=2, rate=400, concurrency=3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.run_workers, workload.operations(7), workload.rate, stop)
        await trio.sleep(0.3)
        stop.set()
    recorder.close()
    events = read_history(tmp_path / "history.jsonl")
    open_ops: dict[Any, dict] = {}
    for event in events:
        if event["type"] == "invoke":
            assert event["process"] not in open_ops, "a process runs one op at a time"
            open_ops[event["process"]] = event
        else:
            assert open_ops.pop(event["process"])["f"] == event["f"]
    assert not open_ops, "every invoke completed before the workers stopped"
    infos = [e for e in events if e["type"] == "info"]
    assert len(infos) == 1
    retired = infos[0]["process"]
    later = [e for e in events if e["process"] == retired and e["index"] > infos[0]["index"]]
    assert later == [], "a process with an indefinite op never runs again"
    assert retired + 3 in {e["process"] for e in events}
    assert stats.by_type["info"] == 1 and stats.invoked > 20
    assert stats.processes_retired == 1


# -- collector -------------------------------------------------------------------------


class StatusDB(DB):
    name = "status"

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.log_calls: list[tuple[str, int | None]] = []

    async def status(self, node: str) -> dict[str, Any]:
        if node in self.down:
            raise DBError(f"{node} down")
        role = "leader" if node == "n1" else "follower"
        return {"role": role, "term": 2, "leader": "n1", "commit": 100, "applied": 100,
                "last_index": 101}

    async def log(self, node: str, from_index: int | None = None) -> dict[str, Any]:
        self.log_calls.append((node, from_index))
        start = from_index or 1
        entries = [{"index": i, "term": 2, "client": None, "seq": None, "digest": "d"}
                   for i in range(start, 102)]
        return {"commit": 100, "snapshot_index": 0, "snapshot_term": 0, "entries": entries}

    async def state_digest(self, node: str) -> dict[str, Any]:
        return {"applied": 100, "digest": "abc"}


async def test_collector_writes_interfaces_format(tmp_path: Path):
    db = StatusDB()
    writer = ObservationWriter(tmp_path / "observations.jsonl", RunClock())
    collector = Collector(db, ["n1", "n2", "n3"], writer, interval=0.01, full_every=3)
    db.down.add("n3")
    await collector.collect_once()
    collector.on_node_event("n2", {"event": "role", "term": 3, "role": "candidate"})
    collector.mark("crash", "n2")
    collector.mark("restart", "n2")
    await collector.collect_once()
    collector.healed()
    writer.close()
    lines = (tmp_path / "observations.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    kinds = Counter((r["kind"], r.get("node")) for r in records)
    assert kinds[("status", "n1")] == 2 and kinds[("status", "n3")] == 0
    assert kinds[("role", "n2")] == 1 and kinds[("crash", "n2")] == 1
    assert kinds[("healed", None)] == 1
    status = next(r for r in records if r["kind"] == "status")
    assert set(status) == {"time", "node", "kind", "role", "term", "leader", "commit",
                           "applied", "last_index"}
    digest = next(r for r in records if r["kind"] == "digest")
    assert digest["digest"] == "abc" and digest["applied"] == 100
    # first dump is full; the second incremental from commit - overlap, except
    # for n2 which restarted and needs a full dump again
    assert ("n1", None) in db.log_calls and ("n1", 68) in db.log_calls
    assert db.log_calls.count(("n2", None)) == 2
    incremental = [r for r in records if r["kind"] == "log" and "from" in r]
    assert incremental and incremental[0]["entries"][0]["index"] == 68
    assert collector.leader == "n1"


def test_exit_code_priority():
    assert worst_exit_code([0, 0]) == 0
    assert worst_exit_code([0, 2]) == 2
    assert worst_exit_code([2, 1, 0]) == 1


# -- live display ------------------------------------------------------------------------


def test_display_renders_the_run_state(tmp_path: Path):
    from rich.console import Console

    from harness.run.display import display_wanted, render
    from harness.run.run import RunConfig, RunState

    state = RunState(RunConfig(nemesis=["partition"]), RunClock())
    state.phase = "faults"
    for event in (
        {"process": 0, "type": "invoke", "f": "read", "time": 1},
        {"process": 0, "type": "ok", "f": "read", "time": 2},
        {"process": 1, "type": "invoke", "f": "write", "time": 3},
        {"process": 1, "type": "info", "f": "write", "time": 4},
        {"process": "nemesis", "type": "info", "f": "start-partition", "value": {}, "time": 5},
    ):
        state.observe(event)
    console = Console(record=True, width=100, force_terminal=False)
    console.print(render(state))
    text = console.export_text()
    assert "1 ok" in text and "1 info" in text and "partition" in text
    assert "faults" in text and "none known" in text
    state.observe({"process": "nemesis", "type": "info", "f": "stop-partition", "time": 6})
    assert state.current_faults() == []
    assert display_wanted(no_display=True) is False


# -- node output ------------------------------------------------------------------------


@given(
    text=st.lists(st.sampled_from([b"a", b"{}", b"\n", b"xy\n"]), max_size=30).map(b"".join),
    cuts=st.lists(st.integers(0, 60), max_size=6),
)
@settings(max_examples=60, deadline=None)
def test_node_output_becomes_the_same_lines_however_it_is_chunked(
    text: bytes, cuts: list[int]
) -> None:
    """Nodes' stdout arrives in arbitrary chunks; the lines (and a last unterminated one) do not."""
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    send, receive = trio.testing.memory_stream_one_way_pair()
    seen: list[bytes] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump_lines, receive, seen.extend)
            for chunk in chunks:
                await send.send_all(chunk)
            await send.aclose()

    trio.run(main)
    expected = text.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert seen == expected


# -- wire client -----------------------------------------------------------------------


async def test_wire_client_reconnects_after_the_node_closed_and_knows_unsent():
    import functools

    from harness.db.wire_client import ConnectionLost, WireClient
    from splitbrain_common.wire import FrameDecoder, encode_frame

    connections = []

    async def answer_once_then_close(stream):
        connections.append(stream)
        decoder = FrameDecoder()
        decoder.feed(await stream.receive_some())
        for message in decoder.messages():
            await stream.send_all(encode_frame({"id": message["id"], "ok": True}))
        await stream.aclose()  # like a node that crashes after answering

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, answer_once_then_close, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        client = WireClient("127.0.0.1", port)
        assert (await client.request({"op": "status"}))["ok"] is True
        await trio.sleep(0.05)  # the close reaches us
        # The dead connection is noticed before sending: no indefinite request.
        assert (await client.request({"op": "status"}))["ok"] is True
        assert len(connections) == 2
        await client.aclose()
        nursery.cancel_scope.cancel()
    with pytest.raises(ConnectionLost) as lost:
        await WireClient("127.0.0.1", port).request({"op": "status"})
    assert lost.value.sent is False, "a refused connection certainly did not deliver"


def test_node_ports_are_free_and_outside_the_ephemeral_range() -> None:
    """Outgoing connections take ephemeral source ports; a node's port must not be one,
    or a restarted node can find it taken ("address already in use")."""
    import socket

    low, high = ephemeral_range()
    ports = free_ports(40)
    assert len(set(ports)) == 40
    assert all(p >= LOWEST_PORT and not low <= p <= high for p in ports)
    with socket.socket() as sock:  # and one is really free to listen on
        sock.bind(("127.0.0.1", ports[0]))
        sock.listen()
