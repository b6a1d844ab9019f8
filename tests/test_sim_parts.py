"""Unit tests of the simulator's parts: event loop, disk, network."""

from __future__ import annotations

import random

import trio

from harness.sim.disk import SimDisk
from harness.sim.loop import EventLoop
from harness.sim.network import SimNetwork
from raft_impl.types import Entry, HardState, Snapshot, SnapshotMeta


def entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term) for i in range(lo, hi + 1)]


def test_loop_runs_events_in_time_then_schedule_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.call_at(2.0, seen.append, "late")
    loop.call_at(1.0, seen.append, "first")
    loop.call_at(1.0, seen.append, "second")  # same instant: scheduling order
    timer = loop.timer_at(1.5, seen.append, "cancelled")
    timer.cancel()
    loop.run_until(1.9)
    assert seen == ["first", "second"]
    assert loop.now == 1.9
    loop.run_until(5.0)
    assert seen == ["first", "second", "late"]


def test_disk_process_crash_keeps_written_records_machine_crash_loses_them() -> None:
    disk = SimDisk()
    disk.write(("entries", entries(1, 3)))
    disk.write(("hard_state", HardState(2, "n1", 3)))
    disk.fsync()
    disk.write(("entries", entries(4, 5)))
    lost = disk.machine_crash(random.Random(0), torn=False)
    assert lost == 1
    image = disk.image()
    assert [e.index for e in image.entries] == [1, 2, 3]
    assert image.hard_state == HardState(2, "n1", 3)
    disk.write(("entries", entries(4, 5)))
    disk.process_crash()  # SIGKILL: the page cache still has it
    assert [e.index for e in disk.image().entries] == [1, 2, 3, 4, 5]


def test_disk_torn_write_keeps_a_prefix_of_unsynced_records() -> None:
    kept = set()
    for seed in range(30):
        disk = SimDisk()
        for index in range(1, 6):
            disk.write(("entries", entries(index, index)))
        disk.machine_crash(random.Random(seed), torn=True)
        indexes = [e.index for e in disk.image().entries]
        assert indexes == list(range(1, len(indexes) + 1))  # a prefix, never a hole
        kept.add(len(indexes))
    assert len(kept) > 2


def test_disk_replays_truncation_snapshot_and_compaction() -> None:
    disk = SimDisk()
    disk.write(("entries", entries(1, 5, term=1)))
    disk.write(("entries", entries(4, 4, term=2)))  # conflict: 4.. replaced
    disk.fsync()
    assert [(e.index, e.term) for e in disk.image().entries] == [
        (1, 1), (2, 1), (3, 1), (4, 2)]
    disk.write(("compact", Snapshot(SnapshotMeta(2, 1), b"s")))
    disk.fsync()
    image = disk.image()
    assert image.snapshot is not None and image.snapshot.meta.index == 2
    assert [e.index for e in image.entries] == [3, 4]
    disk.write(("snapshot", Snapshot(SnapshotMeta(9, 3), b"t")))
    disk.write(("entries", entries(10, 11, term=3)))
    disk.fsync()
    assert [e.index for e in disk.image().entries] == [10, 11]


def _network(seed: int = 1) -> tuple[EventLoop, SimNetwork, list[tuple[float, str, int]]]:
    loop = EventLoop()
    got: list[tuple[float, str, int]] = []
    net = SimNetwork(loop, random.Random(seed), ["a", "b", "c"],
                     lambda to, m: got.append((loop.now, to, m)), (0.001, 0.005))
    return loop, net, got


def test_network_is_fifo_per_link_and_partitions_drop() -> None:
    loop, net, got = _network()
    for i in range(50):
        net.send("a", "b", i)
    trio.run(net.partition, {"c": {"a"}})
    net.send("a", "c", 99)
    net.send("b", "c", 100)
    loop.run_until(1.0)
    assert [m for _, to, m in got if to == "b"] == list(range(50))
    assert [m for _, to, m in got if to == "c"] == [100]
    assert net.counters["dropped"] == 1


def test_network_loss_duplicate_reorder_delay() -> None:
    loop, net, got = _network()
    trio.run(net.set_loss, 1.0, [("a", "b")])
    trio.run(net.set_duplicate, 1.0, [("a", "c")])
    for i in range(10):
        net.send("a", "b", i)
        net.send("a", "c", i)
    loop.run_until(1.0)
    assert [m for _, to, m in got if to == "b"] == []
    assert sorted(m for _, to, m in got if to == "c") == sorted(list(range(10)) * 2)
    trio.run(net.reset_faults)
    got.clear()
    trio.run(net.set_reorder, 0.5)
    for i in range(100):
        net.send("b", "a", i)
    loop.run_until(2.0)
    order = [m for _, _, m in got]
    assert sorted(order) == list(range(100)) and order != list(range(100))
    trio.run(net.reset_faults)
    got.clear()
    trio.run(net.set_delay, 0.2, 0.0)
    start = loop.now
    net.send("c", "a", 1)
    loop.run_until(3.0)
    assert got[0][0] - start >= 0.2
