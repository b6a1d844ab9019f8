"""Log agreement and committed-entry durability, computed incrementally over log dumps.

Every dump is compared once, in O(entries in the dump), against two tables:

* ``committed``: index -> the entry first observed committed there (by any node),
  kept for the whole run. Checking every dump's committed prefix against it is
  the same as checking every pair of observations (any nodes, any times), because
  "equal to the first one" is transitive — without the pairs.
* per node, ``NodeLog.committed``: index -> the entry *this node* had committed.
  A later dump of the same node, whatever its commit index, must still hold that
  entry at that index (or have compacted it into a snapshot).

The invariants, with why each one is a real violation and never a false alarm:

1. Agreement: two committed prefixes never differ at an index (Raft's State
   Machine Safety); a snapshot's term at its index matches the committed entry.
2. A node's dump never lacks an index at or below its own commit index that is
   above its snapshot (a node cannot have committed an entry it does not hold).
3. A committed entry never changes on a node that had committed it: while the
   node runs, its term refuses stale leaders and every current leader holds the
   entry (Leader Completeness). Across a crash this holds for what it had
   applied (durable, with its term); entries it had only seen committed are
   forgotten at the crash, as they may not have been written.
4. A committed entry never disappears from a node while it runs. Across a crash
   (plain or lose-unfsynced) what the node had *applied* must survive — a node
   applies an entry only once it is durable in its own log — while entries it
   had only seen committed may be gone (a follower learns the commit index
   before it writes the entries; the majority that acknowledged them has them).
   The cluster must not lose the entry: (1) checks every later committed prefix
   that reaches the index, and (5) checks the end state.
5. At the end every committed entry is still held by some node (in its log or
   under its snapshot). It was committed on a majority that had made it durable,
   so any other majority includes a node that must still hold it. A loss is
   reported only when the last dumps of a majority of nodes, all taken after the
   entry was first seen committed, show the index without it; otherwise that
   part is ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checker.logorder.evidence import Violations, ranges
from checker.logorder.records import CommittedRecord, LogEntry, LogRecord, SnapshotRecord, Where
from checker.logorder.views import EMPTY_VIEW, DumpView
from checker.results import invalid_result, unknown_result, valid_result


@dataclass
class NodeLog:
    """What the checker remembers about one node's log between its dumps."""

    name: str
    #: index -> (term, digest, where first committed on this node); pruned below the snapshot.
    committed: dict[int, tuple[int, str, Where]] = field(default_factory=dict)
    #: highest index the node must still hold: its commit index, lowered only after it
    #: lost entries (reported, or excused by lose-unfsynced). ``committed`` keeps remembering
    #: the lost entries: if one comes back different, that is a violation.
    committed_max: int = 0
    #: highest applied index the node reported (status, digest, log): a node applies an
    #: entry only once it is durable in its own log, so these survive any crash.
    durable: int = 0
    pruned_upto: int = 0
    crashed_since_dump: bool = False
    lost_unsynced_since_dump: bool = False
    dumps: int = 0
    last: LogRecord | None = None
    last_view: DumpView = EMPTY_VIEW
    checked_snapshot: tuple[int, int] = (0, 0)
    #: index -> (term, digest, where) of what this node pushed as applied, above its
    #: latest pushed snapshot. Kept apart from ``committed``: pushes and dumps reach the
    #: file by different paths and may be written out of the node's order, while pushes
    #: among themselves are in order.
    pushed: dict[int, tuple[int, str, Where]] = field(default_factory=dict)
    pushed_records: int = 0


def _entry_evidence(entry: LogEntry | tuple[int, str] | None, where: Where) -> dict[str, Any]:
    if entry is None:
        return {"entry": None, **where.describe()}
    if isinstance(entry, LogEntry):
        return {"entry": entry.describe(), **where.describe()}
    term, digest = entry
    return {"entry": {"term": term, "digest": digest}, **where.describe()}


def _dump_evidence(record: LogRecord, last_index: int) -> dict[str, Any]:
    return {
        **record.where.describe(),
        "commit": record.commit,
        "snapshot_index": record.snapshot_index,
        "from": record.from_index,
        "last_index": last_index,
    }


