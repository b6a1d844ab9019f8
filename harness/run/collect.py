"""Collection of what the nodes say about themselves, for the log-order checker.

Two ways in, both appended to ``RUN_DIR/observations.jsonl`` (format:
checker/README.md; who writes what: docs/DESIGN.md, "Observations"):

- **Pushed**, as it happens: the nodes' stdout events (docs/node-events.md).
  Role changes from every wire-protocol node; from raft_impl also every entry
  it applies (``committed``), every snapshot it takes or installs, and its
  complaints about its own safety. A push cannot be missed between two polls,
  so a run that compacts its log every few hundred entries is still judged
  entry by entry.
- **Polled**, every ``interval`` seconds and once more at the end: every
  reachable node's ``status``, ``log`` and ``state-digest`` — what pushes do
  not show (uncommitted tails, the final logs) and all that systems which
  cannot push (etcd, PySyncObj) give. The same rounds search the nodes' new
  output lines for the adapter's complaint patterns (``DB.complaint_patterns``).

Crash/restart/lose-unfsynced marks come from the cluster, and a ``healed``
mark when every fault is undone and the quiet period is over.

Logs are fetched incrementally: from a little below the last commit index
seen on that node, so entries that may still change (the uncommitted tail)
and the recently committed ones are re-read each round, and the committed
prefix is re-read in full every ``full_every`` rounds, after a node restarts,
and at the end — enough to notice a committed entry that changed or vanished
without shipping the whole log every second.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from checker.lines import LineAppender
from harness.db.base import DB, DBError, Unsupported

#: Entries below the last seen commit index re-read by an incremental dump.
OVERLAP = 32
#: Bytes of one output file read per round (a chatty node is caught up over rounds).
SCAN_CHUNK = 1 << 20
#: Complaints of one pattern recorded per node (the rest are the same story).
MAX_COMPLAINTS_PER_PATTERN = 20
#: Characters of a matching output line kept in its observation.
MAX_LINE_KEPT = 300


class ObservationWriter:
    """Appends observations one JSON line each, written at once (a crashed run keeps
    them); a write the disk refuses leaves whole lines and raises LineWriteError."""

    def __init__(self, path: Path, clock: Callable[[], int]) -> None:
        self.path = path
        self.clock = clock
        self._file: LineAppender | None = LineAppender(path)
        self.count = 0

    def write(self, kind: str, node: str | None = None, **fields: Any) -> None:
        if self._file is None:
            return  # late events after the run closed its files are dropped
        record: dict[str, Any] = {"time": self.clock()}
        if node is not None:
            record["node"] = node
        record["kind"] = kind
        record.update(fields)
        self._file.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Collector:
    def __init__(
        self,
        db: DB,
        nodes: list[str],
        writer: ObservationWriter,
        *,
        interval: float = 1.0,
        full_every: int = 10,
    ) -> None:
        self.db = db
        self.nodes = nodes
        self.writer = writer
        self.interval = interval
        self.full_every = full_every
        self.latest_status: dict[str, dict[str, Any]] = {}
        self.rounds = 0
        self.unsupported: set[str] = set()
        #: What the DB said when it could not give something (kept for test.json).
        self.unsupported_reasons: dict[str, str] = {}
        self.unexpected_exits: list[str] = []
        self._commit_seen: dict[str, int] = {}
        self._patterns = [(p, re.compile(p.regex)) for p in getattr(db, "complaint_patterns", ())]
        #: path -> (bytes read, lines read, unfinished last line) of each scanned output file.
        self._scanned: dict[Path, tuple[int, int, bytes]] = {}
        self._complaints_found: Counter[tuple[str, str]] = Counter()
        #: What the nodes pushed: committed entries and snapshots (test.json says so).
        self.pushed: Counter[str] = Counter()
        self._needs_full: set[str] = set(nodes)

    # -- pushed events -------------------------------------------------------

    def on_node_event(self, node: str, event: dict[str, Any]) -> None:
        """Sink for the nodes' stdout events: what a node pushes becomes observations.

        Role changes; committed entries as the node applies them (so entries compacted
        between two polls are still seen, entry by entry); snapshots taken or installed;
        the node's complaints about its own safety; batches it had to drop.
        """
        kind = event.get("event")
        if kind == "committed":
            self._committed(node, event)
        elif kind == "role":
            fields = {"term": event.get("term"), "role": event.get("role")}
            if "leader" in event:
                fields["leader"] = event.get("leader")
            self.writer.write("role", node, **fields)
        elif kind == "snapshot":
            self.pushed["snapshot"] += 1
            self.writer.write("snapshot", node, source=event.get("source"),
                              index=event.get("index"), term=event.get("term"),
                              digest=event.get("digest"))
        elif kind == "complaint":
            details = {k: v for k, v in event.items()
                       if k not in ("event", "complaint", "severity", "message")}
            self.writer.write("complaint", node, complaint=event.get("complaint"),
                              severity=event.get("severity", "violation"),
                              message=event.get("message"), source="event", details=details)
        elif kind == "events-dropped":
            self.writer.write("events-dropped", node, first=event.get("first"),
                              last=event.get("last"), batches=event.get("batches"))
        elif kind == "exited":
            # The node died by itself: as much a crash as a nemesis kill.
            self.unexpected_exits.append(node)
            self.writer.write("crash", node, unexpected=True, returncode=event.get("returncode"))
            self.latest_status.pop(node, None)

    def _committed(self, node: str, event: dict[str, Any]) -> None:
        rows = event.get("entries")
        if not isinstance(rows, list):
            return
        entries = []
        for row in rows:
            if isinstance(row, list) and len(row) >= 6:
                index, term, digest, client, seq, duplicate = row[:6]
                entries.append({"index": index, "term": term, "digest": digest,
                                "client": client, "seq": seq, "duplicate": duplicate})
        self.pushed["committed"] += len(entries)
        self.writer.write("committed", node, commit=event.get("commit"), entries=entries)

    def mark(self, kind: str, node: str) -> None:
        """Lifecycle marks from the cluster: crash, restart, lose-unfsynced."""
        self.writer.write(kind, node)
        self.latest_status.pop(node, None)
        if kind == "restart":
            self._needs_full.add(node)

    def healed(self) -> None:
        self.writer.write("healed")

    @property
    def leader(self) -> str | None:
        """Leader by the freshest statuses: highest term among self-declared leaders."""
        leaders = [
            (s.get("term") or 0, node)
            for node, s in self.latest_status.items()
            if s.get("role") == "leader"
        ]
        return max(leaders)[1] if leaders else None

    # -- polling --------------------------------------------------------------

    async def run(self, stop: trio.Event) -> None:
        """Collect every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            started = trio.current_time()
            await self.collect_once()
            with trio.move_on_at(started + self.interval):
                await stop.wait()

    async def collect_once(self, full: bool = False) -> None:
        """One round: status, log and digest of every reachable node, concurrently; and
        the nodes' new output lines searched for complaints."""
        self.scan_outputs()
        self.rounds += 1
        full = full or (self.full_every > 0 and self.rounds % self.full_every == 0)
        async with trio.open_nursery() as nursery:
            for node in self.nodes:
                nursery.start_soon(self._collect_node, node, full)

    # -- complaints in the nodes' output ---------------------------------------------

    def scan_outputs(self) -> None:
        """Search the new lines of every node's output files for the DB's complaint patterns.

        Each match becomes a ``complaint`` observation (``source: output``) naming the
        file and line; its time is when it was found, at most one round late. Small
        local reads, so done in the loop's thread.
        """
        if not self._patterns:
            return
        for node in self.nodes:
            for path in self.db.complaint_files(node):
                self._scan(node, path)

    def _scan(self, node: str, path: Path) -> None:
        offset, lines_read, rest = self._scanned.get(path, (0, 0, b""))
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(SCAN_CHUNK)
        except OSError:
            return  # not written yet
        if not data:
            return
        *lines, rest = (rest + data).split(b"\n")
        for number, raw in enumerate(lines, start=lines_read + 1):
            line = raw.decode("utf-8", errors="replace")
            for pattern, regex in self._patterns:
                match = regex.search(line)
                if match is None:
                    continue
                self._complaints_found[(node, pattern.name)] += 1
                if self._complaints_found[(node, pattern.name)] > MAX_COMPLAINTS_PER_PATTERN:
                    continue
                try:
                    name = str(path.relative_to(self.writer.path.parent))
                except ValueError:
                    name = str(path)
                extra = {"details": details} if (details := pattern.details(match)) else {}
                self.writer.write("complaint", node, complaint=pattern.name,
                                  severity=pattern.severity, message=pattern.message,
                                  source="output", file=name, file_line=number,
                                  text=line.strip()[:MAX_LINE_KEPT], **extra)
        if len(rest) > SCAN_CHUNK:
            rest = b""  # no newline in a megabyte: not a log line worth matching
        self._scanned[path] = (offset + len(data), lines_read + len(lines), rest)

    async def _collect_node(self, node: str, full: bool) -> None:
        try:
            await self._status(node)
            await self._log(node, full or node in self._needs_full)
            await self._digest(node)
        except DBError:
            pass  # down, paused or cut off: that is what faults do

    async def _status(self, node: str) -> None:
        if "status" in self.unsupported:
            return
        try:
            status = await self.db.status(node)
        except Unsupported as exc:
            self.unsupported.add("status")
            self.unsupported_reasons["status"] = str(exc)
            return
        self.latest_status[node] = status
        self.writer.write(
            "status",
            node,
            role=status.get("role"),
            term=status.get("term"),
            leader=status.get("leader"),
            commit=status.get("commit"),
            applied=status.get("applied"),
            last_index=status.get("last_index"),
        )

    async def _log(self, node: str, full: bool) -> None:
        if "log" in self.unsupported:
            return
        seen = self._commit_seen.get(node)
        from_index = None if full or seen is None else max(1, seen - OVERLAP)
        try:
            dump = await self.db.log(node, from_index)
        except Unsupported as exc:
            self.unsupported.add("log")
            self.unsupported_reasons["log"] = str(exc)
            return
        fields: dict[str, Any] = {
            "commit": dump.get("commit"),
            "snapshot_index": dump.get("snapshot_index"),
            "snapshot_term": dump.get("snapshot_term"),
            "entries": dump.get("entries", []),
        }
        if from_index is not None:
            fields["from"] = from_index
        self.writer.write("log", node, **fields)
        self._needs_full.discard(node)
        if isinstance(dump.get("commit"), int):
            self._commit_seen[node] = dump["commit"]

    async def _digest(self, node: str) -> None:
        if "digest" in self.unsupported:
            return
        try:
            digest = await self.db.state_digest(node)
        except Unsupported as exc:
            self.unsupported.add("digest")
            self.unsupported_reasons["digest"] = str(exc)
            return
        self.writer.write(
            "digest", node, applied=digest.get("applied"), digest=digest.get("digest")
        )
