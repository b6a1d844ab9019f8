"""Transactional anomalies from a history alone, after Elle (Kingsbury & Alvaro, 2020).

Clients run transactions of micro-ops over keys (:mod:`checker.elle.txn`).
Because every written value is unique, the values that reads return reveal
which transaction's write each read saw, and often the order of versions of
each key. From those the checker builds a dependency graph (Adya's ww, wr and
rw edges, plus process and real-time order) and looks for cycles: a cycle is
a proof that no serial order explains what clients saw.

Pipeline:

1. :mod:`~checker.elle.list_append` / :mod:`~checker.elle.rw_register` infer
   version orders and edges, and report the anomalies a single read or
   transaction shows (G1a, G1b, internal, garbage, duplicates, lost update,
   incompatible orders) -- :class:`~checker.elle.anomaly.Inference`;
2. :mod:`~checker.elle.graph` adds process and real-time edges;
3. :mod:`~checker.elle.cycles` finds strongly connected components, then
   short cycles in them, named G0 / G1c / G-single / G2-item (and -process,
   -realtime);
4. :mod:`~checker.elle.consistency` says which models the anomalies rule out;
5. :mod:`~checker.elle.check` composes the verdict and evidence, and
   :mod:`~checker.elle.svg` draws a cycle.
"""

from checker.elle.check import DEFAULT_CONSISTENCY, TXN_MODELS, check_txn_history, check_txns
from checker.elle.svg import cycle_svg
from checker.elle.txn import Txn, txn_from_op, txns_from_history

__all__ = ["DEFAULT_CONSISTENCY", "TXN_MODELS", "Txn", "check_txn_history", "check_txns",
           "cycle_svg", "txn_from_op", "txns_from_history"]
