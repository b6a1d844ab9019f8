"""What a simulated run went through, as feedback for the search and as coverage.

A fuzz that only asks "did a checker fail?" learns nothing from the thousands of
runs that pass. Mallory (CCS 2023) feeds summaries of what each run did back to
the fuzzer; ModelFuzz (OOPSLA 2025) counts the distinct states of an abstract
model a campaign reached. This module does both for the simulator, from the
outside: an :class:`Observer` samples every node of a :class:`SimCluster`
every :data:`SAMPLE_INTERVAL` simulated seconds (it reads the nodes, it never
changes them, and it draws no random numbers, so a test's history is the same
with or without it) and keeps

- the **abstract cluster states** the run reached: per node its role (or down,
  paused), how many terms it is behind the highest, how its log relates to the
  most up-to-date one (the same head, a shorter log of the same last term, or an
  older last term), whether its commit index is the highest, and whether it holds
  uncommitted entries; the nodes sorted, since which node is which does not
  matter. Three nodes reach a few hundred of these; the count a campaign reached
  is its behaviour coverage.
- **feedback scores** (:meth:`Observer.scores`), each a situation some class of
  bug needs, which the fuzzer hands to Hypothesis's ``target()`` so that its
  optimiser mutates the tests that came closest: two nodes leading at once, a
  leader with a shorter log than another live node (legitimate when the longer
  log's tail is uncommitted, and the setting in which a wrong commit rule loses
  entries), logs
  that disagree above their commit indices (Figure 8's precondition), entries a
  node truncated, client operations retried while in doubt, elections.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.sim.cluster import SimCluster

#: Simulated seconds between two samples (an election round trip is a few ms, a
#: heartbeat 50 ms: 20 ms catches most states that last a heartbeat).
SAMPLE_INTERVAL = 0.02

#: One letter per role for the abstract state (down and paused are not roles of a core).
_ROLE = {"leader": "L", "candidate": "C", "pre-candidate": "P", "follower": "F"}


class Observer:
    """Samples a simulated cluster while it runs; see the module docstring."""

    def __init__(self, cluster: SimCluster, interval: float = SAMPLE_INTERVAL) -> None:
        self.cluster = cluster
        self.interval = interval
        self.states: set[str] = set()
        self.leaders_at_once = 0
        self.electable_lag = 0
        self.divergence = 0
        self.truncated = 0
        self.max_term = 0
        self._heads: dict[str, tuple[int, int]] = {}  # node -> (incarnation, last index)
        self._in_doubt: set[tuple[int, int]] = set()
        cluster.loop.call_later(interval, self._sample)

    def _sample(self) -> None:
        self.sample()
        self.cluster.loop.call_later(self.interval, self._sample)

    def sample(self) -> None:
        """Record the cluster's state now."""
        live = {}
        marks = []
        for node_id, node in self.cluster.nodes.items():
            core = node.core if node.up else None
            if core is None:
                marks.append("D")
            elif node.paused:
                marks.append("Z")
            else:
                live[node_id] = core
        if not live:
            self.states.add("|".join(sorted(marks)))
            return
        top_term = max(core.term for core in live.values())
        self.max_term = max(self.max_term, top_term)
        best = max((core.last_term, core.last_index) for core in live.values())
        top_commit = max(core.commit_index for core in live.values())
        leaders = 0
        diverged = 0
        best_core = next(core for core in live.values()
                         if (core.last_term, core.last_index) == best)
        for node_id, core in live.items():
            role = _ROLE.get(core.role, "?")
            head = (core.last_term, core.last_index)
            log = "=" if head == best else ("<" if head[0] == best[0] else "o")
            marks.append(f"{role}{min(top_term - core.term, 2)}{log}"
                         f"{'c' if core.commit_index == top_commit else 'b'}"
                         f"{'u' if core.last_index > core.commit_index else ''}")
            if role == "L":
                leaders += 1
            if role == "L":
                self.electable_lag = max(self.electable_lag, best[1] - core.last_index)
            if core is not best_core and core.last_index > core.commit_index:
                common = min(core.last_index, best_core.last_index)
                mine, theirs = core.term_at(common), best_core.term_at(common)
                if mine is not None and theirs is not None and mine != theirs:
                    diverged += core.last_index - core.commit_index
            self._truncation(node_id, core.last_index)
        self.leaders_at_once = max(self.leaders_at_once, leaders)
        self.divergence = max(self.divergence, diverged)
        self.states.add("|".join(sorted(marks)))
        for process in self.cluster.clients.slots:
            if process.doubtful and process.op is not None:
                self._in_doubt.add((process.number, process.seq))

    def _truncation(self, node_id: str, last_index: int) -> None:
        """Count entries a node dropped while it stayed up (a crash that loses unsynced
        writes is a fault, not a truncation: a new incarnation starts afresh)."""
        incarnation = self.cluster.nodes[node_id].incarnation
        before = self._heads.get(node_id)
        if before is not None and before[0] == incarnation and last_index < before[1]:
            self.truncated += before[1] - last_index
        self._heads[node_id] = (incarnation, last_index)

    def scores(self) -> dict[str, float]:
        """Feedback for Hypothesis's ``target()``: label -> score, higher is closer to
        a situation in which some class of bug shows."""
        return {
            "leaders at once": float(self.leaders_at_once),
            "electable node's lag": float(self.electable_lag),
            "log divergence": float(self.divergence),
            "entries truncated": float(self.truncated),
            "in-doubt retries": float(len(self._in_doubt)),
            "terms": float(self.max_term),
        }


class Coverage:
    """The abstract states a campaign reached, over all its runs."""

    def __init__(self) -> None:
        self.states: set[str] = set()
        self.runs = 0
        self.split_brain_runs = 0

    def add(self, states: Iterable[str]) -> int:
        """Add one run's states; how many of them the campaign had not reached before."""
        states = set(states)
        new = len(states - self.states)
        self.states |= states
        self.runs += 1
        if any(state.count("L") >= 2 for state in states):
            self.split_brain_runs += 1
        return new

    def summary(self) -> dict[str, Any]:
        """What ``splitbrain fuzz`` prints and stores: the number of distinct states,
        and how many have 0, 1, 2 ... leaders at once."""
        leaders = Counter(state.count("L") for state in self.states)
        return {
            "abstract_states": len(self.states),
            "runs": self.runs,
            "states_by_leaders": {str(k): leaders[k] for k in sorted(leaders)},
            "runs_with_two_leaders": self.split_brain_runs,
        }

    def describe(self) -> str:
        summary = self.summary()
        leaders = ", ".join(f"{count} with {k} leader{'s' if k != '1' else ''}"
                            for k, count in summary["states_by_leaders"].items())
        return (f"behaviour coverage: {summary['abstract_states']} distinct abstract cluster "
                f"states (roles x term gaps x log/commit relations) in {self.runs} tests"
                f"{': ' + leaders if leaders else ''}")
