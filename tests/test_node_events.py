"""What a raft_impl node pushes about itself (raft_impl/events.py, docs/node-events.md)."""

from __future__ import annotations

import json
import os

import trio
import trio.testing
from node_helpers import InProcessCluster, wait_until

from raft_impl.events import EventStream, SafetyWatch, encode_event
from raft_impl.localcluster import COMMITTED_PREFIX
from raft_impl.types import Entry, EntryKind


def write(key, value, client="c1", seq=1):
    return {"client": client, "seq": seq, "op": "write", "key": key, "value": value}


def committed_rows(events) -> dict[int, list]:
    """index -> row, from every committed event of one node; asserts no index differs."""
    rows: dict[int, list] = {}
    for event in events.of("committed"):
        assert event["commit"] >= event["entries"][-1][0]
        for row in event["entries"]:
            assert rows.setdefault(row[0], row) == row
    return rows


async def test_every_applied_entry_is_pushed_before_the_snapshot_that_covers_it(
    nursery, tmp_path
) -> None:
    cluster = InProcessCluster(nursery, tmp_path, 3, snapshot_threshold=20)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    lagging = next(n for n in cluster.ids if n != leader)
    await cluster.stop(lagging)
    for i in range(60):
        assert (await cluster.request(leader, write(f"k{i % 7}", i, seq=i + 1)))["ok"]
    await cluster.start(lagging)
    await wait_until(
        lambda: cluster.nodes[lagging].kv.applied >= cluster.nodes[leader].kv.applied
    )
    events = cluster.events[leader]
    rows = committed_rows(events)
    applied = cluster.nodes[leader].kv.applied
    assert sorted(rows) == list(range(1, applied + 1))
    ours = {row[4]: row for row in rows.values() if row[3] == "c1"}
    assert sorted(ours) == list(range(1, 61))
    assert all(row[5] is False for row in ours.values())  # each took effect once
    # Each snapshot comes after the committed events of every index it covers.
    seen = 0
    for event in events.events:
        if event["event"] == "committed":
            seen = event["entries"][-1][0]
        elif event["event"] == "snapshot":
            assert event["source"] == "taken" and event["index"] <= seen
            assert event["term"] == rows[event["index"]][1]
    taken = {e["index"]: e for e in events.of("snapshot")}
    assert len(taken) >= 2
    # The lagging node installs the leader's snapshot: same index, term, and state digest.
    installed = cluster.events[lagging].of("snapshot")
    assert installed and installed[-1]["source"] == "installed"
    same = taken[installed[-1]["index"]]
    assert (same["term"], same["digest"]) == (installed[-1]["term"], installed[-1]["digest"])
    # What the lagging node applied after it agrees with the leader, and nobody complained.
    for index, row in committed_rows(cluster.events[lagging]).items():
        assert rows[index] == row
    assert not any(cluster.events[n].of("complaint") for n in cluster.ids)


async def test_votes_are_pushed_once_per_term_the_winners_own_included(
    nursery, tmp_path
) -> None:
    """The ``vote`` event (the nemesis's ``vote`` trigger): every node that helped elect
    the leader says whom it voted for in that term, the leader for itself."""
    cluster = InProcessCluster(nursery, tmp_path, 3)
    await cluster.start_all()
    leader = await cluster.wait_leader()
    term = cluster.nodes[leader].core.term
    await wait_until(lambda: sum(
        any(v["term"] == term and v["for"] == leader for v in cluster.events[n].of("vote"))
        for n in cluster.ids) >= 2)
    for node in cluster.ids:
        votes = [(v["term"], v["for"]) for v in cluster.events[node].of("vote")]
        assert len(votes) == len(set(votes)), "one event per vote, not per Ready"
        assert len({t for t, _ in votes}) == len(votes), "at most one vote a term"
    assert (term, leader) in [(v["term"], v["for"]) for v in cluster.events[leader].of("vote")]


async def test_a_retry_in_the_log_is_marked_as_skipped_unless_dedup_is_broken(
    nursery, tmp_path
) -> None:
    for bugs, expected in ((frozenset(), [False, True]), (frozenset({"no-dedup"}), [False, False])):
        cluster = InProcessCluster(nursery, tmp_path / str(len(bugs)), 1, bugs=bugs)
        await cluster.start_all()
        await cluster.wait_leader()
        append = {"client": "c", "seq": 1, "op": "append", "key": "l", "value": "x"}
        await cluster.request("n1", append)
        await cluster.request("n1", append)
        rows = [row for row in committed_rows(cluster.events["n1"]).values() if row[3] == "c"]
        assert [row[5] for row in rows] == expected
        assert [row[0] for row in rows] == [2, 3]  # after the leader's no-op
        await cluster.stop("n1")


class Sink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def emit(self, event, droppable=None) -> None:
        self.events.append(event)


