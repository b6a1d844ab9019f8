"""Hypothesis properties of WAL recovery: any truncation recovers a prefix; corruption is named."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raft_impl.storage import (
    REC_ENTRIES,
    REC_SNAPSHOT,
    Storage,
    WalCorruption,
    iter_records,
    recover,
)
from raft_impl.types import Entry, EntryKind, HardState

batch_sizes = st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=12)
payloads = st.binary(min_size=0, max_size=40)


def write_batches(path: Path, sizes: list[int], blobs: list[bytes], segment_bytes: int):
    """Write one synced batch per size; returns all entries written, in order."""
    storage = Storage(path, segment_bytes=segment_bytes)
    storage.open()
    written: list[Entry] = []
    index = 0
    for n, size in enumerate(sizes):
        batch = []
        for _ in range(size):
            index += 1
            batch.append(Entry(index, 1 + n // 3, EntryKind.COMMAND, blobs[index % len(blobs)]))
        storage.stage_hard_state(HardState(1 + n // 3, "n1", max(0, index - size)))
        storage.stage_entries(batch)
        storage.sync()
        written.extend(batch)
    storage.close()
    return written


def surviving_entries(segment: Path, cut: int) -> int:
    """Number of entries in records of ``segment`` that end at or before ``cut``."""
    count = 0
    data_len = segment.stat().st_size
    records = list(iter_records(segment))
    for i, (offset, rtype, payload) in enumerate(records):
        end = records[i + 1][0] if i + 1 < len(records) else data_len
        if rtype == REC_ENTRIES and end <= cut:
            count = payload[-1][0]
        del offset
    return count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=batch_sizes,
    blobs=st.lists(payloads, min_size=1, max_size=5),
    cut_fraction=st.floats(min_value=0.0, max_value=1.0),
    many_segments=st.booleans(),
)
def test_truncation_at_any_offset_recovers_a_prefix(sizes, blobs, cut_fraction, many_segments):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        written = write_batches(path, sizes, blobs, 600 if many_segments else 1 << 20)
        segment = sorted((path / "wal").glob("*.wal"))[-1]
        size = segment.stat().st_size
        cut = round(cut_fraction * size)
        expected_survivors = surviving_entries(segment, cut)
        first_in_last = next(
            (p[0][0] for _, t, p in iter_records(segment) if t == REC_ENTRIES and p), None
        )
        with open(segment, "r+b") as f:
            f.truncate(cut)
        rec = recover(path)
        # Recovered entries are exactly a prefix of what was written ...
        assert rec.entries == written[: len(rec.entries)]
        # ... and everything in records wholly before the cut survives.
        if first_in_last is None:
            assert len(rec.entries) == len(written)
        else:
            assert len(rec.entries) >= max(expected_survivors, first_in_last - 1)
            assert len(rec.entries) == max(expected_survivors, first_in_last - 1)
        # The repaired WAL is clean: a second recovery finds no torn tail.
        assert recover(path).torn_tail is None
        # And the storage reopens and accepts appends after the cut.
        storage = Storage(path)
        again = storage.open()
        nxt = len(again.entries) + 1
        storage.stage_entries([Entry(nxt, 99, EntryKind.COMMAND, b"after")])
        storage.sync()
        storage.close()
        assert recover(path).entries[-1] == Entry(nxt, 99, EntryKind.COMMAND, b"after")


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=4), min_size=3, max_size=10),
    victim=st.integers(min_value=0, max_value=1_000),
    byte_in_record=st.integers(min_value=0, max_value=1_000),
    flip=st.integers(min_value=1, max_value=255),
)
def test_corrupting_a_middle_record_is_detected(sizes, victim, byte_in_record, flip):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        write_batches(path, sizes, [b"payload"], 1 << 20)
        segment = sorted((path / "wal").glob("*.wal"))[-1]
        records = [r for r in iter_records(segment)]
        # Any record but the last one (damage to the last one may be a torn write).
        i = victim % (len(records) - 1)
        start = records[i][0]
        end = records[i + 1][0]
        offset = start + byte_in_record % (end - start)
        raw = bytearray(segment.read_bytes())
        raw[offset] ^= flip
        segment.write_bytes(bytes(raw))
        with pytest.raises(WalCorruption) as info:
            recover(path)
        assert info.value.path == segment
        assert info.value.offset == start
        assert f"offset {start}" in str(info.value)


def test_snapshot_mark_records_exist_in_segment_headers(tmp_path: Path) -> None:
    write_batches(tmp_path, [2, 2], [b"x"], 1 << 20)
    segment = sorted((tmp_path / "wal").glob("*.wal"))[-1]
    types = [t for _, t, _ in iter_records(segment)]
    assert types[:2] == [2, REC_SNAPSHOT]


# A node's life as storage sees it: appends (some replacing a suffix), term/vote changes,
# local or leader snapshots (compaction), and crashes, each a plain kill or a power loss.
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3), st.integers(1, 30)),
        st.tuples(st.just("vote"), st.integers(0, 2), st.none()),
        st.tuples(st.just("snapshot"), st.integers(0, 300), st.booleans()),
        st.tuples(st.sampled_from(["kill", "power-loss"]), st.none(), st.none()),
    ),
    min_size=1, max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, fsync=st.booleans())
def test_a_node_always_recovers_its_storage_after_a_power_loss(steps, fsync) -> None:
    """Whatever happened before, a crash or power loss (``drop_unsynced``, the nemesis
    ``lose-unfsynced``) leaves storage that opens without WalCorruption; with fsync
    (correct code) nothing acknowledged is lost: the recovered snapshot and entries are
    exactly what was written. Without fsync (the planted ack-before-fsync) data may be
    lost, but the node still starts: losing writes is the bug, not refusing to start."""
    from raft_impl.storage import drop_unsynced
    from raft_impl.types import Snapshot, SnapshotMeta

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        storage = Storage(path, segment_bytes=300, fsync=fsync)
        storage.open()
        log: list[Entry] = []  # the model: entries after the base
        base = SnapshotMeta(0, 0)
        term = 1
        for kind, a, b in steps:
            if kind == "append":
                last = log[-1].index if log else base.index
                first = max(base.index + 1, last + 1 - a)
                new = [Entry(i, term, EntryKind.COMMAND, b"x" * (i % 7))
                       for i in range(first, first + b)]
                log = [e for e in log if e.index < first] + new
                storage.stage_entries(new)
                storage.sync()
            elif kind == "vote":
                term += 1
                storage.stage_hard_state(HardState(term, f"n{a}", base.index))
                storage.sync()
            elif kind == "snapshot":
                last = log[-1].index if log else base.index
                if a == 0 and not b:
                    continue
                if b:  # a leader's snapshot past our log replaces it
                    meta = SnapshotMeta(last + a, term)
                    log = []
                else:
                    index = base.index + (a % max(1, last - base.index)) + 1
                    if index > last:
                        continue
                    meta = SnapshotMeta(index, next(e.term for e in log if e.index == index))
                    log = [e for e in log if e.index > index]
                storage.save_snapshot(Snapshot(meta, b"state"), reset=b)
                base = meta
            else:
                storage.close()
                if kind == "power-loss":
                    drop_unsynced(path)
                storage = Storage(path, segment_bytes=300, fsync=fsync)
                rec = storage.open()  # must never raise WalCorruption
                if fsync or kind == "kill":
                    assert rec.entries == log
                    assert (rec.snapshot.meta if rec.snapshot else SnapshotMeta(0, 0)) == base
                else:
                    log = rec.entries
                    base = rec.snapshot.meta if rec.snapshot else SnapshotMeta(0, 0)
                    term = max(term, rec.hard_state.term)
        storage.close()
