"""The sans-IO Raft state machine (etcd raft and h11 are the models).

``RaftCore`` takes inputs — a peer message (:meth:`RaftCore.step`), the
passage of time (:meth:`RaftCore.tick`), a proposal (:meth:`RaftCore.propose`),
a read request (:meth:`RaftCore.request_read`) — and collects outputs in a
:class:`Ready`: hard state and entries to persist, messages to send, entries
to apply, reads to serve. It opens no socket, reads no clock (time only
arrives as ``now`` arguments), touches no file and draws randomness only from
the injected ``random.Random``, so the same code runs in the node process and
in a deterministic simulator.

The driver loop (node process or simulator)::

    core.step(message, now) / core.tick(now) / core.propose(data) / ...
    if core.has_ready():
        rd = core.ready()
        persist rd.snapshot, rd.entries (truncating first when rd.entries[0].index is
            not after the last stored entry) and rd.hard_state; fsync
        send rd.messages
        install rd.snapshot, then apply rd.committed_entries in order
        serve rd.read_states once applied >= index; answer rd.rejected_reads "not leader"
        core.advance(rd)

Inputs may arrive between ``ready()`` and ``advance(rd)`` (the driver awaits
fsync); ``advance`` only retires what ``rd`` carried, so nothing is lost.

The leader counts its own copy of an entry towards a commit only once it is
durable, as a self-acknowledgement (etcd raft's MsgStorageAppendResp to
itself), so no driver has to hold a commit index back: a commit index the core
announces is always durable on a quorum, the leader's own disk counted only
when it is. By default ``advance(rd)`` is that acknowledgement for
``rd.entries`` (the driver above persists before it advances). A driver that
fsyncs in the background and advances at once (the node host,
``raft_impl/host.py``) sets ``RaftConfig.async_storage_writes`` and reports
durability itself with ``core.persisted(index)``: the log, as it stands now,
is durable up to ``index``.

Protocol features: randomized election timeouts; RequestVote with the
election restriction; pre-vote; check-quorum with leader stickiness;
AppendEntries with the (prevIndex, prevTerm) check, truncation only at a real
term conflict and fast backtracking by conflict (index, term) hints; commit
only by counting replicas of a current-term entry (Figure 8); a no-op entry
on taking office; pipelining (probe/replicate/snapshot progress states with
an in-flight window) and batching; commit piggybacked on appends and
heartbeats; snapshots, compaction and InstallSnapshot; read-index and lease
reads.

Size: one class, ``RaftCore``, whose handlers share the role state and the invariants
every handler must keep (etcd's raft.go is one file for the same reason); what stands
apart already lives apart: the log (``log.py``), replication progress (``progress.py``),
messages (``messages.py``) and planted bugs (``bugs.py``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from raft_impl.bugs import validate_bugs
from raft_impl.log import RaftLog
from raft_impl.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    SnapshotResponse,
    VoteResponse,
)
from raft_impl.progress import PROBE, REPLICATE, SNAPSHOT, Progress
from raft_impl.types import Entry, EntryKind, HardState, Snapshot
from splitbrain_common.wire import MAX_FRAME

__all__ = [
    "CANDIDATE",
    "FOLLOWER",
    "LEADER",
    "PRE_CANDIDATE",
    "READ_MODES",
    "RaftConfig",
    "RaftCore",
    "ReadState",
    "Ready",
]

FOLLOWER = "follower"
PRE_CANDIDATE = "pre-candidate"
CANDIDATE = "candidate"
LEADER = "leader"

READ_MODES = ("read-index", "lease", "log", "stale")

#: Upper bound of committed entries handed out per Ready, so one Ready after a long
#: catch-up does not stall the driver for seconds.
MAX_COMMITTED_PER_READY = 4096

#: Heartbeat rounds remembered for lease accounting when none gets confirmed.
_MAX_ROUNDS_REMEMBERED = 1024


@dataclass
class RaftConfig:
    """Tunables of one Raft node. Times are seconds of the node's (possibly skewed) clock."""

    election_timeout_min: float = 0.30  # randomized in [min, max)
    election_timeout_max: float = 0.60
    heartbeat_interval: float = 0.05
    max_entries_per_append: int = 256  # batching
    max_inflight_appends: int = 64  # pipelining window per follower
    max_append_bytes: int = 1 << 20  # an append stops growing past this many bytes of data
    snapshot_threshold: int = 10_000  # node compacts when applied - snapshot_index exceeds this
    pre_vote: bool = True
    check_quorum: bool = True
    read_mode: str = "read-index"  # read-index | lease | log | stale
    lease_fraction: float = 0.9  # lease = election_timeout_min * lease_fraction
    bugs: frozenset[str] = frozenset()
    #: False: ``advance(rd)`` means ``rd.entries`` are durable. True: the driver says
    #: so with ``persisted(index)`` (etcd raft's AsyncStorageWrites).
    async_storage_writes: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.election_timeout_min < self.election_timeout_max:
            raise ValueError(
                "need 0 < election_timeout_min < election_timeout_max, got "
                f"{self.election_timeout_min}, {self.election_timeout_max}"
            )
        if not 0 < self.heartbeat_interval < self.election_timeout_min:
            raise ValueError("need 0 < heartbeat_interval < election_timeout_min")
        if min(self.max_entries_per_append, self.max_inflight_appends, self.max_append_bytes) < 1:
            raise ValueError(
                "max_entries_per_append, max_inflight_appends and max_append_bytes must be >= 1"
            )
        if self.max_append_bytes > MAX_FRAME // 2:
            raise ValueError(f"max_append_bytes must leave room below the frame limit {MAX_FRAME}")
        if self.read_mode not in READ_MODES:
            raise ValueError(f"read_mode must be one of {', '.join(READ_MODES)}")
        if not 0 < self.lease_fraction < 1:
            raise ValueError("lease_fraction must be in (0, 1)")
        self.bugs = validate_bugs(self.bugs)

    @property
    def lease_duration(self) -> float:
        """How long a quorum-acked heartbeat lets a leader serve reads without a round.

        Safe because a follower that acked refuses votes for election_timeout_min after
        hearing from the leader (check-quorum / pre-vote stickiness), so no other leader
        can exist before the lease ends — with bounded clock drift.
        """
        if "lease-too-long" in self.bugs:
            return 3 * self.election_timeout_max
        return self.election_timeout_min * self.lease_fraction


