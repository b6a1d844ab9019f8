"""The transactional checker: inference, cycle search, verdict, evidence.

``check_txns(txns, model="list-append")`` returns a result in the shape of
:mod:`checker.results`:

    {"valid": true | false | "unknown",
     "model": "list-append", "consistency_model": "strict-serializable",
     "anomaly_types": ["G-single", ...],          # every anomaly found
     "not": ["strict-serializable", ...],          # models the anomalies rule out
     "anomalies": {"G-single": [{"type", "cycle": [txn...], "steps": [edge...]}],
                   "G1a": [{"type", "txn", "key", "value", "writer"}], ...},
     "counts": {"G1a": 3, ...}, "txns": N, "stats": {...}, "elapsed_s": s}

``counts`` is exact for the anomalies seen read by read (16 examples of each
are kept); for cycles it is how many were kept (at most
:data:`checker.elle.cycles.MAX_CYCLES` of each name, one per component).

``valid`` is false when an anomaly rules out the requested consistency model
(``consistency_model``, strict serializability by default, as Elle's), true
when none is found, and unknown when the history cannot be read under the
model (values not unique, no transactions at all). Anomalies that only rule
out stronger models are still listed, in ``anomaly_types`` and ``not``.
"""

from __future__ import annotations

import time
from typing import Any

from checker.elle import list_append, rw_register
from checker.elle.consistency import MODELS, ruled_out
from checker.elle.cycles import find_cycles
from checker.elle.graph import DATA, REALTIME
from checker.elle.txn import Txn, txns_from_history
from checker.history import History
from checker.models import ModelError
from checker.results import invalid_result, unknown_result, valid_result

TXN_MODELS = ("list-append", "rw-register")
DEFAULT_CONSISTENCY = "strict-serializable"


def check_txns(txns: list[Txn], model: str = "list-append",
               consistency_model: str = DEFAULT_CONSISTENCY,
               linearizable_keys: bool = False,
               cycle_time_limit: float | None = 30.0) -> dict[str, Any]:
    """Check transactions under ``model`` for anomalies that ``consistency_model`` forbids."""
    if model not in TXN_MODELS:
        raise ModelError(f"unknown transactional model {model!r} "
                         f"(one of {', '.join(TXN_MODELS)})")
    if consistency_model not in MODELS:
        raise ModelError(f"unknown consistency model {consistency_model!r} "
                         f"(one of {', '.join(MODELS)})")
    started = time.monotonic()
    base = {"model": model, "consistency_model": consistency_model, "txns": len(txns)}
    if not txns:
        return unknown_result("the history holds no transactions", **base)
    if model == "list-append":
        inference = list_append.infer(txns)
    else:
        inference = rw_register.infer(txns, linearizable_keys=linearizable_keys)
    if inference.unusable:
        return unknown_result(inference.unusable, **base)
    graph = inference.graph
    graph.add_process_edges()
    cycles, notes = find_cycles(graph, time_limit=cycle_time_limit)

    anomalies: dict[str, list[dict[str, Any]]] = dict(inference.anomalies)
    counts = dict(inference.counts)
    for name, found in cycles.items():
        anomalies[name] = [cycle.evidence(graph) for cycle in found]
        counts[name] = len(found)
    names = sorted(anomalies)
    excluded = ruled_out(names)
    edges = graph.edge_count()
    data_edges = graph.edge_count(DATA)
    evidence = {
        **base,
        "anomaly_types": names,
        "not": excluded,
        "anomalies": anomalies,
        "counts": counts,
        "stats": {**inference.stats, "edges": edges, "data_edges": data_edges,
                  "realtime_edges": graph.edge_count(REALTIME),
                  "cycle_search": notes},
        "elapsed_s": round(time.monotonic() - started, 6),
    }
    if consistency_model in excluded:
        return invalid_result(message=_headline(names, anomalies, consistency_model),
                              **evidence)
    if notes.get("truncated"):
        # a cycle search that ran out of time cannot vouch for what it did not see
        return unknown_result("the cycle search ran out of time", **evidence)
    return valid_result(**evidence)


def _headline(names: list[str], anomalies: dict[str, list[dict[str, Any]]],
              consistency_model: str) -> str:
    """One line for summaries and reports: the first anomaly that rules the model out."""
    from checker.elle.consistency import ruled_out

    # the anomaly that rules out the most models, among those that rule this one out
    relevant = [n for n in names if consistency_model in ruled_out([n])] or names
    worst = max(relevant, key=lambda n: len(ruled_out([n])))
    example = anomalies[worst][0]
    if "steps" in example:
        ids = [f"T{t['id']}" for t in example["cycle"]]
        kinds = ", ".join(f"{s['type']}" + (f" {s['key']}" if "key" in s else "")
                          for s in example["steps"])
        where = f"cycle {' -> '.join([*ids, ids[0]])} ({kinds})"
    else:
        txn = example.get("txn")
        where = f"T{txn['id']} on key {example.get('key')!r}" if txn else \
            f"key {example.get('key')!r}"
    return f"{worst}: {where}; not {consistency_model}"


def check_txn_history(history: History, model: str = "list-append",
                      consistency_model: str = DEFAULT_CONSISTENCY,
                      **options: Any) -> dict[str, Any]:
    """Check a loaded history whose operations are transactions (``f = "txn"``)."""
    return check_txns(txns_from_history(history), model, consistency_model, **options)


__all__ = ["DEFAULT_CONSISTENCY", "TXN_MODELS", "check_txn_history", "check_txns"]