def entry(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(index, term, EntryKind.COMMAND, data)


def rows_of(*entries: Entry) -> list[list]:
    return [[e.index, e.term, e.digest(), None, None, None] for e in entries]


def test_safety_watch_complains_about_an_applied_entry_rewritten_differently() -> None:
    sink = Sink()
    watch = SafetyWatch(sink)
    watch.applied(rows_of(entry(1, 1), entry(2, 1), entry(3, 2)))
    watch.rewriting([entry(2, 1), entry(3, 2), entry(4, 2)], applied=3)  # the same: fine
    assert sink.events == []
    watch.rewriting([entry(3, 3), entry(4, 3)], applied=3)
    [complaint] = sink.events
    assert complaint["complaint"] == "applied-entry-overwritten"
    assert complaint["index"] == 3 and complaint["severity"] == "violation"
    watch.rewriting([entry(2, 1, b"other")], applied=3)  # same term, other content
    assert sink.events[-1]["index"] == 2


def test_safety_watch_complains_when_commit_or_term_goes_back_or_passes_the_log() -> None:
    sink = Sink()
    watch = SafetyWatch(sink)
    watch.state(term=2, commit=5, last_index=7)
    watch.state(term=3, commit=7, last_index=7)
    assert sink.events == []
    watch.state(term=3, commit=6, last_index=7)
    watch.state(term=2, commit=7, last_index=7)
    watch.state(term=3, commit=7, last_index=6)
    assert [e["complaint"] for e in sink.events] == [
        "commit-went-backwards", "term-went-backwards", "commit-beyond-log"]


def test_safety_watch_complains_about_a_snapshot_that_rolls_the_state_back() -> None:
    sink = Sink()
    watch = SafetyWatch(sink)
    watch.installing_snapshot(10, 2, applied=4)
    assert sink.events == []
    watch.installing_snapshot(3, 2, applied=10)
    assert [e["complaint"] for e in sink.events] == ["state-rolled-back"]


def test_complaints_of_one_kind_are_bounded() -> None:
    sink = Sink()
    watch = SafetyWatch(sink)
    watch.state(term=1, commit=100, last_index=100)
    for commit in range(50):
        watch.state(term=1, commit=commit, last_index=100)
    assert 0 < len(sink.events) <= 10


async def test_event_stream_never_blocks_and_says_what_it_dropped() -> None:
    """A reader that does not read: committed batches beyond the bound are dropped, rare
    events are kept, and the reader is told the dropped index range before the next event."""
    read_fd, write_fd = os.pipe()
    stream = EventStream(fd=write_fd, limit=64 * 1024)
    try:
        stream.open()
        payload = "x" * 1000
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            for index in range(1, 301):  # ~300 KB: more than the pipe and the backlog hold
                stream.emit({"event": "committed", "entries": [[index, payload]]},
                            droppable=(index, index))
                if index == 150:
                    stream.emit({"event": "role", "term": 2})
            assert stream.dropped_batches > 0
            stream.emit({"event": "snapshot", "index": 300})
            chunks = []
            reader = trio.lowlevel.FdStream(os.dup(read_fd))
            async with reader:
                text = b""
                while not text.endswith(b'"index":300}\n'):
                    with trio.fail_after(5):
                        chunk = await reader.receive_some(65536)
                    chunks.append(chunk)
                    text = b"".join(chunks)
            nursery.cancel_scope.cancel()
        events = [json.loads(line) for line in text.splitlines()]
        kinds = [e["event"] for e in events]
        assert "role" in kinds and kinds[-2:] == ["events-dropped", "snapshot"]
        kept = [e["entries"][0][0] for e in events if e["event"] == "committed"]
        dropped = [e for e in events if e["event"] == "events-dropped"]
        assert kept == sorted(kept)
        assert sum(e["batches"] for e in dropped) == stream.dropped_batches == 300 - len(kept)
        covered = kept + [i for e in dropped for i in range(e["first"], e["last"] + 1)]
        assert sorted(covered) == list(range(1, 301))
    finally:
        os.close(read_fd)
        stream.close()
        os.close(write_fd)


def test_local_clusters_recognise_committed_events_without_parsing_them() -> None:
    line = encode_event({"event": "committed", "commit": 3, "entries": [[3, 1, "d", None,
                                                                        None, None]]})
    assert line.startswith(COMMITTED_PREFIX)
    assert not encode_event({"event": "snapshot", "index": 3}).startswith(COMMITTED_PREFIX)


async def test_event_stream_stops_writing_and_keeping_when_the_reader_is_gone() -> None:
    """The harness went away while a backlog waited: the drain finds out, and from then
    on nothing is kept (a node must not grow its memory for nobody)."""
    read_fd, write_fd = os.pipe()
    stream = EventStream(fd=write_fd, limit=1 << 20)
    stream.open()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            while not stream._backlog:  # fill the pipe: the rest waits in the backlog
                stream.emit({"event": "role", "pad": "x" * 4096})
            os.close(read_fd)
            await trio.testing.wait_all_tasks_blocked()
            for term in range(100):
                stream.emit({"event": "role", "term": term})
            assert not stream._backlog and stream._backlog_bytes == 0
            nursery.cancel_scope.cancel()
    finally:
        stream.close()
        os.close(write_fd)
