"""Checker results: one shape for every checker, and how verdicts compose.

A result is a JSON-ready dict ``{"valid": True | False | "unknown", ...evidence}``.
A composed result nests sub-results under ``"checkers"``, and is itself a
result, so compositions nest (the log-order checker composes its five
sub-checkers; the run composes the log-order checker with linearizability).

Why ``"unknown"`` exists: a checker that could not judge (no input, a budget
ran out, a node never answered) must say so, never pass silently. Hence
``unknown_result`` requires a reason, and composing nothing is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from splitbrain_common import exits

Validity = bool | Literal["unknown"]

UNKNOWN: Literal["unknown"] = "unknown"



def valid_result(**evidence: Any) -> dict[str, Any]:
    """A passing result; ``evidence`` says what was checked (counts, ranges)."""
    return {"valid": True, **evidence}


def invalid_result(**evidence: Any) -> dict[str, Any]:
    """A failing result; ``evidence`` must name what failed (nodes, indexes, operations)."""
    return {"valid": False, **evidence}


def unknown_result(reason: str, **evidence: Any) -> dict[str, Any]:
    """A result for a checker that could not judge; ``reason`` says why, for the user."""
    if not reason:
        raise ValueError("an unknown result needs a reason")
    return {"valid": UNKNOWN, "reason": reason, **evidence}


def check_validity(value: object) -> Validity:
    """Return ``value`` if it is a verdict, else raise: catches checkers returning e.g. None."""
    if value is True or value is False or value == UNKNOWN:
        return value  # type: ignore[return-value]
    raise ValueError(f"not a verdict: {value!r} (expected true, false or 'unknown')")


def merge_validity(values: Iterable[object]) -> Validity:
    """False if any is false, else unknown if any is unknown (or there are none), else true."""
    seen_any = False
    unknown = False
    for value in values:
        verdict = check_validity(value)
        seen_any = True
        if verdict is False:
            return False
        if verdict == UNKNOWN:
            unknown = True
    if not seen_any or unknown:
        return UNKNOWN
    return True


def compose(
    checkers: Mapping[str, Mapping[str, Any]], advisory: Iterable[str] = ()
) -> dict[str, Any]:
    """Compose named results: ``{"valid": merged, "checkers": {name: result}}``.

    Composing no checker at all is ``unknown`` (nothing was checked), not true.

    ``advisory`` names checkers the system under test cannot feed (etcd exposes
    no Raft log): their ``unknown`` stays visible in their own result and in
    ``"advisory"``, but does not make the whole verdict unknown — otherwise no
    such system could ever pass. An advisory checker that says ``false`` still
    fails the run: evidence of a bug always counts.
    """
    for name, result in checkers.items():
        if not isinstance(result, Mapping) or "valid" not in result:
            raise ValueError(f"checker {name!r} returned no result with a 'valid' key")
    advisory = {name for name in advisory if name in checkers}
    counted = [
        result["valid"]
        for name, result in checkers.items()
        if not (name in advisory and result["valid"] == UNKNOWN)
    ]
    composed: dict[str, Any] = {
        "valid": merge_validity(counted),
        "checkers": {name: dict(result) for name, result in checkers.items()},
    }
    if advisory:
        composed["advisory"] = sorted(advisory)
    if not checkers:
        composed["reason"] = "no checker ran"
    return composed


def exit_code(result: Mapping[str, Any]) -> int:
    """The process exit code for a (composed) result: 0 valid, 1 invalid, 2 unknown."""
    return exits.for_validity(check_validity(result.get("valid")))


def failing_checkers(result: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the innermost checkers whose verdict is false (for summaries)."""
    names: list[str] = []
    for name, sub in result.get("checkers", {}).items():
        path = f"{prefix}{name}"
        if sub.get("valid") is False:
            inner = failing_checkers(sub, prefix=f"{path}.")
            names.extend(inner or [path])
    return names
