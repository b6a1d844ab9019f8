"""Re-run every checker on what a run recorded in its store directory.

A run directory (docs/DESIGN.md, "Store layout") holds ``history.jsonl``, ``test.json`` and,
when the harness could observe the nodes, ``observations.jsonl``. This module
is the one place that knows every checker: linearizability of the history
(with the model named in ``test.json``, ``raft-kv`` by default) and, when
observations were recorded, log-order agreement and the Raft invariants, and
what the nodes said about their own safety (``node-complaints``).
Nothing is written: callers decide what to do with the composed result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checker.errors import InputError
from checker.history import History, load_history
from checker.linearizable import DEFAULT_MEMORY_MB, check_history
from checker.models import ModelError, get_model
from splitbrain_common.files import HISTORY, MESSAGES, OBSERVATIONS, TEST_JSON

DEFAULT_MODEL = "raft-kv"
_ABSENT = object()


def is_run_dir(path: str | Path) -> bool:
    """True if ``path`` is a directory holding a recorded history."""
    path = Path(path)
    return path.is_dir() and (path / HISTORY).is_file()


def read_test_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``test.json`` (an empty dict when the run did not get to write it)."""
    path = Path(run_dir) / TEST_JSON
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, exc.lineno, f"not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise InputError(path, None, "not UTF-8 text") from None
    if not isinstance(data, dict):
        raise InputError(path, None, "test.json must hold a JSON object")
    return data


def model_from_config(config: Mapping[str, Any]) -> tuple[str, Any]:
    """(model name, initial value) a run asks for; ``raft-kv`` and None by default.

    Looked up as ``model``/``init`` at the top level, then under ``checker``
    and ``workload`` (a workload's ``name`` is not a model name).
    """
    for section in (config, config.get("checker"), config.get("workload")):
        if isinstance(section, Mapping) and isinstance(section.get("model"), str):
            return section["model"], section.get("init", section.get("model_init"))
    return DEFAULT_MODEL, None


def _compose(results: dict[str, dict[str, Any]], config: Mapping[str, Any]) -> dict[str, Any]:
    """Compose; checkers the database cannot feed (test.json ``unobservable``) are advisory,
    and so is ``node-complaints`` when nothing was watched (it says unknown, and why)."""
    from checker.results import compose

    unobservable = config.get("unobservable")
    advisory: list[str] = []
    if unobservable and "log-order" in results:
        results["log-order"] = {**results["log-order"], "unobservable": unobservable}
        advisory.append("log-order")
    if results.get("node-complaints", {}).get("valid") == "unknown":
        advisory.append("node-complaints")
    return compose(results, advisory=advisory)


def check_linearizable(history: History, model: str, initial: Any, timeout: float | None,
                       memory_mb: float | None = DEFAULT_MEMORY_MB) -> dict[str, Any]:
    """Linearizability as a checker result; a model that cannot read the ops is ``unknown``."""
    try:
        return check_history(history, get_model(model, initial), timeout=timeout,
                             memory_mb=memory_mb)
    except ModelError as exc:
        return {"valid": "unknown", "model": model,
                "reason": f"the {model} model cannot check this history: {exc}"}


def check_transactional(history: History, model: str) -> dict[str, Any]:
    """Transactional anomalies (``checker.elle``); txns the model cannot read are ``unknown``."""
    from checker.elle import check_txn_history

    try:
        return check_txn_history(history, model)
    except ModelError as exc:
        return {"valid": "unknown", "model": model,
                "reason": f"the {model} model cannot check this history: {exc}"}


def run_all(run_dir: str | Path, timeout: float | None = None, model: str | None = None,
            initial: Any = _ABSENT, memory_mb: float | None = DEFAULT_MEMORY_MB) -> dict[str, Any]:
    """Every checker on a store run directory, composed (see checker/results.py).

    ``model`` / ``initial`` override what ``test.json`` says; ``timeout`` (s)
    and ``memory_mb`` bound the linearizability search. Raises
    :class:`checker.errors.InputError` for a missing or malformed input file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, None, "not a directory")
    if not (run_dir / HISTORY).is_file():
        raise InputError(run_dir, None, f"not a run directory: no {HISTORY}")
    config = read_test_config(run_dir)
    configured_model, configured_init = model_from_config(config)
    model_name = model or configured_model
    init = configured_init if initial is _ABSENT else initial
    if model is not None and initial is _ABSENT and model != configured_model:
        init = None  # another model's initial value would not fit
    history = load_history(run_dir / HISTORY, format="jsonl")
    from checker.elle import TXN_MODELS

    results: dict[str, dict[str, Any]] = {}
    if model_name in TXN_MODELS:
        results["transactional"] = check_transactional(history, model_name)
    else:
        results["linearizable"] = check_linearizable(history, model_name, init, timeout,
                                                     memory_mb)
    observations_path = run_dir / OBSERVATIONS
    observations = None
    if observations_path.is_file():
        from checker.logorder import check_log_order, load_observations

        observations = load_observations(observations_path)
        results["log-order"] = check_log_order(observations, history)
        watch = config.get("complaint_watch") if isinstance(config, Mapping) else None
        results["node-complaints"] = observations.complaints.result(
            observations.pushing, watch if isinstance(watch, Mapping) else None,
            messages=run_dir / MESSAGES)
    composed = _compose(results, config if isinstance(config, Mapping) else {})
    fault_errors = config.get("fault_errors") if isinstance(config, Mapping) else None
    if fault_errors and composed.get("valid") is True:
        # No silent faults: a valid verdict would vouch for faults that never happened.
        # test.json keeps the run's failed faults, so a re-check says the same as the run.
        composed["valid"] = "unknown"
        composed["fault_errors"] = [str(e) for e in fault_errors]
        composed["reason"] = (f"{len(fault_errors)} fault(s) of the schedule could not be "
                              f"applied, so the run did not test what it planned")
    composed["run_dir"] = str(run_dir)
    notes = list(history.notes) + (list(observations.notes) if observations else [])
    if notes:  # a torn last line, say: the verdict is about the lines before it
        composed["notes"] = notes
    return composed