@dataclass(frozen=True, slots=True)
class ReadState:
    """The read ``ctx`` may be served once the state machine has applied ``index``."""

    ctx: int
    index: int


@dataclass
class Ready:
    """Everything the driver must do, in order: persist, send, apply, serve."""

    hard_state: HardState | None = None  # persist (fsync) BEFORE sending messages
    entries: list[Entry] = field(default_factory=list)  # may start at or below last: truncate
    snapshot: Snapshot | None = None  # install (replace state machine + log) before applying
    messages: list[Message] = field(default_factory=list)  # send after persisting
    committed_entries: list[Entry] = field(default_factory=list)  # apply in order
    read_states: list[ReadState] = field(default_factory=list)  # serve when applied >= index
    rejected_reads: list[int] = field(default_factory=list)  # ctxs that cannot be served here
    role_changed: tuple[str, int] | None = None  # (role, term) to emit as a stdout event


class RaftCore:
    """One Raft peer. See the module docstring for the driver contract.

    ``hard_state``, ``snapshot`` and ``entries`` are what storage recovered (entries
    after the snapshot, consecutive). ``applied`` is the last index the state machine
    already reflects (at least the snapshot index); entries after it up to the commit
    index come out again in ``committed_entries`` to be re-applied.
    """

    def __init__(
        self,
        node_id: str,
        peers: Sequence[str],
        config: RaftConfig,
        rng: random.Random,
        hard_state: HardState,
        snapshot: Snapshot | None,
        entries: Sequence[Entry],
        now: float,
        applied: int = 0,
    ) -> None:
        others = [p for p in peers if p != node_id]
        if len(set(others)) != len(others):
            raise ValueError(f"duplicate peer ids in {list(peers)!r}")
        self._id = node_id
        self._peers: tuple[str, ...] = tuple(others)
        self._members = frozenset((node_id, *others))
        self._quorum = (len(others) + 1) // 2 + 1
        self._cfg = config
        self._bugs = config.bugs
        self._rng = rng
        self._now = now

        snap_index = snapshot.meta.index if snapshot else 0
        snap_term = snapshot.meta.term if snapshot else 0
        self._log = RaftLog(snap_index, snap_term, entries)
        self._snapshot = snapshot
        self._term = hard_state.term
        self._vote = hard_state.vote
        self._applied = max(applied, snap_index)
        # Applied entries are committed by definition, even if the persisted commit lags.
        self._commit = min(max(hard_state.commit, self._applied, snap_index), self._log.last_index)
        self._applied = min(self._applied, max(self._commit, snap_index))
        self._persisted_hs = hard_state
        self._unstable_from = self._log.last_index + 1
        #: Last index of our log known durable (what storage recovered is): the leader's
        #: own match when it counts a quorum (the self-acknowledgement).
        self._durable = self._log.last_index
        self._pending_snapshot: Snapshot | None = None

        self._role = FOLLOWER
        self._leader: str | None = None
        self._last_leader_contact = float("-inf")
        # A restarted node may have acked a leader's heartbeat just before it went down, and
        # that leader may still hold a read lease counting on that ack. So with lease reads
        # a fresh node does not help elect anyone for one minimum election timeout (only
        # with check-quorum, which is what makes leases sound). Costs at most that much
        # extra election delay; other read modes do not need it.
        lease = config.read_mode == "lease" and config.check_quorum
        self._vote_embargo_until = now + config.election_timeout_min if lease else now
        self._election_timeout = 0.0
        self._election_deadline = 0.0
        self._votes: dict[str, bool] = {}

        # Leader state.
        self._progress: dict[str, Progress] = {}
        self._bcast = False  # new entries: send to every follower at the next flush
        self._pending_sends: dict[str, tuple[bool, bool]] = {}  # peer -> (commit_only, force)
        self._heartbeat_deadline = 0.0
        self._check_quorum_deadline = 0.0
        # Reads: heartbeat rounds numbered per term; a read waits for a quorum to ack its round.
        self._read_seq = 0
        self._round_pending = False
        self._round_sent: deque[tuple[int, float]] = deque()
        self._acked_seq: dict[str, int] = {}
        self._confirmed_seq = 0
        self._lease_expiry = float("-inf")
        self._reads_waiting_commit: list[int] = []  # until an entry of this term commits
        self._reads_pending: deque[tuple[int, int, int]] = deque()  # (seq, index, ctx)

        # Outputs not yet retired by advance().
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._rejected_reads: list[int] = []
        #: Reads asked with ``lease=False`` that have not reached _start_read yet.
        self._index_only_reads: set[int] = set()
        self._role_event: tuple[str, int] | None = (FOLLOWER, self._term)

        self._reset_election_timer(now)

    # ------------------------------------------------------------------ properties

    @property
    def id(self) -> str:
        return self._id

    @property
    def peers(self) -> tuple[str, ...]:
        return self._peers

    @property
    def role(self) -> str:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> str | None:
        return self._vote

    @property
    def leader_id(self) -> str | None:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def last_term(self) -> int:
        return self._log.last_term

    @property
    def first_index(self) -> int:
        return self._log.first_index

    @property
    def snapshot_index(self) -> int:
        return self._log.snapshot_index

    @property
    def snapshot_term(self) -> int:
        return self._log.snapshot_term

    @property
    def applied(self) -> int:
        return self._applied

    @property
    def config(self) -> RaftConfig:
        return self._cfg

    @property
    def lease_expiry(self) -> float:
        """Leader: reads are servable without a round while ``now`` is below this."""
        return self._lease_expiry

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Retained entries with ``lo <= index < hi`` (compacted ones are not returned)."""
        return self._log.slice(lo, hi)

    def term_at(self, index: int) -> int | None:
        return self._log.term_at(index)

    def progress(self, peer: str) -> Progress | None:
        """Leader's view of ``peer`` (for tests and status); None when not leader."""
        return self._progress.get(peer)

    # ------------------------------------------------------------------ inputs

    def tick(self, now: float) -> None:
        """Let time pass: elections on followers, heartbeats and check-quorum on leaders."""
        self._now = now
        if self._role == LEADER:
            if now >= self._heartbeat_deadline:
                self._heartbeat_deadline = now + self._cfg.heartbeat_interval
                self._schedule_round()
            if self._cfg.check_quorum and now >= self._check_quorum_deadline:
                self._check_quorum_deadline = now + self._cfg.election_timeout_min
                active = 1
                for pr in self._progress.values():
                    active += pr.recent_active
                    pr.recent_active = False
                if active < self._quorum:
                    # Cut off from a majority: stop serving so clients go elsewhere.
                    self._become_follower(self._term, None)
        elif now >= self._election_deadline:
            self.campaign(now)

    def campaign(self, now: float) -> None:
        """Start an election now, as if the election timeout had fired (etcd's MsgHup).

        For tests and operator tooling; a leader ignores it. With pre-vote the node first
        runs a pre-vote round, so a campaign cannot disrupt a healthy leader.
        """
        self._now = now
        if self._role == LEADER:
            return
        if self._cfg.pre_vote:
            self._become_pre_candidate()
        else:
            self._become_candidate()

    def propose(self, data: bytes) -> int | None:
        """Append a command on the leader; its index, or None when this node is not leader.

        Replication is deferred to the next ``ready()`` so that many proposals between two
        Readys travel in the same appends (batching).
        """
        if self._role != LEADER:
            return None
        index = self._log.last_index + 1
        self._log.append(Entry(index, self._term, EntryKind.COMMAND, data))
        self._bcast = True
        if self._quorum_for_commit() == 1:
            self._maybe_commit()  # nobody else's answer will trigger it
        return index

    def request_read(self, ctx: int, now: float, *, lease: bool = True) -> None:
        """Ask for a linearizable read point; ``ctx`` comes back in ``read_states`` as
        ``ReadState(ctx, index)`` or in ``rejected_reads``.

        ``lease=False`` asks for a read-index round even when ``read_mode`` is
        ``lease`` and the lease is valid: a node configured for leases (whose
        vote embargo makes them sound) can serve both read paths, so one run
        exercises both.
        """
        self._now = now
        if self._role != LEADER:
            self._rejected_reads.append(ctx)
            return
        if not lease:
            self._index_only_reads.add(ctx)
        if not self._committed_in_term() and "no-noop" not in self._bugs:
            # Our commit index may lag the real one until an entry of our term commits.
            self._reads_waiting_commit.append(ctx)
            return
        self._start_read(ctx)

    def step(self, m: Message, now: float) -> None:
        """Handle one message from a peer."""
        self._now = now
        if m.to != self._id or m.from_ not in self._members or m.from_ == self._id:
            return
        if m.term > self._term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self._leader is not None
                    and (
                        self._role == LEADER
                        or now - self._last_leader_contact < self._cfg.election_timeout_min
                    )
                ) or now < self._vote_embargo_until
                if in_lease and (self._cfg.check_quorum or m.pre):
                    # Leader stickiness: we heard from a live leader recently, so this
                    # candidate is partitioned or slow. Do not let it depose the leader.
                    return
                if m.pre:
                    self._handle_vote(m)  # a pre-vote never changes our term
                    return
                self._become_follower(m.term, None)
            elif isinstance(m, VoteResponse) and m.pre and m.granted:
                pass  # a granted pre-vote echoes the term we would campaign in
            elif isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
                self._become_follower(m.term, m.from_)
            else:
                self._become_follower(m.term, None)
        elif m.term < self._term:
            if isinstance(m, (AppendEntries, Heartbeat)) and (
                self._cfg.check_quorum or self._cfg.pre_vote
            ):
                # A deposed leader that missed the new term: tell it, or with pre-vote and
                # check-quorum it might never learn and keep a follower from electing.
                self._send(AppendResponse(self._id, m.from_, self._term, 0, reject=True))
            elif isinstance(m, RequestVote) and m.pre:
                self._send(VoteResponse(self._id, m.from_, self._term, False, pre=True))
            return

        if isinstance(m, RequestVote):
            self._handle_vote(m)
        elif self._role == LEADER:
            self._step_leader(m)
        elif isinstance(m, VoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            if self._role != FOLLOWER:
                self._become_follower(self._term, m.from_)
            self._leader = m.from_
            self._last_leader_contact = now
            self._election_deadline = now + self._election_timeout
            if isinstance(m, AppendEntries):
                self._handle_append(m)
            elif isinstance(m, Heartbeat):
                self._commit_to(min(m.commit, self._log.last_index))
                self._send(HeartbeatResponse(self._id, m.from_, self._term, m.seq))
            else:
                self._handle_snapshot(m)

    def compact(self, snapshot: Snapshot) -> None:
        """The node took ``snapshot`` of its state machine; drop the log up to its index.

        The snapshot is kept to be sent to followers that need compacted entries.
        """
        meta = snapshot.meta
        if meta.index <= self._log.snapshot_index:
            return
        if meta.index > self._applied:
            raise ValueError(f"snapshot at {meta.index} is beyond applied index {self._applied}")
        if self._log.term_at(meta.index) != meta.term:
            raise ValueError(
                f"snapshot term {meta.term} does not match log term "
                f"{self._log.term_at(meta.index)} at index {meta.index}"
            )
        self._log.compact(meta.index, meta.term)
        self._snapshot = snapshot

    # ------------------------------------------------------------------ outputs

    def has_ready(self) -> bool:
        self._flush()
        return bool(
            self._msgs
            or self._read_states
            or self._rejected_reads
            or self._role_event is not None
            or self._pending_snapshot is not None
            or self._unstable_from <= self._log.last_index
            or (self._commit > self._applied and self._applied < self._log.last_index)
            or self._hard_state_changed()
        )

    def ready(self) -> Ready:
        """Collect the outputs so far. Does not retire them: ``advance(rd)`` does."""
        self._flush()
        hs = self._hard_state()
        log = self._log
        return Ready(
            hard_state=hs if hs != self._persisted_hs else None,
            entries=log.slice(max(self._unstable_from, log.snapshot_index + 1), log.last_index + 1),
            snapshot=self._pending_snapshot,
            messages=list(self._msgs),
            committed_entries=self._committed_to_apply(),
            read_states=list(self._read_states),
            rejected_reads=list(self._rejected_reads),
            role_changed=self._role_event,
        )

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied everything in ``rd``."""
        if rd.hard_state is not None:
            self._persisted_hs = rd.hard_state
        if rd.snapshot is not None:
            if self._pending_snapshot is rd.snapshot:
                self._pending_snapshot = None
            self._applied = max(self._applied, rd.snapshot.meta.index)
            if not self._cfg.async_storage_writes:
                self._self_ack(rd.snapshot.meta.index)
        if rd.entries:
            last = rd.entries[-1]
            # Unless a conflict rewrote that position meanwhile, all up to it is stable.
            if self._log.term_at(last.index) == last.term:
                self._unstable_from = max(self._unstable_from, last.index + 1)
                if not self._cfg.async_storage_writes:
                    self._self_ack(last.index)
        if rd.committed_entries:
            self._applied = max(self._applied, rd.committed_entries[-1].index)
        del self._msgs[: len(rd.messages)]
        del self._read_states[: len(rd.read_states)]
        del self._rejected_reads[: len(rd.rejected_reads)]
        if rd.role_changed == self._role_event:
            self._role_event = None

    def persisted(self, index: int) -> None:
        """The driver made the log, as it stands now, durable up to ``index``
        (``async_storage_writes``): the leader's self-acknowledgement, which may commit."""
        self._self_ack(min(index, self._log.last_index))

    def _self_ack(self, index: int) -> None:
        if index > self._durable:
            self._durable = index
            if self._role == LEADER:
                self._maybe_commit()

    def _rewritten_from(self, index: int) -> None:
        """Our log changes from ``index`` on: what was durable there is no longer ours."""
        self._unstable_from = min(self._unstable_from, index)
        self._durable = min(self._durable, index - 1)

    # ------------------------------------------------------------------ role changes

    def _hard_state(self) -> HardState:
        return HardState(self._term, self._vote, self._commit)

    def _hard_state_changed(self) -> bool:
        # Field by field: has_ready() runs on every wake-up of the driver, keep it cheap.
        hs = self._persisted_hs
        return self._commit != hs.commit or self._term != hs.term or self._vote != hs.vote

    def _reset_election_timer(self, now: float) -> None:
        cfg = self._cfg
        self._election_timeout = self._rng.uniform(
            cfg.election_timeout_min, cfg.election_timeout_max
        )
        self._election_deadline = now + self._election_timeout

    def _set_role(self, role: str) -> None:
        self._role = role
        self._role_event = (role, self._term)

    def _reset(self, term: int) -> None:
        """Common part of every role change: new term forgets the vote; leader state goes."""
        if term != self._term:
            self._term = term
            self._vote = None
        self._leader = None
        self._votes = {}
        self._reset_election_timer(self._now)
        if self._role == LEADER:
            self._abort_reads()
        self._progress = {}
        self._pending_sends = {}
        self._bcast = False

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self._set_role(FOLLOWER)
        self._leader = leader
        if leader is not None:
            self._last_leader_contact = self._now

    def _become_pre_candidate(self) -> None:
        # Term and vote stay as they are: a pre-vote round that fails leaves no trace,
        # which is what keeps a partitioned node from inflating terms.
        self._reset(self._term)
        self._set_role(PRE_CANDIDATE)
        self._votes = {self._id: True}
        if self._quorum == 1:
            self._become_candidate()
            return
        log = self._log
        for peer in self._peers:
            self._send(
                RequestVote(self._id, peer, self._term + 1, log.last_index, log.last_term, pre=True)
            )

    def _become_candidate(self) -> None:
        self._reset(self._term + 1)
        self._vote = self._id
        self._set_role(CANDIDATE)
        self._votes = {self._id: True}
        if self._quorum == 1:
            self._become_leader()
            return
        log = self._log
        for peer in self._peers:
            self._send(RequestVote(self._id, peer, self._term, log.last_index, log.last_term))

    def _become_leader(self) -> None:
        self._reset(self._term)
        self._set_role(LEADER)
        self._leader = self._id
        now = self._now
        next_index = self._log.last_index + 1
        self._progress = {peer: Progress(next_index) for peer in self._peers}
        self._heartbeat_deadline = now + self._cfg.heartbeat_interval
        self._check_quorum_deadline = now + self._cfg.election_timeout_min
        self._read_seq = 0
        self._round_pending = False
        self._round_sent.clear()
        self._acked_seq = {}
        self._confirmed_seq = 0
        self._lease_expiry = float("-inf")
        if "no-noop" not in self._bugs:
            # Committing an entry of our own term commits every earlier entry (Figure 8
            # rule) and tells us the real commit index before we serve reads.
            self._log.append(Entry(next_index, self._term, EntryKind.NOOP, b""))
        # Announce ourselves at once, even with nothing to append.
        self._pending_sends = {peer: (True, True) for peer in self._peers}
        self._maybe_commit()

    # ------------------------------------------------------------------ voting

    def _handle_vote(self, m: RequestVote) -> None:
        can_vote = (
            self._vote == m.from_
            or (self._vote is None and self._leader is None)
            or (m.pre and m.term > self._term)
        )
        if can_vote and self._log.is_up_to_date(m.last_index, m.last_term):
            self._send(VoteResponse(self._id, m.from_, m.term, True, pre=m.pre))
            if not m.pre:
                self._vote = m.from_
                self._reset_election_timer(self._now)
        else:
            self._send(VoteResponse(self._id, m.from_, self._term, False, pre=m.pre))

    def _handle_vote_response(self, m: VoteResponse) -> None:
        if (self._role == PRE_CANDIDATE) != m.pre or self._role == FOLLOWER:
            return
        self._votes.setdefault(m.from_, m.granted)
        granted = sum(self._votes.values())
        if granted >= self._quorum:
            if self._role == PRE_CANDIDATE:
                self._become_candidate()
            else:
                self._become_leader()
        elif len(self._votes) - granted >= self._quorum:
            self._become_follower(self._term, None)

    # ------------------------------------------------------------------ follower side

    def _handle_append(self, m: AppendEntries) -> None:
        log = self._log
        if m.prev_index < self._commit:
            # Everything up to our commit is settled; tell the leader where we are.
            self._send(AppendResponse(self._id, m.from_, self._term, self._commit))
            return
        if "no-prev-check" in self._bugs:
            ok = m.prev_index <= log.last_index  # a gap still cannot be stored
        else:
            ok = log.term_at(m.prev_index) == m.prev_term
        if not ok:
            hint_index, hint_term = log.find_conflict_by_term(
                min(m.prev_index, log.last_index), m.prev_term
            )
            self._send(
                AppendResponse(
                    self._id, m.from_, self._term, m.prev_index, True, hint_index, hint_term
                )
            )
            return
        entries = m.entries
        last_new = m.prev_index + len(entries)
        if entries:
            if "truncate-on-append" in self._bugs:
                log.truncate_and_append(entries)
                self._rewritten_from(entries[0].index)
            else:
                # Only a real term conflict truncates; a stale or duplicate append whose
                # entries we already hold changes nothing (it must not cut acked entries).
                conflict = log.find_conflict(entries)
                if conflict:
                    log.truncate_and_append(entries[conflict - entries[0].index :])
                    self._rewritten_from(conflict)
        # Only entries this append proved to match may be committed, not our whole log.
        self._commit_to(min(m.commit, last_new))
        self._send(AppendResponse(self._id, m.from_, self._term, last_new))

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        meta = m.snapshot.meta
        if meta.index <= self._commit:
            self._send(SnapshotResponse(self._id, m.from_, self._term, self._commit))
            return
        if self._log.term_at(meta.index) == meta.term:
            # We hold the snapshot's last entry: the log matches up to it, just commit.
            self._commit_to(meta.index)
        else:
            self._log.restore(meta.index, meta.term)
            self._commit = meta.index
            self._snapshot = m.snapshot
            self._pending_snapshot = m.snapshot
            self._unstable_from = meta.index + 1
            # Durable again once the driver wrote the snapshot (persisted / advance).
            self._durable = min(self._durable, meta.index)
        self._send(SnapshotResponse(self._id, m.from_, self._term, meta.index))

    def _commit_to(self, index: int) -> None:
        if index > self._commit:
            self._commit = index

    # ------------------------------------------------------------------ leader side

    def _step_leader(self, m: Message) -> None:
        pr = self._progress.get(m.from_)
        if pr is None:
            return
        if isinstance(m, AppendResponse):
            pr.recent_active = True
            if m.reject:
                match_hint = m.hint_index
                if m.hint_term > 0:
                    match_hint, _ = self._log.find_conflict_by_term(m.hint_index, m.hint_term)
                if pr.maybe_decrease(m.index, match_hint):
                    if pr.state == REPLICATE:
                        pr.become_probe()
                    self._pending_sends[m.from_] = (False, True)
            elif m.index > self._log.last_index:
                return  # cannot ack what we never sent; a confused or buggy peer
            elif pr.maybe_update(m.index) or (pr.state == PROBE and m.index == pr.match):
                # (A probe answered at the match we already knew, e.g. right after a
                # snapshot, also proves where the follower is.)
                if pr.state == PROBE:
                    pr.become_replicate()
                elif pr.state == SNAPSHOT and pr.match >= pr.pending_snapshot:
                    pr.become_probe()
                else:
                    pr.free_up_to(m.index)
                if not self._maybe_commit():
                    self._pending_sends.setdefault(m.from_, (False, False))
            elif pr.state == REPLICATE:
                pr.free_up_to(m.index)
        elif isinstance(m, HeartbeatResponse):
            pr.recent_active = True
            pr.paused = False
            if pr.state == SNAPSHOT:
                # The snapshot (or its answer) may be lost: retry after an election timeout.
                if self._now - pr.snapshot_sent_at >= self._cfg.election_timeout_max:
                    pr.become_probe()
                    self._pending_sends[m.from_] = (False, True)
            elif pr.match < self._log.last_index:
                if pr.state == REPLICATE and len(pr.inflight) >= self._cfg.max_inflight_appends:
                    # All of the window may have been dropped; let one message through to
                    # find out (a gap makes the follower reject and we fall back to probe).
                    pr.inflight.popleft()
                self._pending_sends[m.from_] = (False, True)
            if m.seq > self._acked_seq.get(m.from_, 0):
                self._acked_seq[m.from_] = m.seq
                self._confirm_rounds()
        elif isinstance(m, SnapshotResponse):
            pr.recent_active = True
            if m.reject:
                pr.become_probe()
            else:
                pr.maybe_update(m.index)
                pr.become_probe()
            self._pending_sends[m.from_] = (False, True)

    def _quorum_for_commit(self) -> int:
        if "commit-without-quorum" in self._bugs:
            return max(1, self._quorum - 1)
        return self._quorum

    def _maybe_commit(self) -> bool:
        """Advance commit to the highest index a quorum holds, if it is of our term."""
        matches = [pr.match for pr in self._progress.values()]
        # Our own copy counts once durable (the self-acknowledgement); the planted
        # bug's driver acknowledges before its fsync.
        matches.append(min(self._durable, self._log.last_index))
        matches.sort(reverse=True)
        candidate = matches[self._quorum_for_commit() - 1]
        if candidate <= self._commit:
            return False
        if "commit-old-term" not in self._bugs and self._log.term_at(candidate) != self._term:
            # Figure 8: replicas of an older-term entry do not make it committed.
            return False
        self._commit = candidate
        for peer in self._peers:
            self._pending_sends.setdefault(peer, (True, False))
        if self._reads_waiting_commit and self._committed_in_term():
            waiting, self._reads_waiting_commit = self._reads_waiting_commit, []
            for ctx in waiting:
                self._start_read(ctx)
        return True

    def _committed_in_term(self) -> bool:
        return self._log.term_at(self._commit) == self._term

    def _flush(self) -> None:
        """Turn deferred replication work into messages (called by has_ready/ready)."""
        if self._role != LEADER:
            return
        if self._bcast:
            self._bcast = False
            for peer in self._peers:
                self._send_append(peer, False, False)
        if self._pending_sends:
            pending, self._pending_sends = self._pending_sends, {}
            for peer, (commit_only, force) in pending.items():
                self._send_append(peer, commit_only, force)
        if self._round_pending:
            self._round_pending = False
            seq = self._read_seq
            self._round_sent.append((seq, self._now))
            if len(self._round_sent) > _MAX_ROUNDS_REMEMBERED:
                self._round_sent.popleft()
            commit = self._commit
            for peer, pr in self._progress.items():
                self._send(Heartbeat(self._id, peer, self._term, min(pr.match, commit), seq))

    def _send_append(self, peer: str, commit_only: bool, force: bool) -> None:
        """Send ``peer`` what it lacks, as far as its progress state allows.

        ``commit_only``: also send an empty append if the follower has not been told the
        current commit index. ``force``: send even an empty append (probe after a rejection
        or a heartbeat answer, to find out whether the tail of a window got lost).
        """
        pr = self._progress[peer]
        if pr.state == SNAPSHOT:
            return
        if pr.is_paused(self._cfg.max_inflight_appends) and not (
            force and pr.state == REPLICATE
        ):
            return
        log = self._log
        prev = pr.next - 1
        prev_term = log.term_at(prev)
        if prev_term is None:
            self._send_snapshot(peer, pr)
            return
        last = log.last_index
        max_entries = self._cfg.max_entries_per_append
        max_inflight = self._cfg.max_inflight_appends
        commit = self._commit
        want_empty = force or (commit_only and pr.sent_commit < commit)
        while True:
            entries = log.slice(pr.next, min(last + 1, pr.next + max_entries))
            if len(entries) > 1:
                entries = self._trim_to_bytes(entries)
            if not entries and not want_empty:
                return
            want_empty = False
            self._send(AppendEntries(self._id, peer, self._term, prev, prev_term, entries, commit))
            pr.sent_commit = commit
            if pr.state != REPLICATE:
                pr.paused = True  # probe: one message, then wait for its answer
                return
            if not entries:
                return
            prev = entries[-1].index
            prev_term = entries[-1].term
            pr.next = prev + 1
            pr.inflight.append(prev)
            if len(pr.inflight) >= max_inflight or pr.next > last:
                return

    def _trim_to_bytes(self, entries: list[Entry]) -> list[Entry]:
        """Cut a batch at max_append_bytes of payload (at least one entry always goes), so
        big commands cannot push an append past the frame limit."""
        budget = self._cfg.max_append_bytes
        size = 0
        for i, entry in enumerate(entries):
            size += len(entry.data) + 16  # + framing of index, term, kind
            if size > budget and i > 0:
                return entries[:i]
        return entries

    def _send_snapshot(self, peer: str, pr: Progress) -> None:
        snapshot = self._snapshot
        if snapshot is None:  # cannot happen: compaction always leaves a snapshot
            return
        pr.become_snapshot(snapshot.meta.index, self._now)
        self._send(InstallSnapshot(self._id, peer, self._term, snapshot))

    # ------------------------------------------------------------------ reads

    def _start_read(self, ctx: int) -> None:
        index_only = ctx in self._index_only_reads
        self._index_only_reads.discard(ctx)
        if (self._cfg.read_mode == "lease" and not index_only
                and self._now < self._lease_expiry):
            self._read_states.append(ReadState(ctx, self._commit))
            return
        if self._quorum == 1 or "stale-leader-read" in self._bugs:
            self._read_states.append(ReadState(ctx, self._commit))
            return
        self._schedule_round()
        self._reads_pending.append((self._read_seq, self._commit, ctx))

    def _schedule_round(self) -> None:
        """Make the next flush send a heartbeat round (reads issued until then join it)."""
        if not self._round_pending:
            self._read_seq += 1
            self._round_pending = True

    def _confirm_rounds(self) -> None:
        """A quorum acked every round up to the confirmed one: release reads, extend lease."""
        acked = [self._acked_seq.get(peer, 0) for peer in self._peers]
        acked.append(self._read_seq)  # the leader trivially acks its own rounds
        acked.sort(reverse=True)
        confirmed = acked[self._quorum - 1]
        if confirmed <= self._confirmed_seq:
            return
        self._confirmed_seq = confirmed
        sent_at = None
        rounds = self._round_sent
        while rounds and rounds[0][0] <= confirmed:
            sent_at = rounds.popleft()[1]
        if sent_at is not None:
            self._lease_expiry = max(self._lease_expiry, sent_at + self._cfg.lease_duration)
        pending = self._reads_pending
        while pending and pending[0][0] <= confirmed:
            _, index, ctx = pending.popleft()
            self._read_states.append(ReadState(ctx, index))

    def _abort_reads(self) -> None:
        self._rejected_reads.extend(self._reads_waiting_commit)
        self._index_only_reads.clear()  # every read still waiting is rejected just now
        self._rejected_reads.extend(ctx for _, _, ctx in self._reads_pending)
        self._reads_waiting_commit = []
        self._reads_pending.clear()
        self._lease_expiry = float("-inf")

    # ------------------------------------------------------------------ helpers

    def _send(self, m: Message) -> None:
        self._msgs.append(m)

    def _committed_to_apply(self) -> list[Entry]:
        lo = self._applied + 1
        if self._pending_snapshot is not None:
            lo = max(lo, self._pending_snapshot.meta.index + 1)
        hi = min(self._commit, lo + MAX_COMMITTED_PER_READY - 1)
        if hi < lo:
            return []
        return self._log.slice(lo, hi + 1)
