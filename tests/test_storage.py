"""WAL and snapshot storage: round trips, truncation, compaction, torn tails, corruption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raft_impl.storage import (
    WATERMARK_FILE,
    Storage,
    WalCorruption,
    drop_unsynced,
    iter_records,
    recover,
)
from raft_impl.types import Entry, EntryKind, HardState, Snapshot, SnapshotMeta


def entries(lo: int, hi: int, term: int = 1, tag: str = "") -> list[Entry]:
    return [Entry(i, term, EntryKind.COMMAND, f"{tag}{i}".encode()) for i in range(lo, hi + 1)]


def open_storage(path: Path, **kwargs) -> tuple[Storage, object]:
    storage = Storage(path, **kwargs)
    return storage, storage.open()


def segments(path: Path) -> list[Path]:
    return sorted((path / "wal").glob("*.wal"))


def test_fresh_directory_recovers_empty(tmp_path: Path) -> None:
    storage, rec = open_storage(tmp_path / "n1")
    storage.close()
    assert rec.hard_state == HardState()
    assert rec.entries == [] and rec.snapshot is None and rec.torn_tail is None


def test_hard_state_and_entries_round_trip(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.stage_hard_state(HardState(3, "n2", 4))
    storage.stage_entries(entries(1, 5, term=3))
    storage.sync()
    storage.close()
    _, rec = open_storage(tmp_path)
    assert rec.hard_state == HardState(3, "n2", 4)
    assert rec.entries == entries(1, 5, term=3)


def test_conflicting_entries_replace_the_suffix(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.stage_entries(entries(1, 10, term=1))
    storage.sync()
    storage.stage_entries(entries(6, 8, term=2, tag="new"))
    storage.sync()
    storage.close()
    rec = recover(tmp_path)
    assert rec.entries == entries(1, 5, term=1) + entries(6, 8, term=2, tag="new")


def test_group_commit_is_one_fsync_per_sync(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    before = storage.syncs
    for i in range(1, 51):  # fifty Readies staged while one fsync was "in flight"
        storage.stage_hard_state(HardState(1, "n1", i - 1))
        storage.stage_entries(entries(i, i))
    storage.sync()
    assert storage.syncs == before + 1
    storage.close()
    assert recover(tmp_path).entries == entries(1, 50)


def test_segments_roll_and_recover_in_order(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=2048)
    for i in range(1, 301, 10):
        storage.stage_entries(entries(i, i + 9))
        storage.sync()
    storage.close()
    assert len(segments(tmp_path)) >= 3
    assert recover(tmp_path).entries == entries(1, 300)


def test_local_snapshot_compacts_segments_and_keeps_suffix(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=2048)
    for i in range(1, 501, 10):
        storage.stage_entries(entries(i, i + 9))
        storage.sync()
    count_before = len(segments(tmp_path))
    storage.save_snapshot(Snapshot(SnapshotMeta(400, 1), b"state@400"), reset=False)
    storage.save_snapshot(Snapshot(SnapshotMeta(450, 1), b"state@450"), reset=False)
    storage.close()
    assert len(segments(tmp_path)) < count_before
    assert [p.name for p in tmp_path.glob("*.snap")] == [f"snapshot-{450:020d}.snap"]
    rec = recover(tmp_path)
    assert rec.snapshot == Snapshot(SnapshotMeta(450, 1), b"state@450")
    assert rec.entries == entries(451, 500)
    assert rec.hard_state.commit >= 450


def test_installed_snapshot_replaces_the_log(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.stage_entries(entries(1, 30, term=1))
    storage.sync()
    storage.save_snapshot(Snapshot(SnapshotMeta(20, 5), b"leader state"), reset=True)
    storage.stage_entries(entries(21, 22, term=5))
    storage.sync()
    storage.close()
    rec = recover(tmp_path)
    assert rec.snapshot.meta == SnapshotMeta(20, 5)
    assert rec.entries == entries(21, 22, term=5)


def test_snapshot_file_ahead_of_wal_mark_is_adopted(tmp_path: Path) -> None:
    """Crash after renaming the snapshot file but before its WAL mark was written."""
    from raft_impl.storage import write_snapshot_file

    storage, _ = open_storage(tmp_path)
    storage.stage_entries(entries(1, 30))
    storage.sync()
    storage.close()
    write_snapshot_file(tmp_path, Snapshot(SnapshotMeta(10, 1), b"s"))
    rec = recover(tmp_path)
    assert rec.snapshot.meta.index == 10 and rec.entries == entries(11, 30)


def test_torn_final_record_is_cut_and_node_starts(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.stage_entries(entries(1, 5))
    storage.sync()
    storage.close()
    # Simulate a write that was never fsynced and got torn: append half a record
    # past the watermark.
    seg = segments(tmp_path)[-1]
    good = seg.stat().st_size
    storage2, _ = open_storage(tmp_path)
    storage2.fsync_enabled = False
    storage2.stage_entries(entries(6, 9))
    storage2.sync()
    storage2.close()
    seg2 = segments(tmp_path)[-1]
    with open(seg2, "r+b") as f:
        f.truncate(seg2.stat().st_size - 3)
    _, rec = open_storage(tmp_path)
    assert rec.torn_tail is not None and rec.torn_tail.path == seg2
    assert rec.entries == entries(1, 5)
    assert seg.stat().st_size == good


def test_bad_crc_in_final_unsynced_record_is_a_torn_tail(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.stage_entries(entries(1, 5))
    storage.sync()
    storage.fsync_enabled = False
    storage.stage_entries(entries(6, 7))
    storage.sync()
    storage.close()
    seg = segments(tmp_path)[-1]
    raw = bytearray(seg.read_bytes())
    raw[-1] ^= 0xFF
    seg.write_bytes(bytes(raw))
    rec = recover(tmp_path)
    assert rec.torn_tail is not None and rec.torn_tail.reason == "CRC mismatch"
    assert rec.entries == entries(1, 5)


def test_corrupt_middle_record_names_file_and_offset(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    for i in range(1, 31, 10):
        storage.stage_entries(entries(i, i + 9))
        storage.sync()
    storage.close()
    seg = segments(tmp_path)[-1]
    records = list(iter_records(seg))
    offset = records[2][0]  # a record with records after it
    raw = bytearray(seg.read_bytes())
    raw[offset + 12] ^= 0x01
    seg.write_bytes(bytes(raw))
    with pytest.raises(WalCorruption) as info:
        recover(seg.parent.parent)
    assert info.value.path == seg and info.value.offset == offset
    assert str(seg) in str(info.value) and f"offset {offset}" in str(info.value)


def test_damaged_final_record_that_was_synced_is_corruption(tmp_path: Path) -> None:
    """The watermark says the record was fsynced, so a bad CRC is not a torn write."""
    storage, _ = open_storage(tmp_path)
    storage.stage_entries(entries(1, 5))
    storage.sync()
    storage.close()
    seg = segments(tmp_path)[-1]
    raw = bytearray(seg.read_bytes())
    raw[-1] ^= 0xFF
    seg.write_bytes(bytes(raw))
    with pytest.raises(WalCorruption):
        recover(tmp_path)


def test_corruption_in_an_older_segment_is_an_error(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=1024)
    for i in range(1, 201, 10):
        storage.stage_entries(entries(i, i + 9))
        storage.sync()
    storage.close()
    first = segments(tmp_path)[0]
    with open(first, "r+b") as f:
        f.truncate(first.stat().st_size - 2)
    with pytest.raises(WalCorruption) as info:
        recover(tmp_path)
    assert info.value.path == first


def test_drop_unsynced_loses_exactly_the_unsynced_writes(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.stage_hard_state(HardState(2, "n1", 0))
    storage.stage_entries(entries(1, 5, term=2))
    storage.sync()
    storage.fsync_enabled = False  # what the planted bug ack-before-fsync does
    storage.stage_hard_state(HardState(3, "n3", 0))
    storage.stage_entries(entries(6, 9, term=2))
    storage.sync()
    storage.close()
    assert recover(tmp_path, repair=False).entries == entries(1, 9, term=2)  # plain kill
    assert drop_unsynced(tmp_path) > 0
    rec = recover(tmp_path)
    assert rec.entries == entries(1, 5, term=2)
    assert rec.hard_state == HardState(2, "n1", 0)


def test_drop_unsynced_after_clean_syncs_drops_nothing(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path, segment_bytes=1024)
    for i in range(1, 101, 10):
        storage.stage_entries(entries(i, i + 9))
        storage.sync()
    storage.close()
    assert drop_unsynced(tmp_path) == 0
    assert recover(tmp_path).entries == entries(1, 100)


def test_drop_unsynced_without_watermark_drops_all_segments(tmp_path: Path) -> None:
    storage, _ = open_storage(tmp_path)
    storage.stage_entries(entries(1, 3))
    storage.sync()
    storage.close()
    os.unlink(tmp_path / "wal" / WATERMARK_FILE)
    drop_unsynced(tmp_path)
    assert recover(tmp_path).entries == []


def test_restart_keeps_appending_after_recovery(tmp_path: Path) -> None:
    for round_ in range(3):
        storage, rec = open_storage(tmp_path)
        assert rec.entries == entries(1, 10 * round_)
        storage.stage_entries(entries(10 * round_ + 1, 10 * round_ + 10))
        storage.sync()
        storage.close()


def _power_loss(path: Path) -> None:
    drop_unsynced(path)


def test_a_power_loss_after_compaction_under_ack_before_fsync_still_recovers(
        tmp_path: Path) -> None:
    """What a real ack-before-fsync run hit (n3, 2026-12-08 04:44): compaction deleted
    segment 1, a power loss dropped the later (never fsynced) segments, so the restart
    began its WAL at segment 1 again, with a longer header (the snapshot's index). The
    watermark still named segment 1 at the first incarnation's length, so the next
    power loss cut the new file mid-record at a length it never had on disk, and the
    node refused to start ("record runs past the end of the file"). Segment numbers
    are not reused any more: the unsynced file is dropped whole, as a power loss would."""
    storage, _ = open_storage(tmp_path, segment_bytes=256, fsync=False)
    for lo in range(1, 1200, 100):
        storage.stage_entries(entries(lo, lo + 99))
        storage.sync()
    storage.save_snapshot(Snapshot(SnapshotMeta(1001, 1), b"state"), reset=False)
    storage.close()
    assert not (tmp_path / "wal" / "0000000000000001.wal").exists(), "compacted away"
    _power_loss(tmp_path)
    storage, rec = open_storage(tmp_path, segment_bytes=256, fsync=False)
    assert rec.snapshot is not None and rec.snapshot.meta.index == 1001 and rec.entries == []
    storage.stage_hard_state(HardState(7, "n2", 1001))
    storage.stage_entries(entries(1002, 1010, term=7))
    storage.sync()
    storage.close()
    _power_loss(tmp_path)
    rec = recover(tmp_path)  # raised WalCorruption before the fix
    assert rec.snapshot is not None and rec.snapshot.meta.index == 1001
    assert rec.entries == [], "nothing was fsynced: the power loss loses all of it"
