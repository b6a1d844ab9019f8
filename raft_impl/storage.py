"""Durable storage of a raft_impl node: a write-ahead log plus snapshot files.

Layout of a node's data directory::

    DATA_DIR/wal/0000000000000001.wal   WAL segments, replayed in order
    DATA_DIR/wal/synced                 fsync watermark (see below)
    DATA_DIR/snapshot-<index>.snap      newest state machine snapshot

**Records.** A segment is a sequence of records ``length u32 | crc u32 | type
u8 | payload``, big endian; ``payload`` is msgpack and the CRC32 covers the
length, the type and the payload, so a damaged length field is caught too.
Record types: ``ENTRIES`` (a batch of log entries; entries whose index is not
past the current last index replace the suffix), ``HARD_STATE`` (term, vote,
commit), ``TRUNCATE`` (drop entries with index >= i) and ``SNAPSHOT`` (the log
now starts after a snapshot at index i; with ``reset`` the snapshot came from
the leader and replaces the whole log). Each new segment starts with the current
hard state and snapshot position, so dropping old segments never loses them.

**Group commit.** The node's event loop stages what each Ready asks for
(``stage_*``, cheap). A writer task takes everything staged so far
(``take_staged``) and runs ``write_batch`` — one ``write`` to a segment opened
with ``O_DSYNC``, so it returns once the data is durable: an fsync without a
second syscall — in a worker thread; meanwhile the loop keeps staging, and all
of that goes into the next batch. ``sync()``/``save_snapshot()`` are the blocking
one-call versions.

**Torn tails vs corruption.** A crash can tear only bytes that were not yet
fsynced. After every fsync the node records the synced length in the small
sidecar file ``wal/synced`` (segment number, offset, CRC). Recovery truncates a
damaged *final* record of the last segment when it starts at or after that
watermark (a torn write); any other damage (a bad record followed by more data,
or a bad record the watermark says was synced) stops the node with
:class:`WalCorruption`, naming the file and byte offset.

**Simulating lost writes.** The same watermark lets the harness simulate a
machine crash that loses unsynced writes after killing a node:
:func:`drop_unsynced` cuts the WAL back to the watermark. A process kill keeps
the page cache, so the sidecar is written with ``pwrite`` but not fsynced
itself: it only ever under-states what is durable (it is written after the
fsync completed), which keeps both uses safe. This was chosen over a separate
"durable length" log because it costs one small syscall per group commit and
needs no extra fsync. The watermark names a segment by number, so a number is
never reused (``open`` starts after the watermark's segment too): with fsync off
(ack-before-fsync) compaction can delete the segment the watermark names, and a
new file under its name would inherit a synced length it never had.

**Compaction.** A snapshot file is written atomically (tmp, fsync, rename,
fsync of the directory: ``write_snapshot_file``); only then is its ``SNAPSHOT``
mark staged, and once the batch with the mark is durable ``compact()`` deletes
WAL segments whose entries are all covered, and older snapshot files.

Size: the WAL, its recovery and the snapshot files are one module so that the
durability ordering (write, fsync, watermark, rename) is read and changed in one place.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from .types import Entry, EntryKind, HardState, Snapshot, SnapshotMeta

REC_ENTRIES = 1
REC_HARD_STATE = 2
REC_TRUNCATE = 3
REC_SNAPSHOT = 4
_RECORD_TYPES = frozenset({REC_ENTRIES, REC_HARD_STATE, REC_TRUNCATE, REC_SNAPSHOT})

_HEADER = struct.Struct(">IIB")  # payload length, crc32, record type
_LEN_TYPE = struct.Struct(">IB")
_WATERMARK = struct.Struct(">QQI")  # segment number, synced offset, crc32 of the first 16 bytes
_SNAP_HEADER = struct.Struct(">8sQI")  # magic, payload length, crc32
_SNAP_MAGIC = b"SBSNAP01"

#: A record larger than this is treated as a damaged length field.
MAX_RECORD = 256 * 1024 * 1024
#: Entries of one Ready are split into records of about this many payload bytes.
ENTRIES_RECORD_BYTES = 1024 * 1024
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024

WAL_DIR = "wal"
WATERMARK_FILE = "synced"


class WalCorruption(Exception):
    """The WAL or a snapshot file is damaged in a way a crash cannot explain."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


@dataclass
class TornTail:
    """A partial record cut off the end of the WAL during recovery."""

    path: Path
    offset: int
    dropped_bytes: int
    reason: str


