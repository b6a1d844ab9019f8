"""What a leader knows about one follower's log, and how it may send to it.

Three states, as in etcd's raft:

- ``probe``: the leader does not know where the follower's log matches; it sends
  one append at a time and waits for the answer (or a heartbeat response)
  before the next, backing ``next`` off using the follower's hints.
- ``replicate``: the follower matched; the leader streams appends, advancing
  ``next`` optimistically as it sends, with up to ``max_inflight`` messages
  in flight (pipelining).
- ``snapshot``: the follower needs entries the leader compacted away; an
  InstallSnapshot is in flight and nothing else is sent.
"""

from __future__ import annotations

from collections import deque

PROBE = "probe"
REPLICATE = "replicate"
SNAPSHOT = "snapshot"


class Progress:
    __slots__ = (
        "inflight",
        "match",
        "next",
        "paused",
        "pending_snapshot",
        "recent_active",
        "sent_commit",
        "snapshot_sent_at",
        "state",
    )

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = PROBE
        #: last index of each append in flight, oldest first (replicate state only)
        self.inflight: deque[int] = deque()
        #: probe state: one append was sent, wait for an answer before the next
        self.paused = False
        self.pending_snapshot = 0
        self.snapshot_sent_at = 0.0
        #: heard from this follower since the last check-quorum round
        self.recent_active = True
        #: highest commit index already sent to the follower (avoids empty commit-only appends)
        self.sent_commit = 0

    def __repr__(self) -> str:
        return (
            f"Progress({self.state} match={self.match} next={self.next} "
            f"inflight={len(self.inflight)} paused={self.paused})"
        )

    def become_probe(self) -> None:
        if self.state == SNAPSHOT:
            # After a snapshot the follower holds at least the snapshot index.
            self.next = max(self.match, self.pending_snapshot) + 1
        else:
            self.next = self.match + 1
        self.state = PROBE
        self.pending_snapshot = 0
        self.inflight.clear()
        self.paused = False

    def become_replicate(self) -> None:
        self.state = REPLICATE
        self.next = self.match + 1
        self.pending_snapshot = 0
        self.inflight.clear()
        self.paused = False

    def become_snapshot(self, index: int, now: float) -> None:
        self.state = SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_sent_at = now
        self.inflight.clear()
        self.paused = False

    def is_paused(self, max_inflight: int) -> bool:
        if self.state == PROBE:
            return self.paused
        if self.state == REPLICATE:
            return len(self.inflight) >= max_inflight
        return True

    def maybe_update(self, index: int) -> bool:
        """A success response says the follower matches up to ``index``; False if stale."""
        updated = index > self.match
        if updated:
            self.match = index
            self.paused = False
        if index + 1 > self.next:
            self.next = index + 1
        return updated

    def free_up_to(self, index: int) -> None:
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()

    def maybe_decrease(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the append after ``rejected``; False if it is stale.

        ``match_hint`` is the leader's guess (from the follower's conflict hint) of the
        last index that can match.
        """
        if self.state == REPLICATE:
            # Several appends may be in flight; only a rejection above match is news.
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        # Probe: only the answer to the probe we are waiting for counts.
        if self.next - 1 != rejected:
            return False
        if rejected <= self.match:
            # The follower rejects an entry it acknowledged: it lost it (a broken disk
            # promise, a planted bug). We may not probe below match, so answering at
            # once would repeat the same rejection as fast as the network allows, one
            # more such loop per heartbeat; the next heartbeat response probes again.
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.paused = False
        return True
