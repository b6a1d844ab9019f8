"""Log-order agreement and Raft invariants, from what the nodes say about themselves.

Input: ``observations.jsonl`` (format in checker/README.md). Use::

    observations = load_observations(run_dir / "observations.jsonl")
    result = check_log_order(observations, history)   # history: optional

``result`` is a composed checker result (checker/results.py) with the
sub-checkers ``log-agreement``, ``committed-durability``, ``leader-per-term``,
``acked-writes`` and ``digests``.
"""

from __future__ import annotations

from typing import Any

from checker.logorder.acked import acked_writes_result
from checker.logorder.observations import Observations, load_observations
from checker.results import compose, unknown_result

__all__ = ["SUB_CHECKERS", "Observations", "check_log_order", "load_observations"]

SUB_CHECKERS = ("log-agreement", "committed-durability", "leader-per-term", "acked-writes",
                "digests")


def check_log_order(observations: Observations | None, history: Any = None) -> dict[str, Any]:
    """Check every invariant; ``history`` (a checker.history.History) enables acked-writes."""
    if observations is None or not observations.nodes:
        reason = "no observations of any node"
        return compose({name: unknown_result(reason) for name in SUB_CHECKERS})
    nodes = observations.nodes
    composed = compose({
        "log-agreement": observations.logs.agreement_result(nodes),
        "committed-durability": observations.logs.durability_result(nodes),
        "leader-per-term": observations.leaders.result(),
        "acked-writes": acked_writes_result(history, observations.logs, nodes),
        "digests": observations.digests.result(nodes),
    })
    composed["observations"] = observations.summary()
    return composed