@dataclass
class Recovered:
    """What recovery found on disk: the node builds its Raft core and state machine from it."""

    hard_state: HardState
    snapshot: Snapshot | None
    entries: list[Entry]
    torn_tail: TornTail | None = None
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- encoding


def encode_record(rtype: int, payload_obj: object) -> bytes:
    payload = msgpack.packb(payload_obj, use_bin_type=True)
    crc = zlib.crc32(payload, zlib.crc32(_LEN_TYPE.pack(len(payload), rtype)))
    return _HEADER.pack(len(payload), crc, rtype) + payload


def _entry_to_wire(entry: Entry) -> list:
    return [entry.index, entry.term, entry.kind.value, entry.data]


def _entry_from_wire(item: list) -> Entry:
    index, term, kind, data = item
    return Entry(index, term, EntryKind(kind), data)


def _segment_name(seq: int) -> str:
    return f"{seq:016d}.wal"


def _list_segments(wal_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in wal_dir.glob("*.wal"):
        try:
            found.append((int(path.stem), path))
        except ValueError:
            continue
    return sorted(found)


def _read_watermark(wal_dir: Path) -> tuple[int, int] | None:
    try:
        raw = (wal_dir / WATERMARK_FILE).read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) != _WATERMARK.size:
        return None
    seq, offset, crc = _WATERMARK.unpack(raw)
    if zlib.crc32(raw[:16]) != crc:
        return None
    return seq, offset


def _pack_watermark(seq: int, offset: int) -> bytes:
    head = struct.pack(">QQ", seq, offset)
    return head + struct.pack(">I", zlib.crc32(head))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- snapshots


def _snapshot_path(data_dir: Path, index: int) -> Path:
    return data_dir / f"snapshot-{index:020d}.snap"