class LogTracker:
    """Feeds on log dumps and lifecycle marks; produces two results at the end."""

    def __init__(self) -> None:
        #: index -> (entry, where) as first observed committed.
        self.committed: dict[int, tuple[LogEntry, Where]] = {}
        #: index -> the state machine's word on whether that committed entry was a retry.
        self.duplicate_flags: dict[int, bool] = {}
        self.nodes: dict[str, NodeLog] = {}
        self.agreement = Violations()
        self.durability = Violations()
        self.dumps = 0
        self.crashes = 0
        #: (time, commit) each time a dump showed a higher commit index than any before.
        self.commit_marks: list[tuple[int, int]] = []
        self.max_commit_seen = 0
        #: Pushed committed records and entries; snapshot claims (index, term, where).
        self.pushed_records = 0
        self.pushed_entries = 0
        self.snapshot_claims: list[tuple[int, int, Where]] = []

    def commit_horizon(self) -> tuple[list[int], list[int]]:
        """``(times, commits)``: sorted times and the highest commit index seen by each.

        Entries at or below ``commits[k]`` were committed by ``times[k]``, so a
        command proposed later sits at a higher index. Bisect ``times`` to use it.
        """
        times: list[int] = []
        commits: list[int] = []
        best = 0
        for time, commit in sorted(self.commit_marks):
            best = max(best, commit)
            times.append(time)
            commits.append(best)
        return times, commits

    def node(self, name: str) -> NodeLog:
        log = self.nodes.get(name)
        if log is None:
            log = self.nodes[name] = NodeLog(name)
        return log

    def on_applied(self, name: str, applied: int | None) -> None:
        """A node said it applied up to ``applied``: those entries are durable on it."""
        if applied is not None:
            log = self.node(name)
            if applied > log.durable:
                log.durable = applied

    def on_lifecycle(self, name: str, kind: str) -> None:
        log = self.node(name)
        if kind in ("crash", "lose-unfsynced"):
            log.crashed_since_dump = True
            self.crashes += 1
            # Only what the node had applied was surely durable (with the term it was
            # received in). A committed entry it had not yet written may be gone, and even
            # come back different from a stale leader it no longer knows to refuse: such
            # entries are forgotten. The cluster still checks them (invariants 1 and 5).
            log.committed = {i: v for i, v in log.committed.items() if i <= log.durable}
            log.committed_max = min(log.committed_max, log.durable)
        if kind == "lose-unfsynced":
            log.lost_unsynced_since_dump = True

    # -- pushed by the nodes -----------------------------------------------------------------

    def on_committed(self, record: CommittedRecord) -> None:
        """Entries a node pushed as it applied them: committed, and durable on that node.

        They join the table of committed entries (agreement with every dump and every other
        node's pushes), and the node's own pushes must never disagree with each other — an
        applied entry never changes, not even across a crash. They do not raise the index
        the node must still hold in its next dump: a dump taken before the push may be
        written after it.
        """
        where = record.where
        assert where.node is not None
        node = self.node(where.node)
        node.pushed_records += 1
        self.pushed_records += 1
        self.pushed_entries += len(record.entries)
        pushed = node.pushed
        top = 0
        for entry in record.entries:
            index = entry.index
            top = max(top, index)
            mine = pushed.get(index)
            if mine is not None:
                if mine[0] == entry.term and mine[1] == entry.digest:
                    continue  # applied again after a restart: the same entry
                self.durability.add(
                    "committed-entry-changed",
                    f"{node.name} applied index {index} in term {mine[0]}; later it applied a "
                    f"different entry there (term {entry.term})",
                    node=node.name,
                    index=index,
                    time=where.time,
                    before=_entry_evidence((mine[0], mine[1]), mine[2]),
                    after=_entry_evidence(entry, where),
                )
            pushed[index] = (entry.term, entry.digest, where)
            self._agree(node, index, entry, where)
        if record.entries:
            self.on_applied(node.name, top)
            commit = max(top, record.commit or 0)
            if commit > self.max_commit_seen:
                self.max_commit_seen = commit
                self.commit_marks.append((where.time, commit))
        for index, flag in record.duplicates.items():
            current = self.duplicate_flags.get(index)
            if current is None or (current and not flag):
                self.duplicate_flags[index] = flag

    def on_snapshot(self, record: SnapshotRecord) -> None:
        """A node took or installed a snapshot ending at ``(index, term)``; its term must be
        that of the entry committed there (checked at the end, whichever came first)."""
        where = record.where
        assert where.node is not None
        node = self.node(where.node)
        self.snapshot_claims.append((record.index, record.term, where))
        # Pushes below the snapshot cannot come again in this incarnation (it applies
        # above it), nor after a restart (it restores the snapshot): forget them.
        # (They hold about one snapshot interval: rebuilding the dict is cheap.)
        node.pushed = {i: v for i, v in node.pushed.items() if i > record.index}

    def _agree(self, node: NodeLog, index: int, entry: LogEntry, where: Where) -> None:
        """Compare a committed entry with the one first seen committed at its index."""
        first = self.committed.get(index)
        if first is None:
            self.committed[index] = (entry, where)
        elif first[0].term != entry.term or first[0].digest != entry.digest:
            self.agreement.add(
                "committed-entries-differ",
                f"index {index} is committed as different entries on "
                f"{first[1].node} and {node.name}",
                index=index,
                nodes=sorted({str(first[1].node), node.name}),
                time=where.time,
                first=_entry_evidence(first[0], first[1]),
                second=_entry_evidence(entry, where),
            )

    def _check_snapshot_claims(self, violations: Violations) -> None:
        for index, term, where in self.snapshot_claims:
            known = self.committed.get(index)
            if known is not None and known[0].term != term:
                violations.add(
                    "snapshot-term-mismatch",
                    f"{where.node}'s snapshot ends at index {index} in term {term}, but the "
                    f"entry committed there has term {known[0].term}",
                    node=where.node,
                    index=index,
                    time=where.time,
                    snapshot={"term": term, **where.describe()},
                    committed=_entry_evidence(known[0], known[1]),
                )

    # -- one dump ---------------------------------------------------------------------------

    def on_log(self, record: LogRecord) -> None:
        self.dumps += 1
        where = record.where
        assert where.node is not None
        node = self.node(where.node)
        node.dumps += 1
        commit = record.commit
        floor = record.snapshot_index  # indexes <= floor are not shown, so not comparable
        if record.from_index is not None:
            floor = max(floor, record.from_index - 1)

        view = DumpView(record.entries)
        for earlier, later in view.conflicts:
            self.agreement.add(
                "index-listed-twice",
                f"{node.name}'s dump lists index {later.index} twice with different entries",
                index=later.index,
                first=earlier.describe(),
                second=later.describe(),
                **where.describe(),
            )
        shown_last = max(floor, view.last or 0)
        # A size-capped answer shows a prefix of the log: what it cut off is not missing.
        last_index = max(shown_last, record.last_index or 0)

        self.on_applied(node.name, record.applied)
        self._check_snapshot(node, record)
        self._note_duplicates(record)
        self._compare_entries(node, record, view)
        self._check_missing(node, record, view, floor, shown_last, last_index)

        if commit > node.committed_max:
            node.committed_max = commit
        if commit > self.max_commit_seen:
            self.max_commit_seen = commit
            self.commit_marks.append((where.time, commit))
        if record.snapshot_index > node.pruned_upto:
            # Entries under the snapshot can never be shown again: forget them.
            if record.snapshot_index - node.pruned_upto < len(node.committed):
                for index in range(node.pruned_upto + 1, record.snapshot_index + 1):
                    node.committed.pop(index, None)
            else:
                node.committed = {
                    i: v for i, v in node.committed.items() if i > record.snapshot_index
                }
            node.pruned_upto = record.snapshot_index
        node.crashed_since_dump = False
        node.lost_unsynced_since_dump = False
        node.last = record
        node.last_view = view

    def _note_duplicates(self, record: LogRecord) -> None:
        flags = self.duplicate_flags
        for index, flag in record.duplicates.items():
            if index <= record.commit:
                current = flags.get(index)
                # "applied with effect" (false) wins over "skipped as a retry" (true).
                if current is None or (current and not flag):
                    flags[index] = flag

    def _check_snapshot(self, node: NodeLog, record: LogRecord) -> None:
        position = (record.snapshot_index, record.snapshot_term)
        if record.snapshot_index == 0 or node.checked_snapshot == position:
            return
        node.checked_snapshot = position
        known = self.committed.get(record.snapshot_index)
        if known is not None and known[0].term != record.snapshot_term:
            self.agreement.add(
                "snapshot-term-mismatch",
                f"{node.name}'s snapshot ends at index {record.snapshot_index} in term "
                f"{record.snapshot_term}, but the entry committed there has term {known[0].term}",
                node=node.name,
                index=record.snapshot_index,
                time=record.where.time,
                snapshot={"term": record.snapshot_term, **record.where.describe()},
                committed=_entry_evidence(known[0], known[1]),
            )

    def _compare_entries(self, node: NodeLog, record: LogRecord, view: DumpView) -> None:
        commit = record.commit
        where = record.where
        own = node.committed
        # Fast path: the committed entries this node already showed in its previous dump,
        # unchanged, were compared then. One C-level list comparison skips them all.
        skip_low, skip_high = 1, 0
        previous, previous_view = node.last, node.last_view
        if (
            previous is not None
            and not node.crashed_since_dump  # the crash made it forget some: re-learn them
            and view.contiguous
            and previous_view.contiguous
            and view.first is not None
            and previous_view.first is not None
        ):
            low = max(view.first, previous_view.first)
            high = min(commit, previous.commit, view.last, previous_view.last)  # type: ignore[type-var]
            if low <= high and view.span(low, high) == previous_view.span(low, high):
                skip_low, skip_high = low, high
        for entry in view.outside(skip_low, skip_high):
            index = entry.index
            if index <= commit:
                mine = own.get(index)
                if mine is not None and mine[0] == entry.term and mine[1] == entry.digest:
                    continue  # unchanged since this node committed it: already compared
                if mine is not None:
                    self._changed(node, index, mine, entry, where, still_committed=True)
                self._agree(node, index, entry, where)
                own[index] = (entry.term, entry.digest, where)
            else:
                mine = own.get(index)
                if mine is not None and (mine[0] != entry.term or mine[1] != entry.digest):
                    self._changed(node, index, mine, entry, where, still_committed=False)
                    del own[index]

    def _changed(
        self,
        node: NodeLog,
        index: int,
        mine: tuple[int, str, Where],
        entry: LogEntry,
        where: Where,
        *,
        still_committed: bool,
    ) -> None:
        state = "still committed" if still_committed else "now uncommitted"
        self.durability.add(
            "committed-entry-changed",
            f"{node.name} had committed index {index} in term {mine[0]}; later its log holds "
            f"a different entry there (term {entry.term}, {state})",
            node=node.name,
            index=index,
            time=where.time,
            before=_entry_evidence((mine[0], mine[1]), mine[2]),
            after=_entry_evidence(entry, where),
        )

    def _check_missing(
        self,
        node: NodeLog,
        record: LogRecord,
        view: DumpView,
        floor: int,
        shown_last: int,
        last_index: int,
    ) -> None:
        commit = record.commit
        upper = max(commit, node.committed_max)
        if upper <= floor:
            return
        top = min(shown_last, upper)
        if view.contiguous:
            start = view.first if view.first is not None else shown_last + 1
            holes = [[floor + 1, min(start - 1, top)]] if start > floor + 1 <= top else []
        else:
            holes = ranges([i for i in range(floor + 1, top + 1) if view.get(i) is None])
        tail = [max(last_index, floor) + 1, upper] if upper > max(last_index, floor) else None
        dump = _dump_evidence(record, last_index)
        for first, last in holes + ([tail] if tail else []):
            # The part at or below this dump's own commit index: the node claims it committed
            # entries it does not have.
            if first <= commit:
                claimed = min(last, commit)
                self.durability.add(
                    "committed-index-missing",
                    f"{node.name} reports commit index {commit} but its log lacks "
                    f"indexes {first}..{claimed} (above its snapshot at {record.snapshot_index})",
                    node=node.name,
                    indexes=[first, claimed],
                    time=record.where.time,
                    dump=dump,
                )
            # The part above this commit but within what the node had committed before.
            low = max(first, commit + 1)
            high = min(last, node.committed_max)
            if not node.crashed_since_dump:
                self._lost(node, record, low, high, dump, "while it was running")
                continue
            # Across a crash the node may come back without entries it had shown committed
            # but not yet written; what it had applied, it had made durable first.
            high = min(high, node.durable)
            cause = "lose-unfsynced" if node.lost_unsynced_since_dump else "a crash"
            self._lost(node, record, low, high, dump,
                       f"across {cause}, though it had applied up to {node.durable}")
        if tail is not None and node.committed_max > max(commit, tail[0] - 1):
            node.committed_max = max(commit, tail[0] - 1)

    def _lost(self, node: NodeLog, record: LogRecord, low: int, high: int,
              dump: dict[str, Any], cause: str) -> None:
        if low > high:
            return
        lost = node.committed.get(low)
        self.durability.add(
            "committed-entries-lost",
            f"{node.name} had committed indexes {low}..{high}; they vanished from its log "
            f"{cause}",
            node=node.name,
            indexes=[low, high],
            time=record.where.time,
            crash_between=node.crashed_since_dump,
            lose_unfsynced_between=node.lost_unsynced_since_dump,
            applied_before=node.durable,
            first_lost=None if lost is None else _entry_evidence(lost[:2], lost[2]),
            dump=dump,
        )

    # -- results ----------------------------------------------------------------------------

    def agreement_result(self, known_nodes: set[str]) -> dict[str, Any]:
        stats = self._stats()
        violations = Violations()
        violations.extend(self.agreement)
        self._check_snapshot_claims(violations)
        if violations:
            return invalid_result(**stats, **violations.describe())
        if not self.dumps:
            return unknown_result("no log dumps were observed", **stats)
        if not self.committed:
            return unknown_result("no dump showed a committed entry", **stats)
        silent = sorted(known_nodes - {n for n, log in self.nodes.items() if log.dumps})
        if silent:
            return unknown_result(
                f"no log dump from {', '.join(silent)}: their logs were never compared",
                never_dumped=silent,
                **stats,
            )
        return valid_result(**stats)

    def durability_result(self, known_nodes: set[str]) -> dict[str, Any]:
        stats = self._stats()
        violations = Violations()
        violations.extend(self.durability)
        undecided = self._check_final(known_nodes, violations)
        if violations:
            return invalid_result(**stats, **violations.describe())
        if not self.dumps:
            return unknown_result("no log dumps were observed", **stats)
        silent = sorted(known_nodes - {n for n, log in self.nodes.items() if log.dumps})
        if silent:
            return unknown_result(
                f"no log dump from {', '.join(silent)}: their logs were never checked",
                never_dumped=silent,
                **stats,
            )
        if undecided:
            return unknown_result(
                "some committed entries are in no node's last dump, but fewer than a majority "
                "of nodes were dumped after they committed: cannot tell whether they were lost",
                undecided_indexes=ranges(undecided)[:20],
                **stats,
            )
        return valid_result(final_dumps=self._final_summary(), **stats)

    def _check_final(self, known_nodes: set[str], violations: Violations) -> list[int]:
        """Invariant 5; returns the committed indexes that could not be judged."""
        finals = [log for log in self.nodes.values() if log.last is not None]
        if not finals:
            return []
        majority = len(known_nodes | set(self.nodes)) // 2 + 1
        lost: list[int] = []
        undecided: list[int] = []
        for index in sorted(self.committed):
            entry, where = self.committed[index]
            dumped_after = 0
            held = False
            for log in finals:
                last = log.last
                assert last is not None
                if index <= last.snapshot_index:
                    held = True
                    break
                if last.from_index is not None and index < last.from_index:
                    continue  # an incremental dump that does not show this index: no word
                if (log.last_view.last or 0) < index <= (last.last_index or 0):
                    continue  # cut off by a size-capped answer: no word either
                mine = log.last_view.get(index)
                if mine is not None and mine.term == entry.term and mine.digest == entry.digest:
                    held = True
                    break
                if last.where.time > where.time:
                    dumped_after += 1  # looked at after the entry committed, and it is gone
            if held:
                continue
            (lost if dumped_after >= majority else undecided).append(index)
        for first, last in ranges(lost):
            entry, where = self.committed[first]
            violations.add(
                "committed-entries-lost-cluster-wide",
                f"indexes {first}..{last} were committed but no node holds them at the end",
                indexes=[first, last],
                time=max(log.last.where.time for log in finals if log.last is not None),
                first_committed=_entry_evidence(entry, where),
                final_dumps=self._final_summary(),
            )
        return undecided

    def _final_summary(self) -> dict[str, Any]:
        summary = {}
        for name, log in sorted(self.nodes.items()):
            if log.last is not None:
                last = log.last_view.last or log.last.snapshot_index
                summary[name] = _dump_evidence(log.last, last)
        return summary

    def _stats(self) -> dict[str, Any]:
        return {
            "nodes": sorted(self.nodes),
            "dumps": self.dumps,
            "pushed_committed_entries": self.pushed_entries,
            "snapshots": len(self.snapshot_claims),
            "committed_indexes": len(self.committed),
            "max_committed_index": max(self.committed, default=0),
        }
