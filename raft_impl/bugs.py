"""Registry of the planted bugs of raft_impl.

Each bug is a small, real deviation from the protocol on the real code path,
switched on by ``--bug NAME`` (repeatable) and off by default. They exist so
the harness can prove that it catches each class of bug. The core's bugs are
gated by ``name in RaftConfig.bugs``; the node process implements the
node-level ones (durability and client sessions).
"""

from __future__ import annotations

from collections.abc import Iterable

#: name -> one line saying what the bug does (printed by ``--list-bugs``).
BUGS: dict[str, str] = {
    # Raft core (raft_impl/core.py)
    "no-prev-check": (
        "follower appends entries without checking the term at prevIndex (log matching broken)"
    ),
    "truncate-on-append": (
        "follower truncates everything after prevIndex even without a term conflict, "
        "so a delayed shorter append erases acknowledged entries"
    ),
    "commit-old-term": (
        "leader commits by counting replicas of an entry of an older term (Figure 8 violation)"
    ),
    "commit-without-quorum": (
        "leader counts one replica short of a majority, so a lone leader commits and acks writes"
    ),
    "stale-leader-read": (
        "read-index reads are served without a heartbeat round confirming leadership"
    ),
    "no-noop": (
        "new leader appends no no-op and serves reads before an entry of its term commits"
    ),
    "lease-too-long": (
        "lease reads use a lease of 3x the maximum election timeout, outliving leadership"
    ),
    # Node process (raft_impl/host.py, storage.py, kv.py)
    "ack-before-fsync": "node acknowledges and sends before its WAL is fsynced",
    "forget-vote": "node does not persist its vote, so after a restart it can vote twice in a term",
    "no-dedup": "state machine ignores client sessions, so a retried command applies twice",
    "txn-local-read": (
        "any node answers a read-only transaction from its own applied state at once, "
        "without the read path (a follower's state may lack committed, acknowledged entries)"
    ),
}

#: The bugs that live in the sans-IO core (the rest are node-level).
CORE_BUGS: frozenset[str] = frozenset(
    {
        "no-prev-check",
        "truncate-on-append",
        "commit-old-term",
        "commit-without-quorum",
        "stale-leader-read",
        "no-noop",
        "lease-too-long",
    }
)


def validate_bugs(names: Iterable[str]) -> frozenset[str]:
    """Return ``names`` as a frozenset, or raise ValueError naming the unknown ones.

    The message lists every known bug so a user who mistyped one sees the choices.
    """
    chosen = frozenset(names)
    unknown = sorted(chosen - BUGS.keys())
    if unknown:
        raise ValueError(
            f"unknown bug(s): {', '.join(unknown)}; known bugs: {', '.join(sorted(BUGS))}"
        )
    return chosen