def _list_snapshots(data_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in data_dir.glob("snapshot-*.snap"):
        try:
            found.append((int(path.stem.split("-", 1)[1]), path))
        except ValueError:
            continue
    return sorted(found)


def write_snapshot_file(data_dir: Path, snapshot: Snapshot, sync: bool = True) -> Path:
    """Write ``snapshot`` atomically: a reader sees the old file set or the complete new file."""
    payload = msgpack.packb(
        {"index": snapshot.meta.index, "term": snapshot.meta.term, "data": snapshot.data},
        use_bin_type=True,
    )
    final = _snapshot_path(data_dir, snapshot.meta.index)
    tmp = final.with_suffix(".snap.tmp")
    with open(tmp, "wb") as f:
        f.write(_SNAP_HEADER.pack(_SNAP_MAGIC, len(payload), zlib.crc32(payload)))
        f.write(payload)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace(tmp, final)
    if sync:
        _fsync_dir(data_dir)
    return final


def read_snapshot_file(path: Path) -> Snapshot:
    raw = path.read_bytes()
    if len(raw) < _SNAP_HEADER.size:
        raise WalCorruption(path, 0, "snapshot file shorter than its header")
    magic, length, crc = _SNAP_HEADER.unpack_from(raw)
    if magic != _SNAP_MAGIC:
        raise WalCorruption(path, 0, "not a snapshot file (bad magic)")
    payload = raw[_SNAP_HEADER.size :]
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise WalCorruption(path, _SNAP_HEADER.size, "snapshot payload fails its length/CRC check")
    obj = msgpack.unpackb(payload, raw=False)
    return Snapshot(SnapshotMeta(obj["index"], obj["term"]), obj["data"])


# --------------------------------------------------------------------------- recovery


class _Replay:
    """Applies WAL records in order to rebuild hard state, log base and entries."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.base = SnapshotMeta(0, 0)
        self.entries: list[Entry] = []
        # Where the current run of entries began, to report a gap above the base.
        self.gap_at: tuple[Path, int] | None = None

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.base.index

    def _cut_from(self, index: int) -> None:
        """Drop retained entries with index >= ``index``."""
        if not self.entries:
            return
        first = self.entries[0].index
        if index <= first:
            self.entries.clear()
        elif index <= self.entries[-1].index:
            del self.entries[index - first :]

    def apply(self, rtype: int, obj: object, path: Path, offset: int) -> None:
        if rtype == REC_ENTRIES:
            batch = [
                _entry_from_wire(item)
                for item in obj  # type: ignore[union-attr]
                if item[0] > self.base.index
            ]
            if not batch:
                return
            first = batch[0].index
            if first > self.last_index + 1:
                # Entries below a later snapshot mark may live in dropped segments;
                # a gap is only an error if it survives to the end (checked by caller).
                self.entries = []
                self.gap_at = (path, offset)
            else:
                self._cut_from(first)
            self.entries.extend(batch)
        elif rtype == REC_HARD_STATE:
            term, vote, commit = obj  # type: ignore[misc]
            self.hard_state = HardState(term, vote, commit)
        elif rtype == REC_TRUNCATE:
            (index,) = obj  # type: ignore[misc]
            self._cut_from(index)
        elif rtype == REC_SNAPSHOT:
            index, term, reset = obj  # type: ignore[misc]
            self.restore_base(SnapshotMeta(index, term), reset)

    def restore_base(self, meta: SnapshotMeta, reset: bool) -> None:
        if meta.index < self.base.index:
            return
        if not reset and self.entries and self.entries[0].index <= meta.index:
            pos = meta.index - self.entries[0].index
            matches = pos < len(self.entries) and self.entries[pos].term == meta.term
            reset = not matches and meta.index <= self.entries[-1].index
        if reset:
            self.entries = []
        else:
            self._cut_from_below(meta.index)
        self.base = meta

    def _cut_from_below(self, index: int) -> None:
        """Drop entries with index <= ``index`` (they are inside the snapshot)."""
        if self.entries and self.entries[0].index <= index:
            del self.entries[: index - self.entries[0].index + 1]


def _scan_segment(
    path: Path,
    data: bytes,
    replay: _Replay,
    is_last: bool,
    synced_offset: int | None,
) -> tuple[int, str] | None:
    """Replay one segment. Returns (offset, reason) of a torn tail to cut, or None."""
    pos = 0
    size = len(data)
    # The watermark is advisory when the file is shorter than it (e.g. cut by hand):
    # then a short tail is treated as torn, as the property tests require.
    trusted_synced = synced_offset if synced_offset is not None and synced_offset <= size else 0
    while pos < size:
        if size - pos < _HEADER.size:
            reason = "partial record header"
            if is_last and pos >= trusted_synced:
                return pos, reason
            raise WalCorruption(path, pos, reason)
        length, crc, rtype = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > MAX_RECORD or end > size:
            reason = f"record of {length} bytes runs past the end of the file"
            if is_last and pos >= trusted_synced and length <= MAX_RECORD:
                return pos, reason
            raise WalCorruption(path, pos, reason)
        payload = data[pos + _HEADER.size : end]
        actual = zlib.crc32(payload, zlib.crc32(_LEN_TYPE.pack(length, rtype)))
        if actual != crc or rtype not in _RECORD_TYPES:
            reason = "CRC mismatch" if actual != crc else f"unknown record type {rtype}"
            if is_last and end == size and pos >= trusted_synced:
                return pos, reason
            raise WalCorruption(path, pos, reason)
        try:
            obj = msgpack.unpackb(payload, raw=False)
            replay.apply(rtype, obj, path, pos)
        except WalCorruption:
            raise
        except Exception as exc:  # a record that passes its CRC but does not parse
            raise WalCorruption(path, pos, f"undecodable record: {exc}") from exc
        pos = end
    return None


def recover(data_dir: Path | str, repair: bool = True) -> Recovered:
    """Read the WAL and the newest snapshot. With ``repair``, cut a torn tail off the disk."""
    data_dir = Path(data_dir)
    wal_dir = data_dir / WAL_DIR
    segments = _list_segments(wal_dir) if wal_dir.exists() else []
    watermark = _read_watermark(wal_dir) if wal_dir.exists() else None
    replay = _Replay()
    torn: TornTail | None = None
    warnings: list[str] = []
    for i, (seq, path) in enumerate(segments):
        data = path.read_bytes()
        is_last = i == len(segments) - 1
        if watermark is None:
            synced = None
        elif seq < watermark[0]:
            synced = len(data)
        elif seq == watermark[0]:
            synced = watermark[1]
            if synced > len(data):
                warnings.append(
                    f"{path} is {len(data)} bytes but {synced} were recorded as synced"
                )
        else:
            synced = None
        cut = _scan_segment(path, data, replay, is_last, synced)
        if cut is not None:
            offset, reason = cut
            torn = TornTail(path, offset, len(data) - offset, reason)
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(offset)
                    os.fsync(f.fileno())
    snapshot = _load_newest_snapshot(data_dir, replay)
    gap = replay.entries and replay.entries[0].index > replay.base.index + 1
    if gap:
        path, offset = replay.gap_at or (wal_dir, 0)
        raise WalCorruption(
            path,
            offset,
            f"log gap: entries resume at {replay.entries[0].index} after {replay.base.index}",
        )
    hs = replay.hard_state
    if snapshot is not None and hs.commit < snapshot.meta.index:
        hs = HardState(hs.term, hs.vote, snapshot.meta.index)
    return Recovered(hs, snapshot, replay.entries, torn, warnings)


def _load_newest_snapshot(data_dir: Path, replay: _Replay) -> Snapshot | None:
    snaps = _list_snapshots(data_dir)
    if not snaps:
        if replay.base.index > 0:
            raise WalCorruption(
                data_dir, 0, f"WAL says the log starts after snapshot {replay.base.index}, "
                "but no snapshot file exists"
            )
        return None
    index, path = snaps[-1]
    snapshot = read_snapshot_file(path)
    if snapshot.meta.index != index:
        raise WalCorruption(path, 0, f"file name says index {index}, content {snapshot.meta.index}")
    if index < replay.base.index:
        raise WalCorruption(
            path, 0, f"newest snapshot is at {index} but the WAL says {replay.base.index}"
        )
    # A crash between renaming the snapshot file and logging its mark leaves the
    # file ahead of the WAL; the file is durable, so adopt it.
    replay.restore_base(snapshot.meta, reset=False)
    return snapshot


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """Records staged by the event loop, handed to the writer thread as one unit."""

    data: bytes
    #: The log's last index once this batch is durable.
    last_index: int
    #: Highest entry index written by this batch (0: none), for compaction.
    max_entry_index: int
    #: Entries, a snapshot mark or a new term/vote: the batch must be fsynced before
    #: anything depending on it is acknowledged.
    must_sync: bool
    #: Carries a snapshot mark: compact once it is durable.
    compact: bool


class Storage:
    """The node's WAL writer.

    Threading: ``stage_*`` and ``take_staged`` run in the event loop;
    ``write_batch`` and ``compact`` run in a worker thread, one at a time (the
    node runs them on its one disk thread). Staging may overlap a
    ``write_batch``: the two share only the immutable :class:`StagedBatch` handed over, plus the
    hard state and base that a segment roll copies into the new header (both
    already durable or about to be).
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> None:
        """Open ``data_dir`` (created if missing). Call :meth:`open` to recover and start."""
        self.data_dir = Path(data_dir)
        self.wal_dir = self.data_dir / WAL_DIR
        self.segment_bytes = segment_bytes
        #: False only for the planted bug ack-before-fsync: writes reach the page
        #: cache but are never fsynced, so the watermark never moves.
        self.fsync_enabled = fsync
        self._buffer = bytearray()
        self._must_sync = False
        self._staged_max_entry = 0
        self._staged_compact = False
        self._fd: int | None = None
        #: The watermark file stays open: one pwrite per group commit, no open/close.
        self._watermark_fd: int | None = None
        self._seq = 0
        self._offset = 0
        self._last_index = 0
        self._hard_state = HardState()
        self._base = SnapshotMeta(0, 0)
        #: Highest entry index written into each segment, for compaction.
        self._segment_max: dict[int, int] = {}
        self.syncs = 0

    # ---- lifecycle

    def open(self) -> Recovered:
        """Recover from disk, cut a torn tail, and open a fresh segment for appends."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.wal_dir.mkdir(exist_ok=True)
        for tmp in self.data_dir.glob("*.snap.tmp"):
            tmp.unlink()
        recovered = recover(self.data_dir, repair=True)
        self._hard_state = recovered.hard_state
        self._base = recovered.snapshot.meta if recovered.snapshot else SnapshotMeta(0, 0)
        self._last_index = recovered.entries[-1].index if recovered.entries else self._base.index
        segments = _list_segments(self.wal_dir)
        for seq, path in segments:
            self._segment_max[seq] = _max_entry_index(path)
        # Always start a new segment: never append after bytes we did not write ourselves.
        # Nor reuse a number the watermark may name: if compaction deleted that segment
        # (possible only when fsync is off, ack-before-fsync: with fsync the watermark
        # always names the newest segment), a new file under the old name would inherit
        # its synced length, and a power loss would cut it mid-record at a length it
        # never had on disk (drop_unsynced), which recovery rightly calls corruption.
        watermark = _read_watermark(self.wal_dir)
        self._seq = max(segments[-1][0] if segments else 0,
                        watermark[0] if watermark else 0)
        self._roll()
        return recovered

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._watermark_fd is not None:
            os.close(self._watermark_fd)
            self._watermark_fd = None

    # ---- staging (cheap, in the event loop)

    @property
    def last_index(self) -> int:
        return self._last_index

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def pending(self) -> bool:
        """Something is staged (it may still not need an fsync of its own)."""
        return bool(self._buffer)

    @property
    def needs_sync(self) -> bool:
        """Staged records must be durable before the node acts on them.

        True for entries, snapshot marks and a changed term or vote. A hard
        state that only moves the commit index does not need its own fsync
        (as in etcd's ``MustSync``): commit is re-learned from the leader after
        a crash, and the record rides along with the next synced batch.
        """
        return self._must_sync

    def stage_hard_state(self, hs: HardState) -> None:
        old = self._hard_state
        self._buffer += encode_record(REC_HARD_STATE, [hs.term, hs.vote, hs.commit])
        if hs.term != old.term or hs.vote != old.vote:
            self._must_sync = True
        self._hard_state = hs

    def stage_entries(self, entries: Sequence[Entry]) -> None:
        """Append entries; if the first is not past the last index, the suffix is replaced."""
        if not entries:
            return
        first = entries[0].index
        if first <= self._last_index:
            self._buffer += encode_record(REC_TRUNCATE, [first])
        batch: list[list] = []
        batch_bytes = 0
        for entry in entries:
            batch.append(_entry_to_wire(entry))
            batch_bytes += len(entry.data) + 16
            if batch_bytes >= ENTRIES_RECORD_BYTES:
                self._buffer += encode_record(REC_ENTRIES, batch)
                batch, batch_bytes = [], 0
        if batch:
            self._buffer += encode_record(REC_ENTRIES, batch)
        self._must_sync = True
        self._last_index = entries[-1].index
        self._staged_max_entry = max(self._staged_max_entry, self._last_index)

    def stage_snapshot_mark(self, meta: SnapshotMeta, *, reset: bool) -> None:
        """Log that the log now starts after ``meta`` (its snapshot file is already durable).

        ``reset``: the snapshot came from the leader and replaces the whole log.
        The batch carrying the mark asks for compaction once it is durable.
        A local mark older than the current base (overtaken by a leader's
        snapshot) is ignored.
        """
        if not reset and meta.index <= self._base.index:
            return
        self._buffer += encode_record(REC_SNAPSHOT, [meta.index, meta.term, reset])
        self._base = meta
        if reset or self._last_index < meta.index:
            self._last_index = meta.index
        self._must_sync = True
        self._staged_compact = True

    def take_staged(self) -> StagedBatch | None:
        """Hand everything staged so far to a writer (event loop side of group commit)."""
        if not self._buffer:
            return None
        batch = StagedBatch(
            bytes(self._buffer), self._last_index, self._staged_max_entry, self._must_sync,
            self._staged_compact,
        )
        self._buffer.clear()
        self._must_sync = False
        self._staged_max_entry = 0
        self._staged_compact = False
        return batch

    # ---- durable operations (blocking; the node runs them on its disk thread, one at a time)

    def write_batch(self, batch: StagedBatch) -> None:
        """One durable write for a whole batch; then the watermark; maybe a new segment.

        With fsync on, the segment is opened ``O_DSYNC``: ``write`` returns once
        the data is on stable storage (the same guarantee as ``fdatasync``).
        """
        assert self._fd is not None
        _write_all(self._fd, batch.data)
        self._offset += len(batch.data)
        if batch.max_entry_index:
            seg_max = self._segment_max.get(self._seq, 0)
            self._segment_max[self._seq] = max(seg_max, batch.max_entry_index)
        if self.fsync_enabled:
            self.syncs += 1
            self._write_watermark()
        if self._offset >= self.segment_bytes:
            self._roll()

    def sync(self) -> int:
        """Write and fsync everything staged (blocking convenience). Returns bytes written."""
        batch = self.take_staged()
        if batch is None:
            return 0
        self.write_batch(batch)
        if batch.compact:
            self.compact()
        return len(batch.data)

    def save_snapshot(self, snapshot: Snapshot, *, reset: bool) -> None:
        """Make ``snapshot`` the log's base, durably, then compact (blocking convenience).

        ``reset`` is for a snapshot sent by the leader: it replaces the whole
        log. Without it (a local snapshot of applied state) entries past the
        snapshot index are kept. Anything staged is synced too.
        """
        write_snapshot_file(self.data_dir, snapshot, sync=True)
        self.stage_snapshot_mark(snapshot.meta, reset=reset)
        self.sync()

    def compact(self) -> None:
        """Delete segments whose entries are all inside the snapshot, and older snapshots.

        Call only after the snapshot mark is durable.
        """
        base = self._base.index
        for seq in sorted(self._segment_max):
            if seq == self._seq or self._segment_max[seq] > base:
                break
            (self.wal_dir / _segment_name(seq)).unlink(missing_ok=True)
            del self._segment_max[seq]
        for index, path in _list_snapshots(self.data_dir):
            if index < base:
                path.unlink(missing_ok=True)

    def _roll(self) -> None:
        """Close the active segment and start the next, headed by hard state and base."""
        if self._fd is not None:
            if self.fsync_enabled:
                os.fdatasync(self._fd)
            os.close(self._fd)
        self._seq += 1
        path = self.wal_dir / _segment_name(self._seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        if self.fsync_enabled:
            flags |= os.O_DSYNC  # every write is durable when it returns (see write_batch)
        self._fd = os.open(path, flags, 0o644)
        self._segment_max[self._seq] = 0
        hs = self._hard_state
        header = encode_record(REC_HARD_STATE, [hs.term, hs.vote, hs.commit]) + encode_record(
            REC_SNAPSHOT, [self._base.index, self._base.term, False]
        )
        _write_all(self._fd, header)
        self._offset = len(header)
        if self.fsync_enabled:
            os.fdatasync(self._fd)
            _fsync_dir(self.wal_dir)
            self._write_watermark()
        elif _read_watermark(self.wal_dir) is None:
            # Even the planted bug records that the empty start state exists.
            self._write_watermark()

    def _write_watermark(self) -> None:
        if self._watermark_fd is None:
            path = self.wal_dir / WATERMARK_FILE
            self._watermark_fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(self._watermark_fd, _pack_watermark(self._seq, self._offset), 0)

    def segment_count(self) -> int:
        return len(self._segment_max)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _max_entry_index(path: Path) -> int:
    """Highest entry index in a (recovered, hence valid) segment."""
    highest = 0
    data = path.read_bytes()
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, _crc, rtype = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if end > len(data):
            break
        if rtype == REC_ENTRIES:
            batch = msgpack.unpackb(data[pos + _HEADER.size : end], raw=False)
            if batch:
                highest = max(highest, batch[-1][0])
        pos = end
    return highest


# --------------------------------------------------------------------------- harness hook


def drop_unsynced(data_dir: Path | str) -> int:
    """Simulate a power loss on a killed node: drop every WAL byte written after the last fsync.

    Call only while the node is not running. Uses the ``wal/synced`` watermark:
    the segment it names is cut to the synced offset and later segments are
    deleted; with no watermark nothing was ever synced and all segments go.
    Unfinished snapshot temp files are removed (renamed snapshots were fsynced
    before the rename). Returns the number of bytes dropped.
    """
    data_dir = Path(data_dir)
    wal_dir = data_dir / WAL_DIR
    dropped = 0
    for tmp in data_dir.glob("*.snap.tmp"):
        dropped += tmp.stat().st_size
        tmp.unlink()
    if not wal_dir.exists():
        return dropped
    watermark = _read_watermark(wal_dir)
    for seq, path in _list_segments(wal_dir):
        size = path.stat().st_size
        if watermark is None or seq > watermark[0]:
            dropped += size
            path.unlink()
        elif seq == watermark[0] and size > watermark[1]:
            dropped += size - watermark[1]
            with open(path, "r+b") as f:
                f.truncate(watermark[1])
    return dropped


def iter_records(path: Path) -> Iterable[tuple[int, int, object]]:
    """Yield (offset, type, payload) of every well-formed record of a segment (for tools/tests)."""
    data = Path(path).read_bytes()
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, _crc, rtype = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if end > len(data):
            return
        yield pos, rtype, msgpack.unpackb(data[pos + _HEADER.size : end], raw=False)
        pos = end

